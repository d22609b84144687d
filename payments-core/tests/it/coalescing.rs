//! Coalesced statements: calls waiting at once share one statement, every
//! call gets its own answer, and one call's bad row fails only that call.

use std::sync::Mutex;

use futures::future::join_all;

use payments_core::db::balance_reads::BalanceReads;
use payments_core::db::coalesce::{Batch, Coalescer};
use payments_core::db::payment_inserts::{PaymentInserts, PaymentToStore};
use payments_core::db::spend_batches::{self, SpendBatches, SpendToMake};
use payments_core::db::spends::SpendOutcome;
use payments_core::db::{DbError, DbPool, balances, ledger, payments};
use payments_core::domain::{Currency, PaymentStatus};
use payments_core::{Error, PaymentsService};
use payments_test_support::{TestDatabase, count_rows};

/// Answers each call with its double and records the size of every batch.
struct Doubling;

static BATCH_SIZES: Mutex<Vec<usize>> = Mutex::new(Vec::new());

impl Batch for Doubling {
    type Call = u32;
    type Answer = u32;

    async fn run(_: &DbPool, calls: &[u32]) -> Vec<Result<u32, DbError>> {
        BATCH_SIZES.lock().unwrap().push(calls.len());
        calls.iter().map(|n| Ok(n * 2)).collect()
    }
}

// The test runtime has one thread: every call is queued before a lane runs.
#[tokio::test]
async fn waiting_calls_share_batches_of_at_most_the_maximum() {
    let db = TestDatabase::create().await;
    let coalescer = Coalescer::<Doubling>::new(db.pool().await, 2, 16);

    let answers = join_all((0..50).map(|n| coalescer.call(n))).await;

    let answers: Vec<u32> = answers.into_iter().map(Result::unwrap).collect();
    assert_eq!(answers, (0..50).map(|n| n * 2).collect::<Vec<_>>());
    assert_eq!(*BATCH_SIZES.lock().unwrap(), [16, 16, 16, 2]);
    // Alone, a call is a batch of one, answered at once.
    assert_eq!(coalescer.call(7).await.unwrap(), 14);
    assert_eq!(BATCH_SIZES.lock().unwrap().last(), Some(&1));
}

#[tokio::test]
async fn balance_reads_in_one_batch_each_get_their_own_user() {
    let db = TestDatabase::create().await;
    let mut conn = db.connection().await;
    let now = chrono::Utc::now();
    balances::add(&mut conn, "alice", 500, Currency::Usd, now)
        .await
        .unwrap();
    balances::add(&mut conn, "bob", 2000, Currency::Usd, now)
        .await
        .unwrap();
    let reads = BalanceReads::new(db.pool().await);

    let users = ["alice", "bob", "carol", "alice"];
    let answers = join_all(users.map(|user| reads.find(user))).await;

    let cents: Vec<Option<i64>> = answers
        .into_iter()
        .map(|row| row.unwrap().map(|row| row.balance_cents))
        .collect();
    assert_eq!(cents, [Some(500), Some(2000), None, Some(500)]);

    // A read made after a commit sees it.
    balances::add(&mut conn, "carol", 1000, Currency::Usd, now)
        .await
        .unwrap();
    let carol = reads.find("carol").await.unwrap().unwrap();
    assert_eq!(carol.balance_cents, 1000);
}

fn payment(intent: &str, user: &str) -> PaymentToStore {
    PaymentToStore {
        stripe_intent_id: intent.into(),
        user_id: user.into(),
        amount_cents: 1000,
        currency: Currency::Usd,
        status: PaymentStatus::RequiresPaymentMethod,
        idempotency_key: Some(format!("key-{intent}")),
    }
}

