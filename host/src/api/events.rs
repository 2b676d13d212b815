//! `POST /v1/projects/{project}/events`: a body of NDJSON or a JSON array of launch events
//! (`Content-Encoding: gzip` accepted), received by [`promolens_ingest::receive`].

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::post;
use axum::{Json, Router};
use promolens_ingest::receive::{IngestReport, receive};
use promolens_ingest::{Error, Ingestor};

use super::error::ApiError;

#[derive(Clone)]
struct EventsState {
    ingestor: Arc<Ingestor>,
    body_limit: usize,
}

pub fn router(ingestor: Arc<Ingestor>, body_limit: usize) -> Router {
    Router::new()
        .route("/v1/projects/{project}/events", post(ingest_events))
        .with_state(EventsState {
            ingestor,
            body_limit,
        })
}

async fn ingest_events(
    State(state): State<EventsState>,
    Path(project): Path<String>,
    headers: HeaderMap,
    request: Request,
) -> Result<(StatusCode, Json<IngestReport>), ApiError> {
    let limit = state.body_limit;
    let too_large = || Error::PayloadTooLarge {
        limit_bytes: limit,
        detail: "",
    };
    if let Some(length) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && length > limit
    {
        return Err(too_large().into());
    }
    let raw = axum::body::to_bytes(request.into_body(), limit)
        .await
        .map_err(|_| too_large())?;
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let report = receive(&state.ingestor, &project, raw, gzip, limit).await?;
    // Every line rejected: retrying cannot help, so say it is the request that is wrong.
    let status = if report.nothing_valid() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    Ok((status, Json(report)))
}
