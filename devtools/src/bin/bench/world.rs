//! One stack under measure: its database and both servers as processes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use payments_core::db::quote_ident;
use payments_devtools::local::{INTERNAL_TOKEN, PROJECT_ID, STRIPE_SECRET_KEY, WEBHOOK_SECRET};
use payments_devtools::process::{spawn_server, stop_gracefully};
use tokio::process::Child;
use tonic::transport::Channel;

use crate::Args;
use crate::load::{Figures, rss_kib};
use crate::scenarios::http_call;

/// One stack: a database of its own, with both servers on it.
pub(crate) struct World {
    pub(crate) args: Args,
    /// The round it measures: `empty` or `preloaded`.
    pub(crate) label: &'static str,
    pub(crate) database: String,
    pub(crate) database_url: String,
    pub(crate) grpc: Child,
    pub(crate) edge: Child,
    pub(crate) grpc_pid: u32,
    pub(crate) edge_pid: u32,
    pub(crate) edge_addr: SocketAddr,
    /// Where each server serves `/metrics`.
    pub(crate) edge_metrics_addr: SocketAddr,
    pub(crate) grpc_metrics_addr: SocketAddr,
    pub(crate) grpc_url: String,
    pub(crate) tokens: Arc<Vec<String>>,
    pub(crate) ready: (Duration, Duration),
}

/// What every stack shares: the binaries, the stand-ins and the tokens.
pub(crate) struct Setting {
    pub(crate) bin_dir: PathBuf,
    pub(crate) log_dir: PathBuf,
    pub(crate) maintenance: String,
    pub(crate) stripe_url: String,
    pub(crate) keys_url: String,
    pub(crate) tokens: Arc<Vec<String>>,
}

/// Creates the stack's database, starts payments-grpc on it (which migrates
/// it) and then the edge, timing both to ready.
pub(crate) async fn start_world(
    args: &Args,
    setting: &Setting,
    label: &'static str,
) -> anyhow::Result<World> {
    let database = format!("payments_bench_{}_{label}", std::process::id());
    let database_url = url_with_path(&setting.maintenance, &database);
    let grpc_addr = free_addr().await?;
    let edge_addr = free_addr().await?;
    let grpc_metrics_addr = free_addr().await?;
    let edge_metrics_addr = free_addr().await?;
    let threads = args.server_threads.to_string();
    let grpc_started = Instant::now();
    let mut grpc = spawn_server(
        &setting.bin_dir.join("payments-grpc"),
        &setting.log_dir.join(format!("payments-grpc-{label}.log")),
        &[
            ("DATABASE_URL", &database_url),
            ("STRIPE_SECRET_KEY", STRIPE_SECRET_KEY),
            ("STRIPE_API_BASE", &setting.stripe_url),
            ("PAYMENTS_GRPC_ADDR", &grpc_addr.to_string()),
            ("PAYMENTS_METRICS_ADDR", &grpc_metrics_addr.to_string()),
            ("PAYMENTS_INTERNAL_TOKEN", INTERNAL_TOKEN),
            ("DATABASE_POOL_SIZE", &args.pool_size.to_string()),
            // The create scenario is a flood from few users by design.
            ("MAX_OPEN_INTENTS_PER_USER", "0"),
            // The bench's Stripe stand-in answers the calls of the measured
            // paths only; a pass would re-fetch the create scenario's
            // unpaid intents in the middle of the figures.
            ("RECONCILE_INTERVAL_SECS", "0"),
            ("TOKIO_WORKER_THREADS", &threads),
            ("RUST_LOG", "warn"),
        ],
    )?;
    let grpc_url = format!("http://{grpc_addr}");
    let grpc_ready = match wait_for_grpc(&grpc_url, grpc_started).await {
        Ok(ready) => ready,
        Err(err) => {
            stop_gracefully(&mut grpc).await;
            drop_database(&setting.maintenance, &database).await;
            return Err(err);
        }
    };
    let edge_started = Instant::now();
    let edge = spawn_server(
        &setting.bin_dir.join("edge-gateway"),
        &setting.log_dir.join(format!("edge-gateway-{label}.log")),
        &[
            ("EDGE_ADDR", &edge_addr.to_string()),
            ("EDGE_METRICS_ADDR", &edge_metrics_addr.to_string()),
            ("PAYMENTS_GRPC_URL", &grpc_url),
            ("PAYMENTS_INTERNAL_TOKEN", INTERNAL_TOKEN),
            ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET),
            ("FIREBASE_PROJECT_ID", PROJECT_ID),
            ("FIREBASE_JWKS_URL", &setting.keys_url),
            // Throughput, not abuse: the per-user and per-IP limits are off.
            ("RATE_LIMIT_CREATES_PER_MINUTE", "0"),
            ("RATE_LIMIT_CREATES_PER_MINUTE_PER_IP", "0"),
            // The watch scenario holds 10,000 streams open, each a connection,
            // all from 127.0.0.1.
            ("EDGE_MAX_CONNECTIONS", "12000"),
            ("EDGE_MAX_BALANCE_STREAMS", "10000"),
            ("EDGE_MAX_BALANCE_STREAMS_PER_IP", "10000"),
            ("TOKIO_WORKER_THREADS", &threads),
            ("RUST_LOG", "warn"),
        ],
    )?;
    let mut world = World {
        grpc_pid: grpc.id().context("grpc pid")?,
        edge_pid: edge.id().context("edge pid")?,
        args: args.clone(),
        label,
        database,
        database_url,
        grpc,
        edge,
        edge_addr,
        edge_metrics_addr,
        grpc_metrics_addr,
        grpc_url,
        tokens: setting.tokens.clone(),
        ready: (grpc_ready, Duration::ZERO),
    };
    let http: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    match wait_for_edge(&http, &format!("http://{edge_addr}"), edge_started).await {
        Ok(ready) => world.ready.1 = ready,
        Err(err) => {
            stop_gracefully(&mut world.edge).await;
            stop_gracefully(&mut world.grpc).await;
            drop_database(&setting.maintenance, &world.database).await;
            return Err(err);
        }
    }
    println!(
        "ready ({label} database): payments-grpc {:.0} ms (migrations included), edge-gateway {:.0} ms",
        world.ready.0.as_secs_f64() * 1e3,
        world.ready.1.as_secs_f64() * 1e3
    );
    Ok(world)
}