#[tokio::test]
async fn payment_inserts_in_one_batch_store_each_row_once() {
    let db = TestDatabase::create().await;
    let inserts = PaymentInserts::new(db.pool().await);
    let mut calls: Vec<PaymentToStore> = (0..20)
        .map(|n| payment(&format!("pi_{n}"), &format!("user-{}", n % 3)))
        .collect();
    // The same intent twice in one batch (two concurrent requests with one key).
    calls.push(payment("pi_3", "user-0"));

    let answers = join_all(calls.into_iter().map(|call| inserts.insert_if_absent(call))).await;

    let inserted: Vec<bool> = answers.into_iter().map(Result::unwrap).collect();
    assert_eq!(inserted[..20], [true; 20]);
    assert!(!inserted[20], "the second row of pi_3 was not inserted");
    let mut conn = db.connection().await;
    assert_eq!(count_rows(&mut conn, "payments").await, 20);
    let stored = payments::find_by_intent(&mut conn, "pi_7")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            stored.user_id.as_str(),
            stored.amount_cents,
            stored.idempotency_key.as_deref()
        ),
        ("user-1", 1000, Some("key-pi_7"))
    );
    assert_eq!(stored.amount_received_cents, 0);

    // A row already stored is not inserted again.
    assert!(
        !inserts
            .insert_if_absent(payment("pi_7", "user-1"))
            .await
            .unwrap()
    );
    // Neither is another intent under a user's stored idempotency key.
    let mut reused_key = payment("pi_new", "user-1");
    reused_key.idempotency_key = Some("key-pi_7".into());
    assert!(!inserts.insert_if_absent(reused_key).await.unwrap());
    assert_eq!(count_rows(&mut conn, "payments").await, 20);
}

#[tokio::test]
async fn a_row_postgres_refuses_fails_only_its_own_call() {
    let db = TestDatabase::create().await;
    let inserts = PaymentInserts::new(db.pool().await);
    // The amount CHECK refuses 0 (the types no longer let a bad currency through).
    let refused = PaymentToStore {
        amount_cents: 0,
        ..payment("pi_bad", "user-b")
    };
    let calls = [
        payment("pi_a", "user-a"),
        refused,
        payment("pi_c", "user-c"),
    ];

    let answers = join_all(calls.map(|call| inserts.insert_if_absent(call))).await;

    assert!(matches!(answers[0], Ok(true)), "{:?}", answers[0]);
    assert!(
        matches!(&answers[1], Err(DbError::Query(err)) if err.to_string().contains("check constraint")),
        "{:?}",
        answers[1]
    );
    assert!(matches!(answers[2], Ok(true)), "{:?}", answers[2]);
    let mut conn = db.connection().await;
    assert_eq!(count_rows(&mut conn, "payments").await, 2);
    assert!(
        payments::find_by_intent(&mut conn, "pi_bad")
            .await
            .unwrap()
            .is_none()
    );
}

fn spend(user: &str, cents: i64, key: &str) -> SpendToMake {
    SpendToMake {
        user_id: user.into(),
        amount_cents: cents,
        key: key.into(),
        reason: None,
    }
}

