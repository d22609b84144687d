//! The benchmark: every route of both real binaries (release builds, as
//! processes) against a fresh database, a fast Stripe stand-in, and the
//! Postgres ceiling measured by pgbench with the same SQL as one webhook.
//! Prints figures and writes them as JSON. `--smoke` runs a few seconds with
//! every correctness check on and no figure asserted (CI).

// The load generator should cost as little CPU as it can: it shares the machine.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod baseline;
mod data;
mod fast_stripe;
mod load;
mod pgbench;
mod report;
mod scenarios;
mod spends;
mod watch;
mod wire;
mod world;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use edge_gateway::testing::id_token;
use payments_core::db::maintenance_url;
use payments_devtools::local::{PROJECT_ID, serve_key_set};
use payments_devtools::process::{sibling_binary_dir, stop_gracefully};
use serde_json::{Value, json};
use service_runtime::now_unix;

use crate::data::{check_ledger, preload, seed_balances};
use crate::load::Figures;
use crate::pgbench::{pgbench, pgbench_insert, pgbench_reference};
use crate::report::{print_comparison, print_table};
use crate::scenarios::{
    balance_over_grpc, balance_over_rest, create_intents, metrics_cost, webhooks,
};
use crate::spends::{pgbench_spend, spends};
use crate::world::{Setting, World, drop_database, start_world, with_rss};

pub(crate) const GRPC_CONNECTIONS: usize = 4;

#[derive(Parser, Clone)]
#[command(
    name = "bench",
    about = "Measure every route against the Postgres ceiling"
)]
pub(crate) struct Args {
    /// A few seconds per scenario, correctness checks on, small preload (CI).
    #[arg(long)]
    pub(crate) smoke: bool,
    /// Concurrent clients per scenario.
    #[arg(long, default_value_t = 64)]
    pub(crate) connections: usize,
    /// Measured seconds per scenario (after the warm-up).
    #[arg(long, default_value_t = 10)]
    pub(crate) seconds: u64,
    #[arg(long, default_value_t = 2)]
    pub(crate) warmup_seconds: u64,
    /// Users the load is spread over.
    #[arg(long, default_value_t = 1000)]
    pub(crate) users: u64,
    /// Payments (with their events and ledger rows) preloaded for the second round.
    #[arg(long, default_value_t = 1_000_000)]
    pub(crate) preload: u64,
    /// The Postgres server; the benchmark creates and drops its own database there.
    #[arg(
        long,
        env = "TEST_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub(crate) server_url: String,
    /// Postgres connections of payments-grpc.
    #[arg(long, default_value_t = 16)]
    pub(crate) pool_size: u32,
    /// Tokio worker threads of each server (their TOKIO_WORKER_THREADS). One:
    /// with both servers, Postgres and the load on two cores, a second worker
    /// per server only adds cross-thread wake-ups (see docs/performance.md).
    #[arg(long, default_value_t = 1)]
    pub(crate) server_threads: usize,
    /// Run only these scenarios (comma-separated: rest, metrics, grpc, webhook, create, spend, watch, pgbench).
    #[arg(long, value_delimiter = ',')]
    pub(crate) only: Vec<String>,
    /// Open the watch scenario's streams over HTTP/1.1, a connection each,
    /// instead of HTTP/2 (cleartext, up to 64 on a connection, as a proxy
    /// or a browser over TLS would).
    #[arg(long)]
    pub(crate) watch_http1: bool,
    /// Where to write the figures.
    #[arg(long, default_value = "target/bench/last.json")]
    pub(crate) out: PathBuf,
    /// Keep this run's figures as the baseline (tests/bench-baseline.json,
    /// committed) that later runs are compared with.
    #[arg(long)]
    pub(crate) save_baseline: bool,
    /// Where payments-grpc and edge-gateway are (default: beside this binary).
    #[arg(long)]
    pub(crate) bin_dir: Option<PathBuf>,
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
    compare_with_baseline(&args, &report)
}

/// Prints each figure's ratio to the kept baseline (not for a smoke run:
/// its seconds are too few to compare), and keeps this run's when asked.
fn compare_with_baseline(args: &Args, report: &serde_json::Value) -> anyhow::Result<()> {
    let now = baseline::of_report(report);
    let path = baseline::path();
    let mut kept = baseline::read(&path).unwrap_or_default();
    if !args.smoke {
        println!("\n== against the baseline ({}) ==", path.display());
        for line in baseline::compare(&kept, &now) {
            println!("{line}");
        }
    }
    if args.save_baseline {
        // A run of some scenarios replaces only theirs.
        kept.extend(now);
        std::fs::write(&path, serde_json::to_vec_pretty(&kept)?)?;
        println!("baseline kept in {}", path.display());
    }
    Ok(())
}

