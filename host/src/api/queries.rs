//! The analysis routes:
//! - `GET /v1/projects/{project}/acquisition?by=…&days=…|from=…&to=…[&now=…][&tz=…]`;
//! - `POST /v1/projects/{project}/analyses:run` with an [`AnalysisSpec`];
//! - `POST /v1/sql` with `{"sql": "SELECT …"}`: read-only SQL over the key's project.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiError, ApiJson, ApiQuery};
use crate::access::{Caller, Permission, Role};
use crate::acquisition::{AcquisitionQuery, Window, parse_dimensions, parse_tz, window};
use crate::analysis::{AnalysisAnswer, AnalysisSpec};
use crate::output::{self, Format, json_rows};

/// What the query routes share: the analytics services.
pub use crate::analysis::Analytics as QueryState;

/// The routes, before their state is given (the document is read off them without a server).
pub fn routes() -> OpenApiRouter<QueryState> {
    OpenApiRouter::new()
        .routes(routes!(acquisition))
        .routes(routes!(run_analysis))
        .routes(routes!(sql))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AcquisitionParams {
    /// Dimensions, comma-separated, in order: `utm_source`, `utm_medium`, `utm_campaign`,
    /// `utm_content`, `utm_term`, `code_id`, `code_kind`, `scene`, `path` (default `utm_source`).
    #[param(example = "utm_source,utm_campaign")]
    by: Option<String>,
    /// The past N complete days (default 7); or give `from` and `to`.
    #[param(minimum = 1, maximum = 1096)]
    days: Option<u32>,
    /// First day, inclusive (2000-01-01 to 2099-12-31; at most 1,096 days to `to`).
    from: Option<NaiveDate>,
    /// Last day, inclusive.
    to: Option<NaiveDate>,
    /// The moment "today" is taken from (default: now).
    now: Option<DateTime<Utc>>,
    /// IANA time zone of the days (default: the project's).
    #[param(example = "Asia/Shanghai")]
    tz: Option<String>,
}

/// Acquisition by the asked dimensions over a window of whole days.
#[derive(Serialize, ToSchema)]
struct AcquisitionAnswer {
    project: String,
    /// The dimensions, in order.
    by: Vec<String>,
    window: Window,
    /// One object per combination of the dimensions' values: each dimension, then `new_users`
    /// (first touch in the window), `users` and `launches`.
    #[schema(value_type = Vec<Object>)]
    rows: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// New users, users and launches in a window, by UTM dimension, code or scene.
#[utoipa::path(get, path = "/v1/projects/{project}/acquisition", tag = "analysis",
    params(("project" = String, Path, description = "The project"), AcquisitionParams),
    responses(
        (status = 200, description = "The rows, largest `new_users` first", body = AcquisitionAnswer),
        (status = 400, description = "A bad parameter (`field` names it)", body = super::error::ErrorBody),
    ))]
