//! Every constraint refuses what it exists to refuse, whoever writes.

use super::*;

#[tokio::test]
async fn payments_constraints_refuse_what_they_exist_to_refuse() {
    let db = TestDatabase::create().await;
    let conn = &mut db.connection().await;
    for (intent, user) in [
        ("pi_1", "u1"),
        ("pi_3", "u1"),
        ("pi_4", "u2"),
        ("pi_5", "u1"),
    ] {
        exec(conn, &format!("{OWNER} VALUES ('{intent}', '{user}')"))
            .await
            .unwrap();
    }
    exec(
        conn,
        &format!("{PAYMENT} VALUES ('pi_1', 'u1', 500, 'usd', 'succeeded', 'k1')"),
    )
    .await
    .unwrap();

    // An intent has one owner: not stored twice, nor under another user.
    refused(
        conn,
        &format!("{PAYMENT} VALUES ('pi_1', 'u1', 500, 'usd', 'succeeded', NULL)"),
        "payments_pkey",
    )
    .await;
    refused(
        conn,
        &format!("{PAYMENT} VALUES ('pi_1', 'u2', 500, 'usd', 'succeeded', NULL)"),
        "payments_intent_owner_fkey",
    )
    .await;
    refused(
        conn,
        &format!("{OWNER} VALUES ('pi_1', 'u2')"),
        "intent_owners_pkey",
    )
    .await;
    refused(
        conn,
        &format!("{PAYMENT} VALUES ('pi_unowned', 'u1', 500, 'usd', 'succeeded', NULL)"),
        "payments_intent_owner_fkey",
    )
    .await;
    refused(
        conn,
        &format!("{PAYMENT} VALUES ('pi_3', 'u1', 500, 'usd', 'succeeded', 'k1')"),
        "payments_user_idempotency_key_unique",
    )
    .await;
    refused(
        conn,
        &format!("{PAYMENT} VALUES ('pi_3', 'u1', -500, 'usd', 'succeeded', NULL)"),
        "payments_amount_cents_check",
    )
    .await;
    refused(
        conn,
        &format!("{PAYMENT} VALUES ('pi_3', 'u1', 0, 'usd', 'succeeded', NULL)"),
        "payments_amount_cents_check",
    )
    .await;
    refused(
        conn,
        &format!("{PAYMENT} VALUES ('pi_3', 'u1', 500, 'USD', 'succeeded', NULL)"),
        "payments_currency_check",
    )
    .await;
    refused(
        conn,
        &format!("{PAYMENT} VALUES ('pi_3', 'u1', 500, 'usd', 'paid', NULL)"),
        "payments_status_check",
    )
    .await;
    refused(
        conn,
        &format!("{OWNER} VALUES ('pi_x', '')"),
        "intent_owners_user_id_check",
    )
    .await;
    refused(
        conn,
        &format!("{OWNER} VALUES ('', 'u1')"),
        "intent_owners_stripe_intent_id_check",
    )
    .await;
    refused(
        conn,
        "UPDATE payments SET amount_received_cents = -1",
        "payments_amount_received_cents_check",
    )
    .await;
    // Another user may use the same key; keys are per user.
    exec(
        conn,
        &format!("{PAYMENT} VALUES ('pi_4', 'u2', 500, 'usd', 'succeeded', 'k1')"),
    )
    .await
    .unwrap();
    // Many payments without a key.
    exec(
        conn,
        &format!("{PAYMENT} VALUES ('pi_5', 'u1', 500, 'usd', 'succeeded', NULL)"),
    )
    .await
    .unwrap();
    exec(
        conn,
        &format!("{PAYMENT} VALUES ('pi_3', 'u1', 500, 'usd', 'succeeded', NULL)"),
    )
    .await
    .unwrap();
    assert_eq!(count_rows(conn, "payments").await, 4);
}

