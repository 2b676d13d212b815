//! `promolens serve`: the ingest endpoint and the query API on one port.
//!
//! Routes (all errors as `{"error": {"code", "message", "field"}}`):
//! - `POST /v1/projects/{project}/events` — ingest (see `crate::api::events`);
//! - `GET  /v1/projects/{project}/acquisition?by=…&days=…|from=…&to=…[&now=…][&tz=…]`;
//! - `POST /v1/sql` with `{"sql": "SELECT …"}` — read-only SQL;
//! - `GET  /healthz` (the process answers), `GET /readyz` (the ingest pipeline runs);
//! - code management, `/v1/projects/{project}/authorization` and `…/codes…` (see
//!   [`crate::codes::http`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::api::{ApiError, ApiJson, ApiQuery};
use axum::extract::{MatchedPath, Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use chrono::{DateTime, NaiveDate, Utc};
use datafusion::prelude::SessionContext;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use promolens_ingest::{Ingestor, ProjectZones, Storage};
use serde::{Deserialize, Serialize};

use crate::access::{Access, Caller, Permission};
use crate::acquisition::{AcquisitionQuery, Window, parse_dimensions, parse_tz, window};
use crate::error::Error;
use crate::internal_events::{HttpRequest, InternalEvent};
use crate::output::json_rows;

/// What the query routes share.
#[derive(Clone)]
pub struct QueryState {
    pub ctx: SessionContext,
    /// Each project's time zone (the default of its windows).
    pub zones: ProjectZones,
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
            Error::NotFound { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", error.to_string())
            }
            Error::Unauthenticated(_) => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                error.to_string(),
            ),
            Error::Forbidden(_) => {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", error.to_string())
            }
            Error::Conflict(_) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", error.to_string())
            }
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

/// What one request, and all of them together, may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body, also after gzip decompression.
    pub body_bytes: usize,
    /// Requests handled at once; the others wait (within [`REQUEST_TIMEOUT`]).
    pub concurrent_requests: usize,
}

/// The whole HTTP API.
pub fn router(
    ingestor: Arc<Ingestor>,
    limits: Limits,
    query: QueryState,
    codes: crate::codes::CodesState,
    access: Access,
    metrics: PrometheusHandle,
) -> Router {
    let access_routes = crate::access::http::router(crate::access::http::AccessState {
        access: access.clone(),
        tables: query.ctx.clone(),
    });
    let api = Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/projects/{project}/acquisition", get(acquisition))
        .route("/v1/sql", post(sql))
        .with_state(query);
    let readiness = Router::new()
        .route("/readyz", get(readyz))
        .with_state(ingestor.clone());
    let exposition = Router::new()
        .route("/metrics", get(render_metrics))
        .with_state(metrics);
    let routes = api
        .merge(readiness)
        .merge(exposition)
        .merge(crate::api::events::router(ingestor, limits.body_bytes))
        .merge(crate::codes::http::router(codes))
        .merge(access_routes)
        // After routing, so the door sees which route was matched.
        .route_layer(axum::middleware::from_fn_with_state(
            access,
            crate::access::guard::check,
        ))
        .route_layer(axum::middleware::from_fn(answer_names_its_route));
    with_common_layers(routes, limits.concurrent_requests)
}

/// How long a request may take before it is answered 503 (a query over years of events on a
/// slow store, a WeChat call that hangs): the connection is freed, the caller told to retry.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// What every route shares: unknown routes and methods answered with the JSON error, a bound
/// on requests handled at once (the others wait their turn), a time limit (waiting included), a
/// panic answered 500 (and logged) while the server keeps serving, one log line each.
fn with_common_layers(routes: Router, concurrent_requests: usize) -> Router {
    routes
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method",
            )
        })
        .layer(tower::limit::ConcurrencyLimitLayer::new(
            concurrent_requests,
        ))
        .layer(axum::middleware::from_fn(time_limit))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            answer_panic,
        ))
        .layer(axum::middleware::from_fn(log_request))
}

async fn time_limit(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "the request took over {} s; retry (events with the same ids are stored once)",
                REQUEST_TIMEOUT.as_secs()
            ),
        )
        .into_response(),
    }
}

/// A handler's panic: logged with its message, answered as an internal error.
fn answer_panic(panic: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    ApiError::internal(format!("a handler panicked: {message}")).into_response()
}

/// The route a request matched, carried on its answer out to [`log_request`] (which runs before
/// routing, so it cannot see it on the request).
async fn answer_names_its_route(
    route: MatchedPath,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let mut response = next.run(request).await;
    response.extensions_mut().insert(route);
    response
}

