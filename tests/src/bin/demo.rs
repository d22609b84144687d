//! The main job, end to end: brings up payments-grpc and edge-gateway (the
//! release binaries, as processes), the Stripe sandbox and a local key set,
//! then walks one top-up: create intent → confirm with the test card → sync
//! (credited) → signed webhook (nothing left to do) → balance. With --keep-running the stack stays up for manual use.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Parser;
use payments_tests::process::{sibling_binary_dir, spawn_server, stop_gracefully};
use payments_tests::stack::{
    HttpClient, INTERNAL_TOKEN, PROJECT_ID, STRIPE_SECRET_KEY, WEBHOOK_SECRET, now_unix,
    serve_key_set,
};
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
}

fn step(n: u32, text: &str) {
    println!("\n[{n}] {text}");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
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
    let edge_url = format!("http://{}", args.edge_addr);
    let sandbox = Sandbox::start(
        tokio::net::TcpListener::bind(args.sandbox_addr)
            .await
            .with_context(|| format!("binding {}", args.sandbox_addr))?,
        SandboxConfig {
            webhook: Some(WebhookTarget {
                url: format!("{edge_url}/stripe/webhook"),
                secret: WEBHOOK_SECRET.into(),
            }),
            ..SandboxConfig::default()
        },
    )
    .await;
    serve_key_set(
        tokio::net::TcpListener::bind(args.keys_addr)
            .await
            .with_context(|| format!("binding {}", args.keys_addr))?,
    )
    .await;
    let keys_url = format!("http://{}/jwks.json", args.keys_addr);

    let mut grpc = spawn_server(
        &bin_dir.join("payments-grpc"),
        &log_dir.join("payments-grpc.log"),
        &[
            ("DATABASE_URL", args.database_url.as_str()),
            ("STRIPE_SECRET_KEY", STRIPE_SECRET_KEY),
            ("STRIPE_API_BASE", &sandbox.url()),
            ("PAYMENTS_GRPC_ADDR", &args.grpc_addr.to_string()),
            ("PAYMENTS_INTERNAL_TOKEN", INTERNAL_TOKEN),
        ],
    )?;
    let mut edge = spawn_server(
        &bin_dir.join("edge-gateway"),
        &log_dir.join("edge-gateway.log"),
        &[
            ("EDGE_ADDR", &args.edge_addr.to_string()),
            ("PAYMENTS_GRPC_URL", &format!("http://{}", args.grpc_addr)),
            ("PAYMENTS_INTERNAL_TOKEN", INTERNAL_TOKEN),
            ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET),
            ("FIREBASE_PROJECT_ID", PROJECT_ID),
            ("FIREBASE_JWKS_URL", &keys_url),
        ],
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
    step(
        2,
        &format!(
            "GET /balance as {:?} (a Firebase-shaped ID token signed by the dev key)",
            args.user
        ),
    );
    let (status, balance) = get_balance(&http, &edge_url, &token).await;
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
            Some(&token),
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
            Some(&token),
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
    let (status, balance) = get_balance(&http, &edge_url, &token).await;
    println!("    {status} {balance}");
    let after = balance["balance_cents"].as_i64().context("balance_cents")?;
    ensure!(
        after == before + 2000,
        "expected {} cents, found {after}",
        before + 2000
    );
    println!(
        "\nTop-up complete: {:?} went from {before} to {after} cents (+$20.00).",
        args.user
    );

    if args.keep_running {
        print_manual_use(&args, &edge_url, &token, &sandbox.url(), &log_dir);
        tokio::select! {
            _ = tokio::signal::ctrl_c() => println!("\nstopping"),
            status = grpc.wait() => println!("payments-grpc exited: {status:?}"),
            status = edge.wait() => println!("edge-gateway exited: {status:?}"),
        }
    }
    stop_gracefully(&mut edge).await;
    stop_gracefully(&mut grpc).await;
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

fn print_manual_use(args: &Args, edge_url: &str, token: &str, sandbox_url: &str, log_dir: &Path) {
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
        grpc = args.grpc_addr,
        user = args.user,
        logs = log_dir.display(),
    );
}
