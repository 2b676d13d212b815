//! A project's attribution settings over HTTP ([`crate::attribution_settings`]):
//! - `GET /v1/projects/{project}/settings`: the current version (`?version=N` an earlier one);
//! - `PUT` the same: the next version ([`SettingsChange`]: the settings, the version changed
//!   from); administrators only, since every figure depends on them;
//! - `GET /v1/projects/{project}/settings/versions`: every version, oldest first.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ErrorBody;
use super::queries::QueryState;
use super::{ApiError, ApiJson, ApiQuery};
use crate::access::Caller;
use crate::attribution_settings::{AttributionSettings, SettingsVersion};

pub fn routes() -> OpenApiRouter<QueryState> {
    OpenApiRouter::new()
        .routes(routes!(show, change))
        .routes(routes!(history))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ShowParams {
    /// An earlier version (0 is the defaults a project starts with).
    version: Option<u32>,
}

/// The project's attribution settings: aliases, normalisation, channel rules, lookback window.
#[utoipa::path(get, path = "/v1/projects/{project}/settings", tag = "settings",
    params(("project" = String, Path, description = "The project"), ShowParams),
    responses(
        (status = 200, description = "The settings and their version", body = SettingsVersion),
        (status = 404, description = "No such version", body = ErrorBody),
    ))]
async fn show(
    State(state): State<QueryState>,
    Path(project): Path<String>,
    ApiQuery(params): ApiQuery<ShowParams>,
) -> Result<Json<SettingsVersion>, ApiError> {
    Ok(Json(match params.version {
        Some(version) => state.settings.version(&project, version).await?,
        None => (*state.settings.current(&project).await?).clone(),
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SettingsChange {
    /// The version these settings were edited from (the current one, or a conflict).
    version: u32,
    settings: AttributionSettings,
}

/// Makes new settings the next version. New launches are decoded with them at once; stored
/// launches keep their version until `promolens reattribute` decodes them again. Channel rules
/// and the lookback window apply to every answer from now on.
#[utoipa::path(put, path = "/v1/projects/{project}/settings", tag = "settings",
    params(("project" = String, Path, description = "The project")),
    request_body = SettingsChange,
    responses(
        (status = 200, description = "The new version", body = SettingsVersion),
        (status = 400, description = "Bad settings (`field` names the part, the message the entry)", body = ErrorBody),
        (status = 409, description = "The settings changed since `version`", body = ErrorBody),
    ))]
async fn change(
    State(state): State<QueryState>,
    Path(project): Path<String>,
    Extension(caller): Extension<Caller>,
    ApiJson(change): ApiJson<SettingsChange>,
) -> Result<Json<SettingsVersion>, ApiError> {
    Ok(Json(
        state
            .settings
            .update(
                &project,
                change.version,
                change.settings,
                Some(&caller.key_id),
            )
            .await?,
    ))
}

#[derive(Serialize, ToSchema)]
struct SettingsHistory {
    /// Oldest first, from version 0.
    versions: Vec<SettingsVersion>,
}

/// Every version of the project's settings.
#[utoipa::path(get, path = "/v1/projects/{project}/settings/versions", tag = "settings",
    params(("project" = String, Path, description = "The project")),
    responses((status = 200, description = "The versions", body = SettingsHistory)))]
async fn history(
    State(state): State<QueryState>,
    Path(project): Path<String>,
) -> Result<Json<SettingsHistory>, ApiError> {
    Ok(Json(SettingsHistory {
        versions: state.settings.history(&project).await?,
    }))
}
