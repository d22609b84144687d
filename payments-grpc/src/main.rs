// mimalloc: fewer cycles in malloc/free on the request path (see README, performance).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use payments_core::PaymentsService;
use payments_core::db;
use payments_core::stripe::StripeGateway;
use payments_grpc::auth::InternalToken;
use payments_grpc::config::{Cli, Command, Config};
use service_runtime::required;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    service_runtime::logging::init(cli.config.log_format);
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
    // Check every setting before touching anything.
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
    config.check()?;
    let tls = config.tls()?;

    migrate(&config).await?;
    let pool = db::connect_pool(&config.database_url, &config.pool_config())
        .await
        .context("connecting to Postgres")?;
    let gateway = StripeGateway::new(&config.stripe_config(secret_key))
        .context("configuring the Stripe client")?;
    let core = Arc::new(
        PaymentsService::new(pool, gateway, config.topup_tiers_usd.clone())
            .with_open_intent_limit(config.open_intent_limit()),
    );

    if config.stripe_event_payload_retention_days > 0 {
        payments_grpc::spawn_payload_retention(
            core.clone(),
            chrono::Duration::days(config.stripe_event_payload_retention_days.into()),
        );
    }

    let listener = tokio::net::TcpListener::bind(config.payments_grpc_addr)
        .await
        .with_context(|| format!("binding {}", config.payments_grpc_addr))?;
    tracing::info!(
        addr = %listener.local_addr()?,
        tls = config.payments_tls_cert_file.is_some(),
        mutual_tls = config.payments_tls_client_ca_file.is_some(),
        tiers = %config.topup_tiers_usd,
        "payments-grpc serving"
    );
    payments_grpc::serve_with_limits(
        core,
        token,
        listener,
        &config.limits(),
        tls,
        service_runtime::shutdown_signal(),
    )
    .await?;
    tracing::info!("payments-grpc stopped");
    Ok(())
}
