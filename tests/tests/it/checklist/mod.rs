//! The product's QA checklist, as end-to-end tests: the real payments-grpc and
//! edge-gateway servers (in process, on ephemeral ports) over a fresh
//! database, the Stripe sandbox delivering signed webhooks, and tokens signed
//! by the test key pair.

use std::time::Duration;

use payments_core::db::payments;
use payments_test_support::{assert_balances_match_ledger, count_recorded_events, count_rows};
use payments_tests::stack::Stack;
use stripe_sandbox::{
    PM_CARD_3DS, PM_CARD_DECLINED, PM_CARD_DISPUTED, PM_CARD_VISA, SandboxConfig,
};

/// Webhooks are asynchronous: wait for the sandbox to deliver them all.
async fn settle(stack: &Stack) {
    tokio::time::timeout(Duration::from_secs(20), stack.sandbox.settled())
        .await
        .expect("webhooks delivered within 20 s");
}

async fn balance_cents(stack: &Stack, token: &str) -> i64 {
    let (status, body) = stack.balance(token).await;
    assert_eq!(status, 200, "{body}");
    body["balance_cents"].as_i64().expect("balance_cents")
}

/// Creates an intent for `amount_usd` through the edge; returns its id.
async fn create(stack: &Stack, token: &str, amount_usd: u32) -> String {
    let (status, body) = stack.create_intent(token, amount_usd).await;
    assert_eq!(status, 200, "{body}");
    body["intent_id"].as_str().expect("intent_id").to_owned()
}

async fn payment(stack: &Stack, intent_id: &str) -> payments::PaymentRow {
    let mut conn = stack.db.connection().await;
    payments::find_by_intent(&mut conn, intent_id)
        .await
        .unwrap()
        .expect("payment row")
}

#[tokio::test]
async fn qa1_and_qa3_pay_with_the_test_card_and_the_refetched_balance_shows_the_credit() {
    let stack = Stack::start(SandboxConfig::default()).await;
    let token = stack.token("qa-user-1");
    assert_eq!(balance_cents(&stack, &token).await, 0);

    let intent_id = create(&stack, &token, 20).await;
    let (status, confirmed) = stack.confirm(&intent_id, PM_CARD_VISA).await;
    assert_eq!(
        (status, confirmed["status"].as_str()),
        (200, Some("succeeded"))
    );
    settle(&stack).await;

    // The SPA refetches after Stripe.js reports success.
    assert_eq!(balance_cents(&stack, &token).await, 2000);
    let (_, balance) = stack.balance(&token).await;
    assert_eq!(balance["currency"], "usd");
    assert!(balance["updated_at"].is_string());
    assert_eq!(payment(&stack, &intent_id).await.status, "succeeded");
    // created, succeeded: both delivered and answered 200.
    let stats = stack.sandbox.stats();
    assert_eq!(
        (stats.events, stats.delivered, stats.given_up),
        (2, 2, 0),
        "{stats:?}"
    );
    assert_balances_match_ledger(&mut stack.db.connection().await).await;
}

#[tokio::test]
async fn qa2_three_d_secure_passed_is_credited_and_failed_is_recorded() {
    let stack = Stack::start(SandboxConfig::default()).await;
    let token = stack.token("qa-user-2");

    let passed = create(&stack, &token, 10).await;
    let (status, body) = stack.confirm(&passed, PM_CARD_3DS).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("requires_action"))
    );
    assert_eq!(body["next_action"]["type"], "use_stripe_sdk");
    settle(&stack).await;
    assert_eq!(payment(&stack, &passed).await.status, "requires_action");
    assert_eq!(balance_cents(&stack, &token).await, 0);
    let (status, body) = stack.authenticate(&passed, true).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("succeeded")));
    settle(&stack).await;
    assert_eq!(balance_cents(&stack, &token).await, 1000);

    let failed = create(&stack, &token, 5).await;
    stack.confirm(&failed, PM_CARD_3DS).await;
    let (status, body) = stack.authenticate(&failed, false).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("requires_payment_method"))
    );
    settle(&stack).await;
    assert_eq!(
        balance_cents(&stack, &token).await,
        1000,
        "a failed challenge credits nothing"
    );
    let row = payment(&stack, &failed).await;
    assert_eq!(row.status, "requires_payment_method");
    assert_eq!(
        row.failure_code.as_deref(),
        Some("payment_intent_authentication_failure")
    );
    assert!(
        row.failure_message
            .unwrap()
            .contains("failed authentication")
    );
    assert_balances_match_ledger(&mut stack.db.connection().await).await;
}

