//! Applying Stripe events: exactly-once credits, forward-only statuses, and
//! nothing trusted that Stripe's API does not confirm.

use std::collections::HashMap;

use diesel_async::SimpleAsyncConnection;
use futures::future::join_all;

use payments_core::db::{balances, ledger, payments, stripe_events};
use payments_core::{Error, EventOutcome};
use payments_test_support::event_json;
use payments_test_support::{World, backends_waiting_on_a_lock, count_rows};
use stripe_sandbox::{Fault, IntentFields};

/// One delivery applied the event; every other one was a duplicate.
fn assert_applied_once(outcomes: &[Result<EventOutcome, Error>]) {
    let count = |wanted: EventOutcome| outcomes.iter().filter(|o| **o == Ok(wanted)).count();
    assert_eq!(
        (count(EventOutcome::Applied), count(EventOutcome::Duplicate)),
        (1, outcomes.len() - 1),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn a_succeeded_event_credits_amount_received_from_stripe_not_the_event() {
    let world = World::new().await;
    let intent = world.intent_for("alice", 2000).await;
    world.stripe.succeed(&intent);

    // The event claims 999999 cents; Stripe's API says 2000.
    let outcome = world
        .apply("evt_1", "payment_intent.succeeded", &intent)
        .await
        .unwrap();

    assert_eq!(outcome, EventOutcome::Applied);
    assert_eq!(world.balance("alice").await, 2000);
    let payment = world.payment(&intent).await;
    assert_eq!(payment.status, "succeeded");
    assert_eq!(payment.amount_received_cents, 2000);
    let mut conn = world.db.connection().await;
    let entries = ledger::for_user(&mut conn, "alice").await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].amount_cents, 2000);
    assert_eq!(
        entries[0].stripe_intent_id.as_deref(),
        Some(intent.as_str())
    );
    assert_eq!(entries[0].stripe_event_id.as_deref(), Some("evt_1"));
    let event = stripe_events::find(&mut conn, "evt_1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.outcome, "applied");
    assert_eq!(event.user_id.as_deref(), Some("alice"));
    assert_eq!(
        event.payload,
        event_json("evt_1", "payment_intent.succeeded", &intent)
    );
    world.check_ledger().await;
}

#[tokio::test]
async fn the_same_event_applied_20_times_concurrently_credits_once() {
    let world = World::new().await;
    let intent = world.intent_for("bob", 1000).await;
    world.stripe.succeed(&intent);

    let attempts = (0..20).map(|_| world.apply("evt_same", "payment_intent.succeeded", &intent));
    let outcomes = join_all(attempts).await;

    assert_applied_once(&outcomes);
    assert_eq!(world.balance("bob").await, 1000);
    let mut conn = world.db.connection().await;
    assert_eq!(count_rows(&mut conn, "ledger_entries").await, 1);
    assert_eq!(count_rows(&mut conn, "stripe_events").await, 1);
    world.check_ledger().await;
}

#[tokio::test]
async fn different_events_for_one_intent_credit_once_even_concurrently() {
    let world = World::new().await;
    let intent = world.intent_for("carol", 5000).await;
    world.stripe.succeed(&intent);

    let ids: Vec<String> = (0..10).map(|i| format!("evt_{i}")).collect();
    let outcomes = join_all(
        ids.iter()
            .map(|id| world.apply(id, "payment_intent.succeeded", &intent)),
    )
    .await;

    assert!(
        outcomes.iter().all(|o| *o == Ok(EventOutcome::Applied)),
        "{outcomes:?}"
    );
    assert_eq!(world.balance("carol").await, 5000);
    let mut conn = world.db.connection().await;
    assert_eq!(count_rows(&mut conn, "ledger_entries").await, 1);
    assert_eq!(count_rows(&mut conn, "stripe_events").await, 10);
    world.check_ledger().await;
}

#[tokio::test]
async fn a_late_payment_failed_does_not_undo_succeeded() {
    let world = World::new().await;
    let intent = world.intent_for("dave", 500).await;
    world.stripe.succeed(&intent);
    world
        .apply("evt_ok", "payment_intent.succeeded", &intent)
        .await
        .unwrap();

    // Even if Stripe's answer were stale, a final status never moves.
    world
        .stripe
        .decline(&intent, "generic_decline", "Your card was declined.");
    let outcome = world
        .apply("evt_late_fail", "payment_intent.payment_failed", &intent)
        .await
        .unwrap();

    assert_eq!(outcome, EventOutcome::Applied);
    let payment = world.payment(&intent).await;
    assert_eq!(payment.status, "succeeded");
    assert_eq!(payment.failure_code, None);
    assert_eq!(world.balance("dave").await, 500);
    world.check_ledger().await;
}

#[tokio::test]
async fn a_succeeded_event_for_an_intent_stripe_reports_unpaid_credits_nothing() {
    let world = World::new().await;
    let intent = world.intent_for("erin", 1000).await;
    // Stripe still says requires_payment_method: the event is forged or early.

    let outcome = world
        .apply("evt_forged", "payment_intent.succeeded", &intent)
        .await
        .unwrap();

    assert_eq!(outcome, EventOutcome::Applied);
    assert_eq!(world.balance("erin").await, 0);
    assert_eq!(
        world.payment(&intent).await.status,
        "requires_payment_method"
    );
    assert_eq!(
        count_rows(&mut world.db.connection().await, "ledger_entries").await,
        0
    );

    // When the payment really succeeds, the next event credits it.
    world.stripe.succeed(&intent);
    world
        .apply("evt_real", "payment_intent.succeeded", &intent)
        .await
        .unwrap();
    assert_eq!(world.balance("erin").await, 1000);
    world.check_ledger().await;
}

#[tokio::test]
async fn an_intent_this_service_did_not_create_is_ignored() {
    let world = World::new().await;
    world.stripe.put_intent(IntentFields {
        id: "pi_foreign".into(),
        amount: 5000,
        amount_received: 5000,
        currency: "usd".into(),
        status: "succeeded".into(),
        metadata: HashMap::from([("user_id".into(), "mallory".into())]),
        last_payment_error: None,
    });

    let outcome = world
        .apply("evt_foreign", "payment_intent.succeeded", "pi_foreign")
        .await
        .unwrap();

    assert_eq!(outcome, EventOutcome::Ignored);
    assert_eq!(world.balance("mallory").await, 0);
    let mut conn = world.db.connection().await;
    let event = stripe_events::find(&mut conn, "evt_foreign")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.outcome, "ignored");
    assert_eq!(count_rows(&mut conn, "payments").await, 0);
    // Redelivery is a duplicate, not an error Stripe would retry forever.
    let again = world
        .apply("evt_foreign", "payment_intent.succeeded", "pi_foreign")
        .await
        .unwrap();
    assert_eq!(again, EventOutcome::Duplicate);
    world.check_ledger().await;
}

