//! The access routes (behind the door of [`crate::access::guard`]):
//! - `GET /v1/me` — the caller's key (never the key itself) and project;
//! - `GET /v1/projects/{p}` — the project (name, time zone);
//! - `POST|GET /v1/projects/{p}/keys`, `DELETE …/keys/{id}` — create (shown once), list, revoke;
//! - `POST|GET /v1/projects/{p}/invitations`, `DELETE …/invitations/{id}`;
//! - `POST /v1/invitations:accept` `{token, label?}` — no key: the invitation is the credential;
//! - `GET /v1/projects/{p}/audit?limit=N` — the newest changes first.

use crate::api::{ApiError, ApiJson, ApiQuery};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use chrono::Utc;
use datafusion::prelude::{SessionContext, col, lit};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::access::Access;
use crate::access::audit::AUDIT_LOG;
use crate::access::guard::Caller;
use crate::access::registry::parse_lifetime;
use crate::access::roles::Role;
use crate::error::Error;
use crate::output::json_rows;

#[derive(Clone)]
pub struct AccessState {
    pub access: Access,
    /// For the audit log's table.
    pub tables: SessionContext,
}

pub fn router(state: AccessState) -> Router {
    Router::new()
        .route("/v1/me", get(me))
        .route("/v1/projects/{project}", get(project))
        .route("/v1/projects/{project}/keys", post(create_key).get(keys))
        .route("/v1/projects/{project}/keys/{id}", delete(revoke_key))
        .route(
            "/v1/projects/{project}/invitations",
            post(invite).get(invitations),
        )
        .route(
            "/v1/projects/{project}/invitations/{id}",
            delete(revoke_invitation),
        )
        .route("/v1/invitations:accept", post(accept))
        .route("/v1/projects/{project}/audit", get(audit))
        .with_state(state)
}

async fn me(
    State(s): State<AccessState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    let project = s.access.registry.project(&caller.project)?;
    let key = s
        .access
        .registry
        .keys(&caller.project)
        .into_iter()
        .find(|k| k.id == caller.key_id);
    Ok(Json(json!({ "key": key, "project": project })))
}

async fn project(
    State(s): State<AccessState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    let project = s.access.registry.project(&caller.project)?;
    Ok(Json(json!({ "project": project })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    role: Role,
    label: Option<String>,
    /// `30d`, `12h`: none for a key that does not expire.
    expires_in: Option<String>,
}

fn lifetime(text: &str) -> Result<chrono::TimeDelta, ApiError> {
    parse_lifetime(text).map_err(|m| ApiError::from(Error::invalid("expires_in", m)))
}

async fn create_key(
    State(s): State<AccessState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<NewKey>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let expires_at = match &body.expires_in {
        Some(text) => Some(Utc::now() + lifetime(text)?),
        None => None,
    };
    let (key, token) = s
        .access
        .registry
        .create_key(&caller.project, body.role, body.label, expires_at)
        .await?;
    s.access
        .record(&caller, "key.create", &format!("{} ({})", key.id, key.role))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "key": key, "token": token, "shown_once": true })),
    ))
}

async fn keys(State(s): State<AccessState>, Extension(caller): Extension<Caller>) -> Json<Value> {
    Json(json!({ "keys": s.access.registry.keys(&caller.project) }))
}

async fn revoke_key(
    State(s): State<AccessState>,
    Extension(caller): Extension<Caller>,
    Path((_, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let key = s.access.registry.revoke_key(&caller.project, &id).await?;
    s.access.record(&caller, "key.revoke", &key.id).await?;
    Ok(Json(json!({ "key": key })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewInvitation {
    role: Role,
    /// Default 7 days.
    expires_in: Option<String>,
}

async fn invite(
    State(s): State<AccessState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<NewInvitation>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let lifetime = lifetime(body.expires_in.as_deref().unwrap_or("7d"))?;
    let (invitation, token) = s
        .access
        .registry
        .invite(
            &caller.project,
            body.role,
            Utc::now() + lifetime,
            &caller.key_id,
        )
        .await?;
    s.access
        .record(
            &caller,
            "invitation.create",
            &format!("{} ({})", invitation.id, invitation.role),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "invitation": invitation,
            "token": token,
            "accept": "POST /v1/invitations:accept with {\"token\": …}",
            "shown_once": true,
        })),
    ))
}

async fn invitations(
    State(s): State<AccessState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    let invitations = s.access.registry.invitations(&caller.project).await?;
    Ok(Json(json!({ "invitations": invitations })))
}

async fn revoke_invitation(
    State(s): State<AccessState>,
    Extension(caller): Extension<Caller>,
    Path((_, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let invitation = s
        .access
        .registry
        .revoke_invitation(&caller.project, &id)
        .await?;
    s.access
        .record(&caller, "invitation.revoke", &invitation.id)
        .await?;
    Ok(Json(json!({ "invitation": invitation })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Acceptance {
    token: String,
    label: Option<String>,
}

async fn accept(
    State(s): State<AccessState>,
    ApiJson(body): ApiJson<Acceptance>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (invitation, key, token) = s.access.registry.accept(&body.token, body.label).await?;
    let caller = Caller {
        key_id: key.id.clone(),
        project: key.project.clone(),
        role: key.role,
    };
    s.access
        .record(&caller, "invitation.accept", &invitation.id)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "key": key, "token": token, "shown_once": true })),
    ))
}

#[derive(Deserialize)]
struct AuditParams {
    limit: Option<usize>,
}

async fn audit(
    State(s): State<AccessState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(params): ApiQuery<AuditParams>,
) -> Result<Json<Value>, ApiError> {
    let limit = params.limit.unwrap_or(100);
    if !(1..=10_000).contains(&limit) {
        return Err(Error::invalid("limit", format!("limit is 1 to 10000, not {limit}")).into());
    }
    let frame = s
        .tables
        .table(AUDIT_LOG)
        .await
        .map_err(Error::from)?
        .filter(col("project").eq(lit(caller.project.as_str())))
        .map_err(Error::from)?
        .sort(vec![col("time").sort(false, false)])
        .map_err(Error::from)?
        .limit(0, Some(limit))
        .map_err(Error::from)?
        .select_columns(&["time", "key_id", "action", "target", "outcome"])
        .map_err(Error::from)?;
    let batches = crate::sql::collect(frame).await?;
    Ok(Json(json!({ "records": json_rows(&batches)? })))
}