#[tokio::test]
async fn qa4_a_declined_card_shows_stripes_message_and_the_balance_does_not_move() {
    let stack = Stack::start(SandboxConfig::default()).await;
    let token = stack.token("qa-user-4");
    let intent_id = create(&stack, &token, 50).await;

    let (status, body) = stack.confirm(&intent_id, PM_CARD_DECLINED).await;

    // What Stripe.js hands the SPA to show the user.
    assert_eq!(status, 402);
    assert_eq!(body["error"]["type"], "card_error");
    assert_eq!(body["error"]["decline_code"], "generic_decline");
    assert_eq!(body["error"]["message"], "Your card was declined.");
    settle(&stack).await;
    assert_eq!(balance_cents(&stack, &token).await, 0);
    let row = payment(&stack, &intent_id).await;
    assert_eq!(
        (row.status.as_str(), row.failure_code.as_deref()),
        ("requires_payment_method", Some("generic_decline"))
    );
    assert_eq!(
        row.failure_message.as_deref(),
        Some("Your card was declined.")
    );

    // The user retries with a good card: credited once.
    stack.confirm(&intent_id, PM_CARD_VISA).await;
    settle(&stack).await;
    assert_eq!(balance_cents(&stack, &token).await, 5000);
}

#[tokio::test]
async fn qa5_the_balance_survives_a_restart_of_both_servers() {
    let mut stack = Stack::start(SandboxConfig::default()).await;
    let token = stack.token("qa-user-5");
    let intent_id = create(&stack, &token, 10).await;
    stack.confirm(&intent_id, PM_CARD_VISA).await;
    settle(&stack).await;
    assert_eq!(balance_cents(&stack, &token).await, 1000);

    stack.restart().await;

    assert_eq!(balance_cents(&stack, &token).await, 1000);
    // And the restarted stack keeps working.
    let second = create(&stack, &token, 5).await;
    stack.confirm(&second, PM_CARD_VISA).await;
    settle(&stack).await;
    assert_eq!(balance_cents(&stack, &token).await, 1500);
}

#[tokio::test]
async fn qa6_stripe_receives_exactly_the_tier_in_cents_and_usd() {
    let stack = Stack::start(SandboxConfig::default()).await;
    let token = stack.token("qa-user-6");
    for tier in [5, 10, 20, 50] {
        let intent_id = create(&stack, &token, tier).await;
        let at_stripe = stack
            .sandbox
            .intent_json(&intent_id)
            .expect("intent at Stripe");
        assert_eq!(at_stripe["amount"], i64::from(tier) * 100);
        assert_eq!(at_stripe["currency"], "usd");
        assert_eq!(at_stripe["automatic_payment_methods"]["enabled"], true);
        assert_eq!(at_stripe["metadata"]["user_id"], "qa-user-6");
    }
    let (status, _) = stack.create_intent(&token, 15).await;
    assert_eq!(status, 422);
    assert_eq!(
        stack.sandbox.stats().events,
        4,
        "no intent for a non-tier amount"
    );
}

#[tokio::test]
async fn qa7_every_event_twice_and_shuffled_credits_each_payment_once() {
    let stack = Stack::start(SandboxConfig {
        duplicate_events: true,
        shuffle_events: true,
        ..SandboxConfig::default()
    })
    .await;
    let users = ["qa7-a", "qa7-b", "qa7-c"];
    for (n, user) in users.iter().enumerate() {
        let token = stack.token(user);
        for tier in [5, 10, 20] {
            let intent_id = create(&stack, &token, tier).await;
            // One declined attempt first, for some, so failures arrive shuffled too.
            if n == 1 {
                stack.confirm(&intent_id, PM_CARD_DECLINED).await;
            }
            stack.confirm(&intent_id, PM_CARD_VISA).await;
        }
    }
    settle(&stack).await;

    let stats = stack.sandbox.stats();
    assert_eq!(stats.deliveries, stats.events * 2, "{stats:?}");
    assert_eq!(stats.given_up, 0);
    for user in users {
        assert_eq!(
            balance_cents(&stack, &stack.token(user)).await,
            3500,
            "{user}"
        );
    }
    let mut conn = stack.db.connection().await;
    assert_eq!(count_rows(&mut conn, "ledger_entries").await, 9);
    assert_eq!(count_recorded_events(&mut conn).await as u64, stats.events);
    assert_balances_match_ledger(&mut conn).await;
}

