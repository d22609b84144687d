//! Configuration: every setting is an environment variable and a flag, and
//! every one is checked at start (`Config::check`), so a bad value stops the
//! binary with one line naming it instead of failing later.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use payments_core::db::{PoolConfig, SessionLimits};
use payments_core::domain::Tiers;
use payments_core::stripe::StripeConfig;
use payments_core::{OpenIntentLimit, ReconcileSettings};
use service_runtime::connections::ConnectionLimits;
use service_runtime::logging::LogFormat;
use service_runtime::{check_range, required};

use crate::auth::BearerToken;
use crate::limits::GrpcLimits;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

/// The edge gives each call to payments-grpc this long; a Stripe call with
/// its retries must end before it.
pub const EDGE_CALL_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// Stripe secret key (sk_test_… or sk_live_…, or a restricted rk_…). Required to serve.
    #[arg(long, env = "STRIPE_SECRET_KEY", hide_env_values = true)]
    pub stripe_secret_key: Option<String>,
    /// Stripe API base URL; point it at a local stand-in in tests.
    #[arg(
        long,
        env = "STRIPE_API_BASE",
        default_value = "https://api.stripe.com"
    )]
    pub stripe_api_base: String,
    /// Time limit of one attempt of a Stripe call, in milliseconds (at most half the deadline).
    #[arg(long, env = "STRIPE_TIMEOUT_MS", default_value_t = 3_000)]
    pub stripe_timeout_ms: u64,
    /// Time limit of a whole Stripe call, retries included, in milliseconds (below the edge's 10 s).
    #[arg(long, env = "STRIPE_DEADLINE_MS", default_value_t = 8_000)]
    pub stripe_deadline_ms: u64,
    /// Attempts per Stripe call (1 to 10); retries reuse the same Idempotency-Key.
    #[arg(long, env = "STRIPE_MAX_ATTEMPTS", default_value_t = 3)]
    pub stripe_max_attempts: u32,
    /// Pause before the first retry of a Stripe call, in milliseconds; doubled each time, at most 2 s.
    #[arg(long, env = "STRIPE_RETRY_BACKOFF_MS", default_value_t = 200)]
    pub stripe_retry_backoff_ms: u64,
    /// Address the gRPC server listens on.
    #[arg(long, env = "PAYMENTS_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub payments_grpc_addr: SocketAddr,
    /// Address of the Prometheus endpoint (`GET /metrics`), apart from the gRPC port; port 0 picks a free one.
    #[arg(long, env = "PAYMENTS_METRICS_ADDR", default_value = "127.0.0.1:9465")]
    pub payments_metrics_addr: SocketAddr,
    /// Bearer token every PaymentsService call must carry. Required to serve.
    #[arg(long, env = "PAYMENTS_INTERNAL_TOKEN", hide_env_values = true)]
    pub payments_internal_token: Option<String>,
    /// Bearer token of AdminService (operators), its own: not the internal one. Unset = AdminService refuses every call.
    #[arg(long, env = "PAYMENTS_ADMIN_TOKEN", hide_env_values = true)]
    pub payments_admin_token: Option<String>,
    /// Top-up tiers in whole US dollars, comma-separated.
    #[arg(long, env = "TOPUP_TIERS_USD", default_value = "5,10,20,50", value_parser = parse_tiers)]
    pub topup_tiers_usd: Tiers,
    /// Unpaid intents a user may hold (created within 24 h); 0 = no limit.
    #[arg(long, env = "MAX_OPEN_INTENTS_PER_USER", default_value_t = 20)]
    pub max_open_intents_per_user: u32,
    /// Stripe calls a second `SyncPaymentIntent` may make on this replica (each sync up to 3); past it RESOURCE_EXHAUSTED/RATE_LIMITED.
    #[arg(long, env = "SYNC_STRIPE_CALLS_PER_SECOND", default_value_t = payments_core::DEFAULT_SYNC_CALLS_PER_SECOND)]
    pub sync_stripe_calls_per_second: u32,
    /// Whether spends that arrive together share one transaction (true or false); never on Citus (found at start), where such a batch would span shards.
    #[arg(long, env = "PAYMENTS_COALESCE_SPENDS", default_value_t = true, action = clap::ArgAction::Set)]
    pub payments_coalesce_spends: bool,
    /// Seconds between reconciliation passes (one replica at a time); 0 = off.
    #[arg(long, env = "RECONCILE_INTERVAL_SECS", default_value_t = 60)]
    pub reconcile_interval_secs: u64,
    /// Seconds an unfinished payment goes without an update before reconciliation re-fetches it from Stripe.
    #[arg(long, env = "RECONCILE_AFTER_SECS", default_value_t = 300)]
    pub reconcile_after_secs: u64,
    /// Events asked of Stripe's Events API per page by reconciliation (1 to 100); a pass reads at most 50 pages and the next goes on from there.
    #[arg(long, env = "RECONCILE_EVENTS_PAGE_SIZE", default_value_t = 100)]
    pub reconcile_events_page_size: u8,
    /// Seconds after its creation an intent still waiting for the customer is cancelled at Stripe as abandoned.
    #[arg(long, env = "STALE_INTENT_AFTER_SECS", default_value_t = 86_400)]
    pub stale_intent_after_secs: u64,
    /// Days a received Stripe event's payload is kept (the event id is kept for good); 0 = forever.
    #[arg(
        long,
        env = "STRIPE_EVENT_PAYLOAD_RETENTION_DAYS",
        default_value_t = 30
    )]
    pub stripe_event_payload_retention_days: u32,
    /// Postgres connections in the pool (1 to 1000).
    #[arg(long, env = "DATABASE_POOL_SIZE", default_value_t = 16)]
    pub database_pool_size: u32,
    /// `statement_timeout` of every pooled connection, in milliseconds.
    #[arg(long, env = "DATABASE_STATEMENT_TIMEOUT_MS", default_value_t = 5_000)]
    pub database_statement_timeout_ms: u64,
    /// `lock_timeout` of every pooled connection, in milliseconds.
    #[arg(long, env = "DATABASE_LOCK_TIMEOUT_MS", default_value_t = 2_000)]
    pub database_lock_timeout_ms: u64,
    /// `idle_in_transaction_session_timeout` of every pooled connection, in milliseconds.
    #[arg(
        long,
        env = "DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub database_idle_in_transaction_timeout_ms: u64,
    /// Open client connections at most; keep it below the process's file descriptor limit.
    #[arg(long, env = "PAYMENTS_MAX_CONNECTIONS", default_value_t = 256)]
    pub payments_max_connections: usize,
    /// Time a new connection has to send its first byte, in milliseconds.
    #[arg(long, env = "PAYMENTS_FIRST_BYTE_TIMEOUT_MS", default_value_t = 10_000)]
    pub payments_first_byte_timeout_ms: u64,
    /// A connection silent this long is closed, in seconds (clients keep theirs with HTTP/2 pings).
    #[arg(long, env = "PAYMENTS_IDLE_TIMEOUT_SECS", default_value_t = 300)]
    pub payments_idle_timeout_secs: u64,
    /// PEM certificate chain to serve gRPC over TLS (with PAYMENTS_TLS_KEY_FILE); unset = plaintext.
    #[arg(long, env = "PAYMENTS_TLS_CERT_FILE")]
    pub payments_tls_cert_file: Option<std::path::PathBuf>,
    /// PEM private key of PAYMENTS_TLS_CERT_FILE.
    #[arg(long, env = "PAYMENTS_TLS_KEY_FILE")]
    pub payments_tls_key_file: Option<std::path::PathBuf>,
    /// PEM CA whose client certificates are required (mutual TLS); unset = no client certificate asked.
    #[arg(long, env = "PAYMENTS_TLS_CLIENT_CA_FILE")]
    pub payments_tls_client_ca_file: Option<std::path::PathBuf>,
    /// Log format (text is coloured only on a terminal).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

