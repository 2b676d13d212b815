//! The code-management HTTP API (errors as `{"error": {"code", "message", "field"}}`):
//! - `GET|PUT|DELETE /v1/projects/{p}/authorization` — status; register `{app_id, secret}`
//!   (checked with WeChat, kept encrypted, never returned); revoke;
//! - `POST /v1/projects/{p}/codes` create, `GET …/codes[?include_deleted=true]` list (each code
//!   with its past 7 days, and the A+C quota);
//! - `GET|PATCH|DELETE /v1/projects/{p}/codes/{id}` (PATCH `{name}` renames, DELETE is soft);
//! - `GET /v1/projects/{p}/codes/{id}/image` — the image as WeChat made it;
//! - `POST /v1/projects/{p}/codes:batch` — a CSV body, one code per row;
//! - `POST /v1/projects/{p}/codes:preview` — validate and encode without creating.

use crate::api::error::{ErrorBody, ErrorDetail};
use crate::api::{ApiError, ApiJson, ApiQuery};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::access::{Caller, Outcome};
use crate::codes::{
    Authorization, BatchOutcome, Code, CodePreview, CodesError, CodesState, NewCode, PluginError,
    QuotaState, describe,
};
use crate::saved_analyses::{CODES_LIST, codes_list_spec};

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
            // WeChat refusing the AppID (40013) or the AppSecret (40125) is the caller's to fix,
            // not a failure of WeChat's: the authorize step, or again after a secret reset.
            PluginError::Wechat(w) if w.errcode == 40013 => (
                StatusCode::BAD_REQUEST,
                "invalid_credentials",
                Some("app_id".into()),
            ),
            PluginError::Wechat(w) if w.errcode == 40125 => (
                StatusCode::BAD_REQUEST,
                "invalid_credentials",
                Some("secret".into()),
            ),
            PluginError::Wechat(_) => (StatusCode::BAD_GATEWAY, "wechat_error", None),
            PluginError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", None),
            PluginError::Deleted(_) => (StatusCode::GONE, "deleted", None),
            PluginError::Conflict(_) => (StatusCode::CONFLICT, "conflict", None),
            PluginError::Host(m) if m.contains(crate::codes::wechat::OUTCOME_UNKNOWN) => {
                (StatusCode::GATEWAY_TIMEOUT, "outcome_unknown", None)
            }
            PluginError::Host(_) => (StatusCode::INTERNAL_SERVER_ERROR, "host_error", None),
        };
        let over_limit = match plugin {
            PluginError::TooLong(t) => Some(crate::api::error::OverLimit {
                limit: t.limit.into(),
                actual: t.actual.into(),
                over: t.over.into(),
                unit: t.unit.clone(),
            }),
            _ => None,
        };
        ApiError {
            field,
            over_limit,
            ..ApiError::new(status, code, describe(plugin))
        }
    }
}

/// The routes, before their state is given (the document is read off them without a server).
pub fn routes() -> OpenApiRouter<CodesState> {
    OpenApiRouter::new()
        .routes(routes!(authorization, authorize, revoke))
        .routes(routes!(create, list))
        .routes(routes!(show, rename, delete))
        .routes(routes!(image))
        .routes(routes!(batch))
        .routes(routes!(preview))
}

fn check_project(project: &str) -> Result<(), ApiError> {
    promolens_schemas::event::validate_project_name(project).map_err(|m| ApiError {
        field: Some("project".into()),
        ..ApiError::bad_request(m)
    })
}

/// The mini-program a project's codes are made for; null before the authorize step.
#[derive(Serialize, ToSchema)]
struct AuthorizationAnswer {
    authorization: Option<Authorization>,
}

/// Whether the project is authorized, and for which mini-program.
#[utoipa::path(get, path = "/v1/projects/{project}/authorization", tag = "codes",
    params(("project" = String, Path, description = "The project")),
    responses((status = 200, description = "The authorization, or null", body = AuthorizationAnswer)))]
async fn authorization(
    State(s): State<CodesState>,
    Path(project): Path<String>,
) -> Result<Json<AuthorizationAnswer>, ApiError> {
    check_project(&project)?;
    let authorization = s.codes.authorization_status(&project).await?;
    Ok(Json(AuthorizationAnswer { authorization }))
}