#[tokio::test]
async fn qa8_webhooks_while_payments_grpc_is_down_are_retried_and_credited_once() {
    let mut stack = Stack::start(SandboxConfig::default()).await;
    let token = stack.token("qa-user-8");
    let intent_id = create(&stack, &token, 20).await;
    settle(&stack).await;

    stack.stop_grpc().await;
    let (status, _) = stack.confirm(&intent_id, PM_CARD_VISA).await;
    assert_eq!(status, 200);
    // The edge answers 5xx, so the sandbox keeps retrying like Stripe.
    let stats = stack
        .sandbox
        .wait_for_stats(|s| s.failed_attempts >= 2)
        .await;
    assert_eq!(stats.given_up, 0);

    stack.start_grpc().await;
    settle(&stack).await;

    assert_eq!(balance_cents(&stack, &token).await, 2000);
    let mut conn = stack.db.connection().await;
    assert_eq!(count_rows(&mut conn, "ledger_entries").await, 1);
    let stats = stack.sandbox.stats();
    assert_eq!(stats.delivered, stats.deliveries);
    assert_balances_match_ledger(&mut conn).await;
}

#[tokio::test]
async fn a_canceled_intent_is_recorded_and_never_credited() {
    let stack = Stack::start(SandboxConfig::default()).await;
    let token = stack.token("qa-cancel");
    let intent_id = create(&stack, &token, 10).await;
    let url = format!(
        "{}/v1/payment_intents/{intent_id}/cancel",
        stack.sandbox.url()
    );
    let (status, body) = stack
        .http
        .send(
            "POST",
            &url,
            Some("sk_test_x"),
            &[("content-type", "application/x-www-form-urlencoded")],
            Vec::new(),
        )
        .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("canceled")));
    settle(&stack).await;
    assert_eq!(payment(&stack, &intent_id).await.status, "canceled");
    assert_eq!(balance_cents(&stack, &token).await, 0);
}

