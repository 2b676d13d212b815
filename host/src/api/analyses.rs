//! Saved analyses over HTTP ([`crate::saved_analyses`]):
//! - `GET /v1/projects/{project}/analyses`, `POST` one ([`NewAnalysis`]);
//! - `GET`, `PATCH` ([`Change`]: name, spec, the version changed from) and `DELETE`
//!   `/v1/projects/{project}/analyses/{id}` (`?version=N` shows an earlier version);
//! - `POST /v1/projects/{project}/analyses/{id}/run`: the saved spec, evaluated now.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ErrorBody;
use super::queries::{QueryState, RunParams, answer};
use super::{ApiError, ApiJson, ApiQuery};
use crate::access::Caller;
use crate::analysis::{AnalysisAnswer, AnalysisSpec};
use crate::saved_analyses::{Change, SavedAnalysis};

pub fn routes() -> OpenApiRouter<QueryState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(show, update, delete))
        .routes(routes!(run))
}

#[derive(Serialize, ToSchema)]
struct AnalysisList {
    /// The most recently changed first.
    analyses: Vec<SavedAnalysis>,
}

/// The project's saved analyses.
#[utoipa::path(get, path = "/v1/projects/{project}/analyses", tag = "analysis",
    params(("project" = String, Path, description = "The project")),
    responses((status = 200, description = "The analyses", body = AnalysisList)))]
async fn list(
    State(state): State<QueryState>,
    Path(project): Path<String>,
) -> Result<Json<AnalysisList>, ApiError> {
    Ok(Json(AnalysisList {
        analyses: state.saved.list(&project).await?,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewAnalysis {
    /// 1 to 100 characters.
    #[schema(example = "Signups by source, last week")]
    name: String,
    spec: AnalysisSpec,
}

/// Saves an analysis (version 1).
#[utoipa::path(post, path = "/v1/projects/{project}/analyses", tag = "analysis",
    params(("project" = String, Path, description = "The project")),
    request_body = NewAnalysis,
    responses(
        (status = 201, description = "Saved", body = SavedAnalysis),
        (status = 400, description = "A bad name or spec (`field` names it)", body = ErrorBody),
    ))]
async fn create(
    State(state): State<QueryState>,
    Path(project): Path<String>,
    Extension(caller): Extension<Caller>,
    ApiJson(new): ApiJson<NewAnalysis>,
) -> Result<Response, ApiError> {
    let saved = state
        .saved
        .create(&project, None, &new.name, new.spec, Some(&caller.key_id))
        .await?;
    Ok((StatusCode::CREATED, Json(saved)).into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct VersionParams {
    /// An earlier version (default: the current one).
    #[param(minimum = 1)]
    version: Option<u64>,
}

/// One saved analysis.
#[utoipa::path(get, path = "/v1/projects/{project}/analyses/{id}", tag = "analysis",
    params(("project" = String, Path, description = "The project"),
        ("id" = String, Path, description = "The analysis"), VersionParams),
    responses(
        (status = 200, description = "The analysis", body = SavedAnalysis),
        (status = 404, description = "No such analysis (or version)", body = ErrorBody),
    ))]
async fn show(
    State(state): State<QueryState>,
    Path((project, id)): Path<(String, String)>,
    ApiQuery(params): ApiQuery<VersionParams>,
) -> Result<Json<SavedAnalysis>, ApiError> {
    Ok(Json(state.saved.get(&project, &id, params.version).await?))
}

/// Renames an analysis, changes its spec, or both: a new version.
#[utoipa::path(patch, path = "/v1/projects/{project}/analyses/{id}", tag = "analysis",
    params(("project" = String, Path, description = "The project"),
        ("id" = String, Path, description = "The analysis")),
    request_body = Change,
    responses(
        (status = 200, description = "The new version", body = SavedAnalysis),
        (status = 400, description = "A bad name or spec", body = ErrorBody),
        (status = 404, description = "No such analysis", body = ErrorBody),
        (status = 409, description = "It changed since `version`", body = ErrorBody),
    ))]
async fn update(
    State(state): State<QueryState>,
    Path((project, id)): Path<(String, String)>,
    Extension(caller): Extension<Caller>,
    ApiJson(change): ApiJson<Change>,
) -> Result<Json<SavedAnalysis>, ApiError> {
    Ok(Json(
        state
            .saved
            .update(&project, &id, change, Some(&caller.key_id))
            .await?,
    ))
}

/// Deletes an analysis (its versions stay readable with `?version=`).
#[utoipa::path(delete, path = "/v1/projects/{project}/analyses/{id}", tag = "analysis",
    params(("project" = String, Path, description = "The project"),
        ("id" = String, Path, description = "The analysis")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such analysis", body = ErrorBody),
    ))]
async fn delete(
    State(state): State<QueryState>,
    Path((project, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.saved.delete(&project, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Runs a saved analysis, its range evaluated against today (or `now`); the answer names the
/// analysis and its version.
#[utoipa::path(post, path = "/v1/projects/{project}/analyses/{id}/run", tag = "analysis",
    params(("project" = String, Path, description = "The project"),
        ("id" = String, Path, description = "The analysis"), RunParams),
    responses(
        (status = 200, description = "The rows", content(
            (AnalysisAnswer = "application/json"), (String = "text/csv"), (String = "text/plain"))),
        (status = 403, description = "A group given by SQL, with a key that may not run SQL", body = ErrorBody),
        (status = 404, description = "No such analysis", body = ErrorBody),
    ))]
async fn run(
    State(state): State<QueryState>,
    Path((project, id)): Path<(String, String)>,
    Extension(caller): Extension<Caller>,
    ApiQuery(params): ApiQuery<RunParams>,
) -> Result<Response, ApiError> {
    let saved = state.saved.get(&project, &id, None).await?;
    answer(
        &state,
        &project,
        caller.role,
        &saved.spec,
        &params,
        Some(saved.reference()),
    )
    .await
}