async fn acquisition(
    State(state): State<QueryState>,
    Path(project): Path<String>,
    ApiQuery(params): ApiQuery<AcquisitionParams>,
) -> Result<Json<AcquisitionAnswer>, ApiError> {
    let tz = match &params.tz {
        Some(name) => parse_tz(name)?,
        None => state.zones.get(&project),
    };
    let by = parse_dimensions(params.by.as_deref().unwrap_or("utm_source"))?;
    let window = window(
        params.days,
        params.from,
        params.to,
        params.now.unwrap_or_else(Utc::now),
        tz,
    )?;
    let settings = state.settings.current(&project).await?;
    let query = AcquisitionQuery::acquisition(&project, by.clone(), window.clone(), &settings);
    let batches = query.run(&state.ctx).await?;
    Ok(Json(AcquisitionAnswer {
        project,
        by,
        window,
        rows: json_rows(&batches)?,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct RunParams {
    /// The moment "today" is taken from (default: now).
    now: Option<DateTime<Utc>>,
    /// `json` (default: the whole answer, drill-downs included), `csv` or `table` (an aligned
    /// text table): the rows' dimensions and metrics.
    #[param(inline)]
    format: Option<AnswerFormat>,
}

#[derive(Deserialize, ToSchema, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
enum AnswerFormat {
    Json,
    Csv,
    Table,
}

/// Runs an analysis: its metrics by its dimensions over its range, filtered; each row with the
/// spec of its drill-down.
#[utoipa::path(post, path = "/v1/projects/{project}/analyses:run", tag = "analysis",
    params(("project" = String, Path, description = "The project"), RunParams),
    request_body = AnalysisSpec,
    responses(
        (status = 200, description = "The rows, largest `new_users` first", content(
            (AnalysisAnswer = "application/json"), (String = "text/csv"), (String = "text/plain"))),
        (status = 400, description = "A bad spec (`field` names the part)", body = super::error::ErrorBody),
        (status = 403, description = "A group given by SQL, with a key that may not run SQL", body = super::error::ErrorBody),
    ))]
async fn run_analysis(
    State(state): State<QueryState>,
    Path(project): Path<String>,
    Extension(caller): Extension<Caller>,
    ApiQuery(params): ApiQuery<RunParams>,
    ApiJson(spec): ApiJson<AnalysisSpec>,
) -> Result<Response, ApiError> {
    answer(&state, &project, caller.role, &spec, &params, None).await
}

/// Runs `spec` (of the saved analysis `saved`, if it is one) for the caller's project and
/// answers as `params` ask. A group given by SQL needs a key that may run SQL.
pub(super) async fn answer(
    state: &QueryState,
    project: &str,
    role: Role,
    spec: &AnalysisSpec,
    params: &RunParams,
    saved: Option<crate::saved_analyses::SavedRef>,
) -> Result<Response, ApiError> {
    if spec.group.as_ref().is_some_and(|g| g.is_sql()) && !role.allows(Permission::Sql) {
        return Err(crate::Error::Forbidden(format!(
            "a group given by SQL runs the caller's SQL: a {role} key may not (analysts and \
             administrators may)"
        ))
        .into());
    }
    let now = params.now.unwrap_or_else(Utc::now);
    let settings = state.settings.current(project).await?;
    let query = spec.query(project, now, state.zones.get(project), &settings)?;
    let batches = spec.run(&query, &state.ctx).await?;
    let (format, media_type) = match params.format.unwrap_or(AnswerFormat::Json) {
        AnswerFormat::Json => {
            let mut answer = spec.answer(query, &batches, &state.ctx).await?;
            answer.saved_analysis = saved;
            return Ok(Json(answer).into_response());
        }
        AnswerFormat::Csv => (Format::Csv, "text/csv; charset=utf-8"),
        AnswerFormat::Table => (Format::Table, "text/plain; charset=utf-8"),
    };
    let mut text = Vec::new();
    output::write(&spec.project(&batches)?, format, &mut text)?;
    Ok(([(header::CONTENT_TYPE, media_type)], text).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    /// One read-only statement (`SELECT`, `EXPLAIN`, `SHOW`, `DESCRIBE`).
    #[schema(example = "SELECT utm_source, count(*) AS launches FROM launch_events GROUP BY 1")]
    sql: String,
}

#[derive(Serialize, ToSchema)]
struct SqlAnswer {
    /// The result's column names, in order.
    columns: Vec<String>,
    /// One object per row.
    #[schema(value_type = Vec<Object>)]
    rows: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// SQL over the caller's project only ([`crate::tables::project_session`]).
#[utoipa::path(post, path = "/v1/sql", tag = "analysis",
    description = "Read-only SQL (DataFusion's dialect) over the key's project: `launch_events`, \
        `user_first_seen`, `promo_codes`, and `audit_log` for an admin. Rows of other projects \
        are unreachable whatever the statement says.",
    request_body = SqlRequest,
    responses(
        (status = 200, description = "The result", body = SqlAnswer),
        (status = 400, description = "A statement that does not parse or plan (`bad_query`)", body = super::error::ErrorBody),
        (status = 403, description = "A statement that writes (`read_only`), or a role without SQL", body = super::error::ErrorBody),
        (status = 422, description = "Over a limit: `statement_timeout`, `memory_limit`, `too_many_rows`", body = super::error::ErrorBody),
    ))]
async fn sql(
    State(state): State<QueryState>,
    Extension(caller): Extension<Caller>,
    ApiJson(request): ApiJson<SqlRequest>,
) -> Result<Json<SqlAnswer>, ApiError> {
    let tables = crate::tables::tables_of(caller.role);
    let limits = &state.sql_limits;
    let runtime = limits.runtime(&state.ctx)?;
    let ctx = crate::tables::project_session(&state.ctx, &caller.project, &tables, runtime).await?;
    let (schema, batches) = crate::sql::query_within(&ctx, &request.sql, limits).await?;
    let columns = schema.fields().iter().map(|f| f.name().clone()).collect();
    Ok(Json(SqlAnswer {
        columns,
        rows: json_rows(&batches)?,
    }))
}
