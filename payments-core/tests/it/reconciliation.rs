//! After the payment: `SyncPaymentIntent` and reconciliation. A payment is
//! credited the moment the SPA syncs it, before any webhook; a paid intent
//! whose webhooks were all lost is credited by the next pass, once, however
//! many passes and webhooks race; an abandoned intent is cancelled at
//! Stripe, unless it was paid meanwhile; a refund whose webhook was lost is
//! read back from Stripe's Events API.

use std::time::Duration;

use futures::future::join_all;
use payments_core::domain::LedgerKind;
use payments_core::{Error, EventOutcome, ReconcileSettings, Reconciled};
use payments_test_support::{World, event_json};
use stripe_sandbox::Fault;

/// Reconciliation re-fetching every open payment at once (`after` 0) and
/// cancelling intents waiting for the customer after `stale_after`.
async fn world(stale_after: Duration) -> World {
    world_with(ReconcileSettings {
        after: Duration::ZERO,
        stale_after,
        ..ReconcileSettings::default()
    })
    .await
}

async fn world_with(settings: ReconcileSettings) -> World {
    World::with(|service| service.with_reconciliation(settings)).await
}

const A_DAY: Duration = Duration::from_secs(86_400);

#[tokio::test]
async fn a_sync_credits_a_paid_intent_before_its_webhook_which_then_changes_nothing() {
    let world = world(A_DAY).await;
    let intent = world.intent_for("alice", 1000).await;
    world.stripe.succeed(&intent);

    let synced = world
        .service
        .sync_payment_intent("alice", &intent)
        .await
        .unwrap();
    assert_eq!(synced.payment.status, "succeeded");
    assert_eq!(synced.payment.amount_received_cents, 1000);
    assert_eq!(synced.balance.balance_cents.get(), 1000);
    // Again: nothing more.
    let again = world
        .service
        .sync_payment_intent("alice", &intent)
        .await
        .unwrap();
    assert_eq!(again.balance.balance_cents.get(), 1000);

    // The webhook comes late: recorded, no second credit.
    let late = event_json("evt_late", "payment_intent.succeeded", &intent);
    assert_eq!(
        world.service.apply_stripe_event(&late).await,
        Ok(EventOutcome::Applied)
    );
    assert_eq!(world.balance("alice").await, 1000);
    assert_eq!(world.kinds("alice").await, [LedgerKind::TopUp]);
    let entries = world.entries("alice").await;
    assert_eq!(entries[0].stripe_event_id, None, "credited by the sync");
    world.check_ledger().await;
}

