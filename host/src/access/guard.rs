//! The door of every route: which permission each route needs ([`door`]), and the layer that
//! checks the caller's key against it before the handler runs.
//!
//! Order of the checks: a valid key (401), the key is of the route's project (403, whether that
//! project exists or not: a key learns nothing of other projects), the project exists (404), its
//! role allows the route (403). A route missing from the table needs
//! the admin role, so a route added without a line here is closed, not open.

use crate::api::ApiError;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Access;
use super::registry::Refusal;
use super::roles::{Permission, Role};

/// What a route asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// No key: probes, the API's description, the console's page and assets, accepting an
    /// invitation (its token is the key).
    Open,
    Needs(Permission),
}

/// The whole table: (method, route as registered) → what it needs.
pub fn door(method: &Method, route: &str) -> Door {
    use Permission as P;
    let get = *method == Method::GET || *method == Method::HEAD;
    let needs = match route {
        "/healthz"
        | "/readyz"
        | "/metrics"
        | "/openapi.json"
        | "/docs"
        | "/docs/"
        | "/docs/{*rest}"
        | "/"
        | "/favicon.svg"
        | "/assets/{*file}"
        | "/v1/invitations:accept" => return Door::Open,
        "/v1/me" | "/v1/projects/{project}" => P::ReadProject,
        "/v1/projects/{project}/events" => P::SendEvents,
        "/v1/projects/{project}/acquisition"
        | "/v1/projects/{project}/analyses:run"
        | "/v1/projects/{project}/analyses"
        | "/v1/projects/{project}/analyses/{id}"
        | "/v1/projects/{project}/analyses/{id}/run" => P::Analyze,
        "/v1/projects/{project}/settings" | "/v1/projects/{project}/settings/versions" if get => {
            P::Analyze
        }
        "/v1/projects/{project}/settings" => P::ChangeSettings,
        "/v1/sql" => P::Sql,
        "/v1/projects/{project}/authorization" if get => P::ReadCodes,
        "/v1/projects/{project}/authorization" => P::Authorize,
        "/v1/projects/{project}/codes"
        | "/v1/projects/{project}/codes/{id}"
        | "/v1/projects/{project}/codes/{id}/image"
            if get =>
        {
            P::ReadCodes
        }
        "/v1/projects/{project}/codes"
        | "/v1/projects/{project}/codes/{id}"
        | "/v1/projects/{project}/codes:batch"
        | "/v1/projects/{project}/codes:preview" => P::WriteCodes,
        "/v1/projects/{project}/keys"
        | "/v1/projects/{project}/keys/{id}"
        | "/v1/projects/{project}/invitations"
        | "/v1/projects/{project}/invitations/{id}" => P::ManageKeys,
        "/v1/projects/{project}/audit" => P::ReadAudit,
        _ => P::ManageKeys,
    };
    Door::Needs(needs)
}

/// The caller of a route behind a door: handlers read it from the request's extensions.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_id: String,
    pub project: String,
    pub role: Role,
}

/// The layer: checks the key, then lets the request through with its [`Caller`].
pub async fn check(
    State(access): State<Access>,
    route: Option<MatchedPath>,
    mut request: Request,
    next: Next,
) -> Response {
    let route = route.map(|r| r.as_str().to_string()).unwrap_or_default();
    let Door::Needs(permission) = door(request.method(), &route) else {
        return next.run(request).await;
    };
    // Owned before any await: a request's body is not `Sync`.
    let token = bearer(&request).map(str::to_string);
    let path = request.uri().path().to_string();
    match admit(&access, &route, permission, token, &path).await {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(refused) => refused,
    }
}

async fn admit(
    access: &Access,
    route: &str,
    permission: Permission,
    token: Result<String, Refusal>,
    path: &str,
) -> Result<Caller, Response> {
    let token = token.map_err(|r| unauthenticated(route, r))?;
    let key = access
        .registry
        .authenticate(&token)
        .await
        .map_err(|r| unauthenticated(route, r))?;
    let refuse = |message: String| {
        tracing::warn!(key_id = %key.id, role = %key.role, route, "refused: {message}");
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message).into_response()
    };
    if let Some(project) = project_of(route, path) {
        if let Err(message) = promolens_schemas::event::validate_project_name(project) {
            return Err(ApiError {
                field: Some("project".into()),
                ..ApiError::bad_request(message)
            }
            .into_response());
        }
        // Another project's route is refused before looking it up: whether it exists is not
        // for this key to learn (an ingest key is public).
        if project != key.project {
            return Err(refuse(format!(
                "this key belongs to project {}, not {project}",
                key.project
            )));
        }
        if access.registry.project(project).is_err() {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("project {project} does not exist"),
            )
            .into_response());
        }
    }
    if !key.role.allows(permission) {
        return Err(refuse(format!(
            "a key of role {} may not do this ({permission:?})",
            key.role
        )));
    }
    if permission == Permission::SendEvents
        && let Err(wait) = access.ingest_rate.check(&key.id, std::time::Instant::now())
    {
        return Err(too_many_requests(&key.id, wait));
    }
    Ok(Caller {
        key_id: key.id,
        project: key.project,
        role: key.role,
    })
}

fn bearer(request: &Request) -> Result<&str, Refusal> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or(Refusal::Missing)?;
    let value = value.to_str().map_err(|_| Refusal::Malformed)?;
    let (scheme, token) = value.split_once(' ').ok_or(Refusal::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Refusal::Malformed);
    }
    Ok(token.trim())
}

fn unauthenticated(route: &str, refusal: Refusal) -> Response {
    // The key id only: a key in a log line is a leaked key.
    tracing::warn!(route, reason = ?refusal, "refused: no valid API key");
    let mut response = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        refusal.message(),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// 429 with `Retry-After` (whole seconds, at least 1, as HTTP has it).
fn too_many_requests(key_id: &str, wait: std::time::Duration) -> Response {
    let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
    tracing::warn!(key_id, "refused: over the key's ingest rate");
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!(
            "this key is over its ingest rate (--ingest-rate-per-key); retry in {seconds} s \
             with the same event ids"
        ),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// The `{project}` segment of a request to a project's route, as sent.
fn project_of<'a>(route: &str, path: &'a str) -> Option<&'a str> {
    route.strip_prefix("/v1/projects/{project}")?;
    let rest = path.strip_prefix("/v1/projects/")?;
    let end = rest.find(['/', ':']).unwrap_or(rest.len());
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_project_is_the_segment_after_projects() {
        let route = "/v1/projects/{project}/codes:batch";
        assert_eq!(
            project_of(route, "/v1/projects/shop/codes:batch"),
            Some("shop")
        );
        assert_eq!(
            project_of("/v1/projects/{project}", "/v1/projects/shop"),
            Some("shop")
        );
        assert_eq!(project_of("/v1/sql", "/v1/sql"), None);
    }

    #[test]
    fn unknown_routes_need_the_admin_role() {
        let door = door(&Method::POST, "/v1/projects/{project}/something-new");
        assert_eq!(door, Door::Needs(Permission::ManageKeys));
        for role in [Role::Marketer, Role::Analyst, Role::Ingest] {
            assert!(!role.allows(Permission::ManageKeys));
        }
    }
}
