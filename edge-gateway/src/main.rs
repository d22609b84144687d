// mimalloc: fewer cycles in malloc/free on the request path (see docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::Parser;
use edge_gateway::Application;
use edge_gateway::config::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    service_runtime::logging::init(config.log_format);
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("edge-gateway: {err:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let upstream = config.payments_grpc_url.clone();
    let application = Application::build(config).await?;
    tracing::info!(addr = %application.local_addr(), %upstream, "edge-gateway serving");
    application
        .run_until(service_runtime::shutdown_signal())
        .await;
    tracing::info!("edge-gateway stopped");
    Ok(())
}
