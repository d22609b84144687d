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

#[tokio::test]
async fn a_top_up_end_to_end_through_the_edge() {
    let stack = Stack::start().await;
    let token = stack.token("alice");

    let response = stack
        .create(&token, r#"{"amount_usd": 20, "user_id": "mallory"}"#)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let intent: Value = response.json().await.unwrap();
    let intent_id = intent["intent_id"].as_str().unwrap().to_owned();
    assert_eq!(intent["amount"], 2000);
    assert_eq!(intent["currency"], "usd");
    assert_eq!(intent["status"], "requires_payment_method");
    // Stripe's own secret for that intent, passed through.
    assert_eq!(
        intent["client_secret"],
        stack.stripe.intent_json(&intent_id).unwrap()["client_secret"]
    );
    // The user comes from the token, never from the body.
    assert_eq!(
        stack.stripe.intent(&intent_id).unwrap().metadata["user_id"],
        "alice"
    );

    stack.stripe.succeed(&intent_id);
    let event = event_json("evt_edge_1", "payment_intent.succeeded", &intent_id);
    let response = stack.signed_webhook(&event).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<Value>().await.unwrap()["outcome"],
        "applied"
    );
    let again = stack.signed_webhook(&event).await;
    assert_eq!(again.json::<Value>().await.unwrap()["outcome"], "duplicate");

    let response = stack.balance(&token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let balance: Value = response.json().await.unwrap();
    assert_eq!(balance["balance_cents"], 2000);
    assert_eq!(balance["currency"], "usd");
    assert!(
        balance["updated_at"].as_str().unwrap().ends_with('Z'),
        "{balance}"
    );
    assert_eq!(
        stack
            .balance(&stack.token("mallory"))
            .await
            .json::<Value>()
            .await
            .unwrap()["balance_cents"],
        0
    );
    assert_balances_match_ledger(&mut stack.db.connection().await).await;
}

#[tokio::test]
async fn the_idempotency_key_header_reaches_grpc() {
    let stack = Stack::start().await;
    let token = stack.token("bob");
    let send = || stack.create_with_key(&token, "checkout-42", r#"{"amount_usd": 10}"#);
    let first: Value = send().await.json().await.unwrap();
    let second: Value = send().await.json().await.unwrap();
    assert_eq!(first, second);
    assert_eq!(stack.stripe.intent_count(), 1);

    let conflict = stack
        .create_with_key(&token, "checkout-42", r#"{"amount_usd": 20}"#)
        .await;
    problem(conflict, StatusCode::CONFLICT).await;
}

#[tokio::test]
async fn bad_tokens_are_401_with_www_authenticate() {
    let stack = Stack::start().await;
    let mut expired_claims = claims(PROJECT, "alice", now());
    expired_claims["exp"] = json!(now() - 3600);
    let mut wrong_aud = claims(PROJECT, "alice", now());
    wrong_aud["aud"] = json!("other-project");
    let tokens = [
        None,
        Some("garbage".to_owned()),
        Some(sign(
            &expired_claims,
            KID,
            edge_gateway::testing::PRIVATE_KEY_PEM,
        )),
        Some(sign(
            &wrong_aud,
            KID,
            edge_gateway::testing::PRIVATE_KEY_PEM,
        )),
        Some(sign(
            &claims(PROJECT, "alice", now()),
            KID,
            edge_gateway::testing::OTHER_PRIVATE_KEY_PEM,
        )),
        Some(sign(
            &claims(PROJECT, "alice", now()),
            "unknown-kid",
            edge_gateway::testing::PRIVATE_KEY_PEM,
        )),
    ];
    for token in tokens {
        let mut request = stack.http.get(format!("{}/balance", stack.edge));
        if let Some(token) = &token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            response.headers()["www-authenticate"],
            r#"Bearer error="invalid_token""#
        );
        problem(response, StatusCode::UNAUTHORIZED).await;
        let response = stack
            .create(token.as_deref().unwrap_or(""), r#"{"amount_usd": 10}"#)
            .await;
        problem(response, StatusCode::UNAUTHORIZED).await;
    }
    assert!(stack.stripe.requests_to("POST", "/v1").await.is_empty());
}

#[tokio::test]
async fn bad_amounts_are_422_naming_the_tiers_and_stripe_is_never_called() {
    let stack = Stack::start().await;
    let token = stack.token("carol");
    for body in [
        r#"{"amount_usd": 7}"#,
        r#"{"amount_usd": -10}"#,
        r#"{"amount_usd": 10.001}"#,
        r#"{"amount_usd": "ten"}"#,
        r#"{}"#,
    ] {
        let body = problem(
            stack.create(&token, body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert!(
            body["detail"].as_str().unwrap().contains("5, 10, 20, 50"),
            "{body}"
        );
    }
    problem(
        stack.create(&token, "{not json").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    let huge = format!(r#"{{"amount_usd": 10, "pad": "{}"}}"#, "x".repeat(20_000));
    problem(
        stack.create(&token, &huge).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    assert!(
        stack.stripe.requests_to("POST", "/v1").await.is_empty(),
        "Stripe was called"
    );
    assert_eq!(stack.rows("payments").await, 0);
}

#[tokio::test]
async fn bad_webhooks_are_400_and_change_nothing() {
    let stack = Stack::start().await;
    let event = event_json("evt_bad", "payment_intent.succeeded", "pi_x");
    let signature = stripe_signature(WEBHOOK_SECRET, now(), event.as_bytes());

    problem(stack.webhook(&event, "").await, StatusCode::BAD_REQUEST).await;
    problem(
        stack
            .webhook(
                &event,
                &stripe_signature("whsec_wrong", now(), event.as_bytes()),
            )
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    problem(
        stack
            .webhook(&event.replace("evt_bad", "evt_bae"), &signature)
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    let stale = stripe_signature(WEBHOOK_SECRET, now() - 301, event.as_bytes());
    problem(stack.webhook(&event, &stale).await, StatusCode::BAD_REQUEST).await;
    // Signed correctly, but not a Stripe event.
    let body = problem(
        stack.signed_webhook(r#"{"hello": "world"}"#).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("not a Stripe event"),
        "{body}"
    );
    problem(
        stack.signed_webhook("not json").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    for hostile in [
        r#"["evt_1", "payment_intent.succeeded", {"object": {"id": "pi_1"}}]"#,
        r#"{"id": "evt_1", "id": "evt_2", "type": "payment_intent.succeeded", "data": {"object": {}}}"#,
        r#"{"id": 12, "type": "payment_intent.succeeded", "data": {"object": {}}}"#,
        r#"{"id": "evt_1", "type": "payment_intent.succeeded"}"#,
        "\"evt_1\"",
    ] {
        problem(stack.signed_webhook(hostile).await, StatusCode::BAD_REQUEST).await;
    }
    let huge = format!(r#"{{"id": "evt_1", "pad": "{}"}}"#, "x".repeat(70_000));
    problem(
        stack.signed_webhook(&huge).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    assert_eq!(stack.rows("stripe_events").await, 0);
    assert_eq!(stack.rows("ignored_stripe_events").await, 0);

    // The rotated-out secret is still accepted while it is configured.
    let rotated = stripe_signature("whsec_old_rotated", now(), event.as_bytes());
    let response = stack.webhook(&event, &rotated).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<Value>().await.unwrap()["outcome"],
        "ignored"
    );
}

#[tokio::test]
async fn an_internal_failure_is_a_500_that_leaks_nothing() {
    let stack = Stack::start().await;
    // Stripe refuses payments-grpc's API key: an operator's problem, not the user's.
    stack
        .stripe
        .fail_next(
            "POST",
            1,
            Fault::error(
                401,
                "invalid_request_error",
                "",
                "Invalid API Key provided: sk_test_****",
            ),
        )
        .await;
    let body = problem(
        stack
            .create(&stack.token("ivan"), r#"{"amount_usd": 10}"#)
            .await,
        StatusCode::INTERNAL_SERVER_ERROR,
    )
    .await;
    let text = body.to_string();
    assert!(
        !text.contains("sk_test") && !text.contains("API Key"),
        "{text}"
    );
}

#[tokio::test]
async fn the_grpc_service_down_answers_503_then_200_once_it_is_back() {
    let mut stack = Stack::start().await;
    let token = stack.token("dave");
    let intent: Value = stack
        .create(&token, r#"{"amount_usd": 50}"#)
        .await
        .json()
        .await
        .unwrap();
    let intent_id = intent["intent_id"].as_str().unwrap().to_owned();
    stack.stripe.succeed(&intent_id);
    let event = event_json("evt_outage", "payment_intent.succeeded", &intent_id);

    let addr = stack.grpc.addr();
    stack.grpc.stop().await;
    let response = stack.signed_webhook(&event).await;
    assert!(response.status().is_server_error(), "{}", response.status());
    problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
    problem(stack.balance(&token).await, StatusCode::SERVICE_UNAVAILABLE).await;
    let ready = stack
        .http
        .get(format!("{}/readyz", stack.edge))
        .send()
        .await
        .unwrap();
    problem(ready, StatusCode::SERVICE_UNAVAILABLE).await;
    let live = stack
        .http
        .get(format!("{}/healthz", stack.edge))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), StatusCode::OK);

    // Stripe retries after payments-grpc is back on the same address.
    stack.grpc = start_grpc(&stack.db, &stack.stripe, addr).await;
    let response = retry_until_ok(|| stack.signed_webhook(&event)).await;
    assert_eq!(
        response.json::<Value>().await.unwrap()["outcome"],
        "applied"
    );
    let balance: Value = stack.balance(&token).await.json().await.unwrap();
    assert_eq!(balance["balance_cents"], 5000);
    let ready = stack
        .http
        .get(format!("{}/readyz", stack.edge))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_config_is_public_cached_and_names_what_payments_grpc_sells() {
    let mut stack = Stack::start().await;
    let config_url = format!("{}/config", stack.edge);
    let get_config = || async { stack.http.get(&config_url).send().await.unwrap() };
    // Before payments-grpc ever answered, the edge has nothing to serve.
    let addr = stack.grpc.addr();
    stack.grpc.stop().await;
    problem(get_config().await, StatusCode::SERVICE_UNAVAILABLE).await;

    // payments-grpc back, selling other tiers: no other setting changes.
    let mut config =
        payments_grpc::testing::config(&stack.db.url, &stack.stripe.url(), INTERNAL_TOKEN);
    config.topup_tiers_usd = payments_domain::Tiers::parse_usd("7,15,40").unwrap();
    stack.grpc = RunningGrpc::start_on(config, TcpListener::bind(addr).await.unwrap()).await;
    let response = retry_until_ok(get_config).await;
    assert_eq!(response.headers()["cache-control"], "public, max-age=60");
    let expected = json!({"tiers_usd": [7, 15, 40], "currency": "usd"});
    assert_eq!(response.json::<Value>().await.unwrap(), expected);

    // Amounts the edge cannot read, and amounts payments-grpc refuses, are
    // answered naming the same tiers.
    let token = stack.token("config-user");
    for body in [r#"{"amount_usd": "ten"}"#, r#"{"amount_usd": 10}"#] {
        let refused = problem(
            stack.create(&token, body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert!(
            refused["detail"]
                .as_str()
                .unwrap()
                .ends_with("allowed tiers (USD): 7, 15, 40"),
            "{refused}"
        );
    }
    let created = stack.create(&token, r#"{"amount_usd": 15}"#).await;
    assert_eq!(created.status(), StatusCode::OK);

    // Kept: a flood while payments-grpc is gone is still answered.
    stack.grpc.stop().await;
    let answers = futures::future::join_all((0..50).map(|_| get_config())).await;
    for answer in answers {
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(answer.json::<Value>().await.unwrap(), expected);
    }
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

#[tokio::test]
async fn cached_keys_keep_working_when_the_key_url_fails() {
    let stack = Stack::start_with_keys(X509_MAP_JSON, 0).await;
    let token = stack.token("erin");
    assert_eq!(stack.balance(&token).await.status(), StatusCode::OK);

    // Google's key URL starts failing; max-age=0 makes every request try a refresh.
    Mock::given(method("GET"))
        .and(path("/keys"))
        .respond_with(ResponseTemplate::new(500))
        .with_priority(1)
        .mount(&stack.keys)
        .await;
    // New tokens (not in the verified-token cache) still verify with the cached keys.
    for n in 0..3 {
        let mut fresh = claims(PROJECT, "erin", now());
        fresh["iat"] = json!(now() - 100 - n);
        let fresh = sign(&fresh, KID, edge_gateway::testing::PRIVATE_KEY_PEM);
        assert_eq!(stack.balance(&fresh).await.status(), StatusCode::OK);
    }
    // And an unknown kid does not hammer the failing URL.
    let unknown = sign(
        &claims(PROJECT, "erin", now()),
        "new-kid",
        edge_gateway::testing::PRIVATE_KEY_PEM,
    );
    for _ in 0..3 {
        problem(stack.balance(&unknown).await, StatusCode::UNAUTHORIZED).await;
    }
    let fetches = stack.keys.received_requests().await.unwrap().len();
    assert!(fetches <= 3, "{fetches} key fetches");
}

#[tokio::test]
async fn a_hanging_key_url_never_stalls_requests_while_good_keys_are_held() {
    let stack = Stack::start_with_keys(JWKS_JSON, 0).await;
    assert_eq!(
        stack.balance(&stack.token("gina")).await.status(),
        StatusCode::OK
    );
    // Google's key URL now hangs; max-age=0 makes every request want a refresh.
    Mock::given(method("GET"))
        .and(path("/keys"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .with_priority(1)
        .mount(&stack.keys)
        .await;
    for n in 0..5 {
        // New tokens each time, so none is answered from the verified-token cache.
        let mut fresh = claims(PROJECT, "gina", now());
        fresh["iat"] = json!(now() - 100 - n);
        let fresh = sign(&fresh, KID, edge_gateway::testing::PRIVATE_KEY_PEM);
        let answered = tokio::time::timeout(Duration::from_secs(1), stack.balance(&fresh)).await;
        assert_eq!(
            answered.expect("answered while the refresh hangs").status(),
            StatusCode::OK
        );
    }
    // One refresh at a time: the fetches before the URL hung (one or two,
    // as the first request raced the warm-up), then the one that hangs.
    let fetches = stack.keys.received_requests().await.unwrap().len();
    assert!(fetches <= 3, "{fetches} key fetches");
}

#[tokio::test]
async fn concurrent_requests_share_one_key_fetch() {
    let stack = Stack::start_with_keys(JWKS_JSON, 300).await;
    let token = stack.token("frank");
    let calls = (0..10).map(|_| stack.balance(&token));
    for response in futures::future::join_all(calls).await {
        assert_eq!(response.status(), StatusCode::OK);
    }
    // One fetch, shared by the concurrent first requests, then cached for max-age.
    let fetches = stack.keys.received_requests().await.unwrap().len();
    assert_eq!(fetches, 1, "{fetches} fetches for 10 concurrent requests");
}

#[tokio::test]
async fn cors_allows_only_the_configured_origin() {
    let stack = Stack::start().await;
    let preflight = |origin: &'static str| {
        stack
            .http
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/payments/create-payment-intent", stack.edge),
            )
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type,idempotency-key",
            )
            .send()
    };
    let allowed = preflight("https://app.example").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let refused = preflight("https://evil.example").await.unwrap();
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_unknown_routes_are_problems() {
    let stack = Stack::start().await;
    let response = stack
        .http
        .get(format!("{}/nope", stack.edge))
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key("x-request-id"));
    problem(response, StatusCode::NOT_FOUND).await;
    let response = stack
        .http
        .get(format!("{}/healthz", stack.edge))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "abc-123");
}

#[tokio::test]
async fn hostile_request_ids_are_replaced_never_logged_or_forwarded_as_sent() {
    let stack = Stack::start().await;
    let token = stack.token("request-ids");
    for hostile in [
        "x".repeat(20 * 1024),
        "x".repeat(65),
        "abc level=ERROR msg=forged".to_owned(),
        "id\"quoted".to_owned(),
        "caf\u{e9}".to_owned(),
    ] {
        // A balance read goes through payments-grpc with the id forwarded.
        let response = stack
            .http
            .get(format!("{}/balance", stack.edge))
            .bearer_auth(&token)
            .header("x-request-id", hostile.as_bytes())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{hostile:.40}");
        let given = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_ne!(given, hostile);
        assert!(
            given.len() <= 64
                && given
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-'),
            "{given:?}"
        );
    }
}

#[tokio::test]
async fn hostile_create_bodies_are_4xx_never_500_and_write_nothing() {
    let stack = Stack::start().await;
    let token = stack.token("hostile");
    let bodies = [
        r#"{"amount_usd": [10]}"#.to_owned(),
        r#"{"amount_usd": {"$gt": 0}}"#.to_owned(),
        r#"{"amount_usd": "１０"}"#.to_owned(),
        r#"{"amount_usd": "10"}"#.to_owned(),
        r#"{"amount_usd": 1e400}"#.to_owned(),
        r#"{"amount_usd": 99999999999999999999999999}"#.to_owned(),
        r#"{"amount_usd": -5}"#.to_owned(),
        r#"{"amount_usd": 5.001}"#.to_owned(),
        r#"{"amount_usd": null}"#.to_owned(),
        r#"{"amount_usd": 10, "amount_usd": 50}"#.to_owned(),
        r#"{}"#.to_owned(),
        r#"[]"#.to_owned(),
        "null".to_owned(),
        "\u{0}".to_owned(),
        format!(r#"{{"amount_usd": 10, "{}": 1}}"#, "\u{1F4B0}".repeat(5000)),
        "{".repeat(10_000),
    ];
    for body in &bodies {
        let response = stack.create(&token, body).await;
        let status = response.status();
        assert!(status.is_client_error(), "{status} for {:.80}", body);
        problem(response, status).await;
    }
    // Idempotency keys that are empty (the header present: a client's bug,
    // not "no key"), not visible ASCII, or over-long.
    for key in ["", "has space", "tab\tkey", &"k".repeat(300)] {
        let response = stack
            .create_with_key(&token, key, r#"{"amount_usd": 10}"#)
            .await;
        problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    }
    assert!(
        stack.stripe.requests_to("POST", "/v1").await.is_empty(),
        "Stripe was called"
    );
    assert_eq!(stack.rows("payments").await, 0);
}

#[tokio::test]
async fn stripe_failing_during_create_is_503_and_a_retry_with_the_same_key_makes_one_intent() {
    let stack = Stack::start().await;
    let token = stack.token("retrier");
    let create = || stack.create_with_key(&token, "checkout-7", r#"{"amount_usd": 20}"#);
    let faults = [
        Fault::error(500, "api_error", "", "Stripe had a problem"),
        Fault::error(
            429,
            "invalid_request_error",
            "rate_limit",
            "Too many requests",
        ),
        Fault::body(200, "").after(Duration::from_secs(3)),
    ];
    for fault in faults {
        // Every attempt of payments-grpc's retry loop fails the same way.
        stack.stripe.fail_next("POST", 3, fault).await;
        let body = problem(create().await, StatusCode::SERVICE_UNAVAILABLE).await;
        assert_eq!(body["detail"], "try again shortly");
    }
    assert_eq!(stack.rows("payments").await, 0);

    let response = create().await;
    assert_eq!(response.status(), StatusCode::OK);
    let again: Value = create().await.json().await.unwrap();
    assert_eq!(response.json::<Value>().await.unwrap(), again);
    assert_eq!(
        stack.stripe.intent_count(),
        1,
        "one intent for one request, whatever failed before"
    );
    assert_eq!(stack.rows("payments").await, 1);
    let keys: std::collections::HashSet<_> = stack
        .stripe
        .requests_to("POST", "/v1/payment_intents")
        .await
        .iter()
        .map(|r| r.headers.get("idempotency-key").unwrap().clone())
        .collect();
    assert_eq!(
        keys.len(),
        1,
        "every attempt and retry used one Stripe Idempotency-Key"
    );
}

#[tokio::test]
async fn creates_past_the_per_user_limit_are_429_with_retry_after_before_stripe() {
    let stack = Stack::start_configured(JWKS_JSON, 0, |config| {
        config.rate_limit_creates_per_minute = 3;
    })
    .await;
    let token = stack.token("flooder");
    for n in 0..3 {
        let key = format!("flood-{n}");
        let response = stack
            .create_with_key(&token, &key, r#"{"amount_usd": 10}"#)
            .await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let intents_before = stack.stripe.intent_count();
    for body in [r#"{"amount_usd": 10}"#, "not even json"] {
        let response = stack.create_with_key(&token, "flood-x", body).await;
        let retry_after: u64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=21).contains(&retry_after), "{retry_after}");
        let body = problem(response, StatusCode::TOO_MANY_REQUESTS).await;
        assert_eq!(body["type"], "urn:credits-topup:problem:rate-limited");
    }
    assert_eq!(
        stack.stripe.intent_count(),
        intents_before,
        "Stripe never called"
    );
    // Another user is not affected.
    let other = stack.token("neighbour");
    assert_eq!(
        stack.create(&other, r#"{"amount_usd": 10}"#).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_user_holding_the_most_open_intents_is_refused_a_new_one() {
    let stack = Stack::start().await;
    let token = stack.token("hoarder");
    for n in 0..20 {
        let response = stack
            .create_with_key(&token, &format!("open-{n}"), r#"{"amount_usd": 5}"#)
            .await;
        assert_eq!(response.status(), StatusCode::OK, "intent {n}");
    }
    let intents_before = stack.stripe.intent_count();
    let body = problem(
        stack
            .create_with_key(&token, "open-20", r#"{"amount_usd": 5}"#)
            .await,
        StatusCode::TOO_MANY_REQUESTS,
    )
    .await;
    assert_eq!(
        body["type"],
        "urn:credits-topup:problem:too-many-open-intents"
    );
    assert_eq!(
        stack.stripe.intent_count(),
        intents_before,
        "Stripe never called"
    );
    // A retry of an open intent's create is still answered (no new intent).
    let replay = stack
        .create_with_key(&token, "open-3", r#"{"amount_usd": 5}"#)
        .await;
    assert_eq!(replay.status(), StatusCode::OK);
    // Once one is paid, a new one can be created.
    let paid = stack.stripe.intent_ids()[0].clone();
    stack.stripe.succeed(&paid);
    let event = payments_test_support::event_json("evt_paid", "payment_intent.succeeded", &paid);
    assert_eq!(stack.signed_webhook(&event).await.status(), StatusCode::OK);
    assert_eq!(
        stack
            .create_with_key(&token, "open-21", r#"{"amount_usd": 5}"#)
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn poison_events_with_control_characters_are_400_not_500_and_write_nothing() {
    let stack = Stack::start().await;
    for body in [
        r#"{"id":"evt_\u0000","object":"event","type":"payment_intent.succeeded","data":{"object":{"id":"pi_1"}}}"#,
        r#"{"id":"evt_1","object":"event","type":"payment_intent.succeeded\u0000","data":{"object":{"id":"pi_1"}}}"#,
        r#"{"id":"evt_2","object":"event","type":"payment_intent.succeeded","data":{"object":{"id":"pi_\u0000"}}}"#,
    ] {
        let body = problem(stack.signed_webhook(body).await, StatusCode::BAD_REQUEST).await;
        assert_eq!(body["type"], "urn:credits-topup:problem:invalid-webhook");
    }
    let mut conn = stack.db.connection().await;
    assert_eq!(count_rows(&mut conn, "stripe_events").await, 0);
    assert_eq!(count_rows(&mut conn, "ignored_stripe_events").await, 0);
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

#[tokio::test]
async fn the_history_routes_page_the_callers_own_rows_newest_first() {
    let stack = Stack::start().await;
    let token = stack.token("hana");
    let first = stack.paid_top_up(&token, 10, "evt_h1").await;
    let second = stack.paid_top_up(&token, 20, "evt_h2").await;
    stack.paid_top_up(&stack.token("ivan"), 5, "evt_h3").await;

    let page: Value = stack
        .get(&token, "/payments?limit=1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["payments"].as_array().unwrap().len(), 1);
    let newest = &page["payments"][0];
    assert_eq!(newest["intent_id"], second.as_str());
    assert_eq!(newest["status"], "succeeded");
    assert_eq!(newest["amount_received_cents"], 2000);
    assert_eq!(newest["amount_refunded_cents"], 0);
    assert_eq!(newest["failure_code"], Value::Null);
    assert!(
        newest["created_at"].as_str().unwrap().ends_with('Z'),
        "{newest}"
    );
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let rest: Value = stack
        .get(&token, &format!("/payments?limit=1&cursor={cursor}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rest["payments"][0]["intent_id"], first.as_str());
    assert_eq!(rest["next_cursor"], Value::Null);

    let ledger: Value = stack.get(&token, "/ledger").await.json().await.unwrap();
    let entries = ledger["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "hana's only: {ledger}");
    assert_eq!(entries[0]["kind"], "top_up");
    assert_eq!(entries[0]["amount_cents"], 2000);
    assert_eq!(entries[0]["balance_after_cents"], 3000);
    assert_eq!(entries[0]["reference"], second.as_str());
    assert_eq!(entries[1]["balance_after_cents"], 1000);
    assert_eq!(ledger["next_cursor"], Value::Null);

    // Another user's cursor is refused, and shows nothing of hana's.
    let refused = stack
        .get(
            &stack.token("ivan"),
            &format!("/payments?limit=1&cursor={cursor}"),
        )
        .await;
    let body = problem(refused, StatusCode::BAD_REQUEST).await;
    assert_eq!(body["type"], "urn:credits-topup:problem:invalid-query");
}

#[tokio::test]
async fn bad_history_queries_are_400_and_no_token_is_401() {
    let stack = Stack::start().await;
    let token = stack.token("jude");
    for path in ["/ledger", "/payments"] {
        for query in [
            "?limit=0",
            "?limit=-5",
            "?limit=501",
            "?limit=99999999999999999999",
            "?limit=abc",
            "?cursor=L1.0000000000000000.5",
            "?cursor=P1.forged",
            "?cursor=%00",
            "?limit=1&limit=2",
        ] {
            let response = stack.get(&token, &format!("{path}{query}")).await;
            let body = problem(response, StatusCode::BAD_REQUEST).await;
            assert_eq!(
                body["type"], "urn:credits-topup:problem:invalid-query",
                "{path}{query}"
            );
        }
        let response = stack
            .http
            .get(format!("{}{path}", stack.edge))
            .send()
            .await
            .unwrap();
        problem(response, StatusCode::UNAUTHORIZED).await;
        let empty: Value = stack.get(&token, path).await.json().await.unwrap();
        assert_eq!(empty["next_cursor"], Value::Null, "{empty}");
    }
}

/// The text of an open event stream, read until `wanted` appears in it or
/// `within` passes; `None` when the stream ends first.
async fn read_until(
    response: &mut reqwest::Response,
    seen: &mut String,
    wanted: &str,
    within: std::time::Duration,
) -> Option<()> {
    let deadline = tokio::time::Instant::now() + within;
    while !seen.contains(wanted) {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .unwrap_or_else(|_| panic!("{wanted:?} did not come in time; got {seen:?}"))
            .unwrap()?;
        seen.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    Some(())
}

#[tokio::test]
async fn the_balance_stream_sends_the_balance_then_each_change() {
    let stack = Stack::start().await;
    let token = stack.token("kira");
    let mut response = stack.get(&token, "/balance/stream").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");

    let mut seen = String::new();
    let second = std::time::Duration::from_secs(5);
    read_until(&mut response, &mut seen, "\n\n", second)
        .await
        .unwrap();
    assert!(
        seen.starts_with("event: balance\ndata: {\"balance_cents\":0,"),
        "{seen:?}"
    );

    stack.paid_top_up(&token, 10, "evt_stream_1").await;
    read_until(&mut response, &mut seen, "\"balance_cents\":1000", second)
        .await
        .unwrap();
    // Another user's top-up is not in kira's stream.
    stack
        .paid_top_up(&stack.token("liam"), 5, "evt_stream_2")
        .await;
    stack.paid_top_up(&token, 5, "evt_stream_3").await;
    read_until(&mut response, &mut seen, "\"balance_cents\":1500", second)
        .await
        .unwrap();
    assert!(!seen.contains("\"balance_cents\":500,"), "{seen:?}");

    let unauthenticated = stack
        .http
        .get(format!("{}/balance/stream", stack.edge))
        .send()
        .await
        .unwrap();
    problem(unauthenticated, StatusCode::UNAUTHORIZED).await;
}

/// A stopping edge ends its balance streams at once: their clients
/// reconnect to another replica, and the drain does not wait its whole
/// period (request timeout + 1 s, 11 s here) on them.
#[tokio::test]
async fn a_stopping_edge_ends_its_balance_streams_at_once() {
    let stack = Stack::start().await;
    let mut response = stack.get(&stack.token("ned"), "/balance/stream").await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut seen = String::new();
    let soon = std::time::Duration::from_secs(5);
    read_until(&mut response, &mut seen, "event: balance", soon)
        .await
        .unwrap();

    stack.stop_edge.send_replace(true);
    let ended = read_until(&mut response, &mut seen, "never sent", soon).await;
    assert_eq!(ended, None, "{seen:?}");
    tokio::time::timeout(soon, stack.edge_task)
        .await
        .expect("the edge stopped well inside its drain period")
        .unwrap();
}

/// Open streams are bounded per user (429) and per edge (503), and each
/// holds a place on a watch connection of its own, not on the calls'.
#[tokio::test]
async fn balance_streams_are_bounded_per_user_and_per_edge() {
    let stack = Stack::start_configured(JWKS_JSON, 0, |config| {
        config.edge_max_balance_streams = 3;
        config.edge_max_balance_streams_per_user = 2;
    })
    .await;
    let nora = stack.token("nora");
    let first = stack.get(&nora, "/balance/stream").await;
    let second = stack.get(&nora, "/balance/stream").await;
    assert_eq!(
        (first.status(), second.status()),
        (StatusCode::OK, StatusCode::OK)
    );
    let third = stack.get(&nora, "/balance/stream").await;
    let body = problem(third, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(body["type"], "urn:credits-topup:problem:too-many-streams");

    let otto = stack.get(&stack.token("otto"), "/balance/stream").await;
    assert_eq!(otto.status(), StatusCode::OK);
    let full = stack.get(&stack.token("pia"), "/balance/stream").await;
    let body = problem(full, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["type"], "urn:credits-topup:problem:overloaded");
    // Calls still go through while every stream place is taken.
    assert_eq!(stack.balance(&nora).await.status(), StatusCode::OK);
}

/// A stream's places are given back when its client goes away: a closed
/// tab does not keep the user's place until its next heartbeat fails.
#[tokio::test]
async fn a_balance_stream_whose_client_left_gives_its_place_back() {
    let stack = Stack::start_configured(JWKS_JSON, 0, |config| {
        config.edge_max_balance_streams_per_user = 1;
    })
    .await;
    let nora = stack.token("nora");
    let mut first = stack.get(&nora, "/balance/stream").await;
    assert_eq!(first.status(), StatusCode::OK);
    let mut seen = String::new();
    let wait = std::time::Duration::from_secs(5);
    read_until(&mut first, &mut seen, "event: balance", wait)
        .await
        .unwrap();
    let held = stack.get(&nora, "/balance/stream").await;
    problem(held, StatusCode::TOO_MANY_REQUESTS).await;

    // Dropping a response mid-body closes its connection.
    drop(first);
    let deadline = tokio::time::Instant::now() + wait;
    let again = loop {
        let response = stack.get(&nora, "/balance/stream").await;
        if response.status() != StatusCode::TOO_MANY_REQUESTS {
            break response;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place was not given back within {wait:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(again.status(), StatusCode::OK);
}

/// A raw connection to the edge, for what an HTTP client would tidy away.
async fn raw_connection(stack: &Stack) -> tokio::net::TcpStream {
    let address = stack.edge.trim_start_matches("http://");
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// What `stream` sends until `wanted` is in it, or until it closes (or is
/// reset) when `wanted` is `None`; within 5 s.
async fn raw_read(stream: &mut tokio::net::TcpStream, wanted: Option<&str>) -> String {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = String::from_utf8_lossy(&seen).into_owned();
        if wanted.is_some_and(|wanted| text.contains(wanted)) {
            return text;
        }
        let read = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{wanted:?} did not come in time; got {text:?}"))
            .unwrap_or(0);
        if read == 0 {
            assert!(wanted.is_none(), "closed before {wanted:?}; got {text:?}");
            return text;
        }
        seen.extend_from_slice(&buf[..read]);
    }
}

/// Over HTTP/1.1 a balance stream is hyper's like any answer: its head may
/// come in pieces, its events are chunked on a connection kept open.
#[tokio::test]
async fn an_http1_balance_stream_is_chunked_by_hyper() {
    use tokio::io::AsyncWriteExt;
    let stack = Stack::start().await;
    let token = stack.token("vera");
    let mut stream = raw_connection(&stack).await;
    let authorization = format!("zation: Bearer {token}\r\n\r\n");
    for piece in [
        "GET /bal",
        "ance/stream?from=tab HTTP/1.1\r\nHost: edge\r\nAuthori",
        &authorization,
    ] {
        stream.write_all(piece.as_bytes()).await.unwrap();
    }
    let seen = raw_read(&mut stream, Some("\"balance_cents\":0,")).await;
    let (head, events) = seen.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    let head = head.to_lowercase();
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert!(
        events.contains("event: balance\ndata: {\"balance_cents\":0,"),
        "{events:?}"
    );

    stack.paid_top_up(&token, 10, "evt_raw_stream_1").await;
    raw_read(&mut stream, Some("\"balance_cents\":1000,")).await;
}

/// A stream request's head that cannot be read is answered by hyper (400
/// or 431, no body, closed), before any handler; one without a token as
/// every route answers it.
#[tokio::test]
async fn bad_http1_stream_requests_are_refused_before_any_handler() {
    use tokio::io::AsyncWriteExt;
    let stack = Stack::start().await;
    // Exactly the 32 KiB a head may take, with no end: all of it is read.
    let opening = "GET /balance/stream HTTP/1.1\r\nX-Big: ";
    let endless = format!("{opening}{}", "a".repeat(32 * 1024 - opening.len()));
    let too_many = format!(
        "GET /balance/stream HTTP/1.1\r\n{}\r\n",
        (0..65).map(|n| format!("X-{n}: 1\r\n")).collect::<String>()
    );
    for (head, status) in [
        (endless.as_str(), "431"),
        (too_many.as_str(), "431"),
        ("GET /balance/stream HTTP/1.1\r\nBad Name: 1\r\n\r\n", "400"),
        (
            "GET /balance/stream HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "400",
        ),
        ("GET /balance/stream HTTP/9.9\r\n\r\n", "400"),
    ] {
        let mut stream = raw_connection(&stack).await;
        stream.write_all(head.as_bytes()).await.unwrap();
        let answer = raw_read(&mut stream, None).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{answer:?} to {:?}",
            &head[..head.len().min(80)]
        );
        let head = answer.to_lowercase();
        assert!(
            head.contains("\r\nconnection: close\r\n")
                && head.contains("\r\ncontent-length: 0\r\n")
                && head.ends_with("\r\n\r\n"),
            "{answer:?}"
        );
    }

    let mut stream = raw_connection(&stack).await;
    stream
        .write_all(b"GET /balance/stream HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = raw_read(&mut stream, None).await;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{head}");
    assert!(
        head.contains("content-type: application/problem+json"),
        "{head}"
    );
    assert!(
        head.contains(&format!("content-length: {}\r\n", body.len())),
        "{head}"
    );
    let problem: Value = serde_json::from_str(body).unwrap();
    assert_eq!(problem["status"], 401, "{problem}");
}

/// A connection that starts a stream request and stalls is cut at the
/// header-read timeout, as hyper cuts any other.
#[tokio::test]
async fn a_stalled_http1_stream_request_is_cut_at_the_header_read_timeout() {
    use tokio::io::AsyncWriteExt;
    let stack = Stack::start_configured(JWKS_JSON, 0, |config| {
        config.edge_header_read_timeout_ms = 300;
    })
    .await;
    for stalled in [
        "GET /balance/str",
        "GET /balance/stream HTTP/1.1\r\nHost: e",
    ] {
        let mut stream = raw_connection(&stack).await;
        stream.write_all(stalled.as_bytes()).await.unwrap();
        let started = tokio::time::Instant::now();
        assert_eq!(raw_read(&mut stream, None).await, "", "{stalled:?}");
        assert!(started.elapsed() < Duration::from_secs(2), "{stalled:?}");
    }
}

#[tokio::test]
async fn the_balance_stream_sends_heartbeats_and_ends_when_the_token_expires() {
    let stack = Stack::start().await;
    let mut claims = edge_gateway::testing::claims(PROJECT, "mia", now());
    claims["exp"] = (now() + 18).into();
    let token = sign(&claims, KID, edge_gateway::testing::PRIVATE_KEY_PEM);
    let mut response = stack.get(&token, "/balance/stream").await;
    assert_eq!(response.status(), StatusCode::OK);

    let mut seen = String::new();
    let wait = std::time::Duration::from_secs(17);
    read_until(&mut response, &mut seen, "event: balance", wait)
        .await
        .unwrap();
    read_until(&mut response, &mut seen, ": heartbeat\n", wait)
        .await
        .unwrap();
    // Ended at the token's expiry: the client reconnects with a fresh token.
    let ended = read_until(&mut response, &mut seen, "never sent", wait).await;
    assert_eq!(ended, None, "{seen:?}");
}

/// A token past its `exp` but inside the clock leeway still makes calls,
/// but gets no stream: a 401 at once, not a 200 that ends straight away
/// (which a reconnecting client would repeat in a loop).
#[tokio::test]
async fn a_stream_for_a_token_past_its_exp_is_refused_401() {
    let stack = Stack::start().await;
    let mut claims = edge_gateway::testing::claims(PROJECT, "max", now());
    claims["exp"] = (now() - 2).into();
    let token = sign(&claims, KID, edge_gateway::testing::PRIVATE_KEY_PEM);
    assert_eq!(stack.balance(&token).await.status(), StatusCode::OK);
    let response = stack.get(&token, "/balance/stream").await;
    let body = problem(response, StatusCode::UNAUTHORIZED).await;
    assert_eq!(body["detail"], "the token has expired");
}

impl Stack {
    /// `POST /payments/{intent_id}/sync` with the caller's ID token.
    async fn sync(&self, token: &str, intent_id: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/payments/{intent_id}/sync", self.edge))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn a_sync_credits_before_the_webhook_and_is_404_for_another_users_intent() {
    let stack = Stack::start().await;
    let token = stack.token("sam");
    let intent: Value = stack
        .create(&token, r#"{"amount_usd": 10}"#)
        .await
        .json()
        .await
        .unwrap();
    let intent_id = intent["intent_id"].as_str().unwrap().to_owned();
    stack.stripe.succeed(&intent_id);

    let response = stack.sync(&token, &intent_id).await;
    assert_eq!(response.status(), StatusCode::OK);
    let synced: Value = response.json().await.unwrap();
    assert_eq!(
        synced,
        serde_json::json!({
            "intent_id": intent_id, "status": "succeeded", "amount_cents": 1000,
            "amount_received_cents": 1000, "amount_refunded_cents": 0, "balance_cents": 1000
        })
    );
    let balance: Value = stack.balance(&token).await.json().await.unwrap();
    assert_eq!(balance["balance_cents"], 1000);

    // Another user's intent, an unknown one and malformed ids (a NUL, a
    // bidi control, 300 characters): 404, nothing written, and the detail
    // never echoes what the caller sent.
    let other = stack.token("eve");
    let long = format!("pi_{}", "x".repeat(300));
    for (token, id) in [
        (&other, intent_id.as_str()),
        (&token, "pi_unknown"),
        (&token, "x%20y"),
        (&token, "pi_%00"),
        (&token, "pi_%E2%80%AEevil"),
        (&token, long.as_str()),
    ] {
        let body = problem(stack.sync(token, id).await, StatusCode::NOT_FOUND).await;
        assert_eq!(body["type"], "urn:credits-topup:problem:not-found", "{id}");
        assert_eq!(
            body["detail"], "this user has no payment with that id",
            "{id}"
        );
    }
    let body = problem(
        stack.sync("not-a-token", &intent_id).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(body["status"], 401);
    assert_eq!(stack.rows("ledger_entries").await, 1);
}

#[tokio::test]
async fn syncs_past_the_per_user_limit_are_429_before_stripe() {
    let stack = Stack::start_configured(JWKS_JSON, 0, |config| {
        config.rate_limit_syncs_per_minute = 2;
    })
    .await;
    let token = stack.token("syncer");
    for _ in 0..2 {
        let response = stack.sync(&token, "pi_unknown").await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
    let fetched = stack
        .stripe
        .requests_to("GET", "/v1/payment_intents")
        .await
        .len();
    let response = stack.sync(&token, "pi_unknown").await;
    assert!(response.headers().contains_key("retry-after"));
    let body = problem(response, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(body["type"], "urn:credits-topup:problem:rate-limited");
    assert_eq!(
        stack
            .stripe
            .requests_to("GET", "/v1/payment_intents")
            .await
            .len(),
        fetched
    );
}

#[tokio::test]
async fn the_metrics_endpoint_counts_requests_by_route_template_and_webhooks_by_type() {
    let stack = Stack::start().await;
    let (edge, http) = (&stack.edge, &stack.http);
    assert_ne!(
        Some(stack.metrics_addr.port()),
        edge.rsplit(':').next().and_then(|port| port.parse().ok()),
        "never the public port"
    );
    let metrics = format!("http://{}/metrics", stack.metrics_addr);

    // Two syncs of made-up intents (404, a route with a parameter), one
    // unsigned webhook (400), one signed event of a type not acted on.
    for intent in ["pi_one", "pi_two"] {
        let response = http
            .post(format!("{edge}/payments/{intent}/sync"))
            .bearer_auth(stack.token("metrics-user"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
    let unsigned = http
        .post(format!("{edge}/stripe/webhook"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), StatusCode::BAD_REQUEST);
    let event = event_json("evt_metrics", "customer.created", "cus_1");
    assert_eq!(stack.signed_webhook(&event).await.status(), StatusCode::OK);

    // A scraper that asks for OpenMetrics gets it; any other gets the
    // classic text format, which every Prometheus version reads.
    let scrape = http
        .get(&metrics)
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(scrape.status(), StatusCode::OK);
    assert!(
        scrape.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = scrape.text().await.unwrap();
    let classic = http.get(&metrics).send().await.unwrap();
    assert_eq!(
        classic.headers()["content-type"].to_str().unwrap(),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let classic = classic.text().await.unwrap();
    assert!(
        classic.contains("# TYPE edge_http_requests_total counter") && !classic.contains("# EOF"),
        "{classic}"
    );
    for line in [
        r#"edge_http_requests_total{route="/payments/{intent_id}/sync",method="POST",status="404"} 2"#,
        r#"edge_http_requests_total{route="/stripe/webhook",method="POST",status="400"} 1"#,
        r#"edge_http_requests_total{route="/stripe/webhook",method="POST",status="200"} 1"#,
        r#"edge_stripe_webhooks_total{event_type="other",outcome="ignored"} 1"#,
        r#"edge_http_request_duration_seconds_count{route="/payments/{intent_id}/sync",method="POST"} 2"#,
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
    // Never a path as sent, never a user.
    assert!(
        !text.contains("pi_one") && !text.contains("metrics-user"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    let elsewhere = http
        .get(format!("http://{}/", stack.metrics_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), StatusCode::NOT_FOUND);
}
