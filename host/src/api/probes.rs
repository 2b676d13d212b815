//! Routes for operators and their tools, open without a key: `GET /healthz` (the process
//! answers), `GET /readyz` (the ingest pipeline runs), `GET /metrics` (Prometheus text).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use promolens_ingest::Ingestor;

use super::ApiError;

pub fn router(ingestor: Arc<Ingestor>, metrics: PrometheusHandle) -> Router {
    let readiness = Router::new()
        .route("/readyz", get(readyz))
        .with_state(ingestor);
    let exposition = Router::new()
        .route("/metrics", get(render_metrics))
        .with_state(metrics);
    Router::new()
        .route("/healthz", get(healthz))
        .merge(readiness)
        .merge(exposition)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// Ready while the ingest pipeline runs: a load balancer stops sending events to a server whose
/// committer or flusher has stopped.
pub(super) async fn readyz(
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
