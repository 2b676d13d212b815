//! The web console (`web/`), built into the binary: `GET /` is its page, `GET /assets/…` its
//! scripts and styles, `GET /favicon.svg` its icon. Open without a key: they hold no data; the page asks for a key and then
//! talks to the same public API as everyone else.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::ApiError;

include!(concat!(env!("OUT_DIR"), "/console_assets.rs"));

/// Scripts and styles only from the server itself; nothing from a CDN (it must work on a
/// closed network), no inline script.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data: blob:; \
     style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

pub fn router() -> Router {
    Router::new()
        .route("/", get(page))
        .route("/favicon.svg", get(favicon))
        .route("/assets/{*file}", get(asset))
}

fn find(name: &str) -> Option<(&'static str, &'static [u8])> {
    CONSOLE_ASSETS
        .iter()
        .find(|(path, _, _)| *path == name)
        .map(|(_, media_type, bytes)| (*media_type, *bytes))
}

async fn page() -> Response {
    let Some((media_type, bytes)) = find("index.html") else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "this build has no console: build it with `npm ci && npm run build` in web/",
        )
        .into_response();
    };
    let mut response = ([(header::CONTENT_TYPE, media_type)], bytes).into_response();
    let headers = response.headers_mut();
    // The page names the hashed assets of this build: always ask for it again.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    response
}

async fn favicon() -> Response {
    asset_named("favicon.svg", "public, max-age=86400")
}

async fn asset(Path(file): Path<String>) -> Response {
    // Their names carry a hash of their content.
    asset_named(
        &format!("assets/{file}"),
        "public, max-age=31536000, immutable",
    )
}

fn asset_named(name: &str, cache_control: &'static str) -> Response {
    match find(name) {
        Some((media_type, bytes)) => (
            [
                (header::CONTENT_TYPE, media_type),
                (header::CACHE_CONTROL, cache_control),
            ],
            bytes,
        )
            .into_response(),
        None => ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such asset").into_response(),
    }
}
