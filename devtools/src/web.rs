//! The web client's development server: the built page (`web/dist`), the
//! configuration a sandbox build reads at start (`/dev-config.json`: where
//! the edge, the sandbox's Stripe.js and the publishable key are), and the
//! dev sign-in (`POST /dev/sign-in`), which signs Firebase-shaped ID tokens
//! with the dev key the local key set publishes. Never part of a
//! production deployment: there the page is static files, the
//! configuration is built in, and Firebase Auth signs the tokens.

use std::net::SocketAddr;
use std::path::Path;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tower_http::services::{ServeDir, ServeFile};

use service_runtime::now_unix;

use crate::local::PROJECT_ID;

/// The publishable key the page is given: the sandbox takes any `pk_test_`.
pub const PUBLISHABLE_KEY: &str = "pk_test_local_sandbox";

/// How long a dev ID token lasts (Firebase's own last an hour).
pub const TOKEN_LIFETIME_SECS: i64 = 3600;

/// What the page needs to know, at `/dev-config.json`.
#[derive(Clone, Debug)]
pub struct DevConfig {
    pub api_base_url: String,
    pub sandbox_url: String,
    pub token_lifetime_secs: i64,
}

#[derive(Deserialize)]
struct SignIn {
    uid: String,
}

/// A Firebase uid as the page may ask for one: 1–128 characters of
/// letters, digits and `-_.@`.
fn acceptable_uid(uid: &str) -> bool {
    (1..=128).contains(&uid.len())
        && uid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
}

fn sign_in(config: &DevConfig, uid: &str) -> Response {
    if !acceptable_uid(uid) {
        return (
            StatusCode::BAD_REQUEST,
            [("content-type", "application/problem+json")],
            Json(
                json!({"type": "about:blank", "title": "Bad Request", "status": 400,
                        "detail": "uid: 1 to 128 characters of letters, digits and -_.@"}),
            ),
        )
            .into_response();
    }
    let now = now_unix();
    let token =
        edge_gateway::testing::id_token_lasting(PROJECT_ID, uid, now, config.token_lifetime_secs);
    Json(json!({
        "id_token": token,
        "expires_at": now + config.token_lifetime_secs,
    }))
    .into_response()
}

/// Serves `dist` (unknown paths get `index.html`, as a single-page app
/// wants), `/dev-config.json` and `POST /dev/sign-in` on `listener`.
pub async fn serve(listener: TcpListener, dist: &Path, config: DevConfig) -> SocketAddr {
    let addr = listener.local_addr().expect("bound listener");
    let page_config = json!({
        "apiBaseUrl": config.api_base_url,
        "stripePublishableKey": PUBLISHABLE_KEY,
        "stripeJsUrl": format!("{}/v3/", config.sandbox_url),
    });
    let files = ServeDir::new(dist).fallback(ServeFile::new(dist.join("index.html")));
    let app = axum::Router::new()
        .route(
            "/dev-config.json",
            get(move || async move { Json(page_config) }),
        )
        .route(
            "/dev/sign-in",
            post(move |Json(body): Json<SignIn>| async move { sign_in(&config, &body.uid) }),
        )
        .fallback_service(files);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

#[cfg(test)]
mod tests {
    use super::acceptable_uid;

    #[test]
    fn a_uid_is_short_and_plain() {
        assert!(acceptable_uid("demo-user"));
        assert!(acceptable_uid("a.b_c@d"));
        assert!(!acceptable_uid(""));
        assert!(!acceptable_uid(&"u".repeat(129)));
        assert!(!acceptable_uid("a b"));
        assert!(!acceptable_uid("ü"));
    }
}
