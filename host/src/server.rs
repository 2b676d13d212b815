//! `promolens serve`: the ingest endpoint and the query API on one port.
//!
//! Routes (all errors as `{"error": {"code", "message", "field"}}`):
//! - `POST /v1/projects/{project}/events` — ingest (see `promolens_ingest::http`);
//! - `GET  /v1/projects/{project}/acquisition?by=…&days=…|from=…&to=…[&now=…][&tz=…]`;
//! - `POST /v1/sql` with `{"sql": "SELECT …"}` — read-only SQL;
//! - `GET  /healthz`;
//! - code management, `/v1/projects/{project}/authorization` and `…/codes…` (see
//!   [`crate::codes::http`]).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use datafusion::prelude::SessionContext;
use promolens_ingest::http::{ApiError, ApiQuery};
use promolens_ingest::{Ingestor, Storage};
use serde::{Deserialize, Serialize};

use crate::acquisition::{AcquisitionQuery, Window, parse_dimensions};
use crate::error::Error;
use crate::output::json_rows;

/// What the query routes share.
#[derive(Clone)]
pub struct QueryState {
    pub ctx: SessionContext,
    /// Default time zone of windows (the projects' zone).
    pub tz: Tz,
}

impl From<Error> for ApiError {
    fn from(error: Error) -> ApiError {
        match error {
            Error::Invalid { message, field } => ApiError {
                field: field.map(str::to_string),
                ..ApiError::bad_request(message)
            },
            Error::ReadOnly(_) => {
                ApiError::new(StatusCode::FORBIDDEN, "read_only", error.to_string())
            }
            // Planning errors (unknown table or column, syntax) are the caller's.
            Error::Query(e) if is_caller_query_error(&e) => {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_query", e.to_string())
            }
            Error::Ingest(e) => e.into(),
            other => ApiError::internal(other),
        }
    }
}

fn is_caller_query_error(e: &datafusion::error::DataFusionError) -> bool {
    use datafusion::error::DataFusionError as E;
    match e {
        E::SQL(..) | E::Plan(_) | E::SchemaError(..) | E::NotImplemented(_) => true,
        E::Context(_, inner) => is_caller_query_error(inner),
        E::Diagnostic(_, inner) => is_caller_query_error(inner),
        _ => false,
    }
}

/// The whole HTTP API.
pub fn router(
    ingestor: Arc<Ingestor>,
    body_limit: usize,
    query: QueryState,
    codes: crate::codes::http::CodesState,
) -> Router {
    let api = Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/projects/{project}/acquisition", get(acquisition))
        .route("/v1/sql", post(sql))
        .with_state(query);
    api.merge(promolens_ingest::http::router(ingestor, body_limit))
        .merge(crate::codes::http::router(codes))
        .layer(axum::middleware::from_fn(log_request))
}

/// One log line per request with method, path, status and latency.
async fn log_request(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    tracing::info!(%method, %path, status = response.status().as_u16(),
        elapsed_ms = started.elapsed().as_secs_f64() * 1e3, "request");
    response
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
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
        None => state.tz,
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

/// The window named by `--days` or `--from/--to` (7 days when neither is given).
pub fn window(
    days: Option<u32>,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    now: DateTime<Utc>,
    tz: Tz,
) -> crate::Result<Window> {
    match (days, from, to) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(Error::invalid(
            "days",
            "give either days or from/to, not both",
        )),
        (_, Some(from), Some(to)) => Window::dates(from, to, tz),
        (_, Some(_), None) => Err(Error::invalid("to", "from needs to")),
        (_, None, Some(_)) => Err(Error::invalid("from", "to needs from")),
        (days, None, None) => Window::past_days(now, days.unwrap_or(7), tz),
    }
}

/// A time zone by IANA name.
pub fn parse_tz(name: &str) -> crate::Result<Tz> {
    name.parse::<Tz>().map_err(|_| {
        Error::invalid(
            "tz",
            format!("unknown time zone `{name}`; use an IANA name such as Asia/Shanghai"),
        )
    })
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

async fn sql(
    State(state): State<QueryState>,
    Json(request): Json<SqlRequest>,
) -> Result<Json<SqlAnswer>, ApiError> {
    let frame = crate::sql::plan(&state.ctx, &request.sql).await?;
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

/// Runs the server until SIGTERM or Ctrl-C, then stops accepting, finishes the requests under way
/// and flushes the buffer to Parquet.
pub async fn serve(
    storage: Storage,
    ingestor: Arc<Ingestor>,
    listen: SocketAddr,
    body_limit: usize,
    tz: Tz,
    mut codes: crate::codes::http::CodesState,
) -> crate::Result<()> {
    let ctx = crate::tables::session(&storage).await?;
    codes.analytics = Some((ctx.clone(), tz));
    let app = router(ingestor.clone(), body_limit, QueryState { ctx, tz }, codes);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Error::io(format!("listening on {listen}"), e))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::io("reading the listening address", e))?;
    tracing::info!(address = %local, "promolens is serving");
    println!("promolens listening on http://{local}");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| Error::io("serving", e))?;
    tracing::info!("shutting down: flushing buffered events");
    ingestor.shutdown().await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => futures::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = futures::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