pub(crate) fn with_rss(world: &World, mut figures: Figures) -> Figures {
    let (grpc, grpc_peak) = rss_kib(world.grpc_pid);
    let (edge, edge_peak) = rss_kib(world.edge_pid);
    figures.rss_kib = vec![
        ("payments-grpc".into(), grpc),
        ("payments-grpc peak".into(), grpc_peak),
        ("edge-gateway".into(), edge),
        ("edge-gateway peak".into(), edge_peak),
    ];
    figures
}

pub(crate) fn durations(world: &World) -> (Duration, Duration) {
    (
        Duration::from_secs(world.args.warmup_seconds),
        Duration::from_secs(world.args.seconds),
    )
}

pub(crate) async fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(tokio::net::TcpListener::bind("127.0.0.1:0")
        .await?
        .local_addr()?)
}

pub(crate) fn url_with_path(base: &str, database: &str) -> String {
    let mut url = url::Url::parse(base).expect("server URL");
    url.set_path(&format!("/{database}"));
    url.into()
}

pub(crate) async fn wait_for_grpc(url: &str, started: Instant) -> anyhow::Result<Duration> {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let deadline = started + Duration::from_secs(60);
    loop {
        if let Ok(channel) = Channel::from_shared(url.to_owned())?.connect().await {
            let answer = HealthClient::new(channel)
                .check(HealthCheckRequest {
                    service: payments_proto::SERVICE_NAME.into(),
                })
                .await;
            if answer.is_ok_and(|r| r.get_ref().status() == ServingStatus::Serving) {
                return Ok(started.elapsed());
            }
        }
        ensure!(
            Instant::now() < deadline,
            "payments-grpc not ready within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub(crate) async fn wait_for_edge(
    http: &Client<HttpConnector, Full<Bytes>>,
    url: &str,
    started: Instant,
) -> anyhow::Result<Duration> {
    let deadline = started + Duration::from_secs(60);
    loop {
        let request = hyper::Request::get(format!("{url}/readyz")).body(Full::new(Bytes::new()))?;
        if matches!(http_call(http, request).await, Ok((200, _))) {
            return Ok(started.elapsed());
        }
        ensure!(
            Instant::now() < deadline,
            "edge-gateway not ready within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub(crate) async fn drop_database(maintenance: &str, name: &str) {
    if let Ok(mut conn) = AsyncPgConnection::establish(maintenance).await {
        let _ = diesel::sql_query(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(name)
        ))
        .execute(&mut conn)
        .await;
    }
}
