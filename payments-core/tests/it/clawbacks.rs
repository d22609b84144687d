//! Refunds and disputes of our payments reaching the balance: each clawed
//! back once by Stripe's own amount (re-fetched, never the event's), given
//! back once when a refund fails or a dispute is won, booked in full even
//! into debt; the events replayed, reordered and forged change nothing more.

use payments_core::domain::LedgerKind;
use payments_core::{Error, EventOutcome};
use payments_test_support::{World, event_json};
use serde_json::Value;

/// A paid and credited top-up of `cents` for `user`.
async fn paid(world: &World, user: &str, cents: i64) -> String {
    let intent = world.intent_for(user, cents).await;
    world.stripe.succeed(&intent);
    let event = event_json(
        &format!("evt_paid_{intent}"),
        "payment_intent.succeeded",
        &intent,
    );
    assert_eq!(
        world.service.apply_stripe_event(&event).await,
        Ok(EventOutcome::Applied)
    );
    intent
}

/// The sandbox's events of `event_type` so far, as delivered.
fn events_of(world: &World, event_type: &str) -> Vec<String> {
    world
        .stripe
        .events()
        .iter()
        .filter(|event| event["type"] == event_type)
        .map(Value::to_string)
        .collect()
}

async fn apply(world: &World, event: &str) -> Result<EventOutcome, Error> {
    world.service.apply_stripe_event(event).await
}

/// The user's entries as (kind, amount, balance after, Stripe object).
async fn entries(world: &World, user: &str) -> Vec<(LedgerKind, i64, i64, Option<String>)> {
    world
        .entries(user)
        .await
        .into_iter()
        .map(|e| {
            (
                e.kind,
                e.amount_cents,
                e.balance_after_cents,
                e.stripe_object_id,
            )
        })
        .collect()
}

fn id(object: &Value) -> String {
    object["id"].as_str().expect("an id").to_owned()
}

#[tokio::test]
async fn partial_and_full_refunds_are_clawed_back_once_each_whatever_the_order_of_their_events() {
    let world = World::new().await;
    let intent = paid(&world, "alice", 2000).await;

    let first = id(&world.stripe.refund(&intent, Some(500)).await);
    // Both events of the refund, newest first, each delivered twice.
    let mut events = events_of(&world, "charge.refunded");
    events.extend(events_of(&world, "refund.created"));
    events.reverse();
    let mut outcomes = Vec::new();
    for event in events.iter().chain(events.iter()) {
        outcomes.push(apply(&world, event).await.unwrap());
    }
    // The first event books the refund, the second finds it booked (its
    // own event recorded), the redeliveries are duplicates.
    assert_eq!(
        outcomes,
        [
            EventOutcome::Applied,
            EventOutcome::Applied,
            EventOutcome::Duplicate,
            EventOutcome::Duplicate
        ]
    );
    assert_eq!(world.balance("alice").await, 1500);
    assert_eq!(world.payment(&intent).await.amount_refunded_cents, 500);

    // The rest of the payment.
    let second = id(&world.stripe.refund(&intent, None).await);
    let last = events_of(&world, "charge.refunded").pop().unwrap();
    assert_eq!(apply(&world, &last).await, Ok(EventOutcome::Applied));
    assert_eq!(world.balance("alice").await, 0);
    let payment = world.payment(&intent).await;
    assert_eq!(payment.amount_refunded_cents, 2000);
    assert_eq!(payment.amount_disputed_cents, 0);
    assert_eq!(
        entries(&world, "alice").await,
        [
            (LedgerKind::TopUp, 2000, 2000, None),
            (LedgerKind::Refund, -500, 1500, Some(first)),
            (LedgerKind::Refund, -1500, 0, Some(second)),
        ]
    );
    world.check_ledger().await;
}

#[tokio::test]
async fn a_refund_event_claws_back_only_what_stripe_says_was_refunded() {
    let world = World::new().await;
    let intent = paid(&world, "bob", 1000).await;
    // A well-formed event naming our intent, with no refund at Stripe.
    let forged = serde_json::json!({
        "id": "evt_forged", "object": "event", "type": "charge.refunded",
        "data": {"object": {"id": "ch_x", "object": "charge", "payment_intent": intent,
                            "amount_refunded": 1000, "refunded": true}}
    })
    .to_string();
    assert_eq!(apply(&world, &forged).await, Ok(EventOutcome::Applied));
    assert_eq!(world.balance("bob").await, 1000);
    // Events naming an intent of no one of ours, or none at all.
    for (event_id, object) in [
        (
            "evt_other",
            serde_json::json!({"id": "re_1", "object": "refund", "payment_intent": "pi_not_ours", "amount": 1000}),
        ),
        (
            "evt_none",
            serde_json::json!({"id": "re_2", "object": "refund", "amount": 1000}),
        ),
    ] {
        let event = serde_json::json!({"id": event_id, "object": "event", "type": "refund.created", "data": {"object": object}}).to_string();
        assert_eq!(
            apply(&world, &event).await,
            Ok(EventOutcome::Ignored),
            "{event_id}"
        );
    }
    assert_eq!(entries(&world, "bob").await.len(), 1);
    world.check_ledger().await;
}

