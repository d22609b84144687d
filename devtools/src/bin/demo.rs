//! The main job, end to end: brings up payments-grpc and edge-gateway (the
//! release binaries, as processes), the Stripe sandbox and a local key set,
//! then walks one top-up: create intent → confirm with the test card → sync
//! (credited) → signed webhook (nothing left to do) → balance. With
//! --keep-running the stack stays up for manual use; with --web it also
//! serves the web client (`web/dist`, built with `npm run build:sandbox`)
//! and prints the page's URL. The browser tests start it with --no-walk,
//! --fresh-database and --any-ports and read its `demo-ready` line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Parser;
use payments_devtools::http::HttpClient;
use payments_devtools::local::{
    INTERNAL_TOKEN, PROJECT_ID, STRIPE_SECRET_KEY, WEBHOOK_SECRET, serve_key_set,
};
use payments_devtools::process::{sibling_binary_dir, spawn_server, stop_gracefully};
use service_runtime::now_unix;
use stripe_sandbox::{PM_CARD_VISA, Sandbox, SandboxConfig, WebhookTarget};
use tokio::process::Child;

#[derive(Parser)]
#[command(
    name = "demo",
    about = "Run the whole stack locally and walk one top-up end to end"
)]
struct Args {
    /// Keep the stack running after the walk-through (ctrl-c stops it).
    #[arg(long)]
    keep_running: bool,
    /// The demo's database (created if missing).
    #[arg(
        long,
        env = "DEMO_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/payments_demo"
    )]
    database_url: String,
    #[arg(long, default_value = "127.0.0.1:50051")]
    grpc_addr: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:8080")]
    edge_addr: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:12111")]
    sandbox_addr: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:12112")]
    keys_addr: SocketAddr,
    /// The user who tops up.
    #[arg(long, default_value = "demo-user")]
    user: String,
    /// Where payments-grpc and edge-gateway are (default: beside this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Serve the web client built in this directory (e.g. web/dist).
    #[arg(long)]
    web: Option<PathBuf>,
    #[arg(long, default_value = "127.0.0.1:5173")]
    web_addr: SocketAddr,
    /// Skip the walk-through: start the stack and (with --keep-running) wait.
    #[arg(long)]
    no_walk: bool,
    /// A database of its own, made from the migrated template and dropped
    /// when the demo stops (tests), instead of --database-url.
    #[arg(long)]
    fresh_database: bool,
    /// Every address on a free port, so several demos can run at once.
    #[arg(long)]
    any_ports: bool,
    /// How long the dev sign-in's ID tokens last, in seconds.
    #[arg(long, default_value_t = payments_devtools::web::TOKEN_LIFETIME_SECS)]
    token_lifetime_secs: i64,
    /// Print the edge's OpenAPI document and exit (the web client's types
    /// are generated from it).
    #[arg(long)]
    print_openapi: bool,
}

/// `addr`, or with --any-ports a free port of 127.0.0.1.
fn address(args: &Args, addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    if !args.any_ports {
        return Ok(addr);
    }
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// `<server>.log`, or with --any-ports `<server>-<port>.log`.
fn log_name(server: &str, args: &Args, addr: SocketAddr) -> String {
    match args.any_ports {
        true => format!("{server}-{}.log", addr.port()),
        false => format!("{server}.log"),
    }
}

async fn bind(args: &Args, addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    let addr = if args.any_ports {
        "127.0.0.1:0".parse()?
    } else {
        addr
    };
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))
}

/// Where `npm run dev` serves the page (web/vite.config.ts).
const VITE_DEV_ORIGINS: &str = "http://127.0.0.1:5174,http://localhost:5174";

