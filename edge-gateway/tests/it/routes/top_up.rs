//! Buying credits through the edge: creates, their limits and refusals,
//! syncs, and `GET /config`.

use super::*;

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
