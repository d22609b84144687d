//! The benchmark: every route of both real binaries (release builds, as
//! processes) against a fresh database, a fast Stripe stand-in, and the
//! Postgres ceiling measured by pgbench with the same SQL as one webhook.
//! Prints figures and writes them as JSON. `--smoke` runs a few seconds with
//! every correctness check on and no figure asserted (CI).

// The load generator should cost as little CPU as it can: it shares the machine.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod fast_stripe;
mod load;
mod wire;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Parser;
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use edge_gateway::testing::{id_token, stripe_signature};
use fast_stripe::{amount_of, paid_intent_id, user_of};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use load::{Figures, rss_kib};
use payments_core::db::apply::WebhookValues;
use payments_core::db::{maintenance_url, quote_ident};
use payments_proto::GetBalanceRequest;
use payments_proto::payments_service_client::PaymentsServiceClient;
use payments_tests::process::{sibling_binary_dir, spawn_server, stop_gracefully};
use payments_tests::stack::{
    INTERNAL_TOKEN, PROJECT_ID, STRIPE_SECRET_KEY, WEBHOOK_SECRET, now_unix, serve_key_set,
};
use serde_json::{Value, json};
use stripe_sandbox::stripe_event;
use tokio::process::Child;
use tonic::transport::Channel;

const GRPC_CONNECTIONS: usize = 4;

#[derive(Parser, Clone)]
#[command(
    name = "bench",
    about = "Measure every route against the Postgres ceiling"
)]
struct Args {
    /// A few seconds per scenario, correctness checks on, small preload (CI).
    #[arg(long)]
    smoke: bool,
    /// Concurrent clients per scenario.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Measured seconds per scenario (after the warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value_t = 2)]
    warmup_seconds: u64,
    /// Users the load is spread over.
    #[arg(long, default_value_t = 1000)]
    users: u64,
    /// Payments (with their events and ledger rows) preloaded for the second round.
    #[arg(long, default_value_t = 1_000_000)]
    preload: u64,
    /// The Postgres server; the benchmark creates and drops its own database there.
    #[arg(
        long,
        env = "TEST_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    server_url: String,
    /// Postgres connections of payments-grpc.
    #[arg(long, default_value_t = 16)]
    pool_size: u32,
    /// Tokio worker threads of each server (their TOKIO_WORKER_THREADS). One:
    /// with both servers, Postgres and the load on two cores, a second worker
    /// per server only adds cross-thread wake-ups (see README, Performance).
    #[arg(long, default_value_t = 1)]
    server_threads: usize,
    /// Run only these scenarios (comma-separated: rest, grpc, webhook, create, pgbench).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Where to write the figures.
    #[arg(long, default_value = "target/bench/last.json")]
    out: PathBuf,
    /// Where payments-grpc and edge-gateway are (default: beside this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
}

/// One stack: a database of its own, with both servers on it.
struct World {
    args: Args,
    /// The round it measures: `empty` or `preloaded`.
    label: &'static str,
    database: String,
    database_url: String,
    grpc: Child,
    edge: Child,
    grpc_pid: u32,
    edge_pid: u32,
    edge_addr: SocketAddr,
    grpc_url: String,
    tokens: Arc<Vec<String>>,
    ready: (Duration, Duration),
}

/// What every stack shares: the binaries, the stand-ins and the tokens.
struct Setting {
    bin_dir: PathBuf,
    log_dir: PathBuf,
    maintenance: String,
    stripe_url: String,
    keys_url: String,
    tokens: Arc<Vec<String>>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    if args.smoke {
        args.seconds = 2;
        args.warmup_seconds = 1;
        args.connections = args.connections.min(16);
        args.preload = args.preload.min(20_000);
    }
    let bin_dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => sibling_binary_dir()?,
    };
    let log_dir = bin_dir.join("bench-logs");
    std::fs::create_dir_all(&log_dir)?;

    let stripe = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let stripe_url = format!("http://{}", stripe.local_addr()?);
    let stripe_app = fast_stripe::router(args.users);
    tokio::spawn(async move { axum::serve(stripe, stripe_app).await });
    let keys = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let keys_url = format!("http://{}/jwks.json", keys.local_addr()?);
    serve_key_set(keys).await;
    let now = now_unix();
    let setting = Setting {
        bin_dir,
        log_dir,
        maintenance: maintenance_url(&args.server_url)?.0,
        stripe_url,
        keys_url,
        tokens: Arc::new(
            (0..args.users)
                .map(|u| id_token(PROJECT_ID, &format!("bench-user-{u}"), now))
                .collect(),
        ),
    };

    println!(
        "bench: {} connections, {} s per scenario after {} s warm-up, {} users, {} worker thread(s) per server{}",
        args.connections,
        args.seconds,
        args.warmup_seconds,
        args.users,
        args.server_threads,
        if args.smoke { " (smoke)" } else { "" }
    );
    // Stopped and dropped at the end, whatever happened.
    let mut worlds = Vec::new();
    let result = async {
        worlds.push(start_world(&args, &setting, "empty").await?);
        if args.preload > 0 {
            worlds.push(start_world(&args, &setting, "preloaded").await?);
        }
        run_rounds(&worlds).await
    }
    .await;
    for world in &mut worlds {
        stop_gracefully(&mut world.edge).await;
        stop_gracefully(&mut world.grpc).await;
        drop_database(&setting.maintenance, &world.database).await;
    }
    let report = result?;
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, serde_json::to_vec_pretty(&report)?)?;
    println!("\nfigures written to {}", args.out.display());
    Ok(())
}

