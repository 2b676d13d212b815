//! Extractors whose rejections are the JSON error ([`ApiError`]), never axum's plain text.

use axum::Json;
use axum::extract::Request;
use axum::http::StatusCode;

use super::error::ApiError;

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
