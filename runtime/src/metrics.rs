//! Prometheus metrics. Each server holds a registry of its own (no global
//! recorder: several servers in one test process stay apart) and serves it
//! as text at `GET /metrics` on an address of its own, never the public
//! port (`EDGE_METRICS_ADDR`, `PAYMENTS_METRICS_ADDR`; loopback by default).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

/// The content type of the text the endpoint answers (OpenMetrics 1.0 text,
/// which Prometheus scrapes natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Work done just before each scrape (gauges read from the database).
pub type Refresh = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// A latency histogram, in seconds: 1 ms to about 16 s, doubling.
pub fn latency_histogram() -> prometheus_client::metrics::histogram::Histogram {
    prometheus_client::metrics::histogram::Histogram::new(
        prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 15),
    )
}

/// The registry's metrics as text.
pub fn render(registry: &Registry) -> String {
    let mut text = String::new();
    if let Err(err) = prometheus_client::encoding::text::encode(&mut text, registry) {
        tracing::error!(error = %err, "metrics could not be encoded");
    }
    text
}

/// Serves `GET /metrics` on `listener` until the task is aborted. Each
/// connection is closed after its answer, and given 10 s at most.
pub async fn serve(listener: TcpListener, registry: Arc<Registry>, refresh: Option<Refresh>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let registry = registry.clone();
        let refresh = refresh.clone();
        let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
            let registry = registry.clone();
            let refresh = refresh.clone();
            async move {
                let response =
                    if request.method() != Method::GET || request.uri().path() != "/metrics" {
                        Response::builder()
                            .status(StatusCode::NOT_FOUND)
                            .body(Full::new(Bytes::from_static(b"only GET /metrics here\n")))
                    } else {
                        if let Some(refresh) = &refresh {
                            refresh().await;
                        }
                        Response::builder()
                            .header("content-type", CONTENT_TYPE)
                            .body(Full::new(Bytes::from(render(&registry))))
                    };
                Ok::<_, std::convert::Infallible>(response.expect("a valid response"))
            }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .keep_alive(false)
            .serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), connection).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;

    use super::*;

    #[tokio::test]
    async fn the_endpoint_answers_the_registrys_text_and_nothing_else() {
        let mut registry = Registry::default();
        let counter = Counter::<u64>::default();
        registry.register("example_events", "Events seen", counter.clone());
        counter.inc_by(3);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, Arc::new(registry), None));
        let get = |path: &'static str| async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n");
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await.unwrap();
            answer
        };
        let answer = get("/metrics").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains(CONTENT_TYPE), "{answer}");
        assert!(answer.contains("# TYPE example_events counter"), "{answer}");
        assert!(answer.contains("example_events_total 3"), "{answer}");
        assert!(answer.trim_end().ends_with("# EOF"), "{answer}");
        assert!(get("/").await.starts_with("HTTP/1.1 404"));
    }
}