/// One batch makes each spend as if alone, in arrival order.
#[tokio::test]
async fn spends_in_one_batch_each_stand_alone_in_arrival_order() {
    let db = TestDatabase::create().await;
    let mut conn = db.connection().await;
    let now = chrono::Utc::now();
    for (user, cents) in [("alice", 1000), ("bob", 100)] {
        balances::add(&mut conn, user, cents, Currency::Usd, now)
            .await
            .unwrap();
    }
    let calls = [
        spend("alice", 600, "a1"),
        // Short after the spend before it in the same batch.
        spend("alice", 600, "a2"),
        // The first key again, in the same batch: a replay.
        spend("alice", 600, "a1"),
        spend("bob", 100, "b1"),
        // No balance row at all.
        spend("carol", 1, "c1"),
        spend("alice", 400, "a3"),
    ];

    let answers = spend_batches::spend_all(&mut conn, &calls, now)
        .await
        .unwrap();

    let SpendOutcome::Made { entry_id: a1, .. } = answers[0] else {
        panic!("{answers:?}");
    };
    assert!(matches!(
        answers[0],
        SpendOutcome::Made {
            balance_cents: 400,
            ..
        }
    ));
    assert_eq!(
        answers[1],
        SpendOutcome::Insufficient { balance_cents: 400 }
    );
    assert_eq!(
        answers[2],
        SpendOutcome::Replayed {
            entry_id: a1,
            amount_cents: 600,
            balance_cents: 400
        }
    );
    assert!(matches!(
        answers[3],
        SpendOutcome::Made {
            balance_cents: 0,
            ..
        }
    ));
    assert_eq!(answers[4], SpendOutcome::Insufficient { balance_cents: 0 });
    assert!(matches!(
        answers[5],
        SpendOutcome::Made {
            balance_cents: 0,
            ..
        }
    ));
    let entries = ledger::for_user(&mut conn, "alice").await.unwrap();
    let booked: Vec<(i64, i64)> = entries
        .iter()
        .map(|e| (e.amount_cents, e.balance_after_cents))
        .collect();
    // In id order (the history's order), each entry's balance after.
    assert_eq!(booked, [(-600, 400), (-400, 0)]);
    assert_eq!(entries[0].id, a1);
    assert_eq!(count_rows(&mut conn, "ledger_entries").await, 3);
    assert_eq!(count_rows(&mut conn, "balances").await, 2);

    // The whole batch again: every spend made is a replay of itself; the
    // refused ones are refused again, on the balances as they are now.
    let again = spend_batches::spend_all(&mut conn, &calls, now)
        .await
        .unwrap();
    assert_eq!(again[0], answers[2]);
    assert_eq!(again[1], SpendOutcome::Insufficient { balance_cents: 0 });
    assert_eq!(again[2], answers[2]);
    for n in [3, 5] {
        let SpendOutcome::Made {
            entry_id,
            balance_cents,
        } = answers[n]
        else {
            panic!("{answers:?}");
        };
        assert_eq!(
            again[n],
            SpendOutcome::Replayed {
                entry_id,
                amount_cents: calls[n].amount_cents,
                balance_cents
            }
        );
    }
    assert_eq!(count_rows(&mut conn, "ledger_entries").await, 3);
}

