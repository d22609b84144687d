//! The one gRPC channel to payments-grpc, reused by every request. Every
//! call carries the internal token, the edge's request id and its deadline,
//! added by one interceptor ([`CallMetadata`]) rather than by each handler.

use std::time::Duration;

use payments_proto::payments_service_client::PaymentsServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// payments-grpc's Stripe calls, retries included, end before this
/// (`payments_grpc::config::EDGE_CALL_TIMEOUT`).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

/// Balance watches one connection to payments-grpc carries, below the
/// streams per connection payments-grpc allows (256 by default).
const WATCHES_PER_CONNECTION: usize = 200;

/// A client of payments-grpc whose calls carry [`CallMetadata`].
pub type Client = PaymentsServiceClient<InterceptedService<Channel, CallMetadata>>;

tokio::task_local! {
    /// The request id of the HTTP request being served, for its calls.
    static REQUEST_ID: Option<MetadataValue<Ascii>>;
}

/// Runs the rest of the request with its `X-Request-Id` at hand, so every
/// call it makes upstream carries the same id (a middleware of the router).
pub async fn carrying_request_id(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|id| id.to_str().ok())
        .and_then(|id| id.parse().ok());
    REQUEST_ID.scope(id, next.run(request)).await
}

/// What every call to payments-grpc carries: the internal token, the
/// request id of the HTTP request it serves (when there is one), and its
/// deadline as `grpc-timeout`, so payments-grpc stops when the edge has
/// (none for a balance watch, which lasts as long as its stream).
/// `Debug` shows no token: the authorization value is marked sensitive.
#[derive(Debug, Clone)]
pub struct CallMetadata {
    authorization: MetadataValue<Ascii>,
    deadline: Option<Duration>,
}

impl Interceptor for CallMetadata {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(deadline) = self.deadline {
            request.set_timeout(deadline);
        }
        let metadata = request.metadata_mut();
        metadata.insert("authorization", self.authorization.clone());
        if let Ok(Some(id)) = REQUEST_ID.try_with(Clone::clone) {
            metadata.insert("x-request-id", id);
        }
        Ok(request)
    }
}

#[derive(Debug, Clone)]
pub struct Upstream {
    /// A few HTTP/2 connections, used in turn: one connection is served by
    /// one task on each side and becomes the bottleneck under load.
    channels: std::sync::Arc<[Channel]>,
    next: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Long-lived balance watches have connections of their own, opened as
    /// they are needed: open streams never take the places of calls.
    watches: std::sync::Arc<WatchConnections>,
    metadata: CallMetadata,
}

/// The connections carrying balance watches, each with its places.
#[derive(Debug)]
struct WatchConnections {
    endpoint: Endpoint,
    open: std::sync::Mutex<Vec<(Channel, std::sync::Arc<tokio::sync::Semaphore>)>>,
}