fn parse_tiers(list: &str) -> Result<Tiers, String> {
    Tiers::parse_usd(list).map_err(|err| err.to_string())
}

/// The settings that are more than a checked value: read, parsed, built.
pub struct Settings {
    pub internal_token: BearerToken,
    /// None: AdminService refuses every call.
    pub admin_token: Option<BearerToken>,
    pub stripe: StripeConfig,
    /// Server TLS, read from its files; None for plaintext.
    pub tls: Option<ServerTlsConfig>,
}

impl Settings {
    /// Checks every setting; the first bad one stops the start, named.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
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
        let internal_token = BearerToken::new(token).context("PAYMENTS_INTERNAL_TOKEN is empty")?;
        // Empty counts as unset: no admin calls.
        let admin_token = config
            .payments_admin_token
            .clone()
            .and_then(BearerToken::new);
        if config.payments_admin_token.is_some()
            && config.payments_admin_token == config.payments_internal_token
        {
            anyhow::bail!(
                "PAYMENTS_ADMIN_TOKEN must differ from PAYMENTS_INTERNAL_TOKEN: the admin service has a token of its own"
            );
        }
        config.check()?;
        Ok(Self {
            internal_token,
            admin_token,
            stripe: config.stripe_config(secret_key),
            tls: config.tls()?,
        })
    }
}

