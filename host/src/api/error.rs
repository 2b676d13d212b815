//! The JSON error every route answers (DESIGN.md §5): `{"error": {"code", "message", "field"}}`,
//! and how each library's errors become one.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use promolens_ingest::Error;

/// An HTTP error: caller errors carry their message; internal ones are logged and hidden.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// For a value over a limit: the limit and by how much, as numbers (a form shows them).
    pub over_limit: Option<OverLimit>,
}

/// A value over a limit, as numbers: `actual` `unit` where `limit` are allowed, `over` too many.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OverLimit {
    pub limit: u64,
    pub actual: u64,
    pub over: u64,
    /// `bytes` or `characters`.
    pub unit: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            over_limit: None,
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

impl From<promolens_ingest::Error> for ApiError {
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
            Error::Stopped(_) | Error::StorageUnavailable(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("{error}; retry with the same event ids"),
            ),
            other => ApiError::internal(other),
        }
    }
}

/// The body of every error answer.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong, for a program (`code`) and for a person (`message`).
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, for programs: `bad_request`, `bad_json`, `bad_query`, `invalid_field`,
    /// `too_long`, `unauthenticated`, `forbidden`, `not_found`, `conflict`, `deleted`,
    /// `payload_too_large`, `unsupported_media_type`, `rate_limited`, `quota_exhausted`,
    /// `not_authorized`, `wechat_error`, `outcome_unknown`, `read_only`, `timeout`,
    /// `unavailable`, `internal`, …
    #[schema(example = "invalid_field")]
    pub code: &'static str,
    /// One sentence for a person: what is wrong, by how much, what to do.
    pub message: String,
    /// The request field at fault, when one is (`project`, `to`, `utm.source`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For a value over a limit (`too_long`): the limit and by how much.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub over_limit: Option<OverLimit>,
}

impl From<ApiError> for ErrorDetail {
    fn from(e: ApiError) -> ErrorDetail {
        ErrorDetail {
            code: e.code,
            message: e.message,
            field: e.field,
            over_limit: e.over_limit,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        (status, Json(ErrorBody { error: self.into() })).into_response()
    }
}

impl From<crate::Error> for ApiError {
    fn from(error: crate::Error) -> ApiError {
        match error {
            crate::Error::Invalid { message, field } => ApiError {
                field: field.map(str::to_string),
                ..ApiError::bad_request(message)
            },
            crate::Error::ReadOnly(_) => {
                ApiError::new(StatusCode::FORBIDDEN, "read_only", error.to_string())
            }
            crate::Error::Limit { code, message } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
            }
            // Planning errors (unknown table or column, syntax) are the caller's.
            crate::Error::Query(e) if is_caller_query_error(&e) => {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_query", e.to_string())
            }
            crate::Error::Ingest(e) => e.into(),
            crate::Error::NotFound { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", error.to_string())
            }
            crate::Error::Unauthenticated(_) => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                error.to_string(),
            ),
            crate::Error::Forbidden(_) => {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", error.to_string())
            }
            crate::Error::Conflict(_) => {
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