/// Creates the stack's database, starts payments-grpc on it (which migrates
/// it) and then the edge, timing both to ready.
async fn start_world(args: &Args, setting: &Setting, label: &'static str) -> anyhow::Result<World> {
    let database = format!("payments_bench_{}_{label}", std::process::id());
    let database_url = url_with_path(&setting.maintenance, &database);
    let grpc_addr = free_addr().await?;
    let edge_addr = free_addr().await?;
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
            ("PAYMENTS_INTERNAL_TOKEN", INTERNAL_TOKEN),
            ("DATABASE_POOL_SIZE", &args.pool_size.to_string()),
            // The create scenario is a flood from few users by design.
            ("MAX_OPEN_INTENTS_PER_USER", "0"),
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
            ("PAYMENTS_GRPC_URL", &grpc_url),
            ("PAYMENTS_INTERNAL_TOKEN", INTERNAL_TOKEN),
            ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET),
            ("FIREBASE_PROJECT_ID", PROJECT_ID),
            ("FIREBASE_JWKS_URL", &setting.keys_url),
            // Throughput, not abuse: the per-user and per-IP limits are off.
            ("RATE_LIMIT_CREATES_PER_MINUTE", "0"),
            ("RATE_LIMIT_CREATES_PER_MINUTE_PER_IP", "0"),
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

/// The scenarios, in the order they run and are printed.
#[derive(Clone, Copy, PartialEq)]
enum Scenario {
    Rest,
    Grpc,
    Webhook,
    Create,
    PgbenchInsert,
    Pgbench,
}

impl Scenario {
    const ALL: [Scenario; 6] = [
        Scenario::Rest,
        Scenario::Grpc,
        Scenario::Webhook,
        Scenario::Create,
        Scenario::PgbenchInsert,
        Scenario::Pgbench,
    ];

    /// Its name for `--only`.
    fn name(self) -> &'static str {
        match self {
            Scenario::Rest => "rest",
            Scenario::Grpc => "grpc",
            Scenario::Webhook => "webhook",
            Scenario::Create => "create",
            Scenario::PgbenchInsert | Scenario::Pgbench => "pgbench",
        }
    }
}

/// One round's figures: the scenarios through our servers, then the ceilings.
#[derive(Default)]
struct Round {
    scenarios: Vec<Figures>,
    webhook_rate: f64,
    insert_ceiling: Option<Figures>,
    ceiling: Option<Figures>,
    /// The least an exactly-once credit writes, for scale (`pgbench_reference`).
    reference: Option<Figures>,
}

/// Runs each scenario on every stack in turn, alternating which goes first,
/// so both rounds see the machine in the same minute: its speed drifts by
/// more than the 10 % the comparison is about.
async fn run_rounds(worlds: &[World]) -> anyhow::Result<Value> {
    let args = &worlds[0].args;
    for world in worlds {
        seed_balances(&world.database_url, args.users).await?;
    }
    if let Some(world) = worlds.iter().find(|w| w.label == "preloaded") {
        println!(
            "preloading {} payments, events and ledger entries…",
            args.preload
        );
        let started = Instant::now();
        preload(&world.database_url, args.preload).await?;
        println!("preloaded in {:.1} s", started.elapsed().as_secs_f64());
    }
    let wanted =
        |scenario: Scenario| args.only.is_empty() || args.only.iter().any(|o| o == scenario.name());
    let mut rounds: Vec<Round> = worlds.iter().map(|_| Round::default()).collect();
    let scenarios = Scenario::ALL.into_iter().filter(|s| wanted(*s));
    for (step, scenario) in scenarios.enumerate() {
        let mut order: Vec<usize> = (0..worlds.len()).collect();
        if step % 2 == 1 {
            order.reverse();
        }
        for i in order {
            run_scenario(&worlds[i], scenario, &mut rounds[i]).await?;
        }
    }

    let mut report = json!({
        "connections": args.connections,
        "server_threads": args.server_threads,
        "seconds": args.seconds,
        "users": args.users,
        "preload": args.preload,
        "smoke": args.smoke,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "startup_ms": {
            "payments_grpc": worlds[0].ready.0.as_millis() as u64,
            "edge_gateway": worlds[0].ready.1.as_millis() as u64,
        },
        "rounds": {},
    });
    for (world, round) in worlds.iter().zip(rounds) {
        report["rounds"][world.label] = report_round(world, round).await?;
    }
    if let [empty, preloaded] = worlds {
        print_comparison(
            &report["rounds"][empty.label],
            &report["rounds"][preloaded.label],
        );
    }
    Ok(report)
}