#[tokio::test]
async fn a_refund_that_fails_is_given_back_once() {
    let world = World::new().await;
    let intent = paid(&world, "carol", 1000).await;
    let refund = id(&world.stripe.refund(&intent, Some(400)).await);
    let created = events_of(&world, "refund.created").pop().unwrap();
    assert_eq!(apply(&world, &created).await, Ok(EventOutcome::Applied));
    assert_eq!(world.balance("carol").await, 600);

    let failed = world.stripe.fail_refund(&refund).await;
    assert_eq!(failed["status"], "failed");
    for event_type in ["refund.failed", "refund.updated", "charge.refund.updated"] {
        let event = events_of(&world, event_type).pop().unwrap();
        apply(&world, &event).await.unwrap();
        apply(&world, &event).await.unwrap();
    }
    // The late `refund.created` changes nothing either.
    assert_eq!(apply(&world, &created).await, Ok(EventOutcome::Duplicate));
    assert_eq!(world.balance("carol").await, 1000);
    assert_eq!(world.payment(&intent).await.amount_refunded_cents, 0);
    assert_eq!(
        entries(&world, "carol").await,
        [
            (LedgerKind::TopUp, 1000, 1000, None),
            (LedgerKind::Refund, -400, 600, Some(refund.clone())),
            (LedgerKind::RefundReversal, 400, 1000, Some(refund)),
        ]
    );
    world.check_ledger().await;
}

#[tokio::test]
async fn a_lost_dispute_after_spending_leaves_a_debt_and_refuses_the_next_spend() {
    let world = World::new().await;
    let intent = paid(&world, "dave", 2000).await;
    world
        .service
        .spend_credits("dave", 1700, "job-1", "")
        .await
        .unwrap();

    let dispute = world.stripe.dispute(&intent);
    for event in events_of(&world, "charge.dispute.created") {
        assert_eq!(apply(&world, &event).await, Ok(EventOutcome::Applied));
    }
    for event in events_of(&world, "charge.dispute.funds_withdrawn") {
        assert_eq!(apply(&world, &event).await, Ok(EventOutcome::Applied));
    }
    // Booked in full: debt, shown as is.
    assert_eq!(world.balance("dave").await, -1700);
    let refused = world.service.spend_credits("dave", 1, "job-2", "").await;
    assert!(
        matches!(refused, Err(Error::InsufficientCredits { .. })),
        "{refused:?}"
    );

    let closed = world.stripe.close_dispute(&dispute, false).await;
    assert_eq!(closed["status"], "lost");
    let event = events_of(&world, "charge.dispute.closed").pop().unwrap();
    assert_eq!(apply(&world, &event).await, Ok(EventOutcome::Applied));
    assert_eq!(world.balance("dave").await, -1700);
    assert_eq!(world.payment(&intent).await.amount_disputed_cents, 2000);
    assert_eq!(
        world.kinds("dave").await,
        [LedgerKind::TopUp, LedgerKind::Spend, LedgerKind::Dispute]
    );
    world.check_ledger().await;
}

#[tokio::test]
async fn a_won_dispute_is_given_back_once() {
    let world = World::new().await;
    let intent = paid(&world, "erin", 1000).await;
    let dispute = world.stripe.dispute(&intent);
    let created = events_of(&world, "charge.dispute.created").pop().unwrap();
    assert_eq!(apply(&world, &created).await, Ok(EventOutcome::Applied));
    assert_eq!(world.balance("erin").await, 0);

    world.stripe.close_dispute(&dispute, true).await;
    for event_type in ["charge.dispute.funds_reinstated", "charge.dispute.closed"] {
        let event = events_of(&world, event_type).pop().unwrap();
        apply(&world, &event).await.unwrap();
    }
    // Every event again, in any order: nothing more.
    let withdrawn = events_of(&world, "charge.dispute.funds_withdrawn")
        .pop()
        .unwrap();
    apply(&world, &withdrawn).await.unwrap();
    apply(&world, &created).await.unwrap();
    assert_eq!(world.balance("erin").await, 1000);
    assert_eq!(world.payment(&intent).await.amount_disputed_cents, 0);
    assert_eq!(
        entries(&world, "erin").await,
        [
            (LedgerKind::TopUp, 1000, 1000, None),
            (LedgerKind::Dispute, -1000, 0, Some(dispute.clone())),
            (LedgerKind::DisputeReversal, 1000, 1000, Some(dispute)),
        ]
    );
    world.check_ledger().await;
}

#[tokio::test]
async fn a_refund_of_a_payment_not_yet_credited_waits_for_the_credit() {
    let world = World::new().await;
    let intent = world
        .service
        .create_payment_intent("fay", 1000, "")
        .await
        .unwrap()
        .intent_id;
    world.stripe.succeed(&intent);
    world.stripe.refund(&intent, Some(300)).await;
    let refunded = events_of(&world, "charge.refunded").pop().unwrap();

    // Its `payment_intent.succeeded` has not arrived: nothing is booked,
    // nothing recorded, and the error asks Stripe to deliver it again.
    let early = apply(&world, &refunded).await;
    assert!(matches!(early, Err(Error::Unavailable(_))), "{early:?}");
    assert_eq!(world.balance("fay").await, 0);
    assert!(entries(&world, "fay").await.is_empty());

    let paid = event_json("evt_paid", "payment_intent.succeeded", &intent);
    assert_eq!(apply(&world, &paid).await, Ok(EventOutcome::Applied));
    assert_eq!(apply(&world, &refunded).await, Ok(EventOutcome::Applied));
    assert_eq!(world.balance("fay").await, 700);
    world.check_ledger().await;
}
