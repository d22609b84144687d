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

/// OpenMetrics 1.0 text, answered to a scraper that asks for it (Prometheus
/// does, in its `Accept` header).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Prometheus's classic text format (0.0.4), answered to everything else
/// (curl, older scrapers, `promtool check metrics`).
pub const CLASSIC_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

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

/// OpenMetrics text as Prometheus's classic text format: a counter family is
/// named as its samples are (`x_total`), and the OpenMetrics-only lines
/// (`# UNIT`, `# EOF`) are left out; samples are the same in both.
pub fn to_classic_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut text = String::with_capacity(openmetrics.len() + 16 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let metadata = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|prefix| Some((prefix, line.strip_prefix(prefix)?)));
        match metadata {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let suffix = if counters.contains(name) {
                    "_total"
                } else {
                    ""
                };
                text.push_str(&format!("{prefix}{name}{suffix} {tail}"));
            }
            None => text.push_str(line),
        }
        text.push('\n');
    }
    text
}

/// Whether a scraper's `Accept` header asks for OpenMetrics.
fn wants_openmetrics(accept: Option<&hyper::header::HeaderValue>) -> bool {
    accept
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains("application/openmetrics-text"))
}

/// Connections the metrics endpoint serves at once; past them it stops
/// accepting until one closes (a scraper needs one at a time).
pub const MAX_CONNECTIONS: usize = 8;

/// Serves `GET /metrics` on `listener` until the task is aborted. Each
/// connection is closed after its answer, and given 10 s at most; at most
/// [`MAX_CONNECTIONS`] are open at once.
pub async fn serve(listener: TcpListener, registry: Arc<Registry>, refresh: Option<Refresh>) {
    let places = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(place) = places.clone().acquire_owned().await else {
            return;
        };
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        // The answer leaves in one go, not held back for the scraper's
        // (delayed) acknowledgement of its first segment.
        let _ = stream.set_nodelay(true);
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
                        let text = render(&registry);
                        if wants_openmetrics(request.headers().get(hyper::header::ACCEPT)) {
                            Response::builder()
                                .header("content-type", CONTENT_TYPE)
                                .body(Full::new(Bytes::from(text)))
                        } else {
                            Response::builder()
                                .header("content-type", CLASSIC_CONTENT_TYPE)
                                .body(Full::new(Bytes::from(to_classic_text(&text))))
                        }
                    };
                Ok::<_, std::convert::Infallible>(response.expect("a valid response"))
            }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .keep_alive(false)
            .serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), connection).await;
            drop(place);
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
            // What Prometheus 2 sends.
            let request = format!(
                "GET {path} HTTP/1.1\r\nhost: x\r\naccept: application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n\r\n"
            );
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

    #[tokio::test]
    async fn past_its_connections_the_endpoint_waits_for_one_to_close() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, Arc::new(Registry::default()), None));
        // Connections that never send a request hold every place (the
        // kernel queues connections in order, so these are accepted first).
        let mut silent = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            silent.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        let mut scraper = tokio::net::TcpStream::connect(addr).await.unwrap();
        scraper
            .write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        let waited = tokio::time::timeout(
            std::time::Duration::from_millis(300),
            scraper.read_to_string(&mut answer),
        )
        .await;
        assert!(waited.is_err(), "answered past the limit: {answer}");
        drop(silent.pop());
        scraper.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    #[test]
    fn the_classic_text_names_counter_families_as_their_samples() {
        let openmetrics = "# HELP x_calls Calls.\n# TYPE x_calls counter\nx_calls_total{a=\"b c\"} 3\n\
            # HELP x_wait_seconds Wait.\n# TYPE x_wait_seconds gauge\n# UNIT x_wait_seconds seconds\nx_wait_seconds 1.5\n# EOF\n";
        assert_eq!(
            to_classic_text(openmetrics),
            "# HELP x_calls_total Calls.\n# TYPE x_calls_total counter\nx_calls_total{a=\"b c\"} 3\n\
             # HELP x_wait_seconds Wait.\n# TYPE x_wait_seconds gauge\nx_wait_seconds 1.5\n"
        );
    }
}
