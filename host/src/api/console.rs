//! The web console (`web/`), built into the binary: `GET /` is its page, `GET /assets/…` its
//! scripts and styles, `GET /favicon.svg` its icon. Open without a key: they hold no data; the
//! page asks for a key and then talks to the same public API as everyone else. Each is sent
//! gzipped (compressed at build time) to a browser that accepts it.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::ApiError;

/// A file of the console as built into the binary (the table is written by build.rs).
struct Embedded {
    path: &'static str,
    media_type: &'static str,
    bytes: &'static [u8],
    /// The same gzipped, when that is smaller.
    gzipped: Option<&'static [u8]>,
}

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

/// One of the console's files, as it is sent.
struct Asset {
    media_type: &'static str,
    bytes: &'static [u8],
    gzipped: bool,
}

/// The file `name`, gzipped when that is smaller and the request accepts it.
fn find(name: &str, request: &HeaderMap) -> Option<Asset> {
    let file = CONSOLE_ASSETS.iter().find(|file| file.path == name)?;
    Some(match file.gzipped {
        Some(gzipped) if accepts_gzip(request) => Asset {
            media_type: file.media_type,
            bytes: gzipped,
            gzipped: true,
        },
        _ => Asset {
            media_type: file.media_type,
            bytes: file.bytes,
            gzipped: false,
        },
    })
}

/// Whether `Accept-Encoding` lists gzip (or `*`) without refusing it with `q=0`.
fn accepts_gzip(request: &HeaderMap) -> bool {
    request
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

/// The asset's answer, with its caching rule.
fn send(asset: Asset, cache_control: &'static str) -> Response {
    let mut response = (
        [
            (header::CONTENT_TYPE, asset.media_type),
            (header::CACHE_CONTROL, cache_control),
        ],
        asset.bytes,
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if asset.gzipped {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

async fn page(request: HeaderMap) -> Response {
    let Some(asset) = find("index.html", &request) else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "this build has no console: build it with `npm ci && npm run build` in web/",
        )
        .into_response();
    };
    // The page names the hashed assets of this build: always ask for it again.
    let mut response = send(asset, "no-cache");
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    response
}

async fn favicon(request: HeaderMap) -> Response {
    asset_named("favicon.svg", &request, "public, max-age=86400")
}

async fn asset(Path(file): Path<String>, request: HeaderMap) -> Response {
    // Their names carry a hash of their content.
    asset_named(
        &format!("assets/{file}"),
        &request,
        "public, max-age=31536000, immutable",
    )
}

fn asset_named(name: &str, request: &HeaderMap, cache_control: &'static str) -> Response {
    match find(name, request) {
        Some(asset) => send(asset, cache_control),
        None => ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such asset").into_response(),
    }
}
