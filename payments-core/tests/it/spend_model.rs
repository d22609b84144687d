//! A model check: random sequences of top-ups, spends (alone and in bursts
//! that share batches), reversals and adjustments, with keys drawn from a
//! small pool so replays and conflicts happen, run against the service and
//! against a plain in-memory model. Every answer, every balance and every
//! user's ledger (kinds, amounts and balances after, in order) must equal
//! the model's.

use std::collections::HashMap;

use futures::future::join_all;
use payments_core::db::ledger;
use payments_core::domain::LedgerKind;
use payments_core::{Error, EventOutcome};
use payments_test_support::{TestDatabase, assert_balances_match_ledger, event_json, service};
use proptest::prelude::*;
use stripe_sandbox::Sandbox;

const USERS: [&str; 2] = ["model-0", "model-1"];
const TIERS: [i64; 4] = [500, 1000, 2000, 5000];

#[derive(Debug, Clone)]
enum Step {
    TopUp {
        user: usize,
        tier: usize,
    },
    Spend {
        user: usize,
        cents: i64,
        key: u8,
    },
    /// `count` spends of `cents` at once, each with a fresh key.
    Burst {
        user: usize,
        cents: i64,
        count: usize,
    },
    Reverse {
        user: usize,
        key: u8,
    },
    Adjust {
        user: usize,
        cents: i64,
        key: u8,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let user = 0..USERS.len();
    prop_oneof![
        (user.clone(), 0..TIERS.len()).prop_map(|(user, tier)| Step::TopUp { user, tier }),
        (user.clone(), 1..3000i64, 0..6u8).prop_map(|(user, cents, key)| Step::Spend {
            user,
            cents,
            key
        }),
        (user.clone(), 1..800i64, 2..12usize).prop_map(|(user, cents, count)| Step::Burst {
            user,
            cents,
            count
        }),
        (user.clone(), 0..6u8).prop_map(|(user, key)| Step::Reverse { user, key }),
        (user, -3000..3000i64, 0..4u8)
            .prop_filter("not zero", |(_, cents, _)| *cents != 0)
            .prop_map(|(user, cents, key)| Step::Adjust { user, cents, key }),
    ]
}

/// What the service should hold for one user.
#[derive(Debug, Default)]
struct Model {
    balance: i64,
    /// (kind, amount, balance after), in order.
    ledger: Vec<(LedgerKind, i64, i64)>,
    /// A spend's amount and balance after, by key; whether it was reversed.
    spends: HashMap<String, (i64, i64, bool)>,
    /// An adjustment's amount and balance after, by key.
    adjustments: HashMap<String, (i64, i64)>,
}

impl Model {
    fn book(&mut self, kind: LedgerKind, cents: i64) -> i64 {
        self.balance += cents;
        self.ledger.push((kind, cents, self.balance));
        self.balance
    }

    /// The balance a spend answers, or the error it gets.
    fn spend(&mut self, cents: i64, key: &str) -> Result<i64, Error> {
        if let Some((first, after, _)) = self.spends.get(key) {
            return if *first == cents {
                Ok(*after)
            } else {
                Err(Error::IdempotencyConflict(String::new()))
            };
        }
        if self.balance < cents {
            return Err(Error::InsufficientCredits {
                balance_cents: self.balance,
                asked_cents: cents,
            });
        }
        let after = self.book(LedgerKind::Spend, -cents);
        self.spends.insert(key.to_owned(), (cents, after, false));
        Ok(after)
    }

    fn reverse(&mut self, key: &str) -> Result<i64, Error> {
        let Some((cents, _, reversed)) = self.spends.get(key).copied() else {
            return Err(Error::NotFound(String::new()));
        };
        if reversed {
            return Ok(self.balance);
        }
        self.spends.get_mut(key).expect("found above").2 = true;
        Ok(self.book(LedgerKind::SpendReversal, cents))
    }

