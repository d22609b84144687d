//! payments-grpc for tests, the demo and the bench: the production
//! `Application`, configured by overriding fields of the defaults.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::Application;
use crate::config::Config;

/// The defaults, pointed at a database and a Stripe stand-in, on a free port,
/// with a small pool and fast Stripe retries.
pub fn config(database_url: &str, stripe_api_base: &str, internal_token: &str) -> Config {
    let mut config = Config::defaults();
    config.database_url = database_url.to_owned();
    config.stripe_secret_key = Some("sk_test_standin".into());
    config.stripe_api_base = stripe_api_base.to_owned();
    config.payments_internal_token = Some(internal_token.to_owned());
    config.payments_grpc_addr = "127.0.0.1:0".parse().expect("an address");
    config.database_pool_size = 8;
    config.stripe_timeout_ms = 2_000;
    config.stripe_deadline_ms = 5_000;
    config.stripe_max_attempts = 3;
    config.stripe_retry_backoff_ms = 10;
    config
}

/// A payments-grpc serving in this process until stopped or dropped.
pub struct RunningGrpc {
    addr: SocketAddr,
    metrics_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl RunningGrpc {
    /// Builds and starts it; panics on a configuration the test got wrong.
    pub async fn start(config: Config) -> Self {
        Self::run(
            Application::build(config)
                .await
                .expect("payments-grpc builds"),
        )
    }

    /// As `start`, on a listener bound already (to restart on one port).
    pub async fn start_on(config: Config, listener: TcpListener) -> Self {
        Self::run(
            Application::build_on(config, listener)
                .await
                .expect("payments-grpc builds"),
        )
    }

    fn run(application: Application) -> Self {
        let addr = application.local_addr();
        let metrics_addr = application.metrics_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(application.run_until(async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            metrics_addr,
            stop: Some(stop),
            done: Some(done),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://…/metrics` of this server.
    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.metrics_addr)
    }

    /// The text `GET /metrics` answers now (the headers cut off).
    pub async fn scrape_metrics(&self) -> String {
        scrape_metrics_at(self.metrics_addr).await
    }

    /// Stops serving and waits until calls in flight are drained.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            done.await
                .expect("payments-grpc's task")
                .expect("payments-grpc stopped cleanly");
        }
    }
}

/// The text `GET /metrics` at `addr` answers now (the headers cut off);
/// panics unless it answers 200.
pub async fn scrape_metrics_at(addr: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("the metrics endpoint answers");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: metrics\r\n\r\n")
        .await
        .expect("a request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}