async fn run_scenario(world: &World, scenario: Scenario, round: &mut Round) -> anyhow::Result<()> {
    match scenario {
        Scenario::Rest => round
            .scenarios
            .push(with_rss(world, balance_over_rest(world).await)),
        Scenario::Grpc => round
            .scenarios
            .push(with_rss(world, balance_over_grpc(world).await?)),
        Scenario::Webhook => {
            let (first, replay) = webhooks(world, world.label).await?;
            round.webhook_rate = first.requests_per_sec;
            round.scenarios.push(with_rss(world, first));
            round.scenarios.push(with_rss(world, replay));
        }
        Scenario::Create => round
            .scenarios
            .push(with_rss(world, create_intents(world).await)),
        Scenario::PgbenchInsert => {
            round.insert_ceiling = Some(pgbench_insert(world, world.label).await?);
        }
        Scenario::Pgbench => {
            round.ceiling = Some(pgbench(world, world.label).await?);
            round.reference = Some(pgbench_reference(world).await?);
        }
    }
    Ok(())
}

/// Prints one round's table and ratio, checks its ledger, and gives its JSON.
async fn report_round(world: &World, round: Round) -> anyhow::Result<Value> {
    println!("\n== round: {} database ==", world.label);
    let ceilings: Vec<&Figures> = round
        .ceiling
        .iter()
        .chain(&round.reference)
        .chain(&round.insert_ceiling)
        .collect();
    print_table(&round.scenarios, &ceilings);
    let ratio = match &round.ceiling {
        Some(ceiling) if ceiling.requests_per_sec > 0.0 => {
            round.webhook_rate / ceiling.requests_per_sec
        }
        _ => 0.0,
    };
    if round.ceiling.is_some() && round.webhook_rate > 0.0 {
        println!(
            "webhook application / pgbench ceiling = {:.0} %",
            ratio * 100.0
        );
    }
    if let (Some(ours), Some(reference)) = (&round.ceiling, &round.reference)
        && reference.requests_per_sec > 0.0
    {
        println!(
            "our webhook SQL / the least an exactly-once credit writes = {:.0} %",
            ours.requests_per_sec / reference.requests_per_sec * 100.0
        );
    }
    check_ledger(&world.database_url).await?;
    Ok(json!({
        "scenarios": round.scenarios,
        "pgbench": round.ceiling,
        "pgbench_reference": round.reference,
        "pgbench_insert": round.insert_ceiling,
        "webhook_to_ceiling_ratio": ratio,
    }))
}

