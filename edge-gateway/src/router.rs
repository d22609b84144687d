//! The router: every resource of [`crate::routes`] mounted with its
//! document, the layers every request passes (request ids, timeouts,
//! traces, metrics, CORS for the SPA's routes), and `GET /openapi.json`.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::IntoResponse;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::routes::{balance, balance_stream, client_config, health, history, top_up, webhook};
use crate::state::AppState;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The CORS answers for the SPA's routes, when origins are configured.
fn cors(state: &AppState) -> Option<CorsLayer> {
    (!state.cors_allowed_origins.is_empty()).then(|| {
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(state.cors_allowed_origins.clone()))
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("idempotency-key"),
            ])
            .expose_headers([REQUEST_ID])
            .max_age(Duration::from_secs(600))
    })
}

/// Every route, each with its document: registered only through
/// `routes!`, which reads the handler's `#[utoipa::path]`. Only the SPA's
/// routes answer browsers of other origins (`cors`).
pub(crate) fn documented_routes(cors: Option<CorsLayer>) -> OpenApiRouter<Arc<AppState>> {
    let spa = OpenApiRouter::with_openapi(crate::openapi::ApiDoc::openapi())
        .routes(routes!(client_config::client_config))
        .routes(routes!(top_up::create_payment_intent))
        .routes(routes!(top_up::sync_payment))
        .routes(routes!(balance::balance))
        .routes(routes!(balance_stream::balance_stream))
        .routes(routes!(history::ledger))
        .routes(routes!(history::payments));
    let spa = match cors {
        Some(cors) => spa.layer(cors),
        None => spa,
    };
    spa.merge(
        OpenApiRouter::default()
            .routes(routes!(webhook::stripe_webhook))
            .routes(routes!(health::healthz))
            .routes(routes!(health::readyz))
            .routes(routes!(openapi_json)),
    )
}

pub fn router(state: Arc<AppState>, request_timeout: Duration) -> Router {
    let (routes, _document) = documented_routes(cors(&state)).split_for_parts();
    routes
        .route_layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            crate::metrics::record,
        ))
        .fallback(|| async { ApiError::not_found() })
        .with_state(state)
        .layer(axum::middleware::from_fn(crate::upstream::carrying_request_id))
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, request_timeout))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<Body>| {
            let id = request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("http", method = %request.method(), path = %request.uri().path(), request_id = %id)
        }))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, RequestIds::new()))
        .layer(axum::middleware::map_request(drop_unsafe_request_id))
}

/// A client's `X-Request-Id` is kept only when it is short and plain, so it
/// cannot flood the logs or forge log fields; otherwise one is made.
async fn drop_unsafe_request_id(
    mut request: axum::http::Request<Body>,
) -> axum::http::Request<Body> {
    let safe = request
        .headers()
        .get(REQUEST_ID)
        .is_none_or(|id| service_runtime::is_safe_request_id(id.as_bytes()));
    if !safe {
        request.headers_mut().remove(REQUEST_ID);
    }
    request
}

/// Request ids `<random per process>-<counter>`: unique across replicas and
/// restarts, without a random draw per request.
#[derive(Clone)]
struct RequestIds {
    prefix: Arc<str>,
    next: Arc<std::sync::atomic::AtomicU64>,
}

impl RequestIds {
    fn new() -> Self {
        Self {
            prefix: uuid::Uuid::new_v4().simple().to_string()[..12].into(),
            next: Arc::default(),
        }
    }
}

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        HeaderValue::from_str(&format!("{}-{n}", self.prefix))
            .ok()
            .map(RequestId::new)
    }
}

/// This edge's document: every route of [`documented_routes`].
pub fn document() -> utoipa::openapi::OpenApi {
    documented_routes(None).into_openapi()
}

static DOCUMENT_JSON: LazyLock<Bytes> = LazyLock::new(|| {
    Bytes::from(
        document()
            .to_json()
            .expect("the OpenAPI document serializes"),
    )
});

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    operation_id = "openapi",
    responses((
        status = 200,
        description = "This document",
        content_type = "application/json",
        body = Object,
    ))
)]
async fn openapi_json() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT_JSON.clone(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A route registered with axum's own `route`, `route_service` or
    /// `nest` would be served without a document: none may be.
    #[test]
    fn every_route_is_registered_through_its_document() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = 0;
        let mut dirs = vec![src];
        let mut paths = Vec::new();
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                match path.is_dir() {
                    true => dirs.push(path),
                    false => paths.push(path),
                }
            }
        }
        for path in paths {
            let source = std::fs::read_to_string(&path).unwrap();
            for method in [".route", ".route_service", ".nest", ".nest_service"] {
                // Spelt apart so that this file does not match itself.
                let bypass = format!("{method}(");
                assert!(
                    !source.contains(&bypass),
                    "{} registers a route with `{bypass}`: use `.routes(routes!(handler))` \
                     with a #[utoipa::path] on the handler",
                    path.display()
                );
            }
            files += 1;
        }
        assert!(files > 10);
    }

    #[test]
    fn the_document_names_every_problem_answer_and_the_bearer_scheme() {
        let document = serde_json::to_value(document()).unwrap();
        assert_eq!(document["openapi"], "3.1.0");
        let mut operations = 0;
        for (path, item) in document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                operations += 1;
                for (status, response) in operation["responses"].as_object().unwrap() {
                    if status.starts_with('2') {
                        continue;
                    }
                    // Every error is problem+json, through a shared response.
                    let name = response["$ref"]
                        .as_str()
                        .and_then(|r| r.strip_prefix("#/components/responses/"))
                        .unwrap_or_else(|| panic!("{method} {path} {status} is not shared"));
                    let shared = &document["components"]["responses"][name];
                    assert_eq!(
                        shared["content"]["application/problem+json"]["schema"]["$ref"],
                        "#/components/schemas/Problem",
                        "{name}"
                    );
                }
                let secured = operation["security"].is_array();
                assert_eq!(
                    secured,
                    operation["responses"]["401"].is_object(),
                    "{method} {path}: a bearer route answers 401, others never"
                );
            }
        }
        assert_eq!(operations, 11);
    }
}