/// Sets the payment's clock back, as if `secs` had passed since it was
/// created and last updated.
async fn age_payment(stack: &Stack, intent_id: &str, secs: i64) {
    use diesel_async::RunQueryDsl;
    let mut conn = stack.db.connection().await;
    diesel::sql_query(format!(
        "UPDATE payments SET created_at = created_at - interval '{secs} seconds',
                             updated_at = updated_at - interval '{secs} seconds'
          WHERE stripe_intent_id = '{intent_id}'"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
}

#[tokio::test]
async fn qa9_the_spa_syncs_after_confirming_so_the_credit_lands_before_the_webhook() {
    let stack = Stack::start(SandboxConfig::default()).await;
    let token = stack.token("qa-sync");
    let intent_id = create(&stack, &token, 10).await;
    // Every webhook is lost: only the sync can credit now.
    stack.sandbox.drop_events(&["payment_intent.succeeded"]);
    let (status, _) = stack.confirm(&intent_id, PM_CARD_VISA).await;
    assert_eq!(status, 200);
    let (status, synced) = stack.sync(&token, &intent_id).await;
    assert_eq!(
        (status, synced["balance_cents"].as_i64()),
        (200, Some(1000)),
        "{synced}"
    );
    assert_eq!(balance_cents(&stack, &token).await, 1000);
    // Another user cannot sync it.
    let (status, _) = stack.sync(&stack.token("qa-other"), &intent_id).await;
    assert_eq!(status, 404);
    assert_balances_match_ledger(&mut stack.db.connection().await).await;
}

#[tokio::test]
async fn qa10_a_refund_after_a_top_up_takes_its_credits_back_once() {
    let stack = Stack::start(SandboxConfig::default()).await;
    let token = stack.token("qa-refund");
    let intent_id = create(&stack, &token, 20).await;
    stack.confirm(&intent_id, PM_CARD_VISA).await;
    settle(&stack).await;
    assert_eq!(balance_cents(&stack, &token).await, 2000);

    // Stripe CLI: `stripe refunds create --payment-intent=pi_… --amount=500`.
    let refund = stack.sandbox.refund(&intent_id, Some(500)).await;
    assert_eq!(refund["status"], "succeeded", "{refund}");
    settle(&stack).await;
    assert_eq!(balance_cents(&stack, &token).await, 1500);
    stack.sandbox.refund(&intent_id, None).await;
    settle(&stack).await;
    assert_eq!(balance_cents(&stack, &token).await, 0);
    let payment = payment(&stack, &intent_id).await;
    assert_eq!(payment.amount_refunded_cents, 2000);
    assert_balances_match_ledger(&mut stack.db.connection().await).await;
}

#[tokio::test]
async fn qa11_a_disputed_payment_is_clawed_back_and_given_back_when_won() {
    let stack = Stack::start(SandboxConfig::default()).await;
    let token = stack.token("qa-dispute");
    let spent_from = create(&stack, &token, 10).await;
    stack.confirm(&spent_from, PM_CARD_VISA).await;
    let disputed = create(&stack, &token, 5).await;
    // Stripe's dispute test card: paid, then disputed at once.
    stack.confirm(&disputed, PM_CARD_DISPUTED).await;
    settle(&stack).await;
    assert_eq!(balance_cents(&stack, &token).await, 1000);
    assert_eq!(payment(&stack, &disputed).await.amount_disputed_cents, 500);

    let dispute = stack.sandbox.dispute_ids().pop().expect("a dispute");
    stack.sandbox.close_dispute(&dispute, true).await;
    settle(&stack).await;
    assert_eq!(balance_cents(&stack, &token).await, 1500);
    assert_eq!(payment(&stack, &disputed).await.amount_disputed_cents, 0);
    assert_balances_match_ledger(&mut stack.db.connection().await).await;
}

#[tokio::test]
async fn qa12_a_lost_webhook_is_healed_and_an_abandoned_intent_cancelled_by_reconciliation() {
    let stack = Stack::start(SandboxConfig::default()).await;
    let token = stack.token("qa-heal");
    stack.sandbox.drop_events(&[
        "payment_intent.succeeded",
        "charge.refunded",
        "refund.created",
    ]);
    let paid = create(&stack, &token, 10).await;
    stack.confirm(&paid, PM_CARD_VISA).await;
    let abandoned = create(&stack, &token, 50).await;
    settle(&stack).await;
    assert_eq!(balance_cents(&stack, &token).await, 0);

    // RECONCILE_AFTER_SECS (300) later: the paid intent is re-fetched.
    age_payment(&stack, &paid, 301).await;
    let pass = stack.reconcile().await;
    assert_eq!(pass.credited, 1, "{pass:?}");
    assert_eq!(balance_cents(&stack, &token).await, 1000);

    // A refund whose webhooks were lost comes back through the Events API.
    stack.sandbox.refund(&paid, Some(300)).await;
    let pass = stack.reconcile().await;
    assert!(pass.events_backfilled >= 1, "{pass:?}");
    assert_eq!(balance_cents(&stack, &token).await, 700);

    // STALE_INTENT_AFTER_SECS (a day) later: the abandoned intent is cancelled.
    age_payment(&stack, &abandoned, 86_401).await;
    let pass = stack.reconcile().await;
    assert_eq!(pass.canceled, 1, "{pass:?}");
    let at_stripe = stack.sandbox.intent_json(&abandoned).unwrap();
    assert_eq!(at_stripe["cancellation_reason"], "abandoned");
    settle(&stack).await;
    assert_eq!(payment(&stack, &abandoned).await.status, "canceled");
    assert_eq!(balance_cents(&stack, &token).await, 700);
    assert_balances_match_ledger(&mut stack.db.connection().await).await;
}

mod sandbox_errors;