#[tokio::test]
async fn a_sync_of_another_users_or_an_unknown_intent_is_not_found_and_writes_nothing() {
    let world = world(A_DAY).await;
    let intent = world.intent_for("alice", 1000).await;
    world.stripe.succeed(&intent);
    for (user, intent_id) in [
        ("mallory", intent.as_str()),
        ("alice", "pi_unknown"),
        ("alice", "not-an-intent"),
        ("alice", "pi_1/../cancel"),
    ] {
        let refused = world.service.sync_payment_intent(user, intent_id).await;
        assert!(
            matches!(refused, Err(Error::NotFound(_))),
            "{user} {intent_id}: {refused:?}"
        );
    }
    assert_eq!(world.balance("alice").await, 0);
    assert_eq!(world.balance("mallory").await, 0);
    assert_eq!(
        world.payment(&intent).await.status,
        "requires_payment_method"
    );
    // Only the create reached Stripe; no intent was fetched.
    assert!(
        world
            .stripe
            .requests_to("GET", "/v1/payment_intents")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn a_paid_intent_whose_webhooks_were_lost_is_credited_once_by_passes_racing_each_other_and_the_webhook()
 {
    let world = world(A_DAY).await;
    let intent = world.intent_for("bob", 2000).await;
    world.stripe.succeed(&intent);
    let late = event_json("evt_late", "payment_intent.succeeded", &intent);

    // Three replicas (services of their own, each with its own pool) each
    // running a pass, and the webhook, all at once.
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let replica = payments_test_support::service(&world.db, &world.stripe).await;
        replicas.push(replica.with_reconciliation(ReconcileSettings {
            after: Duration::ZERO,
            stale_after: A_DAY,
            ..ReconcileSettings::default()
        }));
    }
    let passes = join_all(
        std::iter::once(&world.service)
            .chain(&replicas)
            .map(|replica| replica.run_reconciliation()),
    );
    let (passes, webhook) = tokio::join!(passes, world.service.apply_stripe_event(&late));
    webhook.unwrap();
    let passes: Vec<Reconciled> = passes.into_iter().map(Result::unwrap).collect();
    let credited: i32 = passes.iter().map(|p| p.credited).sum();
    assert!(credited <= 1, "{passes:?}");
    assert_eq!(world.balance("bob").await, 2000);
    assert_eq!(world.kinds("bob").await, [LedgerKind::TopUp]);
    assert_eq!(world.payment(&intent).await.status, "succeeded");

    // Alone, a pass over a lost webhook credits it, and says so.
    let other = world.intent_for("bob", 500).await;
    world.stripe.succeed(&other);
    let pass = world.service.run_reconciliation().await.unwrap();
    assert_eq!(
        (pass.intents_checked, pass.credited, pass.failed),
        (1, 1, 0),
        "{pass:?}"
    );
    assert_eq!(world.balance("bob").await, 2500);
    // The next pass has nothing open left to check.
    let next = world.service.run_reconciliation().await.unwrap();
    assert_eq!((next.intents_checked, next.credited), (0, 0), "{next:?}");
    world.check_ledger().await;
}

#[tokio::test]
async fn an_abandoned_intent_is_cancelled_at_stripe_and_recorded() {
    let world = world(Duration::ZERO).await;
    let intent = world.intent_for("carol", 1000).await;

    let pass = world.service.run_reconciliation().await.unwrap();
    assert_eq!(pass.canceled, 1, "{pass:?}");
    let at_stripe = world.stripe.intent_json(&intent).unwrap();
    assert_eq!(at_stripe["status"], "canceled");
    assert_eq!(at_stripe["cancellation_reason"], "abandoned");
    assert_eq!(world.payment(&intent).await.status, "canceled");
    // The cancel carried an Idempotency-Key, so a retried cancel is one.
    let cancels = world
        .stripe
        .requests_to("POST", &format!("/v1/payment_intents/{intent}/cancel"))
        .await;
    assert_eq!(cancels.len(), 1);
    assert!(
        cancels[0].headers.contains_key("idempotency-key"),
        "{cancels:?}"
    );
    // Final now: the next pass leaves it alone.
    let next = world.service.run_reconciliation().await.unwrap();
    assert_eq!((next.intents_checked, next.canceled), (0, 0), "{next:?}");
    assert_eq!(world.balance("carol").await, 0);
}

#[tokio::test]
async fn an_intent_paid_between_our_read_and_our_cancel_is_credited_not_lost() {
    // Step 1 re-fetches nothing yet: only step 2 sees the intent.
    let world = world_with(ReconcileSettings {
        after: A_DAY,
        stale_after: Duration::ZERO,
        ..ReconcileSettings::default()
    })
    .await;
    let intent = world.intent_for("dave", 2000).await;
    // Paid at Stripe; our row still waits for the customer.
    world.stripe.succeed(&intent);

    let pass = world.service.run_reconciliation().await.unwrap();
    // Step 2's cancel is refused (the intent succeeded): it is synced
    // instead, and credited.
    assert_eq!(
        (pass.credited, pass.canceled, pass.failed),
        (1, 0, 0),
        "{pass:?}"
    );
    assert_eq!(
        world
            .stripe
            .requests_to("POST", &format!("/v1/payment_intents/{intent}/cancel"))
            .await
            .len(),
        1
    );
    assert_eq!(
        world.stripe.intent_json(&intent).unwrap()["status"],
        "succeeded"
    );
    assert_eq!(world.payment(&intent).await.status, "succeeded");
    assert_eq!(world.balance("dave").await, 2000);
    world.check_ledger().await;
}

#[tokio::test]
async fn a_refund_whose_webhook_was_lost_is_read_back_from_the_events_api_once() {
    let world = world(A_DAY).await;
    let intent = world.intent_for("erin", 2000).await;
    world.stripe.succeed(&intent);
    world
        .service
        .sync_payment_intent("erin", &intent)
        .await
        .unwrap();
    world.stripe.refund(&intent, Some(700)).await;

    let pass = world.service.run_reconciliation().await.unwrap();
    assert!(pass.events_backfilled >= 1, "{pass:?}");
    assert_eq!(world.balance("erin").await, 1300);
    assert_eq!(world.payment(&intent).await.amount_refunded_cents, 700);
    let next = world.service.run_reconciliation().await.unwrap();
    assert_eq!(next.events_backfilled, 0, "{next:?}");
    assert_eq!(world.balance("erin").await, 1300);
    assert_eq!(
        world.kinds("erin").await,
        [LedgerKind::TopUp, LedgerKind::Refund]
    );
    // It asked only for the event types it acts on: the first pass back
    // from the newest event to three days ago, the next forward from the
    // last event it handled.
    let reads = world.stripe.requests_to("GET", "/v1/events").await;
    assert!(reads.len() >= 2, "{reads:?}");
    let first = &reads[0].query;
    assert!(
        first.contains("created%5Bgte%5D=") || first.contains("created[gte]="),
        "{first}"
    );
    assert!(reads.last().unwrap().query.contains("ending_before="));
    for read in &reads {
        let query = &read.query;
        assert!(query.contains("refund.created"), "{query}");
        assert!(!query.contains("customer."), "{query}");
    }
    world.check_ledger().await;
}

#[tokio::test]
async fn stripe_failing_during_a_pass_loses_and_doubles_nothing_and_the_next_pass_finishes() {
    let world = world(A_DAY).await;
    let intent = world.intent_for("fay", 1000).await;
    world.stripe.succeed(&intent);
    // Every GET of this pass fails: 500s, then 429s, past the client's retries.
    world
        .stripe
        .fail_next("GET", 3, Fault::error(500, "api_error", "", "boom"))
        .await;
    world
        .stripe
        .fail_next(
            "GET",
            100,
            Fault::error(429, "rate_limit_error", "rate_limit", "slow down"),
        )
        .await;
    let failed = world.service.run_reconciliation().await;
    assert!(
        matches!(&failed, Err(Error::Unavailable(_)))
            || failed.as_ref().is_ok_and(|p| p.failed > 0),
        "{failed:?}"
    );
    assert_eq!(world.balance("fay").await, 0);
    assert_eq!(
        world.payment(&intent).await.status,
        "requires_payment_method"
    );

    world.stripe.clear_faults();
    let pass = world.service.run_reconciliation().await.unwrap();
    assert_eq!(pass.credited, 1, "{pass:?}");
    assert_eq!(world.balance("fay").await, 1000);
    world.check_ledger().await;
}

/// Sets a payment's row as if recorded paid `ago` (our row says succeeded)
/// without its top-up: what must never happen, and what the gauge is for.
async fn recorded_paid_without_top_up(world: &World, intent: &str, ago: &str) {
    let mut conn = world.db.connection().await;
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query(format!(
            "UPDATE payments SET status = 'succeeded', amount_received_cents = amount_cents,
                                 updated_at = now() - interval '{ago}'
              WHERE stripe_intent_id = '{intent}'"
        )),
        &mut conn,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn paid_not_credited_is_counted_from_a_first_look_at_all_then_from_the_last_look_until_credited()
 {
    let world = world(A_DAY).await;
    let paid = world.intent_for("alice", 1000).await;
    world.stripe.succeed(&paid);
    world
        .service
        .sync_payment_intent("alice", &paid)
        .await
        .unwrap();
    let old = world.intent_for("bob", 500).await;
    recorded_paid_without_top_up(&world, &old, "3 hours").await;

    // The first look reads every paid payment: the old one is found, and
    // the next look starts at it (before the overlap).
    let (first, oldest) = world.service.lifecycle_gauges(None).await.unwrap();
    assert_eq!(first.count, 1, "{first:?}");
    assert_eq!(oldest, None, "no payment open");
    let age = chrono::Utc::now() - first.next_since;
    assert!(
        (chrono::Duration::minutes(179)..chrono::Duration::minutes(181)).contains(&age),
        "next look starts at the uncredited payment: {age}"
    );

    // Looks from there keep counting it; a new one is added to it.
    let fresh = world.intent_for("carol", 2000).await;
    recorded_paid_without_top_up(&world, &fresh, "1 second").await;
    let (second, _) = world
        .service
        .lifecycle_gauges(Some(first.next_since))
        .await
        .unwrap();
    assert_eq!(second.count, 2, "{second:?}");
    assert_eq!(second.next_since, first.next_since);

    // Once both are credited, the next look starts the overlap before now.
    for (user, intent) in [("bob", &old), ("carol", &fresh)] {
        world.stripe.succeed(intent);
        world
            .service
            .sync_payment_intent(user, intent)
            .await
            .unwrap();
    }
    assert_eq!(world.balance("bob").await, 500);
    let (third, _) = world
        .service
        .lifecycle_gauges(Some(second.next_since))
        .await
        .unwrap();
    assert_eq!(third.count, 0, "{third:?}");
    let overlap = chrono::Utc::now() - third.next_since;
    assert!(
        (chrono::Duration::seconds(590)..chrono::Duration::seconds(610)).contains(&overlap),
        "{overlap}"
    );
    // A look from there does not see the payments before it: an old
    // uncredited payment is only found by the first look of a process
    // (or by a look that already holds it).
    recorded_paid_without_top_up(&world, &world.intent_for("dan", 500).await, "1 hour").await;
    let (windowed, _) = world
        .service
        .lifecycle_gauges(Some(third.next_since))
        .await
        .unwrap();
    assert_eq!(windowed.count, 0);
    let (all, _) = world.service.lifecycle_gauges(None).await.unwrap();
    assert_eq!(all.count, 1);
    world.check_ledger().await;
}