    fn adjust(&mut self, cents: i64, key: &str) -> Result<i64, Error> {
        if let Some((first, after)) = self.adjustments.get(key) {
            return if *first == cents {
                Ok(*after)
            } else {
                Err(Error::IdempotencyConflict(String::new()))
            };
        }
        if self.balance + cents < 0 {
            return Err(Error::InsufficientCredits {
                balance_cents: self.balance,
                asked_cents: -cents,
            });
        }
        let after = self.book(LedgerKind::Adjustment, cents);
        self.adjustments.insert(key.to_owned(), (cents, after));
        Ok(after)
    }
}

/// Errors compared by kind (and, for a short balance, by figures): their
/// messages are the service's own words.
fn same(actual: &Result<i64, Error>, expected: &Result<i64, Error>) -> bool {
    match (actual, expected) {
        (Ok(a), Ok(e)) => a == e,
        (Err(Error::InsufficientCredits { .. }), Err(Error::InsufficientCredits { .. })) => {
            actual.as_ref().err() == expected.as_ref().err()
        }
        (Err(Error::IdempotencyConflict(_)), Err(Error::IdempotencyConflict(_)))
        | (Err(Error::NotFound(_)), Err(Error::NotFound(_))) => true,
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn spends_reversals_and_adjustments_keep_to_the_model(
        steps in prop::collection::vec(step(), 1..30)
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(run(steps));
    }
}

async fn run(steps: Vec<Step>) {
    let db = TestDatabase::create().await;
    let stripe = Sandbox::start_local().await;
    let service = service(&db, &stripe).await;
    let mut models: Vec<Model> = USERS.iter().map(|_| Model::default()).collect();
    let mut bursts = 0;
    for step in steps {
        match step {
            Step::TopUp { user, tier } => {
                let intent = service
                    .create_payment_intent(USERS[user], TIERS[tier], "")
                    .await
                    .unwrap()
                    .intent_id;
                stripe.succeed(&intent);
                let event = event_json(
                    &format!("evt_{intent}"),
                    "payment_intent.succeeded",
                    &intent,
                );
                assert_eq!(
                    service.apply_stripe_event(&event).await,
                    Ok(EventOutcome::Applied)
                );
                models[user].book(LedgerKind::TopUp, TIERS[tier]);
            }
            Step::Spend { user, cents, key } => {
                let key = format!("spend-{key}");
                let answer = service
                    .spend_credits(USERS[user], cents, &key, "")
                    .await
                    .map(|spent| spent.balance_cents.get());
                let expected = models[user].spend(cents, &key);
                assert!(
                    same(&answer, &expected),
                    "{step:?}: {answer:?}, model {expected:?}"
                );
            }
            Step::Burst { user, cents, count } => {
                bursts += 1;
                let keys: Vec<String> = (0..count).map(|n| format!("burst-{bursts}-{n}")).collect();
                let answers = join_all(
                    keys.iter()
                        .map(|key| service.spend_credits(USERS[user], cents, key, "")),
                )
                .await;
                // Which of them go through is the database's to order; how
                // many is not: as many as the balance covers.
                let model = &mut models[user];
                let fit = usize::try_from(model.balance.max(0) / cents)
                    .unwrap()
                    .min(count);
                let mut afters: Vec<i64> = answers
                    .iter()
                    .filter_map(|answer| answer.as_ref().ok().map(|s| s.balance_cents.get()))
                    .collect();
                afters.sort_unstable_by(|a, b| b.cmp(a));
                let expected: Vec<i64> = (1..=fit as i64)
                    .map(|n| model.balance - n * cents)
                    .collect();
                assert_eq!(afters, expected, "{step:?}: {answers:?}");
                for (key, answer) in keys.iter().zip(&answers) {
                    match answer {
                        Ok(spent) => {
                            model
                                .spends
                                .insert(key.clone(), (cents, spent.balance_cents.get(), false));
                        }
                        Err(err) => assert!(
                            matches!(err, Error::InsufficientCredits { .. }),
                            "{step:?}: {err:?}"
                        ),
                    }
                }
                for after in expected {
                    model.balance = after;
                    model.ledger.push((LedgerKind::Spend, -cents, after));
                }
            }
            Step::Reverse { user, key } => {
                let key = format!("spend-{key}");
                let answer = service
                    .reverse_spend(USERS[user], &key, "")
                    .await
                    .map(|balance| balance.get());
                let expected = models[user].reverse(&key);
                assert!(
                    same(&answer, &expected),
                    "{step:?}: {answer:?}, model {expected:?}"
                );
            }
            Step::Adjust { user, cents, key } => {
                let key = format!("adjust-{key}");
                let answer = service
                    .adjust_balance(USERS[user], cents, "model check", &key, "proptest")
                    .await
                    .map(|adjusted| adjusted.balance_cents.get());
                let expected = models[user].adjust(cents, &key);
                assert!(
                    same(&answer, &expected),
                    "{step:?}: {answer:?}, model {expected:?}"
                );
            }
        }
    }
    let mut conn = db.connection().await;
    assert_balances_match_ledger(&mut conn).await;
    for (user, model) in USERS.iter().zip(&models) {
        let balance = service.get_balance(user).await.unwrap().balance_cents.get();
        assert_eq!(balance, model.balance, "{user}");
        let booked: Vec<(LedgerKind, i64, i64)> = ledger::for_user(&mut conn, user)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.kind, e.amount_cents, e.balance_after_cents))
            .collect();
        assert_eq!(booked, model.ledger, "{user}");
    }
}