/// Each request logged and counted ([`HttpRequest`]) with its route, status and latency.
async fn log_request(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = request.method().clone();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let route = response.extensions().get::<MatchedPath>();
    HttpRequest {
        method: method.as_str(),
        route: route.map_or("unmatched", MatchedPath::as_str),
        status: response.status().as_u16(),
        elapsed: started.elapsed(),
    }
    .emit();
    response
}

/// `/metrics`: every counter and histogram in the Prometheus text format.
async fn render_metrics(State(handle): State<PrometheusHandle>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
}

/// Installs the process's metrics recorder (once; later calls get the same handle) and keeps
/// its histograms drained.
pub fn metrics_recorder() -> crate::Result<PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    // Seconds, from a WAL sync (sub-millisecond) to a slow query (the 120 s limit).
    const BUCKETS: [f64; 16] = [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        120.0,
    ];
    let handle = PrometheusBuilder::new()
        .set_buckets(&BUCKETS)
        .and_then(|b| b.install_recorder())
        .map_err(|e| Error::Storage(format!("installing the metrics recorder: {e}")))?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    Ok(HANDLE.get_or_init(|| handle).clone())
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// Ready while the ingest pipeline runs: a load balancer stops sending events to a server whose
/// committer or flusher has stopped.
async fn readyz(
    State(ingestor): State<Arc<Ingestor>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if ingestor.is_running() {
        Ok(Json(serde_json::json!({"status": "ready"})))
    } else {
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the ingest pipeline has stopped; the server log says why",
        ))
    }
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

/// Runs the server until SIGTERM or Ctrl-C, then stops accepting, finishes the requests under way
/// and flushes the buffer to Parquet.
pub async fn serve(
    storage: Storage,
    ingestor: Arc<Ingestor>,
    listen: SocketAddr,
    limits: Limits,
    mut codes: crate::codes::CodesState,
    access: Access,
) -> crate::Result<()> {
    let ctx = crate::tables::session(&storage).await?;
    let zones = access.registry.zones().clone();
    codes.analytics = Some((ctx.clone(), zones.clone()));
    let query = QueryState { ctx, zones };
    let app = router(
        ingestor.clone(),
        limits,
        query,
        codes,
        access,
        metrics_recorder()?,
    );
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

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    async fn call(router: Router, method: &str, path: &str) -> (StatusCode, serde_json::Value) {
        let request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .body(axum::body::Body::empty())
            .unwrap();
        let response = router.oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ready_while_the_pipeline_runs_not_after() {
        let storage = promolens_ingest::Storage::open("memory://").unwrap();
        let config = promolens_ingest::IngestConfig::new(chrono_tz::UTC);
        let ingestor = Arc::new(Ingestor::start(storage, config).await.unwrap());
        let router = Router::new()
            .route("/readyz", get(readyz))
            .with_state(ingestor.clone());
        let (status, answer) = call(router.clone(), "GET", "/readyz").await;
        assert_eq!(
            (status, answer["status"].as_str()),
            (StatusCode::OK, Some("ready"))
        );
        ingestor.shutdown().await.unwrap();
        // The threads end just after the shutdown is answered.
        let mut answered = None;
        for _ in 0..100 {
            let (status, answer) = call(router.clone(), "GET", "/readyz").await;
            if status == StatusCode::SERVICE_UNAVAILABLE {
                answered = Some(answer);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let answer = answered.expect("not ready within 2 s of the shutdown");
        assert_eq!(answer["error"]["code"], "unavailable");
    }

    #[tokio::test]
    async fn a_panic_unknown_routes_and_methods_get_the_json_error_and_the_server_goes_on() {
        async fn boom() -> &'static str {
            panic!("a bug")
        }
        let routes = Router::new().route("/boom", get(boom)).route(
            "/fine",
            get(|| async { Json(serde_json::json!({"ok": true})) }),
        );
        let router = with_common_layers(routes, 4);
        let (status, answer) = call(router.clone(), "GET", "/boom").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(answer["error"]["code"], "internal");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(
            !message.contains("a bug"),
            "the panic stays in the log: {message}"
        );
        let (status, answer) = call(router.clone(), "GET", "/fine").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer["ok"], true);
        let (status, answer) = call(router.clone(), "GET", "/nope").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(answer["error"]["code"], "not_found");
        let (status, answer) = call(router, "POST", "/fine").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(answer["error"]["code"], "method_not_allowed");
    }
}
