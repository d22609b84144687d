//! What one client, authenticated or not, can make payments-grpc hold:
//! connections, HTTP/2 streams, message sizes and the long-lived streams of
//! the services that need no token (health `Watch`, reflection).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt;
use service_runtime::connections::ConnectionLimits;
use tokio::sync::Semaphore;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;

/// The largest PaymentsService message: an event as the edge forwards it
/// (its webhook body limit is at most 512 KiB) and the envelope around it.
pub const MAX_CALL_MESSAGE_BYTES: usize = 512 * 1024 + 4 * 1024;
/// Health and reflection requests are a service or symbol name.
pub const MAX_UNAUTHENTICATED_MESSAGE_BYTES: usize = 4 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrpcLimits {
    pub connections: ConnectionLimits,
    /// HTTP/2 streams one connection may have open.
    pub max_streams_per_connection: u32,
    /// Calls one connection may have in progress; more wait for a place.
    pub max_calls_per_connection: usize,
    /// Health `Watch` and reflection streams open at once, over all clients.
    pub max_unauthenticated_streams: usize,
    /// A call must have its answer (headers) within this.
    pub call_timeout: Duration,
}

impl Default for GrpcLimits {
    fn default() -> Self {
        Self {
            connections: ConnectionLimits {
                max_connections: 256,
                first_byte_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(300),
            },
            max_streams_per_connection: 256,
            max_calls_per_connection: 128,
            max_unauthenticated_streams: 64,
            call_timeout: Duration::from_secs(30),
        }
    }
}

/// Gives each streaming call of the wrapped service one of a fixed number
/// of places, held until its answer stream ends; with none free the call is
/// answered RESOURCE_EXHAUSTED at once.
#[derive(Clone)]
pub struct StreamPlaces<S> {
    inner: S,
    places: Arc<Semaphore>,
    is_streaming: fn(&str) -> bool,
}

impl<S> StreamPlaces<S> {
    pub fn new(inner: S, places: Arc<Semaphore>, is_streaming: fn(&str) -> bool) -> Self {
        Self {
            inner,
            places,
            is_streaming,
        }
    }
}

impl<S: NamedService> NamedService for StreamPlaces<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for StreamPlaces<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if !(self.is_streaming)(request.uri().path()) {
            let answer = self.inner.call(request);
            return Box::pin(answer);
        }
        let Ok(place) = self.places.clone().try_acquire_owned() else {
            tracing::warn!(path = %request.uri().path(), "stream refused: every place is taken");
            let refused = crate::proto::error_reason::status(
                tonic::Code::ResourceExhausted,
                "too many open streams; try later",
                crate::proto::error_reason::TOO_MANY_OPEN_STREAMS,
                Default::default(),
            );
            return Box::pin(async move { Ok(refused.into_http()) });
        };
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            Ok(response.map(|body| {
                Body::new(body.map_frame(move |frame| {
                    let _held_until_the_stream_ends = &place;
                    frame
                }))
            }))
        })
    }
}

/// Every reflection call is a stream.
pub fn always(_: &str) -> bool {
    true
}

/// Only `Watch` of the health service is a stream.
pub fn health_watch(path: &str) -> bool {
    path.ends_with("/Watch")
}