#[tokio::test]
async fn an_intent_stripe_does_not_know_is_ignored() {
    let world = World::new().await;
    let outcome = world
        .apply("evt_ghost", "payment_intent.succeeded", "pi_doesnotexist")
        .await
        .unwrap();
    assert_eq!(outcome, EventOutcome::Ignored);
    // An object id that is not a PaymentIntent id never reaches Stripe.
    let outcome = world
        .apply("evt_path", "payment_intent.succeeded", "pi_1/cancel")
        .await
        .unwrap();
    assert_eq!(outcome, EventOutcome::Ignored);
    assert_eq!(
        world
            .stripe
            .requests_to("GET", "/v1/payment_intents/pi_1")
            .await
            .len(),
        0
    );
    world.check_ledger().await;
}

#[tokio::test]
async fn other_event_types_are_recorded_and_ignored() {
    let world = World::new().await;
    let outcome = world
        .apply("evt_cus", "customer.created", "cus_123")
        .await
        .unwrap();
    assert_eq!(outcome, EventOutcome::Ignored);
    assert_eq!(
        world
            .apply("evt_cus", "customer.created", "cus_123")
            .await
            .unwrap(),
        EventOutcome::Duplicate
    );
    assert!(
        world.stripe.requests_to("GET", "/v1").await.is_empty(),
        "ignored types need no Stripe call"
    );
    let mut conn = world.db.connection().await;
    let event = stripe_events::find(&mut conn, "evt_cus")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (event.event_type.as_str(), event.outcome.as_str()),
        ("customer.created", "ignored")
    );
}

#[tokio::test]
async fn a_payment_failure_records_stripes_code_and_message() {
    let world = World::new().await;
    let intent = world.intent_for("frank", 1000).await;
    world.stripe.decline(
        &intent,
        "insufficient_funds",
        "Your card has insufficient funds.",
    );

    let outcome = world
        .apply("evt_fail", "payment_intent.payment_failed", &intent)
        .await
        .unwrap();

    assert_eq!(outcome, EventOutcome::Applied);
    let payment = world.payment(&intent).await;
    assert_eq!(payment.status, "requires_payment_method");
    assert_eq!(payment.failure_code.as_deref(), Some("insufficient_funds"));
    assert_eq!(
        payment.failure_message.as_deref(),
        Some("Your card has insufficient funds.")
    );
    assert_eq!(world.balance("frank").await, 0);

    // The customer retries with another card and pays.
    world.stripe.succeed(&intent);
    world
        .apply("evt_ok", "payment_intent.succeeded", &intent)
        .await
        .unwrap();
    let payment = world.payment(&intent).await;
    assert_eq!(
        (payment.status.as_str(), payment.failure_code),
        ("succeeded", None)
    );
    assert_eq!(world.balance("frank").await, 1000);
    world.check_ledger().await;
}

