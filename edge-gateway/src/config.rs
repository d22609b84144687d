//! Configuration: every setting is an environment variable and a flag, and
//! every one is checked at start (`Settings::from_config`), so a bad value
//! stops the binary with one line naming it instead of failing later.

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::HeaderValue;
use clap::Parser;
use service_runtime::check_range;
use service_runtime::connections::ConnectionLimits;
use service_runtime::logging::LogFormat;

use crate::keys::GOOGLE_X509_URL;
use crate::stripe_signature::WebhookSecret;

/// At most this many webhook secrets at once (rotation needs two or three).
pub const MAX_WEBHOOK_SECRETS: usize = 8;

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
    /// Address of the Prometheus endpoint (`GET /metrics`), apart from the public port; port 0 picks a free one.
    #[arg(long, env = "EDGE_METRICS_ADDR", default_value = "127.0.0.1:9464")]
    pub edge_metrics_addr: SocketAddr,
    /// URL of payments-grpc: http://host:port, or https://host:port with PAYMENTS_GRPC_CA_FILE.
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
    /// Clock leeway for ID token exp/iat/auth_time, in seconds (at most 300).
    #[arg(long, env = "FIREBASE_CLOCK_LEEWAY_SECS", default_value_t = 60)]
    pub firebase_clock_leeway_secs: u32,
    /// Origins allowed to call the REST API from a browser, comma-separated
    /// (`https://app.example.com`; `*` is refused).
    #[arg(long, env = "CORS_ALLOWED_ORIGINS", default_value = "")]
    pub cors_allowed_origins: String,
    /// Largest webhook body accepted, in bytes (4 KiB to 1 MiB).
    #[arg(long, env = "WEBHOOK_BODY_LIMIT_BYTES", default_value_t = 256 * 1024)]
    pub webhook_body_limit_bytes: usize,
    /// Webhook bodies read at once; past it a webhook is answered 503 (Stripe retries).
    #[arg(long, env = "WEBHOOK_MAX_CONCURRENT_BODIES", default_value_t = 32)]
    pub webhook_max_concurrent_bodies: usize,
    /// Time limit of one request, in milliseconds.
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = 15_000)]
    pub request_timeout_ms: u64,
    /// Open client connections at most; keep it below the process's file descriptor limit.
    #[arg(long, env = "EDGE_MAX_CONNECTIONS", default_value_t = 1024)]
    pub edge_max_connections: usize,
    /// `GET /balance/stream` streams open at once on this edge; past it 503 `overloaded`.
    /// At least 64 below `EDGE_MAX_CONNECTIONS`: those places stay for webhooks, health and the API.
    #[arg(long, env = "EDGE_MAX_BALANCE_STREAMS", default_value_t = 768)]
    pub edge_max_balance_streams: usize,
    /// `GET /balance/stream` streams one client IP (IPv6: one /64) may hold open; past it 429 `too-many-streams`.
    #[arg(long, env = "EDGE_MAX_BALANCE_STREAMS_PER_IP", default_value_t = 128)]
    pub edge_max_balance_streams_per_ip: usize,
    /// `GET /balance/stream` streams one user may hold open at once (tabs, devices); past it 429 `too-many-streams`.
    #[arg(long, env = "EDGE_MAX_BALANCE_STREAMS_PER_USER", default_value_t = 5)]
    pub edge_max_balance_streams_per_user: usize,
    /// Time a client has to send a request's headers (and a new connection its first byte), in milliseconds.
    #[arg(long, env = "EDGE_HEADER_READ_TIMEOUT_MS", default_value_t = 10_000)]
    pub edge_header_read_timeout_ms: u64,
    /// A connection silent this long (nothing read or written) is closed, in seconds.
    #[arg(long, env = "EDGE_IDLE_TIMEOUT_SECS", default_value_t = 60)]
    pub edge_idle_timeout_secs: u64,
    /// Payment intents one user may create per minute (burst and rate); 0 = no limit.
    #[arg(long, env = "RATE_LIMIT_CREATES_PER_MINUTE", default_value_t = 10)]
    pub rate_limit_creates_per_minute: u32,
    /// Payment intents one client IP (IPv6: one /64) may create per minute; 0 = no limit.
    #[arg(
        long,
        env = "RATE_LIMIT_CREATES_PER_MINUTE_PER_IP",
        default_value_t = 120
    )]
    pub rate_limit_creates_per_minute_per_ip: u32,
    /// `POST /payments/{id}/sync` calls one user may make per minute; 0 = no limit.
    #[arg(long, env = "RATE_LIMIT_SYNCS_PER_MINUTE", default_value_t = 30)]
    pub rate_limit_syncs_per_minute: u32,
    /// `POST /payments/{id}/sync` calls one client IP (IPv6: one /64) may make per minute; 0 = no limit.
    #[arg(
        long,
        env = "RATE_LIMIT_SYNCS_PER_MINUTE_PER_IP",
        default_value_t = 360
    )]
    pub rate_limit_syncs_per_minute_per_ip: u32,
    /// Header carrying the client's IP, set by the proxy in front (its last
    /// entry is used, e.g. x-forwarded-for); unset = the peer address.
    #[arg(long, env = "EDGE_CLIENT_IP_HEADER")]
    pub edge_client_ip_header: Option<String>,
    /// PEM CA that signed payments-grpc's certificate (needed for an https PAYMENTS_GRPC_URL).
    #[arg(long, env = "PAYMENTS_GRPC_CA_FILE")]
    pub payments_grpc_ca_file: Option<std::path::PathBuf>,
    /// PEM client certificate for mutual TLS to payments-grpc (with PAYMENTS_GRPC_CLIENT_KEY_FILE).
    #[arg(long, env = "PAYMENTS_GRPC_CLIENT_CERT_FILE")]
    pub payments_grpc_client_cert_file: Option<std::path::PathBuf>,
    /// PEM private key of PAYMENTS_GRPC_CLIENT_CERT_FILE.
    #[arg(long, env = "PAYMENTS_GRPC_CLIENT_KEY_FILE")]
    pub payments_grpc_client_key_file: Option<std::path::PathBuf>,
    /// Log format (text is coloured only on a terminal).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl Config {
    /// The defaults, as if no variable or flag were given (tests override fields).
    /// The defaults, with the metrics endpoint on a free port (tests start
    /// many edges in one process).
    pub fn defaults() -> Self {
        let mut config = Self::parse_from(["edge-gateway"]);
        config.edge_metrics_addr.set_port(0);
        config
    }
}

