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

#[derive(Clone)]
pub struct ProbesState {
    pub ingestor: Arc<Ingestor>,
    pub metrics: PrometheusHandle,
}

/// The routes, before their state is given (the document is read off them without a server).
pub fn routes() -> OpenApiRouter<ProbesState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(render_metrics))
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
pub(super) async fn readyz(State(s): State<ProbesState>) -> Result<Json<Probe>, ApiError> {
    if s.ingestor.is_running() {
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
async fn render_metrics(State(s): State<ProbesState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
}