impl Config {
    /// The defaults, as if no variable or flag were given (tests override fields).
    /// The defaults, with the metrics endpoint on a free port (tests start
    /// many servers in one process).
    pub fn defaults() -> Self {
        let mut config = Cli::parse_from(["payments-grpc"]).config;
        config.payments_metrics_addr.set_port(0);
        config
    }

    /// Every value that a clap parser cannot check alone.
    pub fn check(&self) -> anyhow::Result<()> {
        url::Url::parse(&self.database_url)
            .map_err(|err| anyhow::anyhow!("DATABASE_URL is not a URL: {err}"))?;
        match url::Url::parse(&self.stripe_api_base) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {}
            _ => anyhow::bail!(
                "STRIPE_API_BASE: {:?} is not an http(s) URL",
                self.stripe_api_base
            ),
        }
        check_range(
            "SYNC_STRIPE_CALLS_PER_SECOND",
            self.sync_stripe_calls_per_second.into(),
            payments_core::CALLS_PER_SYNC.into(),
            10_000,
        )?;
        check_range(
            "RECONCILE_INTERVAL_SECS",
            self.reconcile_interval_secs,
            0,
            86_400,
        )?;
        check_range(
            "RECONCILE_AFTER_SECS",
            self.reconcile_after_secs,
            1,
            30 * 86_400,
        )?;
        check_range(
            "RECONCILE_EVENTS_PAGE_SIZE",
            self.reconcile_events_page_size.into(),
            1,
            100,
        )?;
        // Not before the customer had a fair chance to pay; not after
        // Stripe stops keeping the intent's events (30 days).
        check_range(
            "STALE_INTENT_AFTER_SECS",
            self.stale_intent_after_secs,
            3_600,
            30 * 86_400,
        )?;
        check_range(
            "DATABASE_POOL_SIZE",
            self.database_pool_size.into(),
            1,
            1000,
        )?;
        check_range(
            "STRIPE_MAX_ATTEMPTS",
            self.stripe_max_attempts.into(),
            1,
            10,
        )?;
        check_range(
            "STRIPE_RETRY_BACKOFF_MS",
            self.stripe_retry_backoff_ms,
            0,
            2_000,
        )?;
        let edge_ms = EDGE_CALL_TIMEOUT.as_millis() as u64;
        check_range(
            "STRIPE_DEADLINE_MS",
            self.stripe_deadline_ms,
            100,
            edge_ms - 500,
        )?;
        if self.stripe_timeout_ms < 50 || self.stripe_timeout_ms * 2 > self.stripe_deadline_ms {
            anyhow::bail!(
                "STRIPE_TIMEOUT_MS must be between 50 and half of STRIPE_DEADLINE_MS ({} ms), so a hanging attempt can be retried (got {})",
                self.stripe_deadline_ms,
                self.stripe_timeout_ms
            );
        }
        check_range(
            "DATABASE_STATEMENT_TIMEOUT_MS",
            self.database_statement_timeout_ms,
            100,
            600_000,
        )?;
        check_range(
            "DATABASE_LOCK_TIMEOUT_MS",
            self.database_lock_timeout_ms,
            10,
            600_000,
        )?;
        check_range(
            "DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS",
            self.database_idle_in_transaction_timeout_ms,
            100,
            600_000,
        )?;
        check_range(
            "PAYMENTS_MAX_CONNECTIONS",
            self.payments_max_connections as u64,
            1,
            1_000_000,
        )?;
        check_range(
            "PAYMENTS_FIRST_BYTE_TIMEOUT_MS",
            self.payments_first_byte_timeout_ms,
            100,
            120_000,
        )?;
        check_range(
            "PAYMENTS_IDLE_TIMEOUT_SECS",
            self.payments_idle_timeout_secs,
            31,
            86_400,
        )?;
        Ok(())
    }

    /// The server's TLS settings, read from their files; None for plaintext.
    pub fn tls(&self) -> anyhow::Result<Option<ServerTlsConfig>> {
        let read = service_runtime::read_setting_file;
        let (cert, key) = match (&self.payments_tls_cert_file, &self.payments_tls_key_file) {
            (None, None) if self.payments_tls_client_ca_file.is_some() => anyhow::bail!(
                "PAYMENTS_TLS_CLIENT_CA_FILE needs PAYMENTS_TLS_CERT_FILE and PAYMENTS_TLS_KEY_FILE"
            ),
            (None, None) => return Ok(None),
            (Some(cert), Some(key)) => (
                read("PAYMENTS_TLS_CERT_FILE", cert)?,
                read("PAYMENTS_TLS_KEY_FILE", key)?,
            ),
            _ => anyhow::bail!("PAYMENTS_TLS_CERT_FILE and PAYMENTS_TLS_KEY_FILE go together"),
        };
        let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
        if let Some(ca) = &self.payments_tls_client_ca_file {
            tls = tls.client_ca_root(Certificate::from_pem(read(
                "PAYMENTS_TLS_CLIENT_CA_FILE",
                ca,
            )?));
        }
        Ok(Some(tls))
    }

    pub fn stripe_config(&self, secret_key: String) -> StripeConfig {
        StripeConfig {
            secret_key: secret_key.into(),
            api_base: self.stripe_api_base.clone(),
            timeout: Duration::from_millis(self.stripe_timeout_ms),
            deadline: Duration::from_millis(self.stripe_deadline_ms),
            max_attempts: self.stripe_max_attempts,
            retry_backoff: Duration::from_millis(self.stripe_retry_backoff_ms),
        }
    }

    pub fn reconcile_settings(&self) -> ReconcileSettings {
        ReconcileSettings {
            after: Duration::from_secs(self.reconcile_after_secs),
            stale_after: Duration::from_secs(self.stale_intent_after_secs),
            events_page_size: self.reconcile_events_page_size,
            ..ReconcileSettings::default()
        }
    }

    /// How often a pass runs; `None`: never in the background.
    pub fn reconcile_interval(&self) -> Option<Duration> {
        (self.reconcile_interval_secs > 0)
            .then(|| Duration::from_secs(self.reconcile_interval_secs))
    }

    pub fn open_intent_limit(&self) -> OpenIntentLimit {
        OpenIntentLimit {
            max: self.max_open_intents_per_user.into(),
            ..OpenIntentLimit::default()
        }
    }

    pub fn pool_config(&self) -> PoolConfig {
        PoolConfig {
            max_size: self.database_pool_size,
            session: SessionLimits {
                statement_timeout: Duration::from_millis(self.database_statement_timeout_ms),
                lock_timeout: Duration::from_millis(self.database_lock_timeout_ms),
                idle_in_transaction_timeout: Duration::from_millis(
                    self.database_idle_in_transaction_timeout_ms,
                ),
            },
            ..PoolConfig::default()
        }
    }

    pub fn limits(&self) -> GrpcLimits {
        let defaults = GrpcLimits::default();
        GrpcLimits {
            connections: ConnectionLimits {
                max_connections: self.payments_max_connections,
                first_byte_timeout: Duration::from_millis(self.payments_first_byte_timeout_ms),
                idle_timeout: Duration::from_secs(self.payments_idle_timeout_secs),
            },
            ..defaults
        }
    }
}

#[cfg(test)]
mod tests;
