//! The HTTP server around the router: hyper with a header-read timeout,
//! bounded HTTP/2 streams and header sizes, and connections that are capped
//! in number and closed when silent (`service_runtime::connections`).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use service_runtime::connections::LimitedListener;
use tower::ServiceExt;

/// Request headers larger than this are answered 431.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// Concurrent HTTP/2 streams per connection.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 64;

/// Serves `router` on `listener` until `shutdown`, then lets requests in
/// flight finish (at most `drain` long).
pub async fn serve(
    listener: LimitedListener,
    router: Router,
    header_read_timeout: Duration,
    drain: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // hyper also starts this timer while a kept-alive connection waits
        // for its next request.
        .header_read_timeout(header_read_timeout)
        // The read buffer bounds a request head: larger heads get 431.
        .max_buf_size(MAX_HEADER_BYTES)
        .max_headers(64);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .max_pending_accept_reset_streams(Some(32))
        .max_local_error_reset_streams(Some(64));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request
                .extensions_mut()
                .insert(ConnectInfo::<SocketAddr>(peer));
            router.clone().oneshot(request.map(Body::new))
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain period; closing them");
    }
}
