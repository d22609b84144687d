//! The tonic server for `payments.v1.PaymentsService`: proto ⇄ core mapping,
//! status codes, the internal bearer token, health and reflection.

pub mod auth;
pub mod config;
pub mod convert;
pub mod limits;
mod service;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use payments_core::PaymentsService;
use payments_core::stripe::PaymentGateway;
use service_runtime::connections::LimitedListener;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tonic::codegen::InterceptedService;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

pub use limits::GrpcLimits;
use limits::StreamPlaces;
pub use service::GrpcPaymentsService;

pub use payments_proto as proto;

use proto::payments_service_server::PaymentsServiceServer;

pub use payments_proto::SERVICE_NAME;

/// Serves the payments service, health and reflection on `listener` until
/// `shutdown` resolves, then drains in-flight calls; with the default limits.
pub async fn serve<G: PaymentGateway>(
    core: Arc<PaymentsService<G>>,
    internal_token: auth::InternalToken,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    serve_with_limits(
        core,
        internal_token,
        listener,
        &GrpcLimits::default(),
        None,
        shutdown,
    )
    .await
}

/// As `serve`, with the given limits, and over TLS when `tls` is given.
pub async fn serve_with_limits<G: PaymentGateway>(
    core: Arc<PaymentsService<G>>,
    internal_token: auth::InternalToken,
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
    let payments = InterceptedService::new(
        PaymentsServiceServer::new(GrpcPaymentsService::new(core))
            .max_decoding_message_size(limits::MAX_CALL_MESSAGE_BYTES),
        auth::check_bearer(internal_token),
    );
    let mut server = Server::builder();
    if let Some(tls) = tls {
        server = server.tls_config(tls)?;
    }
    let result = server
        .max_concurrent_streams(limits.max_streams_per_connection)
        .concurrency_limit_per_connection(limits.max_calls_per_connection)
        .timeout(limits.call_timeout)
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
        .serve_with_incoming_shutdown(
            LimitedListener::new(listener, limits.connections).into_incoming(),
            shutdown,
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
