//! The REST routes through a real edge on an ephemeral port, in front of the
//! real gRPC service (real Postgres, Stripe stand-in), with tokens signed by
//! the test key pair and the key set served over HTTP.

use std::net::SocketAddr;
use std::time::Duration;

use edge_gateway::Application;
use edge_gateway::config::Config;
use edge_gateway::testing::{
    JWKS_JSON, KID, X509_MAP_JSON, claims, id_token, sign, stripe_signature,
};
use payments_grpc::testing::RunningGrpc;
use payments_test_support::event_json;
use payments_test_support::{TestDatabase, assert_balances_match_ledger, count_rows};
use reqwest::StatusCode;
use serde_json::{Value, json};
use service_runtime::now_unix as now;
use stripe_sandbox::{Fault, Sandbox};
use tokio::net::TcpListener;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PROJECT: &str = "demo-project";
const INTERNAL_TOKEN: &str = "edge-test-internal-token";
const WEBHOOK_SECRET: &str = "whsec_edge_test";

/// payments-grpc in process, as built in production, on `addr`.
async fn start_grpc(db: &TestDatabase, stripe: &Sandbox, addr: SocketAddr) -> RunningGrpc {
    let config = payments_grpc::testing::config(&db.url, &stripe.url(), INTERNAL_TOKEN);
    RunningGrpc::start_on(config, TcpListener::bind(addr).await.unwrap()).await
}

struct Stack {
    db: TestDatabase,
    stripe: Sandbox,
    keys: MockServer,
    grpc: RunningGrpc,
    edge: String,
    /// Where the edge's `GET /metrics` answers.
    metrics_addr: SocketAddr,
    http: reqwest::Client,
    /// `true` stops the edge, as SIGTERM does.
    stop_edge: tokio::sync::watch::Sender<bool>,
    edge_task: tokio::task::JoinHandle<()>,
}

impl Stack {
    async fn start() -> Self {
        Self::start_with_keys(JWKS_JSON, 0).await
    }

    async fn start_with_keys(key_set: &str, max_age_secs: u32) -> Self {
        Self::start_configured(key_set, max_age_secs, |_| {}).await
    }

    /// The stack with the edge's configuration changed by `configure`.
    async fn start_configured(
        key_set: &str,
        max_age_secs: u32,
        configure: impl FnOnce(&mut Config),
    ) -> Self {
        let db = TestDatabase::create().await;
        let stripe = Sandbox::start_local().await;
        let grpc = start_grpc(&db, &stripe, "127.0.0.1:0".parse().unwrap()).await;
        let keys = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/keys"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_raw(key_set.as_bytes().to_vec(), "application/json")
                    .insert_header(
                        "cache-control",
                        format!("public, max-age={max_age_secs}").as_str(),
                    ),
            )
            .with_priority(10)
            .mount(&keys)
            .await;
        let mut config = Config::defaults();
        config.edge_addr = "127.0.0.1:0".parse().unwrap();
        config.payments_grpc_url = grpc.url();
        config.payments_internal_token = Some(INTERNAL_TOKEN.into());
        config.stripe_webhook_secret = Some(format!("whsec_old_rotated,{WEBHOOK_SECRET}"));
        config.firebase_project_id = Some(PROJECT.into());
        config.firebase_jwks_url = format!("{}/keys", keys.uri());
        config.webhook_body_limit_bytes = 64 * 1024;
        config.request_timeout_ms = 10_000;
        config.cors_allowed_origins = "https://app.example".into();
        // Tests send many creates per user; the limit has its own test.
        config.rate_limit_creates_per_minute = 1_000;
        configure(&mut config);
        let application = Application::build(config).await.unwrap();
        let edge = format!("http://{}", application.local_addr());
        let metrics_addr = application.metrics_addr();
        let (stop_edge, mut stopping) = tokio::sync::watch::channel(false);
        let edge_task = tokio::spawn(application.run_until(async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        }));
        Self {
            db,
            stripe,
            keys,
            grpc,
            edge,
            metrics_addr,
            http: reqwest::Client::new(),
            stop_edge,
            edge_task,
        }
    }

    fn token(&self, user: &str) -> String {
        id_token(PROJECT, user, now())
    }

    async fn create(&self, token: &str, body: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/payments/create-payment-intent", self.edge))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }

    /// `POST /payments/create-payment-intent` with an `Idempotency-Key`.
    async fn create_with_key(&self, token: &str, key: &str, body: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/payments/create-payment-intent", self.edge))
            .bearer_auth(token)
            .header("idempotency-key", key)
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }

    async fn balance(&self, token: &str) -> reqwest::Response {
        self.http
            .get(format!("{}/balance", self.edge))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    async fn webhook(&self, body: &str, signature: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/stripe/webhook", self.edge))
            .header("stripe-signature", signature)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }

    async fn signed_webhook(&self, body: &str) -> reqwest::Response {
        self.webhook(
            body,
            &stripe_signature(WEBHOOK_SECRET, now(), body.as_bytes()),
        )
        .await
    }

    async fn rows(&self, table: &str) -> i64 {
        count_rows(&mut self.db.connection().await, table).await
    }
}

/// Asserts a problem+json answer and returns its body.
async fn problem(response: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16());
    assert!(
        body["type"]
            .as_str()
            .unwrap()
            .starts_with("urn:credits-topup:problem:"),
        "{body}"
    );
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    body
}

/// Retries like Stripe does (a few times), returning the first 200.
async fn retry_until_ok<F, Fut>(send: F) -> reqwest::Response
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = reqwest::Response>,
{
    let mut last = None;
    for attempt in 0..20 {
        let response = send().await;
        if response.status() == StatusCode::OK {
            return response;
        }
        last = Some(response.status());
        // The channel reconnects with backoff; give it time like Stripe's retry schedule.
        tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await;
    }
    panic!("never answered 200; last status {last:?}");
}

impl Stack {
    /// `GET <path>` with the caller's ID token.
    async fn get(&self, token: &str, path_and_query: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path_and_query}", self.edge))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// A paid top-up of `usd` dollars for the token's user, through the edge.
    async fn paid_top_up(&self, token: &str, usd: u32, event_id: &str) -> String {
        let intent: Value = self
            .create(token, &format!(r#"{{"amount_usd": {usd}}}"#))
            .await
            .json()
            .await
            .unwrap();
        let intent_id = intent["intent_id"].as_str().unwrap().to_owned();
        self.stripe.succeed(&intent_id);
        let event = event_json(event_id, "payment_intent.succeeded", &intent_id);
        assert_eq!(self.signed_webhook(&event).await.status(), StatusCode::OK);
        intent_id
    }
}

mod history;
mod streams;
mod tokens;
mod top_up;
mod webhooks;
