//! The HTTP server around the router: hyper with a header-read timeout,
//! bounded HTTP/2 streams and header sizes, and connections that are capped
//! in number and closed when silent (`service_runtime::connections`). Every
//! connection, balance streams' too, is hyper's.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use service_runtime::connections::{LimitedListener, LimitedStream};
use tokio::net::TcpStream;
use tower::ServiceExt;

/// Request headers larger than this are answered 431.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// Request header fields at most; more are answered 431.
pub const MAX_HEADERS: usize = 64;
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
        .max_headers(MAX_HEADERS);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .max_pending_accept_reset_streams(Some(32))
        .max_local_error_reset_streams(Some(64));
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        tokio::spawn(serve_connection(
            stream,
            peer,
            router.clone(),
            builder.clone(),
            graceful.watcher(),
        ));
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain period; closing them");
    }
}

/// Serves one connection with hyper; the drain waits for it through
/// `watcher` (open balance streams end first: `StreamPlaces::close_all`).
async fn serve_connection(
    stream: LimitedStream<TcpStream>,
    peer: SocketAddr,
    router: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    watcher: Watcher,
) {
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request
            .extensions_mut()
            .insert(ConnectInfo::<SocketAddr>(peer));
        router.clone().oneshot(request.map(Body::new))
    });
    let connection = builder
        .serve_connection_with_upgrades(TokioIo::new(stream), service)
        .into_owned();
    // Boxed: the task's own state stays as small as a stream needs.
    if let Err(err) = Box::pin(watcher.watch(connection)).await {
        tracing::debug!(error = %err, %peer, "connection ended with an error");
    }
}
