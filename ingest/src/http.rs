//! The ingest endpoint, `POST /v1/projects/{project}/events`, and the JSON error shape every
//! promolens HTTP route shares (DESIGN.md §5): `{"error": {"code", "message", "field"}}`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use promolens_schemas::event::validate_project_name;
use serde::Serialize;

use crate::body::{Rejected, gunzip, parse_body};
use crate::error::Error;
use crate::internal_events::{EventsReceived, InternalEvent};
use crate::pipeline::Ingestor;

/// Default request body limit: 10 MiB, before and after gzip decompression.
pub const DEFAULT_BODY_LIMIT: usize = 10 * 1024 * 1024;

/// An HTTP error: caller errors carry their message; internal ones are logged and hidden.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// A failure that is not the caller's: logged in full, answered with a generic message.
    pub fn internal(error: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %error, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the server log has the details",
        )
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> ApiError {
        match error {
            Error::PayloadTooLarge { .. } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                error.to_string(),
            ),
            Error::BadBody(_) | Error::Event(_) => ApiError::bad_request(error.to_string()),
            Error::BadProject(_) => ApiError {
                field: Some("project".into()),
                ..ApiError::bad_request(error.to_string())
            },
            Error::Stopped(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("{error}; retry with the same event ids"),
            ),
            other => ApiError::internal(other),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: &self.message,
                field: self.field.as_deref(),
            },
        };
        (self.status, Json(body)).into_response()
    }
}

/// `Query<T>` whose rejection is the JSON error, naming the parameter when serde does
/// (`to: premature end of input`), instead of axum's plain text.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequestParts<S>
    for ApiQuery<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => {
                let text = rejection.body_text();
                let detail = text
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&text);
                Err(ApiError {
                    field: field_named_by(detail),
                    ..ApiError::bad_request(format!("bad query parameter: {detail}"))
                })
            }
        }
    }
}

/// `Json<T>` whose rejection is the JSON error: 400 `bad_json` for a syntax error or a value
/// of the wrong shape (naming the field when serde does: `role: unknown variant …`), 415
/// `unsupported_media_type` without `Content-Type: application/json`, instead of axum's text.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::rejection::JsonRejection;
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "this route takes a JSON body: send `Content-Type: application/json`",
            )),
            Err(rejection) => {
                let text = rejection.body_text();
                let detail = text
                    .split_once("JSON body")
                    .and_then(|(_, rest)| rest.split_once(": "))
                    .map_or(text.as_str(), |(_, detail)| detail);
                Err(ApiError {
                    field: field_named_by(detail),
                    ..ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "bad_json",
                        format!("bad JSON body: {detail}"),
                    )
                })
            }
        }
    }
}

/// The field serde names at the start of its message (`to: premature end of input`).
fn field_named_by(detail: &str) -> Option<String> {
    detail
        .split_once(": ")
        .map(|(name, _)| name)
        .filter(|name| {
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        })
        .map(str::to_string)
}

/// The answer to an ingest request.
#[derive(Debug, Serialize)]
pub struct IngestReport {
    /// Events stored by this request.
    pub accepted: usize,
    /// Events whose `event_id` was already stored for the project (counted once, not stored again).
    pub duplicates: usize,
    /// Lines or elements that are not valid events, each with its index and reason: the first
    /// [`crate::body::LISTED_REJECTS`].
    pub rejected: Vec<Rejected>,
    /// How many lines or elements were rejected in all.
    pub rejected_count: usize,
}

#[derive(Clone)]
struct IngestState {
    ingestor: Arc<Ingestor>,
    body_limit: usize,
}

/// The ingest routes, ready to be merged into the server's router.
pub fn router(ingestor: Arc<Ingestor>, body_limit: usize) -> Router {
    Router::new()
        .route("/v1/projects/{project}/events", post(ingest_events))
        .with_state(IngestState {
            ingestor,
            body_limit,
        })
}

async fn ingest_events(
    State(state): State<IngestState>,
    Path(project): Path<String>,
    headers: HeaderMap,
    request: Request,
) -> Result<(StatusCode, Json<IngestReport>), ApiError> {
    validate_project_name(&project).map_err(Error::BadProject)?;
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
    let ingestor = state.ingestor.clone();
    let config = ingestor.config();
    let limits = promolens_schemas::Limits {
        ts_window: Some(promolens_schemas::TsWindow {
            received_ms: chrono::Utc::now().timestamp_millis(),
            days_back: config.ts_days_back,
            days_ahead: config.ts_days_ahead,
        }),
        ..config.limits.clone()
    };
    let rows = ingestor.rows(&project);
    // Parsing, decoding and building columns are CPU work: keep them off the async workers.
    let parsed = tokio::task::spawn_blocking(move || {
        if gzip {
            parse_body(&gunzip(&raw, limit)?, rows, &limits)
        } else {
            parse_body(&raw, rows, &limits)
        }
    })
    .await
    .map_err(ApiError::internal)??;
    if parsed.rows.is_empty() && parsed.rejected.is_empty() {
        return Err(ApiError::bad_request("body holds no events"));
    }
    let outcome = if parsed.rows.is_empty() {
        Default::default()
    } else {
        ingestor.append(parsed.rows).await?
    };
    EventsReceived {
        project: &project,
        accepted: outcome.accepted(),
        duplicates: outcome.duplicates(),
        rejected: parsed.rejected_count,
    }
    .emit();
    let report = IngestReport {
        accepted: outcome.accepted(),
        duplicates: outcome.duplicates(),
        rejected: parsed.rejected,
        rejected_count: parsed.rejected_count,
    };
    // Every line rejected: retrying cannot help, so say it is the request that is wrong.
    let status = if outcome.stored.is_empty() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    Ok((status, Json(report)))
}