/// The mini-program's AppID and AppSecret (from the WeChat admin console).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AuthorizeBody {
    #[schema(example = "wx1234567890abcdef")]
    app_id: String,
    /// Checked with WeChat, stored encrypted, never returned.
    secret: String,
}

/// The authorize step: checks the credentials with WeChat and keeps them (encrypted).
#[utoipa::path(put, path = "/v1/projects/{project}/authorization", tag = "codes",
    params(("project" = String, Path, description = "The project")),
    request_body = AuthorizeBody,
    responses(
        (status = 200, description = "Authorized", body = AuthorizationAnswer),
        (status = 400, description = "WeChat refused the AppID or the AppSecret (`invalid_credentials`, `field` says which)", body = ErrorBody),
        (status = 502, description = "WeChat failed otherwise (`wechat_error`, with its errcode)", body = ErrorBody),
    ))]
async fn authorize(
    State(s): State<CodesState>,
    Extension(caller): Extension<Caller>,
    Path(project): Path<String>,
    ApiJson(body): ApiJson<AuthorizeBody>,
) -> Result<Json<AuthorizationAnswer>, ApiError> {
    check_project(&project)?;
    let app_id = body.app_id.clone();
    let result = crate::codes::authorize_project(&s, &project, body.app_id, body.secret)
        .await
        .map_err(ApiError::from);
    let authorization = audited(&s, &caller, "authorization.set", |_| app_id, result).await?;
    Ok(Json(AuthorizationAnswer {
        authorization: Some(authorization),
    }))
}

/// Forgets the credentials; the codes and their numbers stay.
#[utoipa::path(delete, path = "/v1/projects/{project}/authorization", tag = "codes",
    params(("project" = String, Path, description = "The project")),
    responses((status = 204, description = "Revoked")))]
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

/// Makes a code with WeChat (A and C count against the mini-program's lifetime quota).
#[utoipa::path(post, path = "/v1/projects/{project}/codes", tag = "codes",
    params(("project" = String, Path, description = "The project")),
    request_body = NewCode,
    responses(
        (status = 201, description = "Made", body = Code),
        (status = 400, description = "A field is wrong (`invalid_field`) or over WeChat's limit (`too_long`, by how much)", body = ErrorBody),
        (status = 403, description = "The project is not authorized (`not_authorized`), or the role may not", body = ErrorBody),
        (status = 409, description = "The A+C quota is used up (`quota_exhausted`)", body = ErrorBody),
        (status = 502, description = "WeChat refused (`wechat_error`)", body = ErrorBody),
        (status = 504, description = "WeChat did not answer; the code may have been made (`outcome_unknown`): look at the list before trying again", body = ErrorBody),
    ))]
async fn create(
    State(s): State<CodesState>,
    Extension(caller): Extension<Caller>,
    Path(project): Path<String>,
    ApiJson(body): ApiJson<NewCode>,
) -> Result<(StatusCode, Json<Code>), ApiError> {
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
    Ok((StatusCode::CREATED, Json(code)))
}

/// Checks and encodes a code without making it: what it carries, the bytes (or characters) it
/// uses of WeChat's limit, and the quota after it.
#[utoipa::path(post, path = "/v1/projects/{project}/codes:preview", tag = "codes",
    params(("project" = String, Path, description = "The project")),
    request_body = NewCode,
    responses(
        (status = 200, description = "How the code would be encoded", body = CodePreview),
        (status = 400, description = "A field is wrong (`invalid_field`) or over WeChat's limit (`too_long`, by how much)", body = ErrorBody),
    ))]