fn with_rss(world: &World, mut figures: Figures) -> Figures {
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

fn durations(world: &World) -> (Duration, Duration) {
    (
        Duration::from_secs(world.args.warmup_seconds),
        Duration::from_secs(world.args.seconds),
    )
}

/// Ok for a 200 answer; the status and body otherwise.
async fn expect_ok(http: &wire::Http1, worker: usize, request: &[u8]) -> Result<(), String> {
    match http.send(worker, request).await? {
        (200, _) => Ok(()),
        (status, body) => Err(format!("HTTP {status} {}", String::from_utf8_lossy(&body))),
    }
}

async fn http_call(
    http: &Client<HttpConnector, Full<Bytes>>,
    request: hyper::Request<Full<Bytes>>,
) -> Result<(u16, Bytes), String> {
    let response = http.request(request).await.map_err(|err| err.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|err| err.to_string())?
        .to_bytes();
    Ok((status, body))
}

/// Scenario 1: `GET /balance` with valid tokens over the users.
async fn balance_over_rest(world: &World) -> Figures {
    let (warmup, duration) = durations(world);
    let http = Arc::new(wire::Http1::new(world.edge_addr, world.args.connections));
    let requests: Arc<Vec<Vec<u8>>> = Arc::new(
        world
            .tokens
            .iter()
            .map(|token| {
                let authorization = format!("Bearer {token}");
                wire::request("GET", "/balance", &[("authorization", &authorization)], b"")
            })
            .collect(),
    );
    load::run(
        "GET /balance (REST)",
        world.args.connections,
        warmup,
        duration,
        move |worker, n| {
            let (http, requests) = (http.clone(), requests.clone());
            async move {
                let request =
                    &requests[((worker as u64 * 7919 + n) % requests.len() as u64) as usize];
                Some(expect_ok(&http, worker, request).await)
            }
        },
    )
    .await
}

/// Scenario 2: gRPC `GetBalance` directly.
async fn balance_over_grpc(world: &World) -> anyhow::Result<Figures> {
    let (warmup, duration) = durations(world);
    // Several HTTP/2 connections, as a backend service's client pool (and the
    // edge) would hold: one connection is one task on each side.
    let mut channels = Vec::new();
    for _ in 0..GRPC_CONNECTIONS {
        channels.push(
            Channel::from_shared(world.grpc_url.clone())?
                .connect()
                .await?,
        );
    }
    let users = world.args.users;
    let authorization: tonic::metadata::MetadataValue<_> =
        format!("Bearer {INTERNAL_TOKEN}").parse()?;
    Ok(load::run(
        "GetBalance (gRPC)",
        world.args.connections,
        warmup,
        duration,
        move |worker, n| {
            let mut client = PaymentsServiceClient::new(channels[worker % channels.len()].clone());
            let mut request = tonic::Request::new(GetBalanceRequest {
                user_id: format!("bench-user-{}", (worker as u64 * 7919 + n) % users),
            });
            request
                .metadata_mut()
                .insert("authorization", authorization.clone());
            async move {
                Some(
                    client
                        .get_balance(request)
                        .await
                        .map(|_| ())
                        .map_err(|status| status.to_string()),
                )
            }
        },
    )
    .await)
}

/// Scenario 3: distinct signed `payment_intent.succeeded` events for paid
/// intents, then every one of them again; correctness checked after each pass.
async fn webhooks(world: &World, round: &str) -> anyhow::Result<(Figures, Figures)> {
    let (warmup, duration) = durations(world);
    let capacity = if world.args.smoke { 20_000 } else { 300_000 };
    let users = world.args.users;
    let mut conn = AsyncPgConnection::establish(&world.database_url).await?;
    seed_payments(
        &mut conn,
        &format!(
            "SELECT 'pi_bench_{round}_' || i AS stripe_intent_id, 'bench-user-' || (i % {users}) AS user_id,
                    (ARRAY[500, 1000, 2000, 5000])[i % 4 + 1] AS amount_cents, 0 AS amount_received_cents,
                    'requires_payment_method' AS status
               FROM generate_series(0, {capacity} - 1) AS i"
        ),
    )
    .await?;
    let before = balances(&mut conn).await?;

    let next = Arc::new(AtomicU64::new(0));
    let http = Arc::new(wire::Http1::new(world.edge_addr, world.args.connections));
    let send = {
        let round = round.to_owned();
        move |worker: usize, index: u64, expected: &'static str| {
            let body = event_body(&round, index, users);
            let signature = stripe_signature(WEBHOOK_SECRET, now_unix(), body.as_bytes());
            let request = wire::request(
                "POST",
                "/stripe/webhook",
                &[
                    ("content-type", "application/json"),
                    ("stripe-signature", &signature),
                ],
                body.as_bytes(),
            );
            let http = http.clone();
            async move {
                match http.send(worker, &request).await {
                    Ok((200, body))
                        if body
                            .windows(expected.len())
                            .any(|w| w == expected.as_bytes()) =>
                    {
                        Ok(())
                    }
                    Ok((status, body)) => {
                        Err(format!("HTTP {status} {}", String::from_utf8_lossy(&body)))
                    }
                    Err(err) => Err(err),
                }
            }
        }
    };
    let first = {
        let (next, send) = (next.clone(), send.clone());
        load::run(
            "POST /stripe/webhook (new events)",
            world.args.connections,
            warmup,
            duration,
            move |worker, _| {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let send = send.clone();
                async move {
                    if index >= capacity {
                        return None;
                    }
                    Some(send(worker, index, "\"applied\"").await)
                }
            },
        )
        .await
    };
    let sent = AtomicU64::load(&next, Ordering::Relaxed).min(capacity);
    ensure!(
        sent < capacity,
        "every prepared intent was used; raise the capacity"
    );
    let mut expected = before.clone();
    for index in 0..sent {
        *expected.entry(user_of(index, users)).or_insert(0) += amount_of(index);
    }
    let after_first = balances(&mut conn).await?;
    ensure!(
        after_first == expected,
        "after the first pass, balances differ from the paid intents"
    );
    check_ledger(&world.database_url).await?;
    println!(
        "    {round}: checked {sent} events, each balance = its paid intents, ledger sums equal"
    );

    let replayed = Arc::new(AtomicU64::new(0));
    let replay = {
        let replayed = replayed.clone();
        load::run(
            "POST /stripe/webhook (replays)",
            world.args.connections,
            Duration::ZERO,
            duration,
            move |worker, _| {
                let index = replayed.fetch_add(1, Ordering::Relaxed);
                let send = send.clone();
                async move {
                    if index >= sent {
                        return None;
                    }
                    Some(send(worker, index, "\"duplicate\"").await)
                }
            },
        )
        .await
    };
    let after_replay = balances(&mut conn).await?;
    ensure!(
        after_replay == expected,
        "a replayed event changed a balance"
    );
    println!(
        "    {round}: checked {} replays, all duplicates, balances unchanged",
        AtomicU64::load(&replayed, Ordering::Relaxed).min(sent)
    );
    Ok((first, replay))
}

