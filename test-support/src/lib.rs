//! Test support for the workspace's tests, outside the libraries they test:
//! a Postgres database of its own per test, created from a template that is
//! migrated once (as crates.io's `crates_io_test_db`), and the assertions
//! every money test ends with.

mod citus;
mod database;
mod world;

use std::time::Duration;

use diesel_async::{AsyncPgConnection, RunQueryDsl};
use payments_core::db::{self};
use payments_core::stripe::StripeConfig;
use serde_json::json;
use stripe_sandbox::Sandbox;

pub use citus::enabled as on_citus;
pub use database::{TestDatabase, server_url};
pub use world::World;

/// The Stripe client's settings for `sandbox`, with fast retries for tests.
pub fn stripe_config(sandbox: &Sandbox) -> StripeConfig {
    StripeConfig {
        secret_key: "sk_test_standin".into(),
        api_base: sandbox.url(),
        timeout: Duration::from_secs(2),
        deadline: Duration::from_secs(5),
        max_attempts: 3,
        retry_backoff: Duration::from_millis(10),
    }
}

/// A Stripe event's JSON about an object id, with numbers that must never
/// be believed (the service re-fetches the intent).
pub fn event_json(event_id: &str, event_type: &str, object_id: &str) -> String {
    json!({
        "id": event_id,
        "object": "event",
        "api_version": "2025-01-27.acacia",
        "created": 1_764_000_100,
        "livemode": false,
        "type": event_type,
        "data": {"object": {"id": object_id, "object": "payment_intent", "amount": 999_999, "amount_received": 999_999}}
    })
    .to_string()
}

/// The core service over a test database and a Stripe sandbox.
pub async fn service(
    db: &TestDatabase,
    stripe: &Sandbox,
) -> payments_core::PaymentsService<payments_core::stripe::StripeGateway> {
    let gateway =
        payments_core::stripe::StripeGateway::new(&stripe_config(stripe)).expect("gateway");
    payments_core::PaymentsService::new(
        db.pool().await,
        gateway,
        payments_core::domain::Tiers::default(),
    )
    // Every write on one worker, as payments-grpc does there (docs/citus.md).
    .on_citus(citus::enabled())
}

/// Checks the ledger invariants on every user: balance = sum of ledger
/// entries, and each entry's `balance_after_cents` is the sum of the
/// user's entries up to it (so the newest one's is the balance).
pub async fn assert_balances_match_ledger(conn: &mut AsyncPgConnection) {
    #[derive(diesel::QueryableByName, Debug)]
    struct Mismatch {
        #[diesel(sql_type = diesel::sql_types::Text)]
        user_id: String,
    }
    let mismatches: Vec<Mismatch> = diesel::sql_query(
        "SELECT COALESCE(b.user_id, l.user_id) AS user_id
           FROM balances b
           FULL JOIN (SELECT user_id, SUM(amount_cents)::bigint AS total
                        FROM ledger_entries GROUP BY user_id) l ON l.user_id = b.user_id
          WHERE COALESCE(b.balance_cents, 0) <> COALESCE(l.total, 0)",
    )
    .load(conn)
    .await
    .expect("ledger check query");
    let users: Vec<&str> = mismatches.iter().map(|m| m.user_id.as_str()).collect();
    assert!(
        users.is_empty(),
        "balance differs from ledger sum for {users:?}"
    );
    let wrong_after: Vec<Mismatch> = diesel::sql_query(
        "SELECT DISTINCT user_id FROM (
             SELECT user_id, balance_after_cents,
                    SUM(amount_cents) OVER (PARTITION BY user_id ORDER BY id) AS running
               FROM ledger_entries) AS entries
          WHERE balance_after_cents <> running",
    )
    .load(conn)
    .await
    .expect("balance-after check query");
    let users: Vec<&str> = wrong_after.iter().map(|m| m.user_id.as_str()).collect();
    assert!(
        users.is_empty(),
        "an entry's balance_after_cents is not its running sum for {users:?}"
    );
}

/// Counts the rows of a table (test assertions only).
pub async fn count_rows(conn: &mut AsyncPgConnection, table: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let count: Count = diesel::sql_query(format!(
        "SELECT count(*) AS n FROM {}",
        db::quote_ident(table)
    ))
    .get_result(conn)
    .await
    .expect("count query");
    count.n
}

/// Counts the Stripe events recorded either way: applied ones (by their
/// user, `stripe_events`) and ignored ones (global, `ignored_stripe_events`).
pub async fn count_recorded_events(conn: &mut AsyncPgConnection) -> i64 {
    count_rows(conn, "stripe_events").await + count_rows(conn, "ignored_stripe_events").await
}

/// Backends of this database waiting for a lock (test synchronisation: a
/// call is known to wait on a row, without sleeping).
pub async fn backends_waiting_on_a_lock(conn: &mut AsyncPgConnection) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let count: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM pg_stat_activity \
         WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    .get_result(conn)
    .await
    .expect("pg_stat_activity");
    count.n
}
