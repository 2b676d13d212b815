//! The HTTP API: the router, the layers every route shares, the JSON error and the extractors
//! whose rejections are that error. Handlers are thin: they parse, call the services the CLI
//! calls too (`promolens_ingest::receive`, `crate::acquisition`, `crate::sql`, `crate::codes`,
//! `crate::access`), and answer.

pub mod access;
pub mod analyses;
pub mod codes;
pub mod console;
pub mod error;
pub mod events;
pub mod extract;
pub mod openapi;
pub mod probes;
pub mod queries;
pub mod settings;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::MatchedPath;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use metrics_exporter_prometheus::PrometheusHandle;
use promolens_ingest::Ingestor;

pub use error::ApiError;
pub use extract::{ApiJson, ApiQuery};
pub use queries::QueryState;

use crate::access::Access;
use crate::internal_events::{HttpRequest, InternalEvent};

/// What one request, and all of them together, may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body, also after gzip decompression.
    pub body_bytes: usize,
    /// Requests handled at once; the others wait (within [`REQUEST_TIMEOUT`]).
    pub concurrent_requests: usize,
}

/// The whole HTTP API.
pub fn router(
    ingestor: Arc<Ingestor>,
    limits: Limits,
    query: QueryState,
    codes: crate::codes::CodesState,
    access: Access,
    metrics: PrometheusHandle,
) -> Router {
    let access_state = access::AccessState {
        access: access.clone(),
        tables: query.ctx.clone(),
    };
    let probes_state = probes::ProbesState {
        ingestor: ingestor.clone(),
        metrics,
    };
    let events_state = events::EventsState {
        ingestor,
        body_limit: limits.body_bytes,
    };
    let routes = Router::new()
        .merge(
            analyses::routes()
                .split_for_parts()
                .0
                .with_state(query.clone()),
        )
        .merge(
            settings::routes()
                .split_for_parts()
                .0
                .with_state(query.clone()),
        )
        .merge(queries::routes().split_for_parts().0.with_state(query))
        .merge(
            probes::routes()
                .split_for_parts()
                .0
                .with_state(probes_state),
        )
        .merge(
            events::routes()
                .split_for_parts()
                .0
                .with_state(events_state),
        )
        .merge(codes::routes().split_for_parts().0.with_state(codes))
        .merge(
            access::routes()
                .split_for_parts()
                .0
                .with_state(access_state),
        )
        .merge(utoipa_swagger_ui::SwaggerUi::new("/docs").url("/openapi.json", document()))
        .merge(console::router())
        // After routing, so the door sees which route was matched.
        .route_layer(axum::middleware::from_fn_with_state(
            access,
            crate::access::guard::check,
        ))
        .route_layer(axum::middleware::from_fn(answer_names_its_route));
    with_common_layers(routes, limits.concurrent_requests)
}

/// The OpenAPI document of every route, read off the routes (no server needed:
/// `promolens openapi` prints it, and the console's types are generated from it).
pub fn document() -> utoipa::openapi::OpenApi {
    let mut paths = queries::routes().split_for_parts().1;
    paths.merge(analyses::routes().split_for_parts().1);
    paths.merge(settings::routes().split_for_parts().1);
    paths.merge(probes::routes().split_for_parts().1);
    paths.merge(events::routes().split_for_parts().1);
    paths.merge(codes::routes().split_for_parts().1);
    paths.merge(access::routes().split_for_parts().1);
    openapi::document(paths)
}

/// How long a request may take before it is answered 503 (a query over years of events on a
/// slow store, a WeChat call that hangs): the connection is freed, the caller told to retry.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// What every route shares: unknown routes and methods answered with the JSON error, a bound
/// on requests handled at once (the others wait their turn), a time limit (waiting included), a
/// panic answered 500 (and logged) while the server keeps serving, one log line each.
fn with_common_layers(routes: Router, concurrent_requests: usize) -> Router {
    routes
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method",
            )
        })
        .layer(tower::limit::ConcurrencyLimitLayer::new(
            concurrent_requests,
        ))
        .layer(axum::middleware::from_fn(time_limit))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            answer_panic,
        ))
        .layer(axum::middleware::from_fn(log_request))
}

async fn time_limit(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!(
                "the request took over {} s; retry (events with the same ids are stored once)",
                REQUEST_TIMEOUT.as_secs()
            ),
        )
        .into_response(),
    }
}

/// A handler's panic: logged with its message, answered as an internal error.
fn answer_panic(panic: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    ApiError::internal(format!("a handler panicked: {message}")).into_response()
}

/// The route a request matched, carried on its answer out to [`log_request`] (which runs before
/// routing, so it cannot see it on the request).
async fn answer_names_its_route(
    route: MatchedPath,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let mut response = next.run(request).await;
    response.extensions_mut().insert(route);
    response
}

/// Each request logged and counted ([`HttpRequest`]) with its route, status and latency.
async fn log_request(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = request.method().clone();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let route = response.extensions().get::<MatchedPath>();
    HttpRequest {
        method: method.as_str(),
        route: route.map_or("unmatched", MatchedPath::as_str),
        status: response.status().as_u16(),
        elapsed: started.elapsed(),
    }
    .emit();
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Json;
    use axum::routing::get;
    use tower::ServiceExt;

    async fn call(router: Router, method: &str, path: &str) -> (StatusCode, serde_json::Value) {
        let request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .body(axum::body::Body::empty())
            .unwrap();
        let response = router.oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ready_while_the_pipeline_runs_not_after() {
        let storage = promolens_ingest::Storage::open("memory://").unwrap();
        let config = promolens_ingest::IngestConfig::new(chrono_tz::UTC);
        let ingestor = Arc::new(Ingestor::start(storage, config).await.unwrap());
        let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
            .build_recorder()
            .handle();
        let router = Router::new()
            .route("/readyz", get(probes::readyz))
            .with_state(probes::ProbesState {
                ingestor: ingestor.clone(),
                metrics,
            });
        let (status, answer) = call(router.clone(), "GET", "/readyz").await;
        assert_eq!(
            (status, answer["status"].as_str()),
            (StatusCode::OK, Some("ready"))
        );
        ingestor.shutdown().await.unwrap();
        // The threads end just after the shutdown is answered.
        let mut answered = None;
        for _ in 0..100 {
            let (status, answer) = call(router.clone(), "GET", "/readyz").await;
            if status == StatusCode::SERVICE_UNAVAILABLE {
                answered = Some(answer);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let answer = answered.expect("not ready within 2 s of the shutdown");
        assert_eq!(answer["error"]["code"], "unavailable");
    }

    #[tokio::test]
    async fn a_panic_unknown_routes_and_methods_get_the_json_error_and_the_server_goes_on() {
        async fn boom() -> &'static str {
            panic!("a bug")
        }
        let routes = Router::new().route("/boom", get(boom)).route(
            "/fine",
            get(|| async { Json(serde_json::json!({"ok": true})) }),
        );
        let router = with_common_layers(routes, 4);
        let (status, answer) = call(router.clone(), "GET", "/boom").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(answer["error"]["code"], "internal");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(
            !message.contains("a bug"),
            "the panic stays in the log: {message}"
        );
        let (status, answer) = call(router.clone(), "GET", "/fine").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer["ok"], true);
        let (status, answer) = call(router.clone(), "GET", "/nope").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(answer["error"]["code"], "not_found");
        let (status, answer) = call(router, "POST", "/fine").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(answer["error"]["code"], "method_not_allowed");
    }
}