/// The configuration once every value has been checked.
pub struct Settings {
    pub internal_token: String,
    pub webhook_secrets: Vec<WebhookSecret>,
    pub project_id: String,
    pub cors_allowed_origins: Vec<HeaderValue>,
    pub request_timeout: Duration,
    pub header_read_timeout: Duration,
    pub connections: ConnectionLimits,
    pub client_ip_header: Option<axum::http::HeaderName>,
    /// TLS to payments-grpc, for an https URL.
    pub upstream_tls: Option<tonic::transport::ClientTlsConfig>,
}

impl Settings {
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        use service_runtime::required;
        let internal_token = required(
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
        let webhook_secrets = parse_webhook_secrets(&secrets)?;
        let upstream_tls = upstream_tls(config)?;
        check_range(
            "FIREBASE_CLOCK_LEEWAY_SECS",
            config.firebase_clock_leeway_secs.into(),
            0,
            300,
        )?;
        check_range(
            "WEBHOOK_BODY_LIMIT_BYTES",
            config.webhook_body_limit_bytes as u64,
            4 * 1024,
            1024 * 1024,
        )?;
        check_range(
            "WEBHOOK_MAX_CONCURRENT_BODIES",
            config.webhook_max_concurrent_bodies as u64,
            1,
            10_000,
        )?;
        check_range(
            "REQUEST_TIMEOUT_MS",
            config.request_timeout_ms,
            100,
            300_000,
        )?;
        check_range(
            "EDGE_MAX_CONNECTIONS",
            config.edge_max_connections as u64,
            1,
            1_000_000,
        )?;
        check_stream_places(config)?;
        check_range(
            "EDGE_HEADER_READ_TIMEOUT_MS",
            config.edge_header_read_timeout_ms,
            100,
            120_000,
        )?;
        let request_timeout = Duration::from_millis(config.request_timeout_ms);
        let idle_timeout = Duration::from_secs(config.edge_idle_timeout_secs);
        // A request in progress may leave its connection quiet for its whole time limit.
        if idle_timeout <= request_timeout {
            anyhow::bail!(
                "EDGE_IDLE_TIMEOUT_SECS ({}) must be longer than REQUEST_TIMEOUT_MS ({} ms)",
                config.edge_idle_timeout_secs,
                config.request_timeout_ms
            );
        }
        let header_read_timeout = Duration::from_millis(config.edge_header_read_timeout_ms);
        let client_ip_header = match config.edge_client_ip_header.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(name) => Some(name.parse().map_err(|_| {
                anyhow::anyhow!("EDGE_CLIENT_IP_HEADER: {name:?} is not a header name")
            })?),
        };
        Ok(Self {
            internal_token,
            webhook_secrets,
            project_id,
            cors_allowed_origins: parse_origins(&config.cors_allowed_origins)?,
            request_timeout,
            header_read_timeout,
            connections: ConnectionLimits {
                max_connections: config.edge_max_connections,
                first_byte_timeout: header_read_timeout,
                idle_timeout,
            },
            client_ip_header,
            upstream_tls,
        })
    }
}

