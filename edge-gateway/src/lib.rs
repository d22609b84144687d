//! The public edge: the SPA's REST API (Firebase ID tokens) and Stripe's
//! webhook (signatures over the raw bytes), forwarded to payments-grpc.

pub mod amount;
pub mod config;
pub mod error;
pub mod firebase;
pub mod keys;
mod routes;
pub mod stripe_signature;
#[cfg(feature = "testing")]
pub mod testing;
pub mod upstream;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use routes::{AppState, router};

/// Serves `router` on `listener` until `shutdown`, then drains requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    request_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state, request_timeout))
        .with_graceful_shutdown(shutdown)
        .await
}

pub(crate) fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}