/// A `payment_intent.succeeded` as Stripe sends it for one of our intents:
/// its metadata names the user, as ours always do.
fn event_body(round: &str, index: u64, users: u64) -> String {
    let intent = json!({
        "id": paid_intent_id(round, index), "object": "payment_intent", "amount": amount_of(index),
        "amount_received": amount_of(index), "currency": "usd", "status": "succeeded",
        "capture_method": "automatic_async", "confirmation_method": "automatic",
        "livemode": false, "payment_method_types": ["card"],
        "metadata": {"user_id": user_of(index, users), "created_by": "credits-topup"}
    });
    stripe_event(
        &format!("evt_bench_{round}_{index}"),
        "payment_intent.succeeded",
        &intent,
    )
    .to_string()
}

/// Scenario 4: `POST /payments/create-payment-intent` across the tiers.
async fn create_intents(world: &World) -> Figures {
    let (warmup, duration) = durations(world);
    let http = Arc::new(wire::Http1::new(world.edge_addr, world.args.connections));
    // One prepared request per user and tier, tier fastest.
    let requests: Arc<Vec<Vec<u8>>> = Arc::new(
        world
            .tokens
            .iter()
            .flat_map(|token| {
                let authorization = format!("Bearer {token}");
                [5, 10, 20, 50].map(|tier| {
                    wire::request(
                        "POST",
                        "/payments/create-payment-intent",
                        &[
                            ("authorization", &authorization),
                            ("content-type", "application/json"),
                        ],
                        format!("{{\"amount_usd\": {tier}}}").as_bytes(),
                    )
                })
            })
            .collect(),
    );
    load::run(
        "POST /payments/create-payment-intent",
        world.args.connections,
        warmup,
        duration,
        move |worker, n| {
            let (http, requests) = (http.clone(), requests.clone());
            async move {
                let user = (worker as u64 * 7919 + n) % (requests.len() as u64 / 4);
                let request = &requests[(user * 4 + n % 4) as usize];
                Some(expect_ok(&http, worker, request).await)
            }
        },
    )
    .await
}

/// Scenario 5: the ceiling: pgbench running the statements of one applied
/// webhook, rendered from the service's own queries
/// (`payments_core::db::apply::webhook_statements`).
async fn pgbench(world: &World, round: &str) -> anyhow::Result<Figures> {
    let capacity = if world.args.smoke { 20_000 } else { 300_000 };
    let users = world.args.users;
    let mut conn = AsyncPgConnection::establish(&world.database_url).await?;
    seed_payments(
        &mut conn,
        &format!(
            "SELECT 'pi_pgb_{round}_' || i AS stripe_intent_id, 'pgb-user-' || (i % {users}) AS user_id,
                    500 AS amount_cents, 0 AS amount_received_cents, 'requires_payment_method' AS status
               FROM generate_series(1, {capacity}) AS i"
        ),
    )
    .await?;
    // pgbench reads `:name` as a variable even inside a string (`"livemode":false`
    // broke its prepared statements): a space after each key's colon keeps
    // the JSON, and its size within a byte per key.
    let payload = format!(
        "'{}'",
        event_body(round, 0, users)
            .replace('\'', "''")
            .replace("\":", "\": ")
    );
    let statements = payments_core::db::apply::webhook_statements(&WebhookValues {
        user_id: &format!("('pgb-user-' || (:i % {users}))"),
        intent_id: &format!("('pi_pgb_{round}_' || :i)"),
        // What the read (the first statement) returned: `\gset p_` below.
        read_status: ":p_status",
        read_amount_received_cents: ":p_amount_received_cents",
        event_id: "('evt_pgb_' || CAST(:e AS bigint))",
        event_type: "'payment_intent.succeeded'",
        payload: &payload,
        now: "now()",
        status: "'succeeded'",
        amount_received_cents: "500",
        credit_cents: "500",
        currency: "'usd'",
    });
    let mut script =
        format!("\\set i random(1, {capacity})\n\\set e random(1, 4000000000000000000)\n");
    for (n, statement) in statements.iter().enumerate() {
        // pgbench reads one statement per line; the read's row becomes the
        // variables `p_<column>` that the write compares against.
        script.push_str(&statement.split_whitespace().collect::<Vec<_>>().join(" "));
        script.push_str(if n == 0 { " \\gset p_\n" } else { ";\n" });
    }
    run_pgbench(world, "pgbench: one webhook's SQL (ceiling)", &script).await
}