fn step(n: u32, text: &str) {
    println!("\n[{n}] {text}");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.print_openapi {
        println!("{}", edge_gateway::router::document().to_pretty_json()?);
        return Ok(());
    }
    let fresh_database = match args.fresh_database {
        true => Some(payments_test_support::TestDatabase::create().await),
        false => None,
    };
    let database_url = fresh_database
        .as_ref()
        .map_or(args.database_url.clone(), |db| db.url.clone());
    let grpc_addr = address(&args, args.grpc_addr)?;
    let edge_addr = address(&args, args.edge_addr)?;
    let bin_dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => sibling_binary_dir()?,
    };
    let log_dir = bin_dir.join("demo-logs");
    std::fs::create_dir_all(&log_dir)?;

    step(
        1,
        "Starting the Stripe sandbox, the local Firebase key set, payments-grpc and edge-gateway",
    );
    let edge_url = format!("http://{edge_addr}");
    let sandbox = Sandbox::start(
        bind(&args, args.sandbox_addr).await?,
        SandboxConfig {
            webhook: Some(WebhookTarget {
                url: format!("{edge_url}/stripe/webhook"),
                secret: WEBHOOK_SECRET.into(),
            }),
            ..SandboxConfig::default()
        },
    )
    .await;
    let sandbox_url = sandbox.url();
    let keys_listener = bind(&args, args.keys_addr).await?;
    let keys_url = format!("http://{}/jwks.json", keys_listener.local_addr()?);
    serve_key_set(keys_listener).await;
    let web_url = match &args.web {
        Some(dist) => {
            anyhow::ensure!(
                dist.join("index.html").exists(),
                "{} has no index.html: build the web client first (cd web && npm ci && npm run build:sandbox)",
                dist.display()
            );
            let config = payments_devtools::web::DevConfig {
                api_base_url: edge_url.clone(),
                sandbox_url: sandbox.url(),
                token_lifetime_secs: args.token_lifetime_secs,
            };
            let listener = bind(&args, args.web_addr).await?;
            let addr = payments_devtools::web::serve(listener, dist, config).await;
            Some(format!("http://{addr}"))
        }
        None => None,
    };
    let metrics_addr = if args.any_ports { "127.0.0.1:0" } else { "" };
    let grpc_addr_text = grpc_addr.to_string();
    let mut grpc_env = vec![
        ("DATABASE_URL", database_url.as_str()),
        ("STRIPE_SECRET_KEY", STRIPE_SECRET_KEY),
        ("STRIPE_API_BASE", sandbox_url.as_str()),
        ("PAYMENTS_GRPC_ADDR", grpc_addr_text.as_str()),
        ("PAYMENTS_INTERNAL_TOKEN", INTERNAL_TOKEN),
    ];
    let edge_addr_text = edge_addr.to_string();
    let grpc_url = format!("http://{grpc_addr}");
    let mut edge_env = vec![
        ("EDGE_ADDR", edge_addr_text.as_str()),
        ("PAYMENTS_GRPC_URL", grpc_url.as_str()),
        ("PAYMENTS_INTERNAL_TOKEN", INTERNAL_TOKEN),
        ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ("FIREBASE_PROJECT_ID", PROJECT_ID),
        ("FIREBASE_JWKS_URL", keys_url.as_str()),
    ];
    // The page's origin, and Vite's dev server (`npm run dev` in web/).
    let origins = web_url
        .as_ref()
        .map(|origin| format!("{origin},{VITE_DEV_ORIGINS}"));
    if let Some(origins) = &origins {
        edge_env.push(("CORS_ALLOWED_ORIGINS", origins.as_str()));
    }
    if !metrics_addr.is_empty() {
        grpc_env.push(("PAYMENTS_METRICS_ADDR", metrics_addr));
        edge_env.push(("EDGE_METRICS_ADDR", metrics_addr));
    }

    let mut grpc = spawn_server(
        &bin_dir.join("payments-grpc"),
        &log_dir.join(log_name("payments-grpc", &args, grpc_addr)),
        &grpc_env,
    )?;
    let mut edge = spawn_server(
        &bin_dir.join("edge-gateway"),
        &log_dir.join(log_name("edge-gateway", &args, edge_addr)),
        &edge_env,
    )?;
    let http = HttpClient::new();
    let started = Instant::now();
    wait_until_ready(&http, &edge_url, &mut grpc, &mut edge).await?;
    println!(
        "    ready in {} ms (logs in {})",
        started.elapsed().as_millis(),
        log_dir.display()
    );

    let token = edge_gateway::testing::id_token(PROJECT_ID, &args.user, now_unix());
    if !args.no_walk {
        walk(&http, &edge_url, &sandbox, &args.user, &token).await?;
    }

    if args.keep_running {
        print_manual_use(
            &args,
            grpc_addr,
            &edge_url,
            &token,
            &sandbox.url(),
            &log_dir,
        );
        if let Some(web_url) = &web_url {
            println!(
                "\nThe web client: open {web_url}/ in a browser, sign in with any user id and\n\
                 top up with the card 4242 4242 4242 4242 (any future expiry, any CVC)."
            );
        }
        // One line for programs that start the demo (the browser tests).
        println!(
            "demo-ready {}",
            serde_json::json!({
                "web_url": web_url,
                "edge_url": edge_url,
                "grpc_addr": grpc_addr.to_string(),
                "sandbox_url": sandbox.url(),
                "internal_token": INTERNAL_TOKEN,
            })
        );
        tokio::select! {
            _ = service_runtime::shutdown_signal() => println!("\nstopping"),
            status = grpc.wait() => println!("payments-grpc exited: {status:?}"),
            status = edge.wait() => println!("edge-gateway exited: {status:?}"),
        }
    }
    stop_gracefully(&mut edge).await;
    stop_gracefully(&mut grpc).await;
    drop(fresh_database);
    Ok(())
}

