//! The code-management HTTP API (errors as `{"error": {"code", "message", "field"}}`):
//! - `GET|PUT|DELETE /v1/projects/{p}/authorization` — status; register `{app_id, secret}`
//!   (checked with WeChat, kept encrypted, never returned); revoke;
//! - `POST /v1/projects/{p}/codes` create, `GET …/codes[?include_deleted=true]` list (each code
//!   with its past 7 days, and the A+C quota);
//! - `GET|PATCH|DELETE /v1/projects/{p}/codes/{id}` (PATCH `{name}` renames, DELETE is soft);
//! - `GET /v1/projects/{p}/codes/{id}/image` — the image as WeChat made it;
//! - `POST /v1/projects/{p}/codes:batch` — a CSV body, one code per row;
//! - `POST /v1/projects/{p}/codes:preview` — validate and encode without creating.

use crate::api::{ApiError, ApiJson, ApiQuery};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;

use crate::access::{Caller, Outcome};
use crate::codes::{CodesError, CodesState, NewCode, PluginError, describe};

/// Records a change and its outcome, then hands the result on. A change that was made but
/// cannot be recorded is answered as an error (the log must not miss a change reported done).
async fn audited<T>(
    s: &CodesState,
    caller: &Caller,
    action: &str,
    target: impl FnOnce(Option<&T>) -> String,
    result: Result<T, ApiError>,
) -> Result<T, ApiError> {
    let outcome = if result.is_ok() {
        Outcome::Ok
    } else {
        Outcome::Failed
    };
    let target = target(result.as_ref().ok());
    s.audit
        .record(&caller.project, &caller.key_id, action, &target, outcome)
        .await?;
    result
}

impl From<CodesError> for ApiError {
    fn from(e: CodesError) -> ApiError {
        if let CodesError::Credentials(credentials) = &e {
            return ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "credentials",
                credentials.to_string(),
            );
        }
        let CodesError::Plugin(plugin) = &e else {
            tracing::error!(error = %e, "plugin call stopped");
            return ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "plugin_stopped",
                e.to_string(),
            );
        };
        let (status, code, field) = match plugin {
            PluginError::NotAuthorized(_) => (StatusCode::FORBIDDEN, "not_authorized", None),
            PluginError::InvalidField(f) => (
                StatusCode::BAD_REQUEST,
                "invalid_field",
                Some(f.field.clone()),
            ),
            PluginError::TooLong(t) => (StatusCode::BAD_REQUEST, "too_long", Some(t.field.clone())),
            PluginError::QuotaExhausted(_) => (StatusCode::CONFLICT, "quota_exhausted", None),
            PluginError::Wechat(_) => (StatusCode::BAD_GATEWAY, "wechat_error", None),
            PluginError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", None),
            PluginError::Deleted(_) => (StatusCode::GONE, "deleted", None),
            PluginError::Conflict(_) => (StatusCode::CONFLICT, "conflict", None),
            PluginError::Host(m) if m.contains(crate::codes::wechat::OUTCOME_UNKNOWN) => {
                (StatusCode::GATEWAY_TIMEOUT, "outcome_unknown", None)
            }
            PluginError::Host(_) => (StatusCode::INTERNAL_SERVER_ERROR, "host_error", None),
        };
        ApiError {
            field,
            ..ApiError::new(status, code, describe(plugin))
        }
    }
}

pub fn router(state: CodesState) -> Router {
    Router::new()
        .route(
            "/v1/projects/{project}/authorization",
            get(authorization).put(authorize).delete(revoke),
        )
        .route("/v1/projects/{project}/codes", post(create).get(list))
        .route(
            "/v1/projects/{project}/codes/{id}",
            get(show).patch(rename).delete(delete),
        )
        .route("/v1/projects/{project}/codes/{id}/image", get(image))
        .route("/v1/projects/{project}/codes:batch", post(batch))
        .route("/v1/projects/{project}/codes:preview", post(preview))
        .with_state(state)
}

fn check_project(project: &str) -> Result<(), ApiError> {
    promolens_schemas::event::validate_project_name(project).map_err(|m| ApiError {
        field: Some("project".into()),
        ..ApiError::bad_request(m)
    })
}

async fn authorization(
    State(s): State<CodesState>,
    Path(project): Path<String>,
) -> Result<Response, ApiError> {
    check_project(&project)?;
    let status = s.codes.authorization_status(&project).await?;
    Ok(Json(serde_json::json!({ "authorization": status })).into_response())
}

#[derive(Deserialize)]
struct AuthorizeBody {
    app_id: String,
    secret: String,
}

async fn authorize(
    State(s): State<CodesState>,
    Extension(caller): Extension<Caller>,
    Path(project): Path<String>,
    ApiJson(body): ApiJson<AuthorizeBody>,
) -> Result<Response, ApiError> {
    check_project(&project)?;
    let app_id = body.app_id.clone();
    let result = crate::codes::authorize_project(&s, &project, body.app_id, body.secret)
        .await
        .map_err(ApiError::from);
    let authorization = audited(&s, &caller, "authorization.set", |_| app_id, result).await?;
    Ok(Json(serde_json::json!({ "authorization": authorization })).into_response())
}

