// mimalloc: fewer cycles in malloc/free on the request path (see README, performance).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use payments_core::PaymentsService;
use payments_core::db::{self, PoolConfig};
use payments_core::stripe::{StripeConfig, StripeGateway};
use payments_grpc::auth::InternalToken;
use payments_grpc::config::{Cli, Command, Config, LogFormat, required};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.config.log_format);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(cli.config).await,
        Command::Migrate => migrate(&cli.config).await.map(|_| ()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("payments-grpc: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn migrate(config: &Config) -> anyhow::Result<()> {
    db::create_database_if_missing(&config.database_url)
        .await
        .context("creating the database")?;
    let applied = db::run_migrations(&config.database_url)
        .await
        .context("applying migrations")?;
    tracing::info!(applied = ?applied, "migrations up to date");
    Ok(())
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // Check every required setting before touching anything.
    let secret_key = required(
        &config.stripe_secret_key,
        "STRIPE_SECRET_KEY",
        "stripe-secret-key",
    )?;
    let token = required(
        &config.payments_internal_token,
        "PAYMENTS_INTERNAL_TOKEN",
        "payments-internal-token",
    )?;
    let token = InternalToken::new(token).context("PAYMENTS_INTERNAL_TOKEN is empty")?;

    migrate(&config).await?;
    let pool = db::connect_pool(
        &config.database_url,
        &PoolConfig {
            max_size: config.database_pool_size,
            ..PoolConfig::default()
        },
    )
    .await
    .context("connecting to Postgres")?;
    let gateway = StripeGateway::new(&StripeConfig {
        secret_key,
        api_base: config.stripe_api_base.clone(),
        timeout: config.stripe_timeout(),
        max_attempts: config.stripe_max_attempts,
        retry_backoff: std::time::Duration::from_millis(200),
    })
    .context("configuring the Stripe client")?;
    let core = Arc::new(PaymentsService::new(
        pool,
        gateway,
        config.topup_tiers_usd.clone(),
    ));

    let listener = tokio::net::TcpListener::bind(config.payments_grpc_addr)
        .await
        .with_context(|| format!("binding {}", config.payments_grpc_addr))?;
    tracing::info!(addr = %listener.local_addr()?, tiers = %config.topup_tiers_usd, "payments-grpc serving");
    payments_grpc::serve(core, token, listener, shutdown_signal()).await?;
    tracing::info!("payments-grpc stopped");
    Ok(())
}

/// Resolves on ctrl-c or SIGTERM.
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
    tracing::info!("shutting down: draining in-flight calls");
}
