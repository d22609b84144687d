// mimalloc: fewer cycles in malloc/free on the request path (see README, performance).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use edge_gateway::AppState;
use edge_gateway::config::{Config, LogFormat, parse_tiers, required};
use edge_gateway::firebase::TokenVerifier;
use edge_gateway::keys::KeyCache;
use edge_gateway::stripe_signature::WebhookSecret;
use edge_gateway::upstream::Upstream;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match config.log_format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs.init(),
    }
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("edge-gateway: {err:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let token = required(
        &config.payments_internal_token,
        "PAYMENTS_INTERNAL_TOKEN",
        "payments-internal-token",
    )?;
    let secrets = required(
        &config.stripe_webhook_secret,
        "STRIPE_WEBHOOK_SECRET",
        "stripe-webhook-secret",
    )?;
    let project_id = required(
        &config.firebase_project_id,
        "FIREBASE_PROJECT_ID",
        "firebase-project-id",
    )?;
    let webhook_secrets = WebhookSecret::parse_list(&secrets);
    let cors_allowed_origins = config
        .cors_allowed_origins
        .split(',')
        .map(str::trim)
        .filter(|origin| !origin.is_empty())
        .map(|origin| {
            origin
                .parse()
                .with_context(|| format!("CORS_ALLOWED_ORIGINS: {origin:?}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;

    let state = Arc::new(AppState {
        verifier: TokenVerifier::new(&project_id, config.firebase_clock_leeway_secs),
        verified_tokens: edge_gateway::firebase::VerifiedTokens::new(10_000),
        keys: KeyCache::new(&config.firebase_jwks_url).map_err(anyhow::Error::msg)?,
        webhook_secrets,
        upstream: Upstream::new(&config.payments_grpc_url, &token).context("PAYMENTS_GRPC_URL")?,
        tiers_usd: parse_tiers(&config.topup_tiers_usd)?,
        webhook_body_limit: config.webhook_body_limit_bytes,
        cors_allowed_origins,
    });
    // Warm the key cache; a failure here is retried on the first request.
    let warm = state.clone();
    tokio::spawn(async move {
        if let Err(err) = warm.keys.keys().await {
            tracing::warn!(error = %err, "Firebase keys not fetched at start");
        }
    });

    let listener = tokio::net::TcpListener::bind(config.edge_addr)
        .await
        .with_context(|| format!("binding {}", config.edge_addr))?;
    tracing::info!(addr = %listener.local_addr()?, upstream = %config.payments_grpc_url, "edge-gateway serving");
    edge_gateway::serve(
        listener,
        state,
        Duration::from_millis(config.request_timeout_ms),
        shutdown_signal(),
    )
    .await?;
    tracing::info!("edge-gateway stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: draining requests");
}