/// For scale: the least a webhook that credits exactly once can write, as a
/// hand-written backend does it (an event-id table for deduplication, a
/// counter per user; no payment state, no ledger, no payload), in tables of
/// its own. Not our SQL, so nothing of ours to drift from.
async fn pgbench_reference(world: &World) -> anyhow::Result<Figures> {
    let users = world.args.users;
    let mut conn = AsyncPgConnection::establish(&world.database_url).await?;
    diesel::sql_query(
        "CREATE TABLE IF NOT EXISTS reference_processed_events (event_id text PRIMARY KEY)",
    )
    .execute(&mut conn)
    .await?;
    diesel::sql_query(
        "CREATE TABLE IF NOT EXISTS reference_users (id text PRIMARY KEY, credits bigint NOT NULL)",
    )
    .execute(&mut conn)
    .await?;
    diesel::sql_query(format!(
        "INSERT INTO reference_users SELECT 'ref-user-' || i, 0 FROM generate_series(0, {users}) AS i
         ON CONFLICT DO NOTHING"
    ))
    .execute(&mut conn)
    .await?;
    let script = format!(
        r"\set u random(0, {users})
\set e random(1, 4000000000000000000)
BEGIN;
INSERT INTO reference_processed_events VALUES ('evt_ref_' || CAST(:e AS bigint)) ON CONFLICT DO NOTHING;
UPDATE reference_users SET credits = credits + 500 WHERE id = 'ref-user-' || :u;
COMMIT;
"
    );
    run_pgbench(world, "pgbench: least exactly-once credit", &script).await
}

/// Stores the payments `select` yields (`stripe_intent_id`, `user_id`,
/// `amount_cents`, `amount_received_cents`, `status`), each with its owner
/// first, as the service does.
async fn seed_payments(conn: &mut AsyncPgConnection, select: &str) -> anyhow::Result<()> {
    diesel::sql_query(format!(
        "INSERT INTO intent_owners (stripe_intent_id, user_id)
         SELECT stripe_intent_id, user_id FROM ({select}) AS new"
    ))
    .execute(conn)
    .await?;
    diesel::sql_query(format!(
        "INSERT INTO payments (stripe_intent_id, user_id, amount_cents, amount_received_cents, currency, status)
         SELECT stripe_intent_id, user_id, amount_cents, amount_received_cents, 'usd', status
           FROM ({select}) AS new"
    ))
    .execute(conn)
    .await?;
    Ok(())
}

/// The ceiling of the create path: the same INSERT a new intent makes.
async fn pgbench_insert(world: &World, round: &str) -> anyhow::Result<Figures> {
    let script = format!(
        r"\set e random(1, 4000000000000000000)
WITH owner AS (INSERT INTO intent_owners (stripe_intent_id, user_id) VALUES ('pi_pgbi_{round}_' || CAST(:e AS bigint), 'pgb-user-' || (CAST(:e AS bigint) % {users})) ON CONFLICT DO NOTHING) INSERT INTO payments (stripe_intent_id, user_id, amount_cents, currency, status) VALUES ('pi_pgbi_{round}_' || CAST(:e AS bigint), 'pgb-user-' || (CAST(:e AS bigint) % {users}), 500, 'usd', 'requires_payment_method') ON CONFLICT DO NOTHING RETURNING stripe_intent_id;
",
        users = world.args.users
    );
    run_pgbench(world, "pgbench: one intent's INSERT (ceiling)", &script).await
}

