//! The public edge: the SPA's REST API (Firebase ID tokens) and Stripe's
//! webhook (signatures over the raw bytes), forwarded to payments-grpc.

pub mod caller;
pub mod config;
pub mod error;
pub mod firebase;
pub mod keys;
pub mod metrics;
pub mod openapi;
pub mod rate_limit;
pub mod router;
mod routes;
pub mod server;
pub mod state;
pub mod stream_places;
pub mod stripe_signature;
#[cfg(feature = "testing")]
pub mod testing;
pub mod top_up_options;
pub mod upstream;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use service_runtime::connections::LimitedListener;

pub use router::router;
pub use state::AppState;

use crate::config::{Config, Settings};
use crate::firebase::{TokenVerifier, VerifiedTokens};
use crate::keys::KeyCache;
use crate::upstream::Upstream;

/// Verified ID tokens kept, until their `exp`.
const VERIFIED_TOKENS_KEPT: usize = 10_000;

/// The edge, built from its configuration and bound to its address: what
/// `main`, the tests, the demo and the bench all start.
pub struct Application {
    listener: LimitedListener,
    metrics_listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    settings: Settings,
}

impl Application {
    /// Checks every setting, builds the state and binds `EDGE_ADDR`.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(config.edge_addr)
            .await
            .with_context(|| format!("binding {}", config.edge_addr))?;
        let app = Self::build_on(config, listener)?;
        app.state
            .keys
            .check_at_start()
            .await
            .map_err(anyhow::Error::msg)?;
        Ok(app)
    }

    /// As `build`, on a listener bound already (its address is `EDGE_ADDR`).
    pub fn build_on(config: Config, listener: tokio::net::TcpListener) -> anyhow::Result<Self> {
        let settings = Settings::from_config(&config)?;
        let metrics_listener = std::net::TcpListener::bind(config.edge_metrics_addr)
            .and_then(|listener| {
                listener.set_nonblocking(true)?;
                tokio::net::TcpListener::from_std(listener)
            })
            .with_context(|| format!("binding EDGE_METRICS_ADDR {}", config.edge_metrics_addr))?;
        let state = Arc::new(AppState {
            verifier: TokenVerifier::new(&settings.project_id, config.firebase_clock_leeway_secs),
            verified_tokens: VerifiedTokens::new(VERIFIED_TOKENS_KEPT),
            keys: KeyCache::new(&config.firebase_jwks_url).map_err(anyhow::Error::msg)?,
            webhook_secrets: settings.webhook_secrets.clone(),
            upstream: Upstream::new(
                &config.payments_grpc_url,
                &settings.internal_token,
                settings.upstream_tls.clone(),
            )
            .context("PAYMENTS_GRPC_URL")?,
            webhook_body_limit: config.webhook_body_limit_bytes,
            webhook_bodies: tokio::sync::Semaphore::new(config.webhook_max_concurrent_bodies),
            cors_allowed_origins: settings.cors_allowed_origins.clone(),
            create_limit: rate_limit::RateLimit::new(
                config.rate_limit_creates_per_minute,
                config.rate_limit_creates_per_minute_per_ip,
            ),
            sync_limit: rate_limit::RateLimit::new(
                config.rate_limit_syncs_per_minute,
                config.rate_limit_syncs_per_minute_per_ip,
            ),
            client_ip_header: settings.client_ip_header.clone(),
            metrics: Arc::default(),
            top_up_options: Default::default(),
            balance_streams: stream_places::StreamPlaces::new(
                config.edge_max_balance_streams,
                config.edge_max_balance_streams_per_user,
                config.edge_max_balance_streams_per_ip,
            ),
        });
        Ok(Self {
            listener: LimitedListener::new(listener, settings.connections),
            metrics_listener,
            state,
            settings,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Where `GET /metrics` answers.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Serves until `shutdown`, then drains requests in flight.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        // Warm the key cache; a failure here is retried on the first request.
        let warm = self.state.clone();
        tokio::spawn(async move {
            if let Err(err) = warm.keys.keys().await {
                tracing::warn!(error = %err, "Firebase keys not fetched at start");
            }
        });
        let limits = self.state.clone();
        tokio::spawn(async move {
            let mut every_minute = tokio::time::interval(Duration::from_secs(60));
            loop {
                every_minute.tick().await;
                limits.create_limit.forget_idle();
                limits.sync_limit.forget_idle();
            }
        });
        let metrics = tokio::spawn(service_runtime::metrics::serve(
            self.metrics_listener,
            self.state.metrics.registry(),
            None,
        ));
        let streams = self.state.clone();
        let shutdown = async move {
            shutdown.await;
            // Open balance streams would hold the drain to its end.
            streams.balance_streams.close_all();
        };
        let router = router(self.state, self.settings.request_timeout);
        server::serve(
            self.listener,
            router,
            self.settings.header_read_timeout,
            self.settings.request_timeout + Duration::from_secs(1),
            shutdown,
        )
        .await;
        metrics.abort();
    }
}
