//! What a local stack shares: the dev secrets every process of it is given
//! (never real ones: the sandbox accepts any `sk_test_`), and the key set the
//! edge fetches as if it were Google's.

use axum::routing::get;
use tokio::net::TcpListener;

pub const PROJECT_ID: &str = "demo-project";
pub const INTERNAL_TOKEN: &str = "local-internal-token";
/// AdminService's token in the stack.
pub const ADMIN_TOKEN: &str = "local-admin-token";
pub const WEBHOOK_SECRET: &str = "whsec_local_sandbox_secret";
pub const STRIPE_SECRET_KEY: &str = "sk_test_local_sandbox";

/// Serves the test key set (JWK Set) like Google's key URL.
pub async fn serve_key_set(listener: TcpListener) {
    let app = axum::Router::new().route(
        "/jwks.json",
        get(|| async {
            (
                [
                    ("content-type", "application/json"),
                    ("cache-control", "public, max-age=3600"),
                ],
                edge_gateway::testing::JWKS_JSON,
            )
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
}