/// A batch locks, reads and writes each balance by its own key, and looks
/// each spend key up by the key's own index, even when the statistics were
/// taken while the tables were empty and one user has spent thousands of
/// times since: no sequential scan of `balances` or `ledger_entries` (one
/// over a thousand balances cost a batch about 1 ms, twice), with plans
/// custom or generic.
#[tokio::test]
async fn a_batch_reads_each_row_by_its_key_whatever_the_statistics() {
    use diesel::sql_types::{BigInt, Text};
    use diesel_async::RunQueryDsl;

    #[derive(diesel::QueryableByName, Debug, PartialEq)]
    struct Scans {
        #[diesel(sql_type = BigInt)]
        seq_scan: i64,
        #[diesel(sql_type = BigInt)]
        idx_scan: i64,
    }

    let db = TestDatabase::create().await;
    let mut conn = db.connection().await;
    let run = |sql: &'static str| diesel::sql_query(sql);
    for sql in [
        "ANALYZE balances, ledger_entries",
        "INSERT INTO balances (user_id, balance_cents, currency)
         SELECT 'user-' || i, 1000, 'usd' FROM generate_series(1, 1000) AS i",
        // A hot user's history.
        "INSERT INTO ledger_entries (user_id, amount_cents, balance_after_cents, currency, kind, idempotency_key)
         SELECT 'user-61', -1, 1000, 'usd', 'spend', 'old-' || i FROM generate_series(1, 5000) AS i",
    ] {
        run(sql).execute(&mut conn).await.unwrap();
    }
    let now = chrono::Utc::now();
    // Sixteen users (one twice, one without a balance row), 18 spends; the
    // later rounds are every one of them again (replays).
    let mut calls: Vec<SpendToMake> = (1..=16)
        .map(|n| spend(&format!("user-{}", n * 61), 10, &format!("k{n}")))
        .collect();
    calls.push(spend("user-61", 10, "k-again"));
    calls.push(spend("nobody", 10, "k-nobody"));
    // Counts not yet sent to the statistics, which may span several
    // transactions: compared before and after.
    let scans = |table: &'static str| {
        run("SELECT seq_scan, coalesce(idx_scan, 0) AS idx_scan
               FROM pg_stat_xact_user_tables WHERE relname = $1")
        .bind::<Text, _>(table)
    };
    for (round, mode) in ["force_generic_plan", "force_custom_plan", "auto"]
        .into_iter()
        .enumerate()
    {
        diesel::sql_query(format!("SET plan_cache_mode = {mode}"))
            .execute(&mut conn)
            .await
            .unwrap();
        run("BEGIN").execute(&mut conn).await.unwrap();
        let mut before = Vec::new();
        for table in ["balances", "ledger_entries"] {
            before.push(scans(table).get_result::<Scans>(&mut conn).await.unwrap());
        }
        let answers = spend_batches::spend_all(&mut conn, &calls, now)
            .await
            .unwrap();
        let made = answers
            .iter()
            .filter(|a| matches!(a, SpendOutcome::Made { .. }))
            .count();
        let replayed = answers
            .iter()
            .filter(|a| matches!(a, SpendOutcome::Replayed { .. }))
            .count();
        assert_eq!(
            (made, replayed),
            if round == 0 { (17, 0) } else { (0, 17) },
            "{mode}: {answers:?}"
        );
        // Balances: 17 users locked (one without a row), the 16 moved
        // written. Ledger: each call's key looked up once.
        let written = if round == 0 { 16 } else { 0 };
        for (table, before, looked_up) in [
            ("balances", &before[0], 17 + written),
            ("ledger_entries", &before[1], 18),
        ] {
            let after: Scans = scans(table).get_result(&mut conn).await.unwrap();
            let read = Scans {
                seq_scan: after.seq_scan - before.seq_scan,
                idx_scan: after.idx_scan - before.idx_scan,
            };
            let expected = Scans {
                seq_scan: 0,
                idx_scan: looked_up,
            };
            assert_eq!(read, expected, "{mode}: {table}");
        }
        run("COMMIT").execute(&mut conn).await.unwrap();
    }
}

/// Through the coalescer (the test runtime has one thread: all the calls
/// wait together and share batches).
#[tokio::test]
async fn coalesced_spends_of_many_users_each_get_their_own_answer() {
    let db = TestDatabase::create().await;
    let mut conn = db.connection().await;
    let now = chrono::Utc::now();
    for n in 0..10 {
        balances::add(&mut conn, &format!("user-{n}"), 100, Currency::Usd, now)
            .await
            .unwrap();
    }
    let spends = SpendBatches::new(db.pool().await);
    // 30 spends of 40 cents on each of ten users: two fit, the third is short.
    let calls = (0..300).map(|n| spend(&format!("user-{}", n % 10), 40, &format!("k{n}")));

    let answers = join_all(calls.map(|call| spends.spend(call))).await;

    // Batches run side by side on several lanes: which two of a user's
    // spends go through is theirs to decide, not arrival order.
    for user in 0..10 {
        let mut mine: Vec<SpendOutcome> = answers
            .iter()
            .skip(user)
            .step_by(10)
            .map(|answer| match answer.clone().unwrap() {
                SpendOutcome::Made { balance_cents, .. } => SpendOutcome::Made {
                    entry_id: 0,
                    balance_cents,
                },
                other => other,
            })
            .collect();
        mine.sort_by_key(|outcome| format!("{outcome:?}"));
        let mut expected = vec![SpendOutcome::Insufficient { balance_cents: 20 }; 28];
        expected.push(SpendOutcome::Made {
            entry_id: 0,
            balance_cents: 20,
        });
        expected.push(SpendOutcome::Made {
            entry_id: 0,
            balance_cents: 60,
        });
        assert_eq!(mine, expected, "user-{user}");
    }
    assert_eq!(count_rows(&mut conn, "ledger_entries").await, 20);
}

