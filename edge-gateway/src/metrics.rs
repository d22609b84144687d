//! The edge's Prometheus metrics (served on `EDGE_METRICS_ADDR` by
//! `service_runtime::metrics`): requests by route, method and status with
//! their latency, and webhooks by event type and outcome. Every label value
//! is bounded: a route is its template (`/payments/{intent_id}/sync`),
//! never the path a client sent; an event type is one this service acts on,
//! else `other`; a user is never a label.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use payments_domain::stripe_event::ACTED_ON_EVENT_TYPES;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    event_type: &'static str,
    outcome: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct EdgeMetrics {
    registry: Arc<Registry>,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily<RouteLabels>,
    webhooks: Family<WebhookLabels, Counter>,
}

impl Default for EdgeMetrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "edge_http_requests",
            "HTTP requests answered, by route template, method and status",
            requests.clone(),
        );
        let latency = HistogramFamily::<RouteLabels>::new_with_constructor(
            service_runtime::metrics::latency_histogram,
        );
        registry.register_with_unit(
            "edge_http_request_duration",
            "Time to answer an HTTP request (to its headers), by route template and method",
            prometheus_client::registry::Unit::Seconds,
            latency.clone(),
        );
        let webhooks = Family::<WebhookLabels, Counter>::default();
        registry.register(
            "edge_stripe_webhooks",
            "Verified Stripe webhooks, by event type (`other` for types not acted on) and outcome",
            webhooks.clone(),
        );
        Self {
            registry: Arc::new(registry),
            requests,
            latency,
            webhooks,
        }
    }
}

impl EdgeMetrics {
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    /// A verified webhook's outcome (`applied`, `duplicate`, `ignored`, or
    /// `failed` when payments-grpc could not take it).
    pub fn webhook(&self, event_type: &str, outcome: &'static str) {
        let event_type = ACTED_ON_EVENT_TYPES
            .into_iter()
            .find(|acted_on| *acted_on == event_type)
            .unwrap_or("other");
        self.webhooks
            .get_or_create(&WebhookLabels {
                event_type,
                outcome,
            })
            .inc();
    }
}

fn method_label(method: &axum::http::Method) -> &'static str {
    match *method {
        axum::http::Method::GET => "GET",
        axum::http::Method::POST => "POST",
        axum::http::Method::OPTIONS => "OPTIONS",
        axum::http::Method::HEAD => "HEAD",
        _ => "other",
    }
}

/// Counts and times every request of a matched route (`route_layer`).
pub async fn record(
    State(metrics): State<Arc<EdgeMetrics>>,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let route = matched.map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    metrics
        .latency
        .get_or_create(&RouteLabels {
            route: route.clone(),
            method,
        })
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&RequestLabels {
            route,
            method,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_not_acted_on_share_one_label() {
        let metrics = EdgeMetrics::default();
        metrics.webhook("payment_intent.succeeded", "applied");
        metrics.webhook("customer.created", "ignored");
        metrics.webhook("made.up.by.anyone", "ignored");
        let text = service_runtime::metrics::render(&metrics.registry());
        assert!(
            text.contains(r#"edge_stripe_webhooks_total{event_type="payment_intent.succeeded",outcome="applied"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"edge_stripe_webhooks_total{event_type="other",outcome="ignored"} 2"#),
            "{text}"
        );
        assert!(!text.contains("made.up"), "{text}");
    }
}
