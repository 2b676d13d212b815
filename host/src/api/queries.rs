//! The analysis routes:
//! - `GET /v1/projects/{project}/acquisition?by=…&days=…|from=…&to=…[&now=…][&tz=…]`;
//! - `POST /v1/sql` with `{"sql": "SELECT …"}`: read-only SQL over the key's project.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use chrono::{DateTime, NaiveDate, Utc};
use datafusion::prelude::SessionContext;
use promolens_ingest::ProjectZones;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiJson, ApiQuery};
use crate::access::{Caller, Permission};
use crate::acquisition::{AcquisitionQuery, Window, parse_dimensions, parse_tz, window};
use crate::output::json_rows;

/// What the query routes share.
#[derive(Clone)]
pub struct QueryState {
    pub ctx: SessionContext,
    /// Each project's time zone (the default of its windows).
    pub zones: ProjectZones,
}

pub fn router(state: QueryState) -> Router {
    Router::new()
        .route("/v1/projects/{project}/acquisition", get(acquisition))
        .route("/v1/sql", post(sql))
        .with_state(state)
}

#[derive(Deserialize)]
struct AcquisitionParams {
    by: Option<String>,
    days: Option<u32>,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    now: Option<DateTime<Utc>>,
    tz: Option<String>,
}

#[derive(Serialize)]
struct AcquisitionAnswer {
    project: String,
    by: Vec<String>,
    window: Window,
    rows: Vec<serde_json::Map<String, serde_json::Value>>,
}

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
    let query = AcquisitionQuery {
        project: project.clone(),
        by: by.clone(),
        window: window.clone(),
    };
    let batches = query.run(&state.ctx).await?;
    Ok(Json(AcquisitionAnswer {
        project,
        by,
        window,
        rows: json_rows(&batches)?,
    }))
}

#[derive(Deserialize)]
struct SqlRequest {
    sql: String,
}

#[derive(Serialize)]
struct SqlAnswer {
    columns: Vec<String>,
    rows: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// SQL over the caller's project only ([`crate::tables::project_session`]).
async fn sql(
    State(state): State<QueryState>,
    Extension(caller): Extension<Caller>,
    ApiJson(request): ApiJson<SqlRequest>,
) -> Result<Json<SqlAnswer>, ApiError> {
    let mut tables = crate::tables::PROJECT_TABLES.to_vec();
    if caller.role.allows(Permission::ReadAudit) {
        tables.push(crate::access::audit::AUDIT_LOG);
    }
    let ctx = crate::tables::project_session(&state.ctx, &caller.project, &tables).await?;
    let frame = crate::sql::plan(&ctx, &request.sql).await?;
    let columns = frame
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let batches = crate::sql::collect(frame).await?;
    Ok(Json(SqlAnswer {
        columns,
        rows: json_rows(&batches)?,
    }))
}
