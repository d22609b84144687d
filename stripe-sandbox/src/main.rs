//! The Stripe sandbox as a standalone server, for manual use beside the stack.

use std::net::SocketAddr;

use clap::Parser;
use stripe_sandbox::{Sandbox, SandboxConfig, WebhookTarget};

#[derive(Parser)]
#[command(
    name = "stripe-sandbox",
    about = "A local stand-in for Stripe's PaymentIntent API and webhooks (tests and development only)"
)]
struct Args {
    /// Address to listen on; point STRIPE_API_BASE at it.
    #[arg(long, env = "STRIPE_SANDBOX_ADDR", default_value = "127.0.0.1:12111")]
    addr: SocketAddr,
    /// Where to deliver signed webhooks, e.g. http://127.0.0.1:8080/stripe/webhook.
    #[arg(long, env = "SANDBOX_WEBHOOK_URL")]
    webhook_url: Option<String>,
    /// The whsec_… secret webhooks are signed with.
    #[arg(
        long,
        env = "STRIPE_WEBHOOK_SECRET",
        default_value = "whsec_local_sandbox_secret",
        hide_env_values = true
    )]
    webhook_secret: String,
    /// Deliver every event twice.
    #[arg(long)]
    duplicate_events: bool,
    /// Deliver events in shuffled order.
    #[arg(long)]
    shuffle_events: bool,
    /// Never deliver events of this type (repeatable): a lost webhook, for
    /// reconciliation to heal from the Events API.
    #[arg(long = "drop-event", value_name = "TYPE")]
    drop_events: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_runtime::logging::init(service_runtime::logging::LogFormat::Text);
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    let sandbox = Sandbox::start(
        listener,
        SandboxConfig {
            webhook: args.webhook_url.map(|url| WebhookTarget {
                url,
                secret: args.webhook_secret,
            }),
            duplicate_events: args.duplicate_events,
            shuffle_events: args.shuffle_events,
            drop_event_types: args.drop_events,
            ..SandboxConfig::default()
        },
    )
    .await;
    println!("stripe-sandbox listening on {}", sandbox.url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
