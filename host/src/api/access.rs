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
use axum::{Extension, Json};
use chrono::Utc;
use datafusion::prelude::{SessionContext, col, lit};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ErrorBody;
use crate::access::Access;
use crate::access::audit::{AUDIT_LOG, AuditRecord};
use crate::access::guard::Caller;
use crate::access::registry::{Invitation, KeyRecord, Project, parse_lifetime};
use crate::access::roles::Role;
use crate::error::Error;
use crate::output::json_rows;

#[derive(Clone)]
pub struct AccessState {
    pub access: Access,
    /// For the audit log's table.
    pub tables: SessionContext,
}

/// The routes, before their state is given (the document is read off them without a server).
pub fn routes() -> OpenApiRouter<AccessState> {
    OpenApiRouter::new()
        .routes(routes!(me))
        .routes(routes!(project))
        .routes(routes!(create_key, keys))
        .routes(routes!(revoke_key))
        .routes(routes!(invite, invitations))
        .routes(routes!(revoke_invitation))
        .routes(routes!(accept))
        .routes(routes!(audit))
}

/// The caller's key (never the key itself) and its project.
#[derive(Serialize, ToSchema)]
struct Me {
    key: Option<KeyRecord>,
    project: Project,
}

/// Who the key is: its id, role, label, expiry, and its project (the console's first call).
#[utoipa::path(get, path = "/v1/me", tag = "access",
    responses((status = 200, description = "The caller's key and project", body = Me)))]
async fn me(
    State(s): State<AccessState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Me>, ApiError> {
    let project = s.access.registry.project(&caller.project)?;
    let key = s
        .access
        .registry
        .keys(&caller.project)
        .into_iter()
        .find(|k| k.id == caller.key_id);
    Ok(Json(Me { key, project }))
}

#[derive(Serialize, ToSchema)]
struct ProjectAnswer {
    project: Project,
}

/// The project: its name and time zone.
#[utoipa::path(get, path = "/v1/projects/{project}", tag = "access",
    params(("project" = String, Path, description = "The project")),
    responses((status = 200, description = "The project", body = ProjectAnswer)))]
async fn project(
    State(s): State<AccessState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<ProjectAnswer>, ApiError> {
    let project = s.access.registry.project(&caller.project)?;
    Ok(Json(ProjectAnswer { project }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewKey {
    role: Role,
    /// Who or what holds the key (`Li Wei`, `miniprogram`).
    label: Option<String>,
    /// `30d`, `12h`: none for a key that does not expire.
    #[schema(example = "30d")]
    expires_in: Option<String>,
}

/// A key made: the token is shown this once (only its digest is kept).
#[derive(Serialize, ToSchema)]
struct KeyCreated {
    key: KeyRecord,
    /// `plk_…`: send it as `Authorization: Bearer plk_…`.
    token: String,
    shown_once: bool,
}

#[derive(Serialize, ToSchema)]
struct KeyList {
    keys: Vec<KeyRecord>,
}

#[derive(Serialize, ToSchema)]
struct KeyAnswer {
    key: KeyRecord,
}

fn lifetime(text: &str) -> Result<chrono::TimeDelta, ApiError> {
    parse_lifetime(text).map_err(|m| ApiError::from(Error::invalid("expires_in", m)))
}

/// Makes a key of the project; the answer is the only time its token is shown.
#[utoipa::path(post, path = "/v1/projects/{project}/keys", tag = "access",
    params(("project" = String, Path, description = "The project")),
    request_body = NewKey,
    responses(
        (status = 201, description = "The key and its token (shown once)", body = KeyCreated),
        (status = 400, description = "A bad `expires_in` or role", body = ErrorBody),
    ))]
async fn create_key(
    State(s): State<AccessState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<NewKey>,
) -> Result<(StatusCode, Json<KeyCreated>), ApiError> {
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
        Json(KeyCreated {
            key,
            token,
            shown_once: true,
        }),
    ))
}

/// The project's keys: id, label, role, created, last used, expiry (never the key).
#[utoipa::path(get, path = "/v1/projects/{project}/keys", tag = "access",
    params(("project" = String, Path, description = "The project")),
    responses((status = 200, description = "The keys, revoked ones included", body = KeyList)))]
async fn keys(State(s): State<AccessState>, Extension(caller): Extension<Caller>) -> Json<KeyList> {
    Json(KeyList {
        keys: s.access.registry.keys(&caller.project),
    })
}

/// Revokes a key at once.
#[utoipa::path(delete, path = "/v1/projects/{project}/keys/{id}", tag = "access",
    params(("project" = String, Path, description = "The project"),
        ("id" = String, Path, description = "The key's id")),
    responses(
        (status = 200, description = "Revoked", body = KeyAnswer),
        (status = 404, description = "No such key in the project", body = ErrorBody),
    ))]