async fn revoke(
    State(s): State<CodesState>,
    Extension(caller): Extension<Caller>,
    Path(project): Path<String>,
) -> Result<Response, ApiError> {
    check_project(&project)?;
    let result = async {
        s.codes.revoke_authorization(&project).await?;
        s.credentials
            .delete(&project)
            .await
            .map_err(ApiError::internal)
    }
    .await;
    audited(
        &s,
        &caller,
        "authorization.revoke",
        |_| String::new(),
        result,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn create(
    State(s): State<CodesState>,
    Extension(caller): Extension<Caller>,
    Path(project): Path<String>,
    ApiJson(body): ApiJson<NewCode>,
) -> Result<Response, ApiError> {
    check_project(&project)?;
    let name = body.name.clone();
    let result = match body.into_request() {
        Ok(request) => s
            .codes
            .create(&project, request)
            .await
            .map_err(ApiError::from),
        Err(e) => Err(e),
    };
    let code = audited(
        &s,
        &caller,
        "code.create",
        |code: Option<&crate::codes::Code>| code.map_or(name, |c| c.id.clone()),
        result,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(code)).into_response())
}

async fn preview(
    State(s): State<CodesState>,
    Path(project): Path<String>,
    ApiJson(body): ApiJson<NewCode>,
) -> Result<Response, ApiError> {
    check_project(&project)?;
    Ok(Json(s.codes.preview(&project, body.into_request()?).await?).into_response())
}

#[derive(Deserialize)]
struct ListParams {
    #[serde(default)]
    include_deleted: bool,
}

async fn list(
    State(s): State<CodesState>,
    Path(project): Path<String>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Response, ApiError> {
    check_project(&project)?;
    let codes = s.codes.list(&project, params.include_deleted).await?;
    let quota = s.codes.quota(&project).await?;
    let mut figures = std::collections::HashMap::new();
    if let Some((ctx, zones)) = &s.analytics {
        // The reference product's list: each code's acquisition in the past 7 days.
        let tz = zones.get(&project);
        let window = crate::acquisition::Window::past_days(chrono::Utc::now(), 7, tz)?;
        let query = crate::acquisition::AcquisitionQuery {
            project: project.clone(),
            by: vec!["code_id".into()],
            window,
        };
        for row in crate::output::json_rows(&query.run(ctx).await?)? {
            if let Some(id) = row.get("code_id").and_then(|v| v.as_str()) {
                figures.insert(id.to_string(), row.clone());
            }
        }
    }
    let codes: Vec<serde_json::Value> = codes
        .into_iter()
        .map(|code| {
            let figure = |name: &str| {
                figures
                    .get(&code.id)
                    .and_then(|row| row.get(name))
                    .and_then(|v| v.as_u64())
                    .unwrap_or(0)
            };
            let past_7_days = serde_json::json!({
                "new_users": figure("new_users"),
                "users": figure("users"),
                "launches": figure("launches"),
            });
            let mut value = serde_json::to_value(&code).unwrap_or_default();
            if let Some(object) = value.as_object_mut() {
                object.insert("past_7_days".into(), past_7_days);
            }
            value
        })
        .collect();
    Ok(Json(serde_json::json!({ "codes": codes, "quota": quota })).into_response())
}

async fn show(
    State(s): State<CodesState>,
    Path((project, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    check_project(&project)?;
    Ok(Json(s.codes.get(&project, &id).await?).into_response())
}

#[derive(Deserialize)]
struct RenameBody {
    name: String,
}

async fn rename(
    State(s): State<CodesState>,
    Extension(caller): Extension<Caller>,
    Path((project, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<RenameBody>,
) -> Result<Response, ApiError> {
    check_project(&project)?;
    let result = s.codes.rename(&project, &id, &body.name).await;
    let code = audited(
        &s,
        &caller,
        "code.rename",
        |_| id,
        result.map_err(Into::into),
    )
    .await?;
    Ok(Json(code).into_response())
}

async fn delete(
    State(s): State<CodesState>,
    Extension(caller): Extension<Caller>,
    Path((project, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    check_project(&project)?;
    let result = s.codes.delete(&project, &id).await;
    let code = audited(
        &s,
        &caller,
        "code.delete",
        |_| id,
        result.map_err(Into::into),
    )
    .await?;
    Ok(Json(code).into_response())
}

async fn image(
    State(s): State<CodesState>,
    Path((project, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    check_project(&project)?;
    let image = s.codes.image(&project, &id).await?;
    Ok(([(header::CONTENT_TYPE, image.content_type)], image.bytes).into_response())
}

async fn batch(
    State(s): State<CodesState>,
    Extension(caller): Extension<Caller>,
    Path(project): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_project(&project)?;
    let csv = String::from_utf8(body.to_vec()).map_err(|e| {
        ApiError::bad_request(format!(
            "the CSV is not UTF-8 (at byte {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    let result = s
        .codes
        .batch_create(&project, csv)
        .await
        .map_err(ApiError::from);
    let describe = |rows: Option<&Vec<crate::codes::BatchRow>>| match rows {
        Some(rows) => {
            let created = rows.iter().filter(|r| r.outcome.is_ok()).count();
            format!("{created} of {} rows created", rows.len())
        }
        None => "no row created".to_string(),
    };
    let rows = audited(&s, &caller, "codes.batch", describe, result).await?;
    let answer: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|row| match row.outcome {
            Ok(code) => serde_json::json!({"line": row.line, "name": row.name, "code": code}),
            Err(e) => {
                let api = ApiError::from(CodesError::Plugin(e));
                serde_json::json!({"line": row.line, "name": row.name,
                    "error": {"code": api.code, "message": api.message, "field": api.field}})
            }
        })
        .collect();
    let created = answer.iter().filter(|r| r.get("code").is_some()).count();
    Ok(Json(serde_json::json!({
        "created": created,
        "failed": answer.len() - created,
        "rows": answer
    }))
    .into_response())
}