async fn run_pgbench(world: &World, scenario: &str, script: &str) -> anyhow::Result<Figures> {
    let script_path =
        std::env::temp_dir().join(format!("payments-bench-{}.sql", std::process::id()));
    std::fs::write(&script_path, script)?;
    let total = world.args.warmup_seconds + world.args.seconds;
    let output = tokio::process::Command::new("pgbench")
        .args([
            "-n",
            // As the service runs them (diesel-async prepares each statement once).
            "-M",
            "prepared",
            "-c",
            &world.args.connections.to_string(),
            "-j",
            "2",
            "-T",
            &total.to_string(),
            "-f",
        ])
        .arg(&script_path)
        .arg(&world.database_url)
        .output()
        .await
        .context("running pgbench (install postgresql-client / postgresql-contrib)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        // The script stays, to be run by hand.
        bail!(
            "pgbench failed (script kept at {}): {}{}",
            script_path.display(),
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let _ = std::fs::remove_file(&script_path);
    let number_after = |prefix: &str| -> f64 {
        stdout
            .lines()
            .find_map(|line| line.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0.0)
    };
    let tps = number_after("tps = ");
    let transactions = number_after("number of transactions actually processed:") as u64;
    let failed = number_after("number of failed transactions:") as u64;
    let latency = number_after("latency average =");
    Ok(Figures {
        scenario: scenario.into(),
        requests: transactions,
        errors: failed,
        seconds: total as f64,
        requests_per_sec: tps,
        p50_ms: latency,
        p90_ms: 0.0,
        p99_ms: 0.0,
        rss_kib: Vec::new(),
    })
}

#[derive(QueryableByName)]
struct BalanceRow {
    #[diesel(sql_type = Text)]
    user_id: String,
    #[diesel(sql_type = BigInt)]
    balance_cents: i64,
}

async fn balances(conn: &mut AsyncPgConnection) -> anyhow::Result<HashMap<String, i64>> {
    let rows: Vec<BalanceRow> = diesel::sql_query(
        "SELECT user_id, balance_cents FROM balances WHERE user_id LIKE 'bench-user-%'",
    )
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.user_id, row.balance_cents))
        .collect())
}

/// Every user's balance equals the sum of their ledger entries.
async fn check_ledger(database_url: &str) -> anyhow::Result<()> {
    let mut conn = AsyncPgConnection::establish(database_url).await?;
    let rows: Vec<BalanceRow> = diesel::sql_query(
        "SELECT COALESCE(b.user_id, l.user_id) AS user_id, 0::bigint AS balance_cents
           FROM balances b
           FULL JOIN (SELECT user_id, SUM(amount_cents)::bigint AS total FROM ledger_entries GROUP BY user_id) l
             ON l.user_id = b.user_id
          WHERE COALESCE(b.balance_cents, 0) <> COALESCE(l.total, 0)
            AND COALESCE(b.user_id, l.user_id) NOT LIKE 'pgb-user-%'",
    )
    .load(&mut conn)
    .await?;
    ensure!(
        rows.is_empty(),
        "balance differs from ledger sum for {} users",
        rows.len()
    );
    Ok(())
}

/// One paid top-up per bench user, so every balance read in every round
/// finds a row (as the reads of users who topped up do).
async fn seed_balances(database_url: &str, users: u64) -> anyhow::Result<()> {
    let mut conn = AsyncPgConnection::establish(database_url).await?;
    seed_payments(
        &mut conn,
        &format!(
            "SELECT 'pi_seed_' || i AS stripe_intent_id, 'bench-user-' || i AS user_id,
                    500 AS amount_cents, 500 AS amount_received_cents, 'succeeded' AS status
               FROM generate_series(0, {users} - 1) AS i"
        ),
    )
    .await?;
    for sql in [
        "INSERT INTO stripe_events (user_id, event_id, event_type, stripe_intent_id, payload, received_at)
         SELECT user_id, 'evt_seed_' || stripe_intent_id, 'payment_intent.succeeded', stripe_intent_id, '{}', now()
           FROM payments WHERE stripe_intent_id LIKE 'pi_seed_%'"
            .to_owned(),
        "INSERT INTO ledger_entries (user_id, amount_cents, currency, kind, stripe_intent_id, stripe_event_id)
         SELECT user_id, amount_received_cents, 'usd', 'top_up', stripe_intent_id, 'evt_seed_' || stripe_intent_id
           FROM payments WHERE stripe_intent_id LIKE 'pi_seed_%'"
            .to_owned(),
        "INSERT INTO balances (user_id, balance_cents, currency)
         SELECT user_id, amount_received_cents, 'usd' FROM payments WHERE stripe_intent_id LIKE 'pi_seed_%'"
            .to_owned(),
    ] {
        diesel::sql_query(sql).execute(&mut conn).await?;
    }
    Ok(())
}