#[tokio::test]
async fn the_ledger_holds_at_most_one_top_up_per_intent_whoever_asks() {
    let db = TestDatabase::create().await;
    let conn = &mut db.connection().await;
    for (intent, user) in [("pi_1", "u1"), ("pi_2", "u2")] {
        exec(conn, &format!("{OWNER} VALUES ('{intent}', '{user}')"))
            .await
            .unwrap();
        exec(
            conn,
            &format!("{PAYMENT} VALUES ('{intent}', '{user}', 500, 'usd', 'succeeded', NULL)"),
        )
        .await
        .unwrap();
    }
    for (user, event, intent) in [("u1", "evt_1", "pi_1"), ("u2", "evt_2", "pi_2")] {
        exec(
            conn,
            &format!("{EVENT} VALUES ('{user}', '{event}', 't', '{intent}', '{{}}', now())"),
        )
        .await
        .unwrap();
    }
    let entry = "INSERT INTO ledger_entries (user_id, amount_cents, currency, kind, stripe_intent_id, stripe_event_id, balance_after_cents)";
    exec(
        conn,
        &format!("{entry} VALUES ('u1', 500, 'usd', 'top_up', 'pi_1', 'evt_1', 500)"),
    )
    .await
    .unwrap();

    refused(
        conn,
        &format!("{entry} VALUES ('u1', 500, 'usd', 'top_up', 'pi_1', 'evt_1', 500)"),
        "ledger_one_top_up_per_intent",
    )
    .await;
    // The same intent credited to another user: that user holds no payment
    // for it, and cannot (the intent's owner is fixed).
    refused(
        conn,
        &format!("{entry} VALUES ('u2', 500, 'usd', 'top_up', 'pi_1', 'evt_2', 500)"),
        "ledger_entries_payment_fkey",
    )
    .await;
    // Nor credited by another user's event.
    refused(
        conn,
        &format!("{entry} VALUES ('u1', 500, 'usd', 'top_up', 'pi_1', 'evt_2', 500)"),
        "ledger_one_top_up_per_intent",
    )
    .await;
    refused(
        conn,
        &format!("{entry} VALUES ('u1', 500, 'usd', 'top_up', NULL, 'evt_1', 500)"),
        "ledger_top_up_is_a_paid_credit",
    )
    .await;
    // A credit made by a sync or a reconciliation pass names no event; it
    // is still the intent's one top-up.
    exec(
        conn,
        &format!("{entry} VALUES ('u2', 500, 'usd', 'top_up', 'pi_2', NULL, 500)"),
    )
    .await
    .unwrap();
    refused(
        conn,
        &format!("{entry} VALUES ('u2', 500, 'usd', 'top_up', 'pi_2', 'evt_2', 1000)"),
        "ledger_one_top_up_per_intent",
    )
    .await;
    refused(
        conn,
        &format!("{entry} VALUES ('u2', -500, 'usd', 'top_up', 'pi_2', 'evt_2', 500)"),
        "ledger_top_up_is_a_paid_credit",
    )
    .await;
    refused(
        conn,
        &format!("{entry} VALUES ('u2', 0, 'usd', 'top_up', 'pi_2', 'evt_2', 500)"),
        "ledger_entries_amount_cents_check",
    )
    .await;
    refused(
        conn,
        &format!("{entry} VALUES ('u2', 500, 'usd', 'gift', 'pi_2', 'evt_2', 500)"),
        "ledger_entries_kind_check",
    )
    .await;
    refused(
        conn,
        &format!("{entry} VALUES ('u1', 500, 'usd', 'top_up', 'pi_9', 'evt_1', 500)"),
        "ledger_entries_payment_fkey",
    )
    .await;
    assert_eq!(count_rows(conn, "ledger_entries").await, 2);

    // Clawbacks: several refunds of one intent, each once per refund id,
    // each taking credits and naming its payment and refund; a reversal
    // gives credits back.
    let clawback = "INSERT INTO ledger_entries (user_id, amount_cents, currency, kind, stripe_intent_id, stripe_object_id, balance_after_cents)";
    for values in [
        "('u1', -100, 'usd', 'refund', 'pi_1', 're_1', 400)",
        "('u1', -100, 'usd', 'refund', 'pi_1', 're_2', 300)",
        "('u1', 100, 'usd', 'refund_reversal', 'pi_1', 're_2', 400)",
        "('u1', -400, 'usd', 'dispute', 'pi_1', 'du_1', 0)",
    ] {
        exec(conn, &format!("{clawback} VALUES {values}"))
            .await
            .unwrap();
    }
    for (values, constraint) in [
        (
            "('u1', -100, 'usd', 'refund', 'pi_1', 're_1', 0)",
            "ledger_one_entry_per_stripe_object",
        ),
        (
            "('u1', 100, 'usd', 'refund_reversal', 'pi_1', 're_2', 0)",
            "ledger_one_entry_per_stripe_object",
        ),
        (
            "('u1', 100, 'usd', 'refund', 'pi_1', 're_3', 0)",
            "ledger_clawback_names_its_cause",
        ),
        (
            "('u1', -100, 'usd', 'dispute_reversal', 'pi_1', 'du_1', 0)",
            "ledger_clawback_names_its_cause",
        ),
        (
            "('u1', -100, 'usd', 'refund', 'pi_1', NULL, 0)",
            "ledger_clawback_names_its_cause",
        ),
        (
            "('u1', -100, 'usd', 'dispute', NULL, 'du_2', 0)",
            "ledger_clawback_names_its_cause",
        ),
        (
            "('u1', -100, 'usd', 'refund', 'pi_1', 're 4', 0)",
            "ledger_entries_stripe_object_id_check",
        ),
        (
            "('u2', -100, 'usd', 'refund', 'pi_1', 're_5', 0)",
            "ledger_entries_payment_fkey",
        ),
    ] {
        refused(conn, &format!("{clawback} VALUES {values}"), constraint).await;
    }
    assert_eq!(count_rows(conn, "ledger_entries").await, 6);
}

