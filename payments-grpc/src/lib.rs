//! The tonic server for `payments.v1.PaymentsService`: proto ⇄ core mapping,
//! status codes, the internal bearer token, health and reflection.

pub mod auth;
pub mod config;
pub mod convert;
pub mod limits;
pub mod metrics;
pub mod reasons;
mod service;
#[cfg(feature = "testing")]
pub mod testing;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use payments_core::stripe::{PaymentGateway, StripeGateway};
use payments_core::{PaymentsService, db};
use service_runtime::connections::LimitedListener;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tonic::codegen::InterceptedService;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

pub use limits::GrpcLimits;
use limits::StreamPlaces;
pub use service::{GrpcAdminService, GrpcPaymentsService};

pub use payments_proto as proto;

use proto::admin_service_server::AdminServiceServer;
use proto::payments_service_server::PaymentsServiceServer;

pub use payments_proto::SERVICE_NAME;

/// payments-grpc built from its configuration and bound to its address:
/// what `main`, the tests, the demo and the bench all start, so that the
/// wiring they run is the one in production.
pub struct Application {
    listener: TcpListener,
    core: Arc<PaymentsService<StripeGateway>>,
    tokens: Tokens,
    limits: GrpcLimits,
    tls: Option<tonic::transport::ServerTlsConfig>,
    payload_retention: Option<chrono::Duration>,
    /// Where the balance listener connects.
    database_url: String,
    /// `None`: no background reconciliation (`RECONCILE_INTERVAL_SECS=0`).
    reconcile_interval: Option<std::time::Duration>,
    metrics: Arc<metrics::GrpcMetrics>,
    /// `PAYMENTS_METRICS_ADDR`, bound.
    metrics_listener: TcpListener,
}

impl Application {
    /// Checks every setting, migrates the database, connects and binds
    /// `PAYMENTS_GRPC_ADDR`.
    pub async fn build(config: config::Config) -> anyhow::Result<Self> {
        // Every setting is checked before anything is touched.
        let settings = config::Settings::from_config(&config)?;
        let listener = TcpListener::bind(config.payments_grpc_addr)
            .await
            .with_context(|| format!("binding {}", config.payments_grpc_addr))?;
        Self::assemble(config, settings, listener).await
    }

    /// As `build`, on a listener bound already (its address wins over
    /// `PAYMENTS_GRPC_ADDR`).
    pub async fn build_on(config: config::Config, listener: TcpListener) -> anyhow::Result<Self> {
        let settings = config::Settings::from_config(&config)?;
        Self::assemble(config, settings, listener).await
    }