async fn preview(
    State(s): State<CodesState>,
    Path(project): Path<String>,
    ApiJson(body): ApiJson<NewCode>,
) -> Result<Json<CodePreview>, ApiError> {
    check_project(&project)?;
    Ok(Json(s.codes.preview(&project, body.into_request()?).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListParams {
    /// Also list deleted codes.
    #[serde(default)]
    include_deleted: bool,
}

/// The project's codes, each with its numbers of the past 7 days, and the A+C quota.
#[derive(Serialize, ToSchema)]
struct CodeList {
    codes: Vec<ListedCode>,
    quota: QuotaState,
}

/// A code and its acquisition in the past 7 complete days (the project's time zone).
#[derive(Serialize, ToSchema)]
struct ListedCode {
    #[serde(flatten)]
    code: Code,
    /// The code's figures over the range of the project's saved analysis `codes-past-7-days`
    /// (the past 7 days unless someone changed it).
    past_7_days: Figures,
}

#[derive(Serialize, ToSchema, Default)]
struct Figures {
    /// Users whose first launch in the window came from the code.
    new_users: u64,
    /// Users who launched from the code.
    users: u64,
    launches: u64,
}

/// The codes, newest first, each with its past 7 days.
#[utoipa::path(get, path = "/v1/projects/{project}/codes", tag = "codes",
    params(("project" = String, Path, description = "The project"), ListParams),
    responses((status = 200, description = "The codes and the quota", body = CodeList)))]
async fn list(
    State(s): State<CodesState>,
    Path(project): Path<String>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<CodeList>, ApiError> {
    check_project(&project)?;
    let codes = s.codes.list(&project, params.include_deleted).await?;
    let quota = s.codes.quota(&project).await?;
    let mut figures = std::collections::HashMap::new();
    if let Some(analytics) = &s.analytics {
        // The reference product's list: each code's acquisition in the past 7 days, as the
        // project's saved analysis of the list says (its range and filters; split by code).
        let spec = match analytics.saved.get(&project, CODES_LIST, None).await {
            Ok(saved) => saved.spec,
            Err(crate::Error::NotFound { .. }) => codes_list_spec(),
            Err(e) => return Err(e.into()),
        };
        // Its range, zone and filters; the list's own figures and split.
        let spec = codes_list_spec().with_range_of(spec);
        let settings = analytics.settings.current(&project).await?;
        let query = spec.query(
            &project,
            chrono::Utc::now(),
            analytics.zones.get(&project),
            &settings,
        )?;
        for row in crate::output::json_rows(&spec.run(&query, &analytics.ctx).await?)? {
            if let Some(id) = row.get("code_id").and_then(|v| v.as_str()) {
                figures.insert(id.to_string(), row.clone());
            }
        }
    }
    let codes = codes
        .into_iter()
        .map(|code| {
            let figure = |name: &str| {
                figures
                    .get(&code.id)
                    .and_then(|row| row.get(name))
                    .and_then(|v| v.as_u64())
                    .unwrap_or(0)
            };
            let past_7_days = Figures {
                new_users: figure("new_users"),
                users: figure("users"),
                launches: figure("launches"),
            };
            ListedCode { code, past_7_days }
        })
        .collect();
    Ok(Json(CodeList { codes, quota }))
}

/// One code.
#[utoipa::path(get, path = "/v1/projects/{project}/codes/{id}", tag = "codes",
    params(("project" = String, Path, description = "The project"),
        ("id" = String, Path, description = "The code's id (8 characters of `0-9a-z`)")),
    responses(
        (status = 200, description = "The code (deleted ones too)", body = Code),
        (status = 404, description = "No such code, or no such project", body = ErrorBody),
    ))]