async fn revoke_key(
    State(s): State<AccessState>,
    Extension(caller): Extension<Caller>,
    Path((_, id)): Path<(String, String)>,
) -> Result<Json<KeyAnswer>, ApiError> {
    let key = s.access.registry.revoke_key(&caller.project, &id).await?;
    s.access.record(&caller, "key.revoke", &key.id).await?;
    Ok(Json(KeyAnswer { key }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewInvitation {
    /// The role of the key the invitee will get.
    role: Role,
    /// Default 7 days.
    #[schema(example = "7d")]
    expires_in: Option<String>,
}

/// An invitation made: its token is shown this once; the invitee exchanges it for a key.
#[derive(Serialize, ToSchema)]
struct InvitationCreated {
    invitation: Invitation,
    token: String,
    /// How the invitee uses the token.
    accept: &'static str,
    shown_once: bool,
}

#[derive(Serialize, ToSchema)]
struct InvitationList {
    invitations: Vec<Invitation>,
}

#[derive(Serialize, ToSchema)]
struct InvitationAnswer {
    invitation: Invitation,
}

/// Invites someone (the mini-program's administrator, a colleague): a one-time token, expiring.
#[utoipa::path(post, path = "/v1/projects/{project}/invitations", tag = "access",
    params(("project" = String, Path, description = "The project")),
    request_body = NewInvitation,
    responses(
        (status = 201, description = "The invitation and its token (shown once)", body = InvitationCreated),
        (status = 400, description = "A bad `expires_in` or role", body = ErrorBody),
    ))]
async fn invite(
    State(s): State<AccessState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<NewInvitation>,
) -> Result<(StatusCode, Json<InvitationCreated>), ApiError> {
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
        Json(InvitationCreated {
            invitation,
            token,
            accept: "POST /v1/invitations:accept with {\"token\": …}",
            shown_once: true,
        }),
    ))
}

/// The project's invitations, used and revoked ones included (never their tokens).
#[utoipa::path(get, path = "/v1/projects/{project}/invitations", tag = "access",
    params(("project" = String, Path, description = "The project")),
    responses((status = 200, description = "The invitations", body = InvitationList)))]
async fn invitations(
    State(s): State<AccessState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<InvitationList>, ApiError> {
    let invitations = s.access.registry.invitations(&caller.project).await?;
    Ok(Json(InvitationList { invitations }))
}

/// Revokes an invitation that has not been used.
#[utoipa::path(delete, path = "/v1/projects/{project}/invitations/{id}", tag = "access",
    params(("project" = String, Path, description = "The project"),
        ("id" = String, Path, description = "The invitation's id")),
    responses(
        (status = 200, description = "Revoked", body = InvitationAnswer),
        (status = 404, description = "No such invitation in the project", body = ErrorBody),
        (status = 409, description = "Already used", body = ErrorBody),
    ))]
async fn revoke_invitation(
    State(s): State<AccessState>,
    Extension(caller): Extension<Caller>,
    Path((_, id)): Path<(String, String)>,
) -> Result<Json<InvitationAnswer>, ApiError> {
    let invitation = s
        .access
        .registry
        .revoke_invitation(&caller.project, &id)
        .await?;
    s.access
        .record(&caller, "invitation.revoke", &invitation.id)
        .await?;
    Ok(Json(InvitationAnswer { invitation }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Acceptance {
    /// The invitation's token (`pli_…`).
    token: String,
    /// A label for the key made of it (the invitee's name).
    label: Option<String>,
}

/// Exchanges an invitation's token (once, before it expires) for a key of the invited role.
/// No key needed: the token is the credential.
#[utoipa::path(post, path = "/v1/invitations:accept", tag = "access",
    request_body = Acceptance,
    responses(
        (status = 201, description = "The new key and its token (shown once)", body = KeyCreated),
        (status = 401, description = "An unknown, used, revoked or expired invitation", body = ErrorBody),
    ))]
async fn accept(
    State(s): State<AccessState>,
    ApiJson(body): ApiJson<Acceptance>,
) -> Result<(StatusCode, Json<KeyCreated>), ApiError> {
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
        Json(KeyCreated {
            key,
            token,
            shown_once: true,
        }),
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditParams {
    /// How many records, newest first (1 to 10,000; default 100).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<usize>,
}

#[derive(Serialize, ToSchema)]
struct AuditAnswer {
    /// Newest first.
    #[schema(value_type = Vec<AuditRecord>)]
    records: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// The audit log: every change (authorization, keys, invitations, codes), newest first.
#[utoipa::path(get, path = "/v1/projects/{project}/audit", tag = "access",
    params(("project" = String, Path, description = "The project"), AuditParams),
    responses(
        (status = 200, description = "The records", body = AuditAnswer),
        (status = 400, description = "A `limit` out of range", body = ErrorBody),
    ))]
async fn audit(
    State(s): State<AccessState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(params): ApiQuery<AuditParams>,
) -> Result<Json<AuditAnswer>, ApiError> {
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
    Ok(Json(AuditAnswer {
        records: json_rows(&batches)?,
    }))
}