    async fn assemble(
        config: config::Config,
        settings: config::Settings,
        listener: TcpListener,
    ) -> anyhow::Result<Self> {
        let metrics_listener = TcpListener::bind(config.payments_metrics_addr)
            .await
            .with_context(|| {
                format!(
                    "binding PAYMENTS_METRICS_ADDR {}",
                    config.payments_metrics_addr
                )
            })?;
        migrate(&config.database_url).await?;
        let pool = db::connect_pool(&config.database_url, &config.pool_config())
            .await
            .context("connecting to Postgres")?;
        let core_metrics =
            payments_core::metrics::CoreMetrics::new(service_runtime::metrics::latency_histogram);
        let gateway = StripeGateway::new(&settings.stripe)
            .context("configuring the Stripe client")?
            .with_metrics(core_metrics.clone());
        let metrics = Arc::new(metrics::GrpcMetrics::new(&core_metrics));
        let citus = db::is_citus(&pool)
            .await
            .context("asking Postgres whether it is a Citus cluster")?;
        if citus {
            tracing::info!(
                "Citus: every write stays on one worker (spends uncoalesced, owners claimed first)"
            );
        }
        let core = Arc::new(
            PaymentsService::new(pool, gateway, config.topup_tiers_usd.clone())
                .with_metrics(core_metrics)
                .with_open_intent_limit(config.open_intent_limit())
                .with_sync_budget(config.sync_stripe_calls_per_second)
                .with_spend_coalescing(config.payments_coalesce_spends)
                .on_citus(citus)
                .with_reconciliation(config.reconcile_settings()),
        );
        Ok(Self {
            listener,
            core,
            tokens: Tokens {
                internal: settings.internal_token,
                admin: settings.admin_token,
            },
            limits: config.limits(),
            tls: settings.tls,
            database_url: config.database_url.clone(),
            reconcile_interval: config.reconcile_interval(),
            metrics,
            metrics_listener,
            payload_retention: (config.stripe_event_payload_retention_days > 0)
                .then(|| chrono::Duration::days(config.stripe_event_payload_retention_days.into())),
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

    /// The use cases this server answers with (tests read state through it).
    pub fn core(&self) -> &Arc<PaymentsService<StripeGateway>> {
        &self.core
    }

    /// Serves until `shutdown`, then drains calls in flight.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        if let Some(retention) = self.payload_retention {
            spawn_payload_retention(self.core.clone(), retention);
        }
        // One connection hears every balance change for the whole process.
        let listener = self
            .core
            .listen_for_balance_changes(self.database_url.clone());
        let refresh: service_runtime::metrics::Refresh = {
            let (core, metrics) = (self.core.clone(), self.metrics.clone());
            // Where the next look for paid-not-credited starts; the lock
            // also keeps scrapes from reading the gauges at once.
            let paid_since = Arc::new(tokio::sync::Mutex::new(None));
            Arc::new(move || {
                let (core, metrics) = (core.clone(), metrics.clone());
                let paid_since = paid_since.clone();
                Box::pin(async move {
                    core.observe_pool();
                    let mut since = paid_since.lock().await;
                    match core.lifecycle_gauges(*since).await {
                        Ok((paid, oldest)) => {
                            metrics.set_lifecycle(paid.count, oldest);
                            *since = Some(paid.next_since);
                        }
                        Err(err) => tracing::warn!(error = %err, "metrics gauges not read"),
                    }
                    match core.parked_event_count().await {
                        Ok(parked) => metrics.set_parked_events(parked),
                        Err(err) => tracing::warn!(error = %err, "parked events not counted"),
                    }
                })
            })
        };
        let metrics_server = tokio::spawn(service_runtime::metrics::serve(
            self.metrics_listener,
            self.metrics.registry(),
            Some(refresh),
        ));
        let reconciliation = self.reconcile_interval.map(|interval| {
            self.core
                .spawn_reconciliation(self.database_url.clone(), interval)
        });
        let served = serve_with_limits(
            self.core,
            self.metrics,
            self.tokens,
            self.listener,
            &self.limits,
            self.tls,
            shutdown,
        )
        .await
        .context("serving gRPC");
        listener.abort();
        metrics_server.abort();
        if let Some(reconciliation) = reconciliation {
            reconciliation.abort();
        }
        served
    }
}

/// Creates the database if it is missing and applies every migration.
pub async fn migrate(database_url: &str) -> anyhow::Result<Vec<String>> {
    db::create_database_if_missing(database_url)
        .await
        .context("creating the database")?;
    let applied = db::migrate::run_migrations(database_url)
        .await
        .context("applying migrations")?;
    Ok(applied)
}

/// The bearer tokens the services check.
pub struct Tokens {
    /// PaymentsService's.
    pub internal: auth::BearerToken,
    /// AdminService's, its own; None: every admin call is refused.
    pub admin: Option<auth::BearerToken>,
}

/// Serves the payments and admin services, health and reflection on
/// `listener` until `shutdown` resolves, then drains in-flight calls; with
/// the given limits, and over TLS when `tls` is given.
pub async fn serve_with_limits<G: PaymentGateway>(
    core: Arc<PaymentsService<G>>,
    metrics: Arc<metrics::GrpcMetrics>,
    tokens: Tokens,
    listener: TcpListener,
    limits: &GrpcLimits,
    tls: Option<tonic::transport::ServerTlsConfig>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    let health_service =
        health_service.max_decoding_message_size(limits::MAX_UNAUTHENTICATED_MESSAGE_BYTES);
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the embedded descriptors are valid")
        .max_decoding_message_size(limits::MAX_UNAUTHENTICATED_MESSAGE_BYTES);
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .expect("the embedded descriptors are valid")
        .max_decoding_message_size(limits::MAX_UNAUTHENTICATED_MESSAGE_BYTES);
    // Anyone may open these streams: together they share a fixed number of places.
    let open_streams = Arc::new(Semaphore::new(limits.max_unauthenticated_streams));
    let health_service =
        StreamPlaces::new(health_service, open_streams.clone(), limits::health_watch);
    let reflection_v1 = StreamPlaces::new(reflection_v1, open_streams.clone(), limits::always);
    let reflection_v1alpha = StreamPlaces::new(reflection_v1alpha, open_streams, limits::always);

    // Known before the first call, then kept up to date.
    let mut database_status = report_database_health(&core, &health, None).await;
    let watcher = tokio::spawn({
        let core = core.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                database_status =
                    report_database_health(&core, &health, Some(database_status)).await;
            }
        }
    });
    // The token is checked on the headers, before a message is read.
    let watches = core.clone();
    let payments = InterceptedService::new(
        PaymentsServiceServer::new(GrpcPaymentsService::new(core.clone()))
            .max_decoding_message_size(limits::MAX_CALL_MESSAGE_BYTES),
        auth::check_bearer(tokens.internal),
    );
    let admin = InterceptedService::new(
        AdminServiceServer::new(GrpcAdminService::new(core))
            .max_decoding_message_size(limits::MAX_CALL_MESSAGE_BYTES),
        auth::check_admin_bearer(tokens.admin),
    );
    let mut server = Server::builder();
    if let Some(tls) = tls {
        server = server.tls_config(tls)?;
    }
    let result = server
        .max_concurrent_streams(limits.max_streams_per_connection)
        .concurrency_limit_per_connection(limits.max_calls_per_connection)
        // Outermost, so it counts the status the caller gets.
        .layer(metrics::CountCallsLayer(metrics))
        // The call time limit, and a reason for every status tonic makes.
        .layer(reasons::GiveReasonsLayer {
            call_timeout: limits.call_timeout,
        })
        .http2_max_header_list_size(16 * 1024)
        .http2_max_pending_accept_reset_streams(Some(32))
        .http2_max_local_error_reset_streams(Some(64))
        // One span per call, carrying the caller's request id when it is a safe one.
        .trace_fn(|request| {
            let request_id = request
                .headers()
                .get("x-request-id")
                .map(|value| value.as_bytes())
                .filter(|id| service_runtime::is_safe_request_id(id))
                .and_then(|id| std::str::from_utf8(id).ok())
                .unwrap_or("-");
            tracing::info_span!("grpc", path = %request.uri().path(), request_id = %request_id)
        })
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(payments)
        .add_service(admin)
        .serve_with_incoming_shutdown(
            LimitedListener::new(listener, limits.connections).into_incoming(),
            async move {
                shutdown.await;
                // Open watches end, so the drain does not wait for them.
                watches.stop_watches();
            },
        )
        .await;
    watcher.abort();
    result
}

/// Empties stored event payloads older than `retention`, once an hour (any
/// number of replicas may do it at once: it only clears what is past it).
pub fn spawn_payload_retention<G: PaymentGateway>(
    core: Arc<PaymentsService<G>>,
    retention: chrono::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every_hour = tokio::time::interval(Duration::from_secs(3600));
        loop {
            every_hour.tick().await;
            match core.forget_old_event_payloads(retention).await {
                Ok(0) => {}
                Ok(forgotten) => tracing::info!(forgotten, "old event payloads emptied"),
                Err(err) => tracing::warn!(error = %err, "event payload retention failed"),
            }
        }
    })
}

/// Health follows the database: NOT_SERVING while Postgres cannot be reached.
async fn report_database_health<G: PaymentGateway>(
    core: &PaymentsService<G>,
    health: &HealthReporter,
    last: Option<ServingStatus>,
) -> ServingStatus {
    let status = match core.check_database().await {
        Ok(()) => ServingStatus::Serving,
        Err(err) => {
            tracing::warn!(error = %err, "health: database unreachable");
            ServingStatus::NotServing
        }
    };
    if last != Some(status) {
        health.set_service_status("", status).await;
        health.set_service_status(SERVICE_NAME, status).await;
    }
    status
}