async fn show(
    State(s): State<CodesState>,
    Path((project, id)): Path<(String, String)>,
) -> Result<Json<Code>, ApiError> {
    check_project(&project)?;
    Ok(Json(s.codes.get(&project, &id).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RenameBody {
    /// 1 to 100 characters.
    name: String,
}

/// Renames a code (its image and parameters stay).
#[utoipa::path(patch, path = "/v1/projects/{project}/codes/{id}", tag = "codes",
    params(("project" = String, Path, description = "The project"),
        ("id" = String, Path, description = "The code's id")),
    request_body = RenameBody,
    responses(
        (status = 200, description = "Renamed", body = Code),
        (status = 400, description = "A bad name (`invalid_field`)", body = ErrorBody),
        (status = 404, description = "No such code, or no such project", body = ErrorBody),
        (status = 410, description = "The code is deleted (`deleted`)", body = ErrorBody),
    ))]
async fn rename(
    State(s): State<CodesState>,
    Extension(caller): Extension<Caller>,
    Path((project, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<RenameBody>,
) -> Result<Json<Code>, ApiError> {
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
    Ok(Json(code))
}

/// Deletes a code softly: its image can no longer be downloaded; its scans still count and its
/// data stays (WeChat never gives the quota back).
#[utoipa::path(delete, path = "/v1/projects/{project}/codes/{id}", tag = "codes",
    params(("project" = String, Path, description = "The project"),
        ("id" = String, Path, description = "The code's id")),
    responses(
        (status = 200, description = "Deleted: the code with `deleted_at_ms`", body = Code),
        (status = 404, description = "No such code, or no such project", body = ErrorBody),
        (status = 410, description = "Already deleted (`deleted`)", body = ErrorBody),
    ))]
async fn delete(
    State(s): State<CodesState>,
    Extension(caller): Extension<Caller>,
    Path((project, id)): Path<(String, String)>,
) -> Result<Json<Code>, ApiError> {
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
    Ok(Json(code))
}

/// The code's image as WeChat made it.
#[utoipa::path(get, path = "/v1/projects/{project}/codes/{id}/image", tag = "codes",
    params(("project" = String, Path, description = "The project"),
        ("id" = String, Path, description = "The code's id")),
    responses(
        (status = 200, description = "The image", content(
            (Vec<u8> = "image/png"), (Vec<u8> = "image/jpeg"))),
        (status = 404, description = "No such code, or no such project", body = ErrorBody),
        (status = 410, description = "The code is deleted (`deleted`)", body = ErrorBody),
    ))]
async fn image(
    State(s): State<CodesState>,
    Path((project, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    check_project(&project)?;
    let image = s.codes.image(&project, &id).await?;
    Ok(([(header::CONTENT_TYPE, image.content_type)], image.bytes).into_response())
}

/// What became of a batch: each row made, or its error.
#[derive(Serialize, ToSchema)]
struct BatchAnswer {
    created: usize,
    failed: usize,
    rows: Vec<BatchLine>,
}

/// One row of the CSV: the code made of it, or why not.
#[derive(Serialize, ToSchema)]
struct BatchLine {
    /// Line number in the CSV (the header is line 1).
    line: u32,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<Code>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorDetail>,
}

/// Makes one code per CSV row (at most 1,000): header `name,kind,page,utm_source,utm_medium,\
/// utm_campaign,utm_content,utm_term,params,width`; rows that fail are listed, the others made.
#[utoipa::path(post, path = "/v1/projects/{project}/codes:batch", tag = "codes",
    params(("project" = String, Path, description = "The project")),
    request_body(content = String, content_type = "text/csv",
        description = "A header line, then one code per line"),
    responses(
        (status = 200, description = "Each row's code or error", body = BatchAnswer),
        (status = 400, description = "The CSV cannot be read (not UTF-8, bad header, over 1,000 rows)", body = ErrorBody),
        (status = 403, description = "The project is not authorized (`not_authorized`), or the role may not", body = ErrorBody),
    ))]
async fn batch(
    State(s): State<CodesState>,
    Extension(caller): Extension<Caller>,
    Path(project): Path<String>,
    body: Bytes,
) -> Result<Json<BatchAnswer>, ApiError> {
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
            let created = rows.iter().filter(|r| r.outcome.is_created()).count();
            format!("{created} of {} rows created", rows.len())
        }
        None => "no row created".to_string(),
    };
    let rows = audited(&s, &caller, "codes.batch", describe, result).await?;
    let rows: Vec<BatchLine> = rows
        .into_iter()
        .map(|row| {
            let (code, error) = match row.outcome {
                BatchOutcome::Created(code) => (Some(code), None),
                BatchOutcome::Failed(e) => {
                    (None, Some(ApiError::from(CodesError::Plugin(e)).into()))
                }
            };
            BatchLine {
                line: row.line,
                name: row.name,
                code,
                error,
            }
        })
        .collect();
    let created = rows.iter().filter(|r| r.code.is_some()).count();
    Ok(Json(BatchAnswer {
        created,
        failed: rows.len() - created,
        rows,
    }))
}