/// The walk-through: one $20 top-up, step by step, as the SPA and Stripe.js
/// would make it.
async fn walk(
    http: &HttpClient,
    edge_url: &str,
    sandbox: &Sandbox,
    user: &str,
    token: &str,
) -> anyhow::Result<()> {
    step(
        2,
        &format!(
            "GET /balance as {:?} (a Firebase-shaped ID token signed by the dev key)",
            user
        ),
    );
    let (status, balance) = get_balance(http, edge_url, token).await;
    ensure!(status == 200, "GET /balance answered {status}: {balance}");
    let before = balance["balance_cents"].as_i64().context("balance_cents")?;
    println!("    {status} {balance}");

    step(
        3,
        "POST /payments/create-payment-intent {\"amount_usd\": 20}",
    );
    let (status, intent) = http
        .send(
            "POST",
            &format!("{edge_url}/payments/create-payment-intent"),
            Some(token),
            &[],
            br#"{"amount_usd": 20}"#.to_vec(),
        )
        .await;
    ensure!(
        status == 200,
        "create-payment-intent answered {status}: {intent}"
    );
    let intent_id = intent["intent_id"]
        .as_str()
        .context("intent_id")?
        .to_owned();
    println!(
        "    {status} intent {intent_id}: {} {} cents, status {}",
        intent["currency"], intent["amount"], intent["status"]
    );

    step(
        4,
        &format!("Confirming {intent_id} with {PM_CARD_VISA}, as Stripe.js would in the browser"),
    );
    let (status, confirmed) = http
        .send(
            "POST",
            &format!("{}/v1/payment_intents/{intent_id}/confirm", sandbox.url()),
            Some(STRIPE_SECRET_KEY),
            &[("content-type", "application/x-www-form-urlencoded")],
            format!("payment_method={PM_CARD_VISA}").into_bytes(),
        )
        .await;
    ensure!(status == 200, "confirm answered {status}: {confirmed}");
    println!(
        "    {status} status {}, amount_received {}",
        confirmed["status"], confirmed["amount_received"]
    );

    step(
        5,
        "POST /payments/{intent_id}/sync, as the SPA does right after stripe.confirmPayment",
    );
    let (status, synced) = http
        .send(
            "POST",
            &format!("{edge_url}/payments/{intent_id}/sync"),
            Some(token),
            &[],
            Vec::new(),
        )
        .await;
    ensure!(status == 200, "sync answered {status}: {synced}");
    println!("    {status} {synced}");
    ensure!(
        synced["balance_cents"].as_i64() == Some(before + 2000),
        "the sync did not credit the payment: {synced}"
    );

    step(
        6,
        "The sandbox delivers the signed webhooks to POST /stripe/webhook (the credit is already booked)",
    );
    tokio::time::timeout(Duration::from_secs(30), sandbox.settled())
        .await
        .context("webhooks not delivered in 30 s")?;
    for event in sandbox
        .events()
        .iter()
        .filter(|e| e["data"]["object"]["id"] == intent_id.as_str())
    {
        println!(
            "    delivered {} {}",
            event["type"].as_str().unwrap_or("?"),
            event["id"].as_str().unwrap_or("?")
        );
    }
    let stats = sandbox.stats();
    println!(
        "    deliveries {}, attempts {}, answered 2xx {}",
        stats.deliveries, stats.attempts, stats.delivered
    );

    step(7, "GET /balance again");
    let (status, balance) = get_balance(http, edge_url, token).await;
    println!("    {status} {balance}");
    let after = balance["balance_cents"].as_i64().context("balance_cents")?;
    ensure!(
        after == before + 2000,
        "expected {} cents, found {after}",
        before + 2000
    );
    println!(
        "\nTop-up complete: {:?} went from {before} to {after} cents (+$20.00).",
        user
    );

    Ok(())
}

