//! Property tests: any sequence of observed statuses keeps the status machine
//! forward-only; any sequence of Stripe events (duplicated, reordered, for
//! intents in any state) leaves every balance equal to its ledger sum and
//! credits each intent at most once, by its amount.

use std::collections::HashMap;

use payments_core::EventOutcome;
use payments_core::domain::PaymentStatus;
use payments_test_support::event_json;
use payments_test_support::{TestDatabase, assert_balances_match_ledger, service};
use proptest::prelude::*;
use stripe_sandbox::Sandbox;

fn status() -> impl Strategy<Value = PaymentStatus> {
    prop::sample::select(PaymentStatus::ALL.to_vec())
}

proptest! {
    #[test]
    fn statuses_never_leave_a_final_state(observed in prop::collection::vec(status(), 1..40)) {
        let mut current = PaymentStatus::RequiresPaymentMethod;
        let mut finished = None;
        for next in observed {
            current = current.transition(next).unwrap_or(current);
            if let Some(done) = finished {
                prop_assert_eq!(current, done, "a final status changed");
            }
            if current.is_final() {
                finished = Some(current);
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Step {
    /// What Stripe now reports for intent `n`.
    Stripe(usize, StripeChange),
    /// An event about intent `n`, with an id drawn from a small pool so that
    /// duplicates happen.
    Deliver(usize, &'static str, u8),
}

#[derive(Debug, Clone, Copy)]
enum StripeChange {
    Succeed,
    Decline,
    Status(&'static str),
}

fn step() -> impl Strategy<Value = Step> {
    let intent = 0..4usize;
    prop_oneof![
        (
            intent.clone(),
            prop_oneof![
                Just(StripeChange::Succeed),
                Just(StripeChange::Decline),
                Just(StripeChange::Status("processing")),
                Just(StripeChange::Status("requires_action")),
                Just(StripeChange::Status("canceled")),
            ]
        )
            .prop_map(|(n, change)| Step::Stripe(n, change)),
        (
            intent,
            prop::sample::select(vec![
                "payment_intent.succeeded",
                "payment_intent.payment_failed",
                "payment_intent.processing",
                "payment_intent.canceled",
                "payment_intent.requires_action",
                "charge.succeeded",
            ]),
            0..12u8,
        )
            .prop_map(|(n, kind, id)| Step::Deliver(n, kind, id)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn any_event_sequence_keeps_the_ledger_exact(steps in prop::collection::vec(step(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async move {
            let db = TestDatabase::create().await;
            let stripe = Sandbox::start_local().await;
            let service = service(&db, &stripe).await;
            let users = ["pu-0", "pu-1", "pu-0", "pu-2"];
            let amounts = [500, 1000, 2000, 5000];
            let mut intents = Vec::new();
            for (user, amount) in users.iter().zip(amounts) {
                intents.push(service.create_payment_intent(user, amount, "").await.unwrap().intent_id);
            }
            let mut paid_at_stripe = vec![false; intents.len()];
            for step in steps {
                match step {
                    Step::Stripe(n, change) => {
                        // Stripe itself never leaves succeeded or canceled.
                        let current = stripe.intent(&intents[n]).unwrap().status;
                        if current == "succeeded" || current == "canceled" {
                            continue;
                        }
                        match change {
                            StripeChange::Succeed => {
                                stripe.succeed(&intents[n]);
                                paid_at_stripe[n] = true;
                            }
                            StripeChange::Decline => stripe.decline(&intents[n], "generic_decline", "Your card was declined."),
                            StripeChange::Status(status) => stripe.set_status(&intents[n], status),
                        }
                    }
                    Step::Deliver(n, kind, id) => {
                        // Event ids are unique per event at Stripe: the id fixes the intent and type.
                        let event_id = format!("evt_{n}_{kind}_{id}");
                        let outcome = service.apply_stripe_event(&event_json(&event_id, kind, &intents[n])).await.unwrap();
                        assert!(matches!(outcome, EventOutcome::Applied | EventOutcome::Duplicate | EventOutcome::Ignored));
                    }
                }
            }
            let mut conn = db.connection().await;
            assert_balances_match_ledger(&mut conn).await;
            let mut expected: HashMap<&str, i64> = HashMap::new();
            for (n, intent) in intents.iter().enumerate() {
                let entries: Vec<_> = payments_core::db::ledger::for_user(&mut conn, users[n])
                    .await
                    .unwrap()
                    .into_iter()
                    .filter(|e| e.stripe_intent_id.as_deref() == Some(intent.as_str()))
                    .collect();
                assert!(entries.len() <= 1, "intent {n} credited {} times", entries.len());
                if let Some(entry) = entries.first() {
                    assert!(paid_at_stripe[n], "intent {n} credited without being paid");
                    assert_eq!(entry.amount_cents, amounts[n]);
                    *expected.entry(users[n]).or_default() += amounts[n];
                }
            }
            for user in ["pu-0", "pu-1", "pu-2"] {
                let balance = service.get_balance(user).await.unwrap().balance_cents;
                assert_eq!(balance, expected.get(user).copied().unwrap_or(0), "{user}");
            }
        });
    }
}
