//! payments-grpc's Prometheus metrics (served on `PAYMENTS_METRICS_ADDR` by
//! `service_runtime::metrics`): calls by method and status code with their
//! latency, and, read from the database at each scrape,
//! `payments_paid_not_credited` (should always read 0), the age of the
//! oldest payment not final and `payments_parked_events`. A method label is one this server serves
//! (read from its descriptors), else `unknown`: a caller cannot make labels.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body_util::BodyExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use prost::Message;
use tonic::body::Body;
use tonic::codegen::http::{self, HeaderMap};
use tonic::codegen::{BoxFuture, Service};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    method: Arc<str>,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: Arc<str>,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct GrpcMetrics {
    registry: Arc<Registry>,
    calls: Family<CallLabels, Counter>,
    latency: HistogramFamily<MethodLabels>,
    paid_not_credited: Gauge,
    oldest_open_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    parked_events: Gauge,
    /// `/package.Service/Method` of every method served.
    methods: HashSet<Arc<str>>,
    unknown: Arc<str>,
}

/// Every method of the services in these encoded descriptor sets.
fn methods_of(descriptor_sets: &[&[u8]]) -> HashSet<Arc<str>> {
    let mut methods = HashSet::new();
    for encoded in descriptor_sets {
        let set = prost_types::FileDescriptorSet::decode(*encoded).expect("embedded descriptors");
        for file in set.file {
            for service in &file.service {
                for method in &service.method {
                    methods.insert(Arc::from(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    )));
                }
            }
        }
    }
    for reflection in [
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ] {
        methods.insert(Arc::from(reflection));
    }
    methods
}

impl Default for GrpcMetrics {
    fn default() -> Self {
        Self::new(&payments_core::metrics::CoreMetrics::new(
            service_runtime::metrics::latency_histogram,
        ))
    }
}

impl GrpcMetrics {
    /// The server's metrics and the core's, in one registry.
    pub fn new(core: &payments_core::metrics::CoreMetrics) -> Self {
        let mut registry = Registry::default();
        core.register(&mut registry);
        let calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "payments_grpc_calls",
            "gRPC calls answered, by method and status code",
            calls.clone(),
        );
        let latency = HistogramFamily::<MethodLabels>::new_with_constructor(
            service_runtime::metrics::latency_histogram,
        );
        registry.register_with_unit(
            "payments_grpc_call_duration",
            "Time to a gRPC call's response headers, by method",
            Unit::Seconds,
            latency.clone(),
        );
        let paid_not_credited = Gauge::default();
        registry.register(
            "payments_paid_not_credited",
            "Payments Stripe reported paid whose top-up the ledger does not hold; should always read 0",
            paid_not_credited.clone(),
        );
        let oldest_open_age = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register_with_unit(
            "payments_oldest_open_payment_age",
            "Age of the oldest payment not final (not succeeded or canceled); 0 when none is",
            Unit::Seconds,
            oldest_open_age.clone(),
        );
        let parked_events = Gauge::default();
        registry.register(
            "payments_parked_events",
            "Stripe events parked because their apply failed for a reason that will not go away by itself; retried with backoff, listed by AdminService.ListParkedEvents",
            parked_events.clone(),
        );
        Self {
            registry: Arc::new(registry),
            calls,
            latency,
            paid_not_credited,
            oldest_open_age,
            parked_events,
            methods: methods_of(&[
                crate::proto::FILE_DESCRIPTOR_SET,
                tonic_health::pb::FILE_DESCRIPTOR_SET,
            ]),
            unknown: Arc::from("unknown"),
        }
    }

    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    /// The gauges read from the database, before a scrape.
    pub fn set_lifecycle(&self, paid_not_credited: i64, oldest_open_age_secs: Option<f64>) {
        self.paid_not_credited.set(paid_not_credited);
        self.oldest_open_age
            .set(oldest_open_age_secs.unwrap_or(0.0));
    }

    /// The parked events' count, before a scrape.
    pub fn set_parked_events(&self, parked: i64) {
        self.parked_events.set(parked);
    }

    fn method(&self, path: &str) -> Arc<str> {
        self.methods
            .get(path)
            .cloned()
            .unwrap_or_else(|| self.unknown.clone())
    }

    fn record_code(&self, method: &Arc<str>, headers: &HeaderMap) -> bool {
        let Some(code) = headers.get("grpc-status") else {
            return false;
        };
        let code = code
            .to_str()
            .ok()
            .and_then(|code| code.parse::<i32>().ok())
            .map_or("UNKNOWN", code_name);
        self.calls
            .get_or_create(&CallLabels {
                method: method.clone(),
                code,
            })
            .inc();
        true
    }
}

/// The canonical name of a gRPC status code.
fn code_name(code: i32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    usize::try_from(code)
        .ok()
        .and_then(|n| NAMES.get(n))
        .copied()
        .unwrap_or("UNKNOWN")
}

/// Counts and times every call: the code from the response headers (a
/// status-only answer) or from the trailers that end the body.
#[derive(Clone)]
pub struct CountCallsLayer(pub Arc<GrpcMetrics>);

impl<S> tower_layer::Layer<S> for CountCallsLayer {
    type Service = CountCalls<S>;

    fn layer(&self, inner: S) -> CountCalls<S> {
        CountCalls {
            inner,
            metrics: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct CountCalls<S> {
    inner: S,
    metrics: Arc<GrpcMetrics>,
}

impl<S> Service<http::Request<Body>> for CountCalls<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let metrics = self.metrics.clone();
        let method = metrics.method(request.uri().path());
        let started = Instant::now();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            metrics
                .latency
                .get_or_create(&MethodLabels {
                    method: method.clone(),
                })
                .observe(started.elapsed().as_secs_f64());
            if metrics.record_code(&method, response.headers()) {
                return Ok(response);
            }
            Ok(response.map(|body| {
                Body::new(body.map_frame(move |frame| {
                    if let Some(trailers) = frame.trailers_ref() {
                        metrics.record_code(&method, trailers);
                    }
                    frame
                }))
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_served_methods_are_labels() {
        let metrics = GrpcMetrics::default();
        for served in [
            "/payments.v1.PaymentsService/SpendCredits",
            "/payments.v1.AdminService/RunReconciliation",
            "/grpc.health.v1.Health/Check",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        ] {
            assert_eq!(&*metrics.method(served), served);
        }
        for made_up in ["/payments.v1.PaymentsService/Nope", "/x", ""] {
            assert_eq!(&*metrics.method(made_up), "unknown", "{made_up}");
        }
        assert_eq!(
            (
                code_name(0),
                code_name(5),
                code_name(16),
                code_name(99),
                code_name(-1)
            ),
            ("OK", "NOT_FOUND", "UNAUTHENTICATED", "UNKNOWN", "UNKNOWN")
        );
    }
}