/// A spend has its key and takes credits; a reversal names its spend and is
/// made once; an adjustment says why and who: refused by the schema, not
/// only by the functions that write them.
#[tokio::test]
async fn spends_reversals_and_adjustments_are_whole_by_constraint() {
    let db = TestDatabase::create().await;
    let conn = &mut db.connection().await;
    let entry = "INSERT INTO ledger_entries (user_id, amount_cents, balance_after_cents, currency, kind, idempotency_key, reverses_entry_id, reason, actor)";
    // Entry 1: a spend of u1's.
    exec(
        conn,
        "INSERT INTO ledger_entries (id, user_id, amount_cents, balance_after_cents, currency, kind, idempotency_key)
         OVERRIDING SYSTEM VALUE VALUES (1, 'u1', -100, -100, 'usd', 'spend', 'k1')",
    )
    .await
    .unwrap();
    for (values, constraint) in [
        (
            "('u1', -100, 0, 'usd', 'spend', NULL, NULL, NULL, NULL)",
            "ledger_spend_has_its_key",
        ),
        (
            "('u1', 100, 0, 'usd', 'spend', 'k2', NULL, NULL, NULL)",
            "ledger_spend_has_its_key",
        ),
        (
            "('u1', -100, 0, 'usd', 'spend', 'k1', NULL, NULL, NULL)",
            "ledger_one_entry_per_key_and_kind",
        ),
        (
            "('u1', -100, 0, 'usd', 'spend', 'has space', NULL, NULL, NULL)",
            "ledger_entries_idempotency_key_check",
        ),
        (
            "('u1', -100, 0, 'usd', 'spend', 'clé', NULL, NULL, NULL)",
            "ledger_entries_idempotency_key_check",
        ),
        (
            "('u1', -100, 0, 'usd', 'spend', '', NULL, NULL, NULL)",
            "ledger_entries_idempotency_key_check",
        ),
        (
            "('u1', 100, 0, 'usd', 'spend_reversal', NULL, NULL, NULL, NULL)",
            "ledger_spend_reversal_names_its_spend",
        ),
        (
            "('u1', -100, 0, 'usd', 'spend_reversal', NULL, 1, NULL, NULL)",
            "ledger_spend_reversal_names_its_spend",
        ),
        // Another user's entry, or none at all, cannot be reversed.
        (
            "('u2', 100, 0, 'usd', 'spend_reversal', NULL, 1, NULL, NULL)",
            "ledger_reversal_entry_fkey",
        ),
        (
            "('u1', 100, 0, 'usd', 'spend_reversal', NULL, 99, NULL, NULL)",
            "ledger_reversal_entry_fkey",
        ),
        (
            "('u1', 100, 0, 'usd', 'adjustment', 'a1', NULL, 'why', NULL)",
            "ledger_adjustment_is_explained",
        ),
        (
            "('u1', 100, 0, 'usd', 'adjustment', 'a1', NULL, NULL, 'ops')",
            "ledger_adjustment_is_explained",
        ),
    ] {
        refused(conn, &format!("{entry} VALUES {values}"), constraint).await;
    }
    // 255 characters is the longest key; one more is refused.
    let key = "k".repeat(255);
    exec(
        conn,
        &format!("{entry} VALUES ('u1', -1, -101, 'usd', 'spend', '{key}', NULL, NULL, NULL)"),
    )
    .await
    .unwrap();
    refused(
        conn,
        &format!("{entry} VALUES ('u1', -1, -102, 'usd', 'spend', '{key}k', NULL, NULL, NULL)"),
        "ledger_entries_idempotency_key_check",
    )
    .await;
    let long_reason = "r".repeat(201);
    refused(
        conn,
        &format!("{entry} VALUES ('u1', -1, 0, 'usd', 'spend', 'k3', NULL, '{long_reason}', NULL)"),
        "ledger_entries_reason_check",
    )
    .await;
    exec(
        conn,
        &format!("{entry} VALUES ('u1', 100, 0, 'usd', 'spend_reversal', NULL, 1, NULL, NULL)"),
    )
    .await
    .unwrap();
    refused(
        conn,
        &format!("{entry} VALUES ('u1', 100, 100, 'usd', 'spend_reversal', NULL, 1, NULL, NULL)"),
        "ledger_one_reversal_per_entry",
    )
    .await;
    // The spend, the spend with the longest key, the reversal.
    assert_eq!(count_rows(conn, "ledger_entries").await, 3);
}