async fn preload(database_url: &str, count: u64) -> anyhow::Result<()> {
    let mut conn = AsyncPgConnection::establish(database_url).await?;
    seed_payments(
        &mut conn,
        &format!(
            "SELECT 'pi_preload_' || i AS stripe_intent_id, 'preload-user-' || (i % 100000) AS user_id,
                    500 AS amount_cents, 500 AS amount_received_cents, 'succeeded' AS status
               FROM generate_series(1, {count}) AS i"
        ),
    )
    .await?;
    for sql in [
        format!(
            "INSERT INTO stripe_events (user_id, event_id, event_type, stripe_intent_id, payload, received_at)
             SELECT 'preload-user-' || (i % 100000), 'evt_preload_' || i, 'payment_intent.succeeded',
                    'pi_preload_' || i, '{{}}', now()
               FROM generate_series(1, {count}) AS i"
        ),
        "INSERT INTO ledger_entries (user_id, amount_cents, currency, kind, stripe_intent_id, stripe_event_id)
         SELECT user_id, amount_received_cents, 'usd', 'top_up', stripe_intent_id, 'evt_preload_' || substr(stripe_intent_id, 12)
           FROM payments WHERE stripe_intent_id LIKE 'pi_preload_%'"
            .to_owned(),
        "INSERT INTO balances (user_id, balance_cents, currency)
         SELECT user_id, SUM(amount_cents), 'usd' FROM ledger_entries WHERE user_id LIKE 'preload-user-%' GROUP BY user_id"
            .to_owned(),
        "VACUUM ANALYZE".to_owned(),
        "CHECKPOINT".to_owned(),
    ] {
        diesel::sql_query(sql).execute(&mut conn).await?;
    }
    Ok(())
}

fn print_table(figures: &[Figures], ceilings: &[&Figures]) {
    println!(
        "\n{:<40} {:>10} {:>9} {:>9} {:>9} {:>7} {:>10} {:>10}",
        "scenario", "req/s", "p50 ms", "p90 ms", "p99 ms", "errors", "grpc MiB", "edge MiB"
    );
    for f in figures {
        let mib = |name: &str| {
            f.rss_kib
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, k)| *k as f64 / 1024.0)
                .unwrap_or(0.0)
        };
        println!(
            "{:<40} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>7} {:>10.1} {:>10.1}",
            f.scenario,
            f.requests_per_sec,
            f.p50_ms,
            f.p90_ms,
            f.p99_ms,
            f.errors,
            mib("payments-grpc"),
            mib("edge-gateway")
        );
    }
    for ceiling in ceilings {
        println!(
            "{:<40} {:>10.0} {:>9.2} {:>9} {:>9} {:>7}",
            ceiling.scenario, ceiling.requests_per_sec, ceiling.p50_ms, "-", "-", ceiling.errors
        );
    }
    println!("(pgbench reports the average latency, shown under p50)");
}

/// Every scenario, then the pgbench ceilings: those show how much the
/// machine itself drifted between the rounds.
fn print_comparison(empty: &Value, preloaded: &Value) {
    println!("\n== preloaded vs empty (requests/s) ==");
    let rows = |round: &Value| -> Vec<Value> {
        let scenarios = round["scenarios"].as_array().into_iter().flatten();
        let ceilings = [
            &round["pgbench"],
            &round["pgbench_reference"],
            &round["pgbench_insert"],
        ];
        scenarios
            .chain(ceilings.into_iter().filter(|c| c.is_object()))
            .cloned()
            .collect()
    };
    for (e, p) in rows(empty).iter().zip(&rows(preloaded)) {
        let (e_rate, p_rate) = (
            e["requests_per_sec"].as_f64().unwrap_or(0.0),
            p["requests_per_sec"].as_f64().unwrap_or(0.0),
        );
        let change = if e_rate > 0.0 {
            (p_rate / e_rate - 1.0) * 100.0
        } else {
            0.0
        };
        println!(
            "{:<40} {:>10.0} {:>10.0} {:>+8.1} %",
            e["scenario"].as_str().unwrap_or("?"),
            e_rate,
            p_rate,
            change
        );
    }
}

async fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(tokio::net::TcpListener::bind("127.0.0.1:0")
        .await?
        .local_addr()?)
}

fn url_with_path(base: &str, database: &str) -> String {
    let mut url = url::Url::parse(base).expect("server URL");
    url.set_path(&format!("/{database}"));
    url.into()
}

async fn wait_for_grpc(url: &str, started: Instant) -> anyhow::Result<Duration> {
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

async fn wait_for_edge(
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

async fn drop_database(maintenance: &str, name: &str) {
    if let Ok(mut conn) = AsyncPgConnection::establish(maintenance).await {
        let _ = diesel::sql_query(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(name)
        ))
        .execute(&mut conn)
        .await;
    }
}
