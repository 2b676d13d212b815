//! Routes for operators and their tools, open without a key: `GET /healthz` (the process
//! answers), `GET /readyz` (the ingest pipeline runs), `GET /metrics` (Prometheus text).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use metrics_exporter_prometheus::PrometheusHandle;
use promolens_ingest::Ingestor;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::ApiError;

pub fn router(ingestor: Arc<Ingestor>, metrics: PrometheusHandle) -> OpenApiRouter {
    let readiness = OpenApiRouter::new()
        .routes(routes!(readyz))
        .with_state(ingestor);
    let exposition = OpenApiRouter::new()
        .routes(routes!(render_metrics))
        .with_state(metrics);
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .merge(readiness)
        .merge(exposition)
}

/// What a probe answers when all is well.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Probe {
    #[schema(example = "ok")]
    status: &'static str,
}

/// The process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Always, while the process runs", body = Probe)))]
async fn healthz() -> Json<Probe> {
    Json(Probe { status: "ok" })
}

/// Ready while the ingest pipeline runs: a load balancer stops sending events to a server whose
/// committer or flusher has stopped.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "The ingest pipeline runs (`status`: `ready`)", body = Probe),
        (status = 503, description = "The committer or the flusher has stopped", body = super::error::ErrorBody),
    ))]
pub(super) async fn readyz(State(ingestor): State<Arc<Ingestor>>) -> Result<Json<Probe>, ApiError> {
    if ingestor.is_running() {
        Ok(Json(Probe { status: "ready" }))
    } else {
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the ingest pipeline has stopped; the server log says why",
        ))
    }
}

/// Every counter and histogram in the Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4",
        content_type = "text/plain", body = String)))]
async fn render_metrics(State(handle): State<PrometheusHandle>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
}