#[tokio::test]
async fn balances_and_events_constraints() {
    let db = TestDatabase::create().await;
    let conn = &mut db.connection().await;
    exec(
        conn,
        "INSERT INTO balances (user_id, balance_cents, currency) VALUES ('u1', 0, 'usd')",
    )
    .await
    .unwrap();
    refused(
        conn,
        "INSERT INTO balances (user_id, balance_cents, currency) VALUES ('u1', 5, 'usd')",
        "balances_pkey",
    )
    .await;
    // Debt is possible (a clawback is booked in full): the balance itself
    // may go below zero; spends refuse a short balance in their functions.
    exec(conn, "UPDATE balances SET balance_cents = -1")
        .await
        .unwrap();
    exec(conn, "UPDATE balances SET balance_cents = 0")
        .await
        .unwrap();

    exec(conn, &format!("{OWNER} VALUES ('pi_1', 'u1')"))
        .await
        .unwrap();
    exec(
        conn,
        &format!("{PAYMENT} VALUES ('pi_1', 'u1', 500, 'usd', 'succeeded', NULL)"),
    )
    .await
    .unwrap();
    exec(
        conn,
        &format!("{EVENT} VALUES ('u1', 'evt_1', 't', 'pi_1', '{{}}', now())"),
    )
    .await
    .unwrap();
    refused(
        conn,
        &format!("{EVENT} VALUES ('u1', 'evt_1', 't', 'pi_1', '{{}}', now())"),
        "stripe_events_pkey",
    )
    .await;
    refused(
        conn,
        &format!("{EVENT} VALUES (NULL, 'evt_2', 't', 'pi_1', '{{}}', now())"),
        "user_id",
    )
    .await;
    refused(
        conn,
        &format!("{EVENT} VALUES ('u1', '', 't', 'pi_1', '{{}}', now())"),
        "stripe_events_event_id_check",
    )
    .await;

    let ignored =
        "INSERT INTO ignored_stripe_events (event_id, event_type, reason, payload, received_at)";
    exec(
        conn,
        &format!("{ignored} VALUES ('evt_9', 't', 'r', '{{}}', now())"),
    )
    .await
    .unwrap();
    refused(
        conn,
        &format!("{ignored} VALUES ('evt_9', 't', 'r', '{{}}', now())"),
        "ignored_stripe_events_pkey",
    )
    .await;
    refused(
        conn,
        &format!("{ignored} VALUES ('', 't', 'r', '{{}}', now())"),
        "ignored_stripe_events_event_id_check",
    )
    .await;
}
