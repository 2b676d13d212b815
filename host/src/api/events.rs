//! `POST /v1/projects/{project}/events`: a body of NDJSON or a JSON array of events (launches
//! and core events; `Content-Encoding: gzip` accepted), received by
//! [`promolens_ingest::receive`].

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use promolens_ingest::receive::{IngestReport, receive};
use promolens_ingest::{Error, Ingestor};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ErrorBody};

#[derive(Clone)]
pub struct EventsState {
    pub ingestor: Arc<Ingestor>,
    /// Largest body, also once inflated.
    pub body_limit: usize,
}

/// The routes, before their state is given (the document is read off them without a server).
pub fn routes() -> OpenApiRouter<EventsState> {
    OpenApiRouter::new().routes(routes!(ingest_events))
}

/// One event, as the SDK sends it (DESIGN.md, "Wire format limits"): a launch of the
/// mini-program, or a core event (`event` other than `launch`: a signup, a purchase, the
/// `$identify` of a login). This schema documents the format; the server checks each event
/// itself, so that one bad event is listed in the answer while the good ones of the same body
/// are kept. Unknown fields are ignored (newer SDKs).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Read by the document only.
struct Event {
    /// What happened: `launch` (the default) or a core event's name (a letter, then letters,
    /// digits, `_`, `.`, `-`; at most 64 bytes). `$identify` links `user_id` to the logged-in
    /// id in `props.login_id`. Only launches carry `scene`, `query` and `launch_type`.
    #[schema(example = "purchase")]
    event: Option<String>,
    /// Unique per event (at most 128 bytes): a retry with the same id is stored once.
    event_id: String,
    /// The (anonymous) user, at most 128 bytes.
    user_id: String,
    /// When it happened: epoch milliseconds or RFC 3339, within 400 days before and 1 day
    /// after its arrival (by default).
    ts: Timestamp,
    /// When the SDK sent it (epoch ms or RFC 3339); corrects a device clock that is off.
    sent_at: Option<Timestamp>,
    /// The project; when present it must be the URL's.
    project: Option<String>,
    /// WeChat's launch scene value (0 to 999999), e.g. 1047 for a scanned mini-program code.
    #[schema(minimum = 0, maximum = 999999, example = 1047)]
    scene: Option<u32>,
    /// The page opened (at most 1024 bytes).
    path: Option<String>,
    /// The page's launch parameters (at most 64, values strings): `utm_*`, `c`, a B code's
    /// `scene`, a QR code's `q`.
    #[schema(value_type = Option<Object>)]
    query: (),
    /// `cold` or `hot`.
    launch_type: Option<String>,
    /// Anything else (an object, at most 16 KiB). A core event's top-level numbers are kept as
    /// numbers (`amount` for the `<event>_value` metric), its strings for grouping.
    #[schema(value_type = Option<Object>)]
    props: (),
}

/// A moment: epoch milliseconds or an RFC 3339 string, within 2000–2100.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // Read by the document only.
enum Timestamp {
    #[schema(example = 1763942400000_i64)]
    EpochMs(i64),
    #[schema(example = "2025-11-24T08:00:00+08:00")]
    Rfc3339(String),
}

/// A refused body: nothing valid in it (the report lists why), or not JSON at all (the error).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // Read by the document only.
enum Refused {
    Report(IngestReport),
    Error(ErrorBody),
}

/// Stores a body of events (launches and core events); each one is checked on its own.
#[utoipa::path(post, path = "/v1/projects/{project}/events", tag = "events",
    description = "NDJSON (one event per line) or a JSON array of events, `Content-Encoding: gzip` \
        accepted, at most the body limit (10 MiB by default) also once inflated. An answer of 200 \
        means every accepted event is durable. Events that are not valid are listed (the first \
        100, with their index and reason) and counted; the others are kept.",
    params(("project" = String, Path, description = "The project")),
    request_body(description = "Launch events", content(
        (Vec<Event> = "application/json"),
        (String = "application/x-ndjson"),
    )),
    responses(
        (status = 200, description = "Stored (valid events durable; the invalid ones listed)", body = IngestReport),
        (status = 400, description = "No valid event in the body, or a body that is not JSON", body = Refused),
        (status = 413, description = "The body is over the limit, before or after gzip", body = ErrorBody),
        (status = 429, description = "The key is over its ingest rate (`Retry-After` says when to retry)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ))]
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
