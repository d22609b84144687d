//! Configuration: every setting is an environment variable and a flag.

use std::net::SocketAddr;

use clap::{Parser, ValueEnum};

use crate::keys::GOOGLE_X509_URL;

#[derive(Parser, Clone)]
#[command(
    name = "edge-gateway",
    version,
    about = "The public REST edge: the SPA's API and Stripe's webhook"
)]
pub struct Config {
    /// Address the HTTP server listens on.
    #[arg(long, env = "EDGE_ADDR", default_value = "127.0.0.1:8080")]
    pub edge_addr: SocketAddr,
    /// URL of payments-grpc.
    #[arg(
        long,
        env = "PAYMENTS_GRPC_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub payments_grpc_url: String,
    /// Bearer token for payments-grpc. Required.
    #[arg(long, env = "PAYMENTS_INTERNAL_TOKEN", hide_env_values = true)]
    pub payments_internal_token: Option<String>,
    /// Stripe webhook signing secrets (whsec_…), comma-separated during rotation. Required.
    #[arg(long, env = "STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
    pub stripe_webhook_secret: Option<String>,
    /// Firebase project id: the `aud` of accepted ID tokens. Required.
    #[arg(long, env = "FIREBASE_PROJECT_ID")]
    pub firebase_project_id: Option<String>,
    /// Google's key set: a kid → X.509 certificate map or a JWK Set.
    #[arg(long, env = "FIREBASE_JWKS_URL", default_value = GOOGLE_X509_URL)]
    pub firebase_jwks_url: String,
    /// Clock leeway for ID token exp/iat/auth_time, in seconds.
    #[arg(long, env = "FIREBASE_CLOCK_LEEWAY_SECS", default_value_t = 60)]
    pub firebase_clock_leeway_secs: u32,
    /// Origins allowed to call the REST API from a browser, comma-separated.
    #[arg(long, env = "CORS_ALLOWED_ORIGINS", default_value = "")]
    pub cors_allowed_origins: String,
    /// Top-up tiers in whole US dollars; keep equal to payments-grpc's.
    #[arg(long, env = "TOPUP_TIERS_USD", default_value = "5,10,20,50")]
    pub topup_tiers_usd: String,
    /// Largest webhook body accepted, in bytes.
    #[arg(long, env = "WEBHOOK_BODY_LIMIT_BYTES", default_value_t = 256 * 1024)]
    pub webhook_body_limit_bytes: usize,
    /// Time limit of one request, in milliseconds.
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = 15_000)]
    pub request_timeout_ms: u64,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum LogFormat {
    Text,
    Json,
}

/// A required setting given neither as a variable nor as a flag.
pub fn required(value: &Option<String>, variable: &str, flag: &str) -> anyhow::Result<String> {
    match value.as_deref() {
        Some(value) if !value.trim().is_empty() => Ok(value.to_owned()),
        _ => {
            anyhow::bail!("{variable} is required (set the environment variable or pass --{flag})")
        }
    }
}

/// Whole-dollar tiers, e.g. `5,10,20,50`, sorted.
pub fn parse_tiers(list: &str) -> anyhow::Result<Vec<u32>> {
    let mut tiers = list
        .split(',')
        .map(|item| match item.trim().parse::<u32>() {
            Ok(dollars) if dollars > 0 && dollars <= 1_000_000 => Ok(dollars),
            _ => Err(anyhow::anyhow!(
                "TOPUP_TIERS_USD: {item:?} is not a whole number of dollars between 1 and 1000000"
            )),
        })
        .collect::<anyhow::Result<Vec<u32>>>()?;
    tiers.sort_unstable();
    tiers.dedup();
    Ok(tiers)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn every_variable_is_a_flag_in_help() {
        let help = Config::command().render_long_help().to_string();
        for variable in [
            "EDGE_ADDR",
            "PAYMENTS_GRPC_URL",
            "PAYMENTS_INTERNAL_TOKEN",
            "STRIPE_WEBHOOK_SECRET",
            "FIREBASE_PROJECT_ID",
            "FIREBASE_JWKS_URL",
            "CORS_ALLOWED_ORIGINS",
        ] {
            assert!(help.contains(variable), "{variable} missing from --help");
            let flag = format!("--{}", variable.to_lowercase().replace('_', "-"));
            assert!(help.contains(&flag), "{flag} missing from --help");
        }
    }

    #[test]
    fn tiers_parse_like_payments_grpc() {
        assert_eq!(parse_tiers("20, 5,10,5").unwrap(), vec![5, 10, 20]);
        for bad in ["", "0", "5,x", "-5", "2.5"] {
            assert!(parse_tiers(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn missing_required_settings_are_named_on_one_line() {
        let err = required(&None, "FIREBASE_PROJECT_ID", "firebase-project-id")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "FIREBASE_PROJECT_ID is required (set the environment variable or pass --firebase-project-id)"
        );
        assert!(required(&Some("  ".into()), "X", "x").is_err());
    }
}