async fn wait_until_ready(
    http: &HttpClient,
    edge_url: &str,
    grpc: &mut Child,
    edge: &mut Child,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for (name, child) in [("payments-grpc", &mut *grpc), ("edge-gateway", &mut *edge)] {
            if let Some(status) = child.try_wait()? {
                bail!("{name} exited with {status}; see its log");
            }
        }
        let readyz = format!("{edge_url}/readyz");
        let ready = http.try_send("GET", &readyz, None, &[], Vec::new());
        if matches!(
            tokio::time::timeout(Duration::from_secs(2), ready).await,
            Ok(Ok((200, _)))
        ) {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "the stack was not ready within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn get_balance(http: &HttpClient, edge_url: &str, token: &str) -> (u16, serde_json::Value) {
    http.send(
        "GET",
        &format!("{edge_url}/balance"),
        Some(token),
        &[],
        Vec::new(),
    )
    .await
}

fn print_manual_use(
    args: &Args,
    grpc: SocketAddr,
    edge_url: &str,
    token: &str,
    sandbox_url: &str,
    log_dir: &Path,
) {
    println!(
        r#"
The stack keeps running (ctrl-c stops it). Try:

  export TOKEN='{token}'
  curl -s {edge_url}/balance -H "authorization: Bearer $TOKEN"
  curl -s {edge_url}/payments/create-payment-intent -H "authorization: Bearer $TOKEN" \
       -H 'content-type: application/json' -H 'idempotency-key: try-1' -d '{{"amount_usd": 10}}'
  curl -s {sandbox_url}/v1/payment_intents/<intent_id>/confirm -u {STRIPE_SECRET_KEY}: -d payment_method=pm_card_visa
       (pm_card_chargeDeclined declines; pm_card_authenticationRequired needs
        curl -s {sandbox_url}/sandbox/payment_intents/<intent_id>/authenticate -d outcome=pass)

  grpcurl -plaintext {grpc} list
  grpcurl -plaintext -H 'authorization: Bearer {INTERNAL_TOKEN}' -d '{{"user_id": "{user}"}}' \
          {grpc} payments.v1.PaymentsService/GetBalance
  grpcurl -plaintext -d '{{"service": "payments.v1.PaymentsService"}}' {grpc} grpc.health.v1.Health/Check

A token for another user: rerun with --user <id>. Logs: {logs}"#,
        user = args.user,
        logs = log_dir.display(),
    );
}