#[tokio::test]
async fn a_spend_postgres_refuses_fails_only_its_own_call() {
    let db = TestDatabase::create().await;
    let mut conn = db.connection().await;
    let now = chrono::Utc::now();
    for user in ["alice", "bob"] {
        balances::add(&mut conn, user, 1000, Currency::Usd, now)
            .await
            .unwrap();
    }
    let spends = SpendBatches::new(db.pool().await);
    // The ledger's CHECK refuses a key with a space (the service's parsing
    // never lets one through; here it reaches Postgres).
    let calls = [
        spend("alice", 100, "a1"),
        spend("bob", 100, "not a key"),
        spend("bob", 200, "b1"),
    ];

    let answers = join_all(calls.map(|call| spends.spend(call))).await;

    assert!(
        matches!(
            answers[0],
            Ok(SpendOutcome::Made {
                balance_cents: 900,
                ..
            })
        ),
        "{:?}",
        answers[0]
    );
    assert!(
        matches!(&answers[1], Err(DbError::Query(err)) if err.to_string().contains("check constraint")),
        "{:?}",
        answers[1]
    );
    assert!(
        matches!(
            answers[2],
            Ok(SpendOutcome::Made {
                balance_cents: 800,
                ..
            })
        ),
        "{:?}",
        answers[2]
    );
    assert_eq!(count_rows(&mut conn, "ledger_entries").await, 2);
    // The balance rows were made by hand, without entries: compare the moves.
    let bob = balances::find_many(&mut conn, &["bob"]).await.unwrap();
    assert_eq!(bob[0].balance_cents, 800);
}

#[tokio::test]
async fn every_call_of_a_batch_is_unavailable_when_the_database_is_gone() {
    let db = TestDatabase::create().await;
    let pool = db.pool().await;
    let reads = BalanceReads::new(pool.clone());
    let inserts = PaymentInserts::new(pool.clone());
    let spends = SpendBatches::new(pool);
    reads.find("warm-up").await.unwrap();
    db.drop_in_use().await;

    let read_answers = join_all(["alice", "bob"].map(|user| reads.find(user))).await;
    let insert_answers = join_all(
        [payment("pi_1", "u1"), payment("pi_2", "u2")].map(|call| inserts.insert_if_absent(call)),
    )
    .await;

    let spend_answers =
        join_all([spend("u1", 1, "k1"), spend("u2", 1, "k2")].map(|call| spends.spend(call))).await;

    for answer in spend_answers {
        assert!(matches!(answer, Err(DbError::Unavailable(_))), "{answer:?}");
    }
    for answer in read_answers {
        assert!(matches!(answer, Err(DbError::Unavailable(_))), "{answer:?}");
    }
    for answer in insert_answers {
        assert!(matches!(answer, Err(DbError::Unavailable(_))), "{answer:?}");
    }
}

/// The service's create path goes through the inserts: a create whose row
/// cannot be stored answers UNAVAILABLE, so the client retries with its key.
#[tokio::test]
async fn a_create_whose_row_cannot_be_stored_is_unavailable() {
    let db = TestDatabase::create().await;
    let stripe = stripe_sandbox::Sandbox::start_local().await;
    let service: PaymentsService<_> = payments_test_support::service(&db, &stripe).await;
    service
        .create_payment_intent("user-1", 500, "k1")
        .await
        .unwrap();
    db.drop_in_use().await;

    let err = service
        .create_payment_intent("user-1", 1000, "")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
}