/// The scenarios, in the order they run and are printed.
#[derive(Clone, Copy, PartialEq)]
enum Scenario {
    Rest,
    Metrics,
    Grpc,
    Webhook,
    Create,
    Spend,
    Watch,
    PgbenchInsert,
    Pgbench,
}

impl Scenario {
    const ALL: [Scenario; 9] = [
        Scenario::Rest,
        Scenario::Metrics,
        Scenario::Grpc,
        Scenario::Webhook,
        Scenario::Create,
        Scenario::Spend,
        Scenario::Watch,
        Scenario::PgbenchInsert,
        Scenario::Pgbench,
    ];

    /// Its name for `--only`.
    fn name(self) -> &'static str {
        match self {
            Scenario::Rest => "rest",
            Scenario::Metrics => "metrics",
            Scenario::Grpc => "grpc",
            Scenario::Webhook => "webhook",
            Scenario::Create => "create",
            Scenario::Spend => "spend",
            Scenario::Watch => "watch",
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
    /// One spend per transaction, for the coalesced spends' ratio.
    spend_ceiling: Option<Figures>,
    spend_rate: f64,
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
        Scenario::Metrics => {
            let (runs, cost) = metrics_cost(world).await?;
            println!(
                "    metrics ({} database): REST throughput while both /metrics are scraped every second {:+.1} %;\n    \
                 a scrape takes {:.0} µs of edge-gateway's CPU ({:.2} ms to answer) and {:.0} µs of payments-grpc's ({:.2} ms), \
                 a REST request {:.0} µs of both; scraped every second at {:.0} req/s: {:.3} % of the servers' CPU",
                world.label,
                cost.throughput_change * 100.0,
                cost.cpu_per_scrape[0] * 1e6,
                cost.wall_per_scrape[0] * 1e3,
                cost.cpu_per_scrape[1] * 1e6,
                cost.wall_per_scrape[1] * 1e3,
                cost.cpu_per_request * 1e6,
                cost.plain_rate,
                cost.cpu_share() * 100.0,
            );
            round
                .scenarios
                .extend(runs.into_iter().map(|run| with_rss(world, run)));
        }
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
        Scenario::Spend => {
            let spread = spends(world, false).await?;
            round.spend_rate = spread.requests_per_sec;
            round.scenarios.push(with_rss(world, spread));
            let hot = spends(world, true).await?;
            round.scenarios.push(with_rss(world, hot));
            round.spend_ceiling = Some(pgbench_spend(world).await?);
        }
        // Once, on the first stack: it measures the edge, not the data.
        Scenario::Watch if world.label == "empty" => {
            let (streams, samples) = if world.args.smoke {
                (300, 50)
            } else {
                (10_000, 500)
            };
            // The smoke run checks both protocols; a measuring run one, as
            // an edge's memory after 10,000 streams closed says little.
            let protocols = match (world.args.smoke, world.args.watch_http1) {
                (true, _) => vec![true, false],
                (false, http1) => vec![!http1],
            };
            for http2 in protocols {
                round
                    .scenarios
                    .push(watch::watchers(world, streams, samples, http2).await?);
            }
        }
        Scenario::Watch => {}
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
        .chain(&round.spend_ceiling)
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
    let spend_ratio = match &round.spend_ceiling {
        Some(alone) if alone.requests_per_sec > 0.0 => round.spend_rate / alone.requests_per_sec,
        _ => 0.0,
    };
    if spend_ratio > 0.0 {
        println!(
            "SpendCredits (coalesced) / pgbench one spend per transaction = {:.0} %",
            spend_ratio * 100.0
        );
    }
    check_ledger(&world.database_url).await?;
    Ok(json!({
        "scenarios": round.scenarios,
        "pgbench": round.ceiling,
        "pgbench_reference": round.reference,
        "pgbench_insert": round.insert_ceiling,
        "pgbench_spend": round.spend_ceiling,
        "spend_to_one_per_transaction_ratio": spend_ratio,
        "webhook_to_ceiling_ratio": ratio,
    }))
}
