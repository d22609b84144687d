//! Stripe failing, slow or refusing, and the database gone: each an exact
//! status, retried with one key, nothing left half written.

use super::*;

#[tokio::test]
async fn stripe_failing_with_500_is_unavailable_retried_with_one_key_and_leaves_no_row() {
    let server = TestServer::start().await;
    server
        .stripe
        .fail_next(
            "POST",
            3,
            Fault::error(500, "api_error", "", "Stripe is down"),
        )
        .await;

    let status = server.create("user-1", 1000, "order-1").await.unwrap_err();

    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(reason(&status), error_reason::STRIPE_UNAVAILABLE);
    let attempts = server
        .stripe
        .requests_to("POST", "/v1/payment_intents")
        .await;
    assert_eq!(attempts.len(), 3, "one request and two retries");
    let keys: std::collections::HashSet<_> = attempts
        .iter()
        .map(|r| r.headers.get("idempotency-key").unwrap().clone())
        .collect();
    assert_eq!(keys.len(), 1, "every retry reuses the key");
    assert_eq!(server.rows("payments").await, 0);

    // The caller retries with the same key once Stripe is back: one intent.
    let intent = server.create("user-1", 1000, "order-1").await.unwrap();
    assert_eq!(server.stripe.intent_count(), 1);
    assert_eq!(server.rows("payments").await, 1);
    let last = server
        .stripe
        .requests_to("POST", "/v1/payment_intents")
        .await;
    assert_eq!(
        last.last().unwrap().headers.get("idempotency-key"),
        keys.iter().next()
    );
    assert!(intent.intent_id.starts_with("pi_"));
}

#[tokio::test]
async fn a_429_then_success_is_retried_transparently() {
    let server = TestServer::start().await;
    server
        .stripe
        .fail_next(
            "POST",
            1,
            Fault::error(
                429,
                "invalid_request_error",
                "rate_limit",
                "Too many requests",
            ),
        )
        .await;
    let intent = server.create("user-1", 500, "k").await.unwrap();
    assert_eq!(intent.amount, 500);
    assert_eq!(
        server
            .stripe
            .requests_to("POST", "/v1/payment_intents")
            .await
            .len(),
        2
    );
    assert_eq!(server.stripe.intent_count(), 1);
}

#[tokio::test]
async fn stripe_timing_out_is_unavailable_and_leaves_no_row() {
    let server = TestServer::start_with(|config| {
        config.stripe_timeout_ms = 200;
        config.stripe_max_attempts = 2;
    })
    .await;
    server
        .stripe
        .fail_next(
            "POST",
            2,
            Fault::body(200, "").after(Duration::from_secs(5)),
        )
        .await;

    let status = server.create("user-1", 1000, "").await.unwrap_err();

    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().contains("timed out"),
        "{}",
        status.message()
    );
    assert_eq!(server.rows("payments").await, 0);
}

#[tokio::test]
async fn stripe_refusing_the_key_reuse_is_a_failed_precondition() {
    let server = TestServer::start().await;
    server
        .stripe
        .fail_next(
            "POST",
            1,
            Fault::error(
                400,
                "idempotency_error",
                "idempotency_key_in_use",
                "Keys for idempotent requests can only be used with the same parameters",
            ),
        )
        .await;
    let status = server.create("user-1", 1000, "k").await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(server.rows("payments").await, 0);
}

#[tokio::test]
async fn stripe_refusing_the_api_key_is_internal_without_details() {
    let server = TestServer::start().await;
    server
        .stripe
        .fail_next(
            "POST",
            1,
            Fault::error(
                401,
                "invalid_request_error",
                "",
                "Invalid API Key provided: sk_test_****din",
            ),
        )
        .await;
    let status = server.create("user-1", 1000, "").await.unwrap_err();
    assert_eq!(status.code(), Code::Internal);
    assert!(
        !status.message().contains("sk_test"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn stripe_unreachable_during_an_event_is_unavailable_so_stripe_retries() {
    let server = TestServer::start().await;
    let intent = server.create("user-1", 500, "").await.unwrap();
    server.stripe.succeed(&intent.intent_id);
    server
        .stripe
        .fail_next("GET", 3, Fault::error(503, "api_error", "", "unavailable"))
        .await;

    let status = server
        .apply(event_json(
            "evt_1",
            "payment_intent.succeeded",
            &intent.intent_id,
        ))
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(reason(&status), error_reason::STRIPE_UNAVAILABLE);
    assert_eq!(server.balance("user-1").await.unwrap().balance_cents, 0);
    assert_eq!(server.rows("stripe_events").await, 0);
    assert_eq!(server.rows("ignored_stripe_events").await, 0);
}

#[tokio::test]
async fn the_database_gone_is_unavailable() {
    let server = TestServer::start().await;
    server.create("user-1", 500, "").await.unwrap();
    server.db.drop_in_use().await;

    let status = server.balance("user-1").await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(reason(&status), error_reason::DATABASE_UNAVAILABLE);
    let status = server
        .apply(event_json("evt_1", "customer.created", "cus_1"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(reason(&status), error_reason::DATABASE_UNAVAILABLE);
}
