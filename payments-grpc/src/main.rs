// mimalloc: fewer cycles in malloc/free on the request path (see docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::Parser;
use payments_grpc::Application;
use payments_grpc::config::{Cli, Command, Config};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    service_runtime::logging::init(cli.config.log_format);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(cli.config).await,
        Command::Migrate => payments_grpc::migrate(&cli.config.database_url)
            .await
            .map(|applied| tracing::info!(applied = ?applied, "migrations up to date")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("payments-grpc: {err:#}");
            ExitCode::from(2)
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let tls = config.payments_tls_cert_file.is_some();
    let mutual_tls = config.payments_tls_client_ca_file.is_some();
    let tiers = config.topup_tiers_usd.to_string();
    let application = Application::build(config).await?;
    tracing::info!(addr = %application.local_addr(), tls, mutual_tls, %tiers, "payments-grpc serving");
    application
        .run_until(service_runtime::shutdown_signal())
        .await?;
    tracing::info!("payments-grpc stopped");
    Ok(())
}
