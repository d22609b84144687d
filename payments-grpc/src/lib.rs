//! The tonic server for `payments.v1.PaymentsService`: proto ⇄ core mapping,
//! status codes, the internal bearer token, health and reflection.

pub mod auth;
pub mod config;
pub mod convert;
mod service;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use payments_core::PaymentsService;
use payments_core::stripe::PaymentGateway;
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

pub use service::GrpcPaymentsService;

pub use payments_proto as proto;

use proto::payments_service_server::PaymentsServiceServer;

pub use payments_proto::SERVICE_NAME;

/// Serves the payments service, health and reflection on `listener` until
/// `shutdown` resolves, then drains in-flight calls.
pub async fn serve<G: PaymentGateway>(
    core: Arc<PaymentsService<G>>,
    internal_token: auth::InternalToken,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .expect("the embedded descriptors are valid");
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .expect("the embedded descriptors are valid");

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
    let payments = PaymentsServiceServer::with_interceptor(
        GrpcPaymentsService::new(core),
        auth::check_bearer(internal_token),
    );
    let result = Server::builder()
        // One span per call, carrying the edge's request id when it sent one.
        .trace_fn(|request| {
            let request_id = request
                .headers()
                .get("x-request-id")
                .and_then(|value| value.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!("grpc", path = %request.uri().path(), request_id = %request_id)
        })
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(payments)
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await;
    watcher.abort();
    result
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