/// A watch's place on its connection, held until the watch ends.
#[derive(Debug)]
pub struct WatchPlace(#[allow(dead_code)] tokio::sync::OwnedSemaphorePermit);

impl Upstream {
    /// Connects lazily: the edge starts, and answers 503, while payments-grpc is down.
    pub fn new(
        url: &str,
        internal_token: &str,
        tls: Option<tonic::transport::ClientTlsConfig>,
    ) -> anyhow::Result<Self> {
        let mut endpoint = Endpoint::from_shared(url.to_owned())?;
        if let Some(tls) = tls {
            endpoint = endpoint.tls_config(tls)?;
        }
        let endpoint = endpoint
            .connect_timeout(Duration::from_secs(2))
            .timeout(CALL_TIMEOUT)
            .tcp_nodelay(true)
            // payments-grpc closes connections silent for its idle timeout
            // (300 s by default); pings keep ours open and find dead ones.
            .http2_keep_alive_interval(Duration::from_secs(60))
            .keep_alive_timeout(Duration::from_secs(20))
            .keep_alive_while_idle(true);
        let connections = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(2, 8);
        let channels = (0..connections).map(|_| endpoint.connect_lazy()).collect();
        let watches = std::sync::Arc::new(WatchConnections {
            endpoint: endpoint.clone(),
            open: Default::default(),
        });
        let mut authorization: MetadataValue<Ascii> = format!("Bearer {internal_token}").parse()?;
        authorization.set_sensitive(true);
        Ok(Self {
            channels,
            next: Default::default(),
            watches,
            metadata: CallMetadata {
                authorization,
                deadline: Some(CALL_TIMEOUT),
            },
        })
    }

    fn channel(&self) -> Channel {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.channels[n % self.channels.len()].clone()
    }

    pub fn client(&self) -> Client {
        PaymentsServiceClient::with_interceptor(self.channel(), self.metadata.clone())
    }

    /// A client for one balance watch, on a watch connection with a free
    /// place (a new connection when none has one), and that place. The
    /// number of watches is bounded by the caller (`EDGE_MAX_BALANCE_STREAMS`).
    pub fn watch_client(&self) -> (Client, WatchPlace) {
        let mut open = self
            .watches
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (channel, places) in open.iter() {
            if let Ok(place) = places.clone().try_acquire_owned() {
                return (self.watching(channel.clone()), WatchPlace(place));
            }
        }
        let channel = self.watches.endpoint.connect_lazy();
        let places = std::sync::Arc::new(tokio::sync::Semaphore::new(WATCHES_PER_CONNECTION));
        let place = places
            .clone()
            .try_acquire_owned()
            .expect("a new connection has free places");
        open.push((channel.clone(), places));
        (self.watching(channel), WatchPlace(place))
    }

    /// A client for one balance watch: no deadline. Its codec buffers start
    /// small (`payments_proto::codec`), as an open stream keeps them for
    /// its life.
    fn watching(&self, channel: Channel) -> Client {
        let metadata = CallMetadata {
            deadline: None,
            ..self.metadata.clone()
        };
        PaymentsServiceClient::with_interceptor(channel, metadata)
    }

    /// Whether payments-grpc reports itself SERVING.
    pub async fn ready(&self) -> Result<(), String> {
        let mut health = HealthClient::new(self.channel());
        let mut request = tonic::Request::new(HealthCheckRequest {
            service: payments_proto::SERVICE_NAME.into(),
        });
        request.set_timeout(READINESS_TIMEOUT);
        match tokio::time::timeout(READINESS_TIMEOUT, health.check(request)).await {
            Ok(Ok(response)) if response.get_ref().status() == ServingStatus::Serving => Ok(()),
            Ok(Ok(response)) => Err(format!(
                "payments-grpc is {:?}",
                response.get_ref().status()
            )),
            Ok(Err(status)) => Err(format!(
                "payments-grpc health check failed: {}",
                status.code()
            )),
            Err(_) => Err("payments-grpc health check timed out".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_internal_token_is_never_printed() {
        let upstream = Upstream::new("http://127.0.0.1:1", "internal-do-not-log", None).unwrap();
        let shown = format!("{upstream:?}");
        assert!(!shown.contains("do-not-log"), "{shown}");
    }

    #[tokio::test]
    async fn every_call_carries_the_token_the_request_id_and_a_deadline_but_a_watch_none() {
        let upstream = Upstream::new("http://127.0.0.1:1", "internal", None).unwrap();
        let id: MetadataValue<Ascii> = "req-7".parse().unwrap();
        let (call, watch) = REQUEST_ID
            .scope(Some(id), async {
                let call = upstream.metadata.clone().call(tonic::Request::new(()));
                let watch = CallMetadata {
                    deadline: None,
                    ..upstream.metadata.clone()
                }
                .call(tonic::Request::new(()));
                (call.unwrap(), watch.unwrap())
            })
            .await;
        let call = call.metadata();
        assert_eq!(call.get("authorization").unwrap(), "Bearer internal");
        assert_eq!(call.get("x-request-id").unwrap(), "req-7");
        assert_eq!(call.get("grpc-timeout").unwrap(), "10000000u");
        assert_eq!(watch.metadata().get("x-request-id").unwrap(), "req-7");
        assert!(watch.metadata().get("grpc-timeout").is_none());
        // Outside a request (no scope), a call still carries the token.
        let bare = upstream
            .metadata
            .clone()
            .call(tonic::Request::new(()))
            .unwrap();
        assert!(bare.metadata().get("x-request-id").is_none());
        assert!(bare.metadata().get("authorization").is_some());
    }
}
