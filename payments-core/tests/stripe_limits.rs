//! What a slow or hostile Stripe endpoint can do to a call: a hanging
//! attempt is retried within the call's deadline, and an answer too large
//! to be Stripe's is refused before it is held in memory.

use std::time::{Duration, Instant};

use payments_core::Error;
use payments_core::stripe::MAX_RESPONSE_BYTES;
use payments_test_support::{TestDatabase, count_rows, service};
use stripe_sandbox::{Fault, Sandbox};

#[tokio::test]
async fn a_hanging_attempt_is_retried_and_the_call_succeeds() {
    let db = TestDatabase::create().await;
    let stripe = Sandbox::start_local().await;
    let service = service(&db, &stripe).await;
    // The first create hangs far past the attempt timeout (2 s here).
    stripe
        .fail_next(
            "POST",
            1,
            Fault::body(200, "").after(Duration::from_secs(60)),
        )
        .await;
    let created = service
        .create_payment_intent("alice", 1000, "key-1")
        .await
        .expect("the retry is answered");
    assert_eq!(stripe.intent_count(), 1);
    assert_eq!(
        stripe
            .requests_to("POST", "/v1/payment_intents")
            .await
            .len(),
        2
    );
    assert!(created.intent_id.starts_with("pi_"));
}

#[tokio::test]
async fn a_stripe_that_always_hangs_is_unavailable_by_the_deadline() {
    let db = TestDatabase::create().await;
    let stripe = Sandbox::start_local().await;
    let service = service(&db, &stripe).await;
    let deadline = payments_test_support::stripe_config(&stripe).deadline;
    stripe
        .fail_next(
            "POST",
            10,
            Fault::body(200, "").after(Duration::from_secs(60)),
        )
        .await;
    let started = Instant::now();
    let err = service
        .create_payment_intent("alice", 1000, "key-1")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < deadline + Duration::from_secs(1),
        "answered after {:?}, the deadline is {deadline:?}",
        started.elapsed()
    );
    assert_eq!(count_rows(&mut db.connection().await, "payments").await, 0);
}

#[tokio::test]
async fn an_answer_larger_than_a_mebibyte_is_refused_and_nothing_is_written() {
    let db = TestDatabase::create().await;
    let stripe = Sandbox::start_local().await;
    let service = service(&db, &stripe).await;
    let huge = format!(
        r#"{{"id":"pi_huge","padding":"{}"}}"#,
        "x".repeat(2 * MAX_RESPONSE_BYTES)
    );
    stripe.fail_next("POST", 10, Fault::body(200, huge)).await;
    let err = service
        .create_payment_intent("alice", 1000, "key-1")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    assert_eq!(count_rows(&mut db.connection().await, "payments").await, 0);
}
