//! Configuration: every setting is an environment variable and a flag.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use payments_core::domain::Tiers;

#[derive(Parser)]
#[command(
    name = "payments-grpc",
    version,
    about = "The payments gRPC service (payments.v1.PaymentsService)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Subcommand, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Apply pending database migrations, then serve (the default).
    Serve,
    /// Create the database if needed, apply pending migrations and exit.
    Migrate,
}

#[derive(Args, Clone)]
pub struct Config {
    /// Postgres URL; the database is created if it does not exist.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://localhost/payments",
        hide_env_values = true
    )]
    pub database_url: String,
    /// Stripe secret key (sk_test_… or sk_live_…). Required to serve.
    #[arg(long, env = "STRIPE_SECRET_KEY", hide_env_values = true)]
    pub stripe_secret_key: Option<String>,
    /// Stripe API base URL; point it at a local stand-in in tests.
    #[arg(
        long,
        env = "STRIPE_API_BASE",
        default_value = "https://api.stripe.com"
    )]
    pub stripe_api_base: String,
    /// Per-attempt timeout of Stripe calls, in milliseconds.
    #[arg(long, env = "STRIPE_TIMEOUT_MS", default_value_t = 10_000)]
    pub stripe_timeout_ms: u64,
    /// Attempts per Stripe call; retries reuse the same Idempotency-Key.
    #[arg(long, env = "STRIPE_MAX_ATTEMPTS", default_value_t = 3)]
    pub stripe_max_attempts: u32,
    /// Address the gRPC server listens on.
    #[arg(long, env = "PAYMENTS_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub payments_grpc_addr: SocketAddr,
    /// Bearer token every PaymentsService call must carry. Required to serve.
    #[arg(long, env = "PAYMENTS_INTERNAL_TOKEN", hide_env_values = true)]
    pub payments_internal_token: Option<String>,
    /// Top-up tiers in whole US dollars, comma-separated.
    #[arg(long, env = "TOPUP_TIERS_USD", default_value = "5,10,20,50", value_parser = parse_tiers)]
    pub topup_tiers_usd: Tiers,
    /// Postgres connections in the pool.
    #[arg(long, env = "DATABASE_POOL_SIZE", default_value_t = 16)]
    pub database_pool_size: u32,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum LogFormat {
    Text,
    Json,
}

fn parse_tiers(list: &str) -> Result<Tiers, String> {
    Tiers::parse_usd(list).map_err(|err| err.to_string())
}

impl Config {
    pub fn stripe_timeout(&self) -> Duration {
        Duration::from_millis(self.stripe_timeout_ms)
    }
}

/// A required setting given neither as a variable nor as a flag: the message
/// names both, on one line.
pub fn required(value: &Option<String>, variable: &str, flag: &str) -> anyhow::Result<String> {
    match value.as_deref() {
        Some(value) if !value.is_empty() => Ok(value.to_owned()),
        _ => {
            anyhow::bail!("{variable} is required (set the environment variable or pass --{flag})")
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn every_variable_is_a_flag_in_help() {
        let help = Cli::command().render_long_help().to_string();
        for variable in [
            "DATABASE_URL",
            "STRIPE_SECRET_KEY",
            "STRIPE_API_BASE",
            "PAYMENTS_GRPC_ADDR",
            "PAYMENTS_INTERNAL_TOKEN",
            "TOPUP_TIERS_USD",
        ] {
            assert!(help.contains(variable), "{variable} missing from --help");
            let flag = format!("--{}", variable.to_lowercase().replace('_', "-"));
            assert!(help.contains(&flag), "{flag} missing from --help");
        }
    }

    #[test]
    fn missing_required_settings_are_named() {
        let err = required(&None, "STRIPE_SECRET_KEY", "stripe-secret-key").unwrap_err();
        assert_eq!(
            err.to_string(),
            "STRIPE_SECRET_KEY is required (set the environment variable or pass --stripe-secret-key)"
        );
        assert!(required(&Some(String::new()), "X", "x").is_err());
        assert_eq!(required(&Some("v".into()), "X", "x").unwrap(), "v");
    }
}