/// Streams hold their connection (over HTTP/1.1) for as long as the token
/// lives: their budget stays [`PLACES_KEPT_FROM_STREAMS`] below the
/// connection limit, so that streams can never take every place.
fn check_stream_places(config: &Config) -> anyhow::Result<()> {
    let streams = config.edge_max_balance_streams as u64;
    check_range("EDGE_MAX_BALANCE_STREAMS", streams, 1, 1_000_000)?;
    check_range(
        "EDGE_MAX_BALANCE_STREAMS_PER_USER",
        config.edge_max_balance_streams_per_user as u64,
        1,
        1_000,
    )?;
    check_range(
        "EDGE_MAX_BALANCE_STREAMS_PER_IP",
        config.edge_max_balance_streams_per_ip as u64,
        1,
        1_000_000,
    )?;
    let connections = config.edge_max_connections as u64;
    if streams + PLACES_KEPT_FROM_STREAMS > connections {
        anyhow::bail!(
            "EDGE_MAX_BALANCE_STREAMS ({streams}) must be at least {PLACES_KEPT_FROM_STREAMS} below EDGE_MAX_CONNECTIONS ({connections}), so that streams never take the places of webhooks, health checks and the API"
        );
    }
    Ok(())
}

/// Connection places streams can never take.
const PLACES_KEPT_FROM_STREAMS: u64 = 64;

fn parse_webhook_secrets(list: &str) -> anyhow::Result<Vec<WebhookSecret>> {
    let secrets = WebhookSecret::parse_list(list);
    if secrets.is_empty() {
        anyhow::bail!("STRIPE_WEBHOOK_SECRET holds no secret (expected whsec_…, comma-separated)");
    }
    if secrets.len() > MAX_WEBHOOK_SECRETS {
        anyhow::bail!("STRIPE_WEBHOOK_SECRET holds more than {MAX_WEBHOOK_SECRETS} secrets");
    }
    if list
        .split(',')
        .map(str::trim)
        .any(|secret| !secret.is_empty() && !secret.starts_with("whsec_"))
    {
        anyhow::bail!("STRIPE_WEBHOOK_SECRET: every secret starts with whsec_");
    }
    Ok(secrets)
}

/// TLS for the internal hop: an `https` URL is honoured (the CA given, a
/// client certificate for mutual TLS when given), never silently sent in
/// plaintext; TLS files with an `http` URL are refused as a likely mistake.
fn upstream_tls(config: &Config) -> anyhow::Result<Option<tonic::transport::ClientTlsConfig>> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let url = &config.payments_grpc_url;
    let uri: axum::http::Uri = url
        .parse()
        .map_err(|err| anyhow::anyhow!("PAYMENTS_GRPC_URL: {url:?} is not a URL: {err}"))?;
    let read = service_runtime::read_setting_file;
    let client_identity = match (
        &config.payments_grpc_client_cert_file,
        &config.payments_grpc_client_key_file,
    ) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some((cert, key)),
        _ => anyhow::bail!(
            "PAYMENTS_GRPC_CLIENT_CERT_FILE and PAYMENTS_GRPC_CLIENT_KEY_FILE go together"
        ),
    };
    match (uri.scheme_str(), uri.host()) {
        (Some("http"), Some(_)) => {
            if config.payments_grpc_ca_file.is_some() || client_identity.is_some() {
                anyhow::bail!(
                    "PAYMENTS_GRPC_URL is http:// but TLS files are set: use https:// to have them used"
                );
            }
            Ok(None)
        }
        (Some("https"), Some(host)) => {
            let Some(ca) = &config.payments_grpc_ca_file else {
                anyhow::bail!(
                    "PAYMENTS_GRPC_URL is https:// but PAYMENTS_GRPC_CA_FILE is not set (the CA that signed payments-grpc's certificate)"
                );
            };
            let mut tls = ClientTlsConfig::new()
                .domain_name(host)
                .ca_certificate(Certificate::from_pem(read("PAYMENTS_GRPC_CA_FILE", ca)?));
            if let Some((cert, key)) = client_identity {
                tls = tls.identity(Identity::from_pem(
                    read("PAYMENTS_GRPC_CLIENT_CERT_FILE", cert)?,
                    read("PAYMENTS_GRPC_CLIENT_KEY_FILE", key)?,
                ));
            }
            Ok(Some(tls))
        }
        _ => anyhow::bail!("PAYMENTS_GRPC_URL: {url:?} is not an http(s)://host:port URL"),
    }
}

/// `scheme://host[:port]` origins; `*` or a path is refused.
pub fn parse_origins(list: &str) -> anyhow::Result<Vec<HeaderValue>> {
    list.split(',')
        .map(str::trim)
        .filter(|origin| !origin.is_empty())
        .map(|origin| {
            let uri: axum::http::Uri = origin.parse().ok().filter(|uri: &axum::http::Uri| {
                matches!(uri.scheme_str(), Some("http" | "https"))
                    && uri.authority().is_some()
                    && uri.path_and_query().is_none_or(|p| p.as_str().is_empty() || p.as_str() == "/")
            }).ok_or_else(|| anyhow::anyhow!(
                "CORS_ALLOWED_ORIGINS: {origin:?} is not an origin like https://app.example.com (* is not allowed)"
            ))?;
            let origin = format!("{}://{}", uri.scheme_str().unwrap_or("https"), uri.authority().map(|a| a.as_str()).unwrap_or_default());
            Ok(HeaderValue::from_str(&origin)?)
        })
        .collect()
}

#[cfg(test)]
mod tests;