#[tokio::test]
async fn statuses_only_move_forward_whatever_order_events_arrive_in() {
    let world = World::new().await;
    let intent = world.intent_for("gina", 2000).await;

    world.stripe.set_status(&intent, "processing");
    world
        .apply("evt_processing", "payment_intent.processing", &intent)
        .await
        .unwrap();
    assert_eq!(world.payment(&intent).await.status, "processing");

    // A stale requires_action delivered late cannot move processing back.
    world.stripe.set_status(&intent, "requires_action");
    world
        .apply("evt_action", "payment_intent.requires_action", &intent)
        .await
        .unwrap();
    assert_eq!(world.payment(&intent).await.status, "processing");

    world.stripe.set_status(&intent, "canceled");
    world
        .apply("evt_cancel", "payment_intent.canceled", &intent)
        .await
        .unwrap();
    assert_eq!(world.payment(&intent).await.status, "canceled");
    assert_eq!(world.balance("gina").await, 0);
    world.check_ledger().await;
}

#[tokio::test]
async fn malformed_events_are_invalid_and_write_nothing() {
    let world = World::new().await;
    for bad in [
        "",
        "{",
        "[]",
        r#"{"id":"evt_1"}"#,
        r#"{"id":"","type":"x","data":{"object":{}}}"#,
    ] {
        let err = world.service.apply_stripe_event(bad).await.unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{bad:?}: {err:?}");
    }
    assert_eq!(
        count_rows(&mut world.db.connection().await, "stripe_events").await,
        0
    );
}

#[tokio::test]
async fn stripe_unavailable_leaves_the_event_unrecorded_so_a_retry_applies_it() {
    let world = World::new().await;
    let intent = world.intent_for("hank", 1000).await;
    world.stripe.succeed(&intent);
    world
        .stripe
        .fail_next("GET", 3, Fault::error(500, "api_error", "", "boom"))
        .await;

    let err = world
        .apply("evt_retry", "payment_intent.succeeded", &intent)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    assert_eq!(
        count_rows(&mut world.db.connection().await, "stripe_events").await,
        0
    );

    // Stripe redelivers the same event later.
    let outcome = world
        .apply("evt_retry", "payment_intent.succeeded", &intent)
        .await
        .unwrap();
    assert_eq!(outcome, EventOutcome::Applied);
    assert_eq!(world.balance("hank").await, 1000);
    world.check_ledger().await;
}

#[tokio::test]
async fn balances_of_several_users_stay_equal_to_their_ledgers() {
    let world = World::new().await;
    let mut expected = HashMap::new();
    for (n, (user, cents)) in [
        ("u1", 500),
        ("u2", 1000),
        ("u1", 2000),
        ("u3", 5000),
        ("u2", 500),
    ]
    .into_iter()
    .enumerate()
    {
        let intent = world.intent_for(user, cents).await;
        world.stripe.succeed(&intent);
        world
            .apply(&format!("evt_{n}"), "payment_intent.succeeded", &intent)
            .await
            .unwrap();
        world
            .apply(
                &format!("evt_{n}_again"),
                "payment_intent.succeeded",
                &intent,
            )
            .await
            .unwrap();
        *expected.entry(user).or_insert(0) += cents;
    }
    let mut conn = world.db.connection().await;
    for (user, cents) in expected {
        let balance = balances::find(&mut conn, user).await.unwrap().unwrap();
        assert_eq!(balance.balance_cents, cents, "{user}");
    }
    world.check_ledger().await;
}

/// The write is a compare-and-set on the payment as read: when another
/// event changes the payment between the read and the write, nothing is
/// written, the payment is read again, and the event is applied on what it
/// is now (never on what it was).
#[tokio::test]
async fn a_payment_changed_between_the_read_and_the_write_is_read_again() {
    let world = World::new().await;
    let intent = world.intent_for("ivan", 2000).await;
    world.stripe.succeed(&intent);

    // Another writer holds the row while the event is read and decided.
    let mut holder = world.db.connection().await;
    holder
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM payments WHERE stripe_intent_id = '{intent}' FOR UPDATE"
        ))
        .await
        .unwrap();
    let event = event_json("evt_cas", "payment_intent.succeeded", &intent);
    let mut observer = world.db.connection().await;
    let (outcome, ()) = tokio::join!(world.service.apply_stripe_event(&event), async {
        while backends_waiting_on_a_lock(&mut observer).await == 0 {
            tokio::task::yield_now().await;
        }
        // The write now waits on the row; the holder moves the payment on.
        holder
            .batch_execute(&format!(
                "UPDATE payments SET status = 'processing' WHERE stripe_intent_id = '{intent}'; COMMIT"
            ))
            .await
            .unwrap();
    });

    assert_eq!(outcome, Ok(EventOutcome::Applied));
    let payment = world.payment(&intent).await;
    assert_eq!(payment.status, "succeeded");
    assert_eq!(payment.amount_received_cents, 2000);
    assert_eq!(world.balance("ivan").await, 2000);
    let mut conn = world.db.connection().await;
    assert_eq!(count_rows(&mut conn, "stripe_events").await, 1);
    world.check_ledger().await;
}

mod recovery;
mod stored;
