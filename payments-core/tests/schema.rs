//! The database itself refuses what the invariants forbid, and schema-wide
//! rules hold for every table.

use diesel::QueryableByName;
use diesel::sql_types::Text;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use diesel_migrations::MigrationHarness;
use payments_core::db::MIGRATIONS;
use payments_core::testing::{TestDatabase, count_rows};

async fn exec(conn: &mut AsyncPgConnection, sql: &str) -> Result<usize, String> {
    diesel::sql_query(sql)
        .execute(conn)
        .await
        .map_err(|err| err.to_string())
}

const PAYMENT: &str = "INSERT INTO payments (stripe_intent_id, user_id, amount_cents, currency, status, idempotency_key)";

/// Asserts `sql` fails, and that the message names `constraint`.
async fn refused(conn: &mut AsyncPgConnection, sql: &str, constraint: &str) {
    let err = exec(conn, sql).await.expect_err(sql);
    assert!(
        err.contains(constraint),
        "{sql}\nfailed with {err:?}, expected {constraint:?}"
    );
}

#[tokio::test]
async fn payments_constraints_refuse_what_they_exist_to_refuse() {
    let db = TestDatabase::create().await;
    let conn = &mut db.connection().await;
    exec(
        conn,
        &format!("{PAYMENT} VALUES ('pi_1', 'u1', 500, 'usd', 'succeeded', 'k1')"),
    )
    .await
    .unwrap();

    refused(
        conn,
        &format!("{PAYMENT} VALUES ('pi_1', 'u2', 500, 'usd', 'succeeded', NULL)"),
        "payments_stripe_intent_id_key",
    )
    .await;
    refused(
        conn,
        &format!("{PAYMENT} VALUES ('pi_2', 'u1', 500, 'usd', 'succeeded', 'k1')"),
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
        &format!("{PAYMENT} VALUES ('pi_3', '', 500, 'usd', 'succeeded', NULL)"),
        "payments_user_id_check",
    )
    .await;
    refused(
        conn,
        &format!("{PAYMENT} VALUES ('', 'u1', 500, 'usd', 'succeeded', NULL)"),
        "payments_stripe_intent_id_check",
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
        &format!("{PAYMENT} VALUES ('pi_6', 'u1', 500, 'usd', 'succeeded', NULL)"),
    )
    .await
    .unwrap();
    assert_eq!(count_rows(conn, "payments").await, 4);
}

#[tokio::test]
async fn the_ledger_holds_at_most_one_top_up_per_intent() {
    let db = TestDatabase::create().await;
    let conn = &mut db.connection().await;
    exec(
        conn,
        &format!("{PAYMENT} VALUES ('pi_1', 'u1', 500, 'usd', 'succeeded', NULL)"),
    )
    .await
    .unwrap();
    let entry = "INSERT INTO ledger_entries (user_id, amount_cents, currency, kind, payment_id, stripe_intent_id)";
    exec(
        conn,
        &format!("{entry} SELECT 'u1', 500, 'usd', 'top_up', id, 'pi_1' FROM payments"),
    )
    .await
    .unwrap();

    refused(
        conn,
        &format!("{entry} SELECT 'u1', 500, 'usd', 'top_up', id, 'pi_1' FROM payments"),
        "ledger_one_entry_per_intent_and_kind",
    )
    .await;
    refused(
        conn,
        &format!("{entry} VALUES ('u1', 500, 'usd', 'top_up', NULL, 'pi_9')"),
        "ledger_top_up_is_a_paid_credit",
    )
    .await;
    refused(
        conn,
        &format!("{entry} SELECT 'u1', -500, 'usd', 'top_up', id, 'pi_x' FROM payments"),
        "ledger_top_up_is_a_paid_credit",
    )
    .await;
    refused(
        conn,
        &format!("{entry} SELECT 'u1', 0, 'usd', 'top_up', id, 'pi_y' FROM payments"),
        "ledger_entries_amount_cents_check",
    )
    .await;
    refused(
        conn,
        &format!("{entry} SELECT 'u1', 500, 'usd', 'gift', id, 'pi_z' FROM payments"),
        "ledger_entries_kind_check",
    )
    .await;
    refused(
        conn,
        &format!("{entry} VALUES ('u1', 500, 'usd', 'top_up', 999, 'pi_w')"),
        "ledger_entries_payment_id_fkey",
    )
    .await;
    assert_eq!(count_rows(conn, "ledger_entries").await, 1);
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
    refused(
        conn,
        "UPDATE balances SET balance_cents = -1",
        "balances_balance_cents_check",
    )
    .await;

    let event = "INSERT INTO stripe_events (event_id, event_type, outcome, payload, received_at)";
    exec(
        conn,
        &format!("{event} VALUES ('evt_1', 't', 'applied', '{{}}', now())"),
    )
    .await
    .unwrap();
    refused(
        conn,
        &format!("{event} VALUES ('evt_1', 't', 'applied', '{{}}', now())"),
        "stripe_events_pkey",
    )
    .await;
    refused(
        conn,
        &format!("{event} VALUES ('evt_2', 't', 'maybe', '{{}}', now())"),
        "stripe_events_outcome_check",
    )
    .await;
    refused(
        conn,
        &format!("{event} VALUES ('', 't', 'applied', '{{}}', now())"),
        "stripe_events_event_id_check",
    )
    .await;
}

#[derive(QueryableByName, Debug)]
struct Row {
    #[diesel(sql_type = Text)]
    name: String,
}

async fn names(conn: &mut AsyncPgConnection, sql: &str) -> Vec<String> {
    let rows: Vec<Row> = diesel::sql_query(sql).load(conn).await.expect(sql);
    rows.into_iter().map(|r| r.name).collect()
}

#[tokio::test]
async fn every_money_column_is_bigint_with_a_currency_beside_it() {
    let db = TestDatabase::create().await;
    let conn = &mut db.connection().await;
    let money = names(
        conn,
        "SELECT table_name || '.' || column_name || ':' || data_type AS name
           FROM information_schema.columns
          WHERE table_schema = 'public' AND column_name LIKE '%cents'",
    )
    .await;
    assert!(money.len() >= 4, "{money:?}");
    for column in &money {
        assert!(column.ends_with(":bigint"), "{column} is not bigint");
    }
    let without_currency = names(
        conn,
        "SELECT DISTINCT c.table_name AS name FROM information_schema.columns c
          WHERE c.table_schema = 'public' AND c.column_name LIKE '%cents'
            AND NOT EXISTS (SELECT 1 FROM information_schema.columns k
                             WHERE k.table_schema = 'public' AND k.table_name = c.table_name
                               AND k.column_name = 'currency')",
    )
    .await;
    assert!(
        without_currency.is_empty(),
        "money without a currency: {without_currency:?}"
    );
}

#[tokio::test]
async fn every_foreign_key_is_indexed_and_every_table_carries_user_id() {
    let db = TestDatabase::create().await;
    let conn = &mut db.connection().await;
    let unindexed = names(
        conn,
        "SELECT c.conname::text AS name FROM pg_constraint c
          WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace
            AND NOT EXISTS (SELECT 1 FROM pg_index i
                             WHERE i.indrelid = c.conrelid
                               AND (i.indkey::int2[])[0:cardinality(c.conkey) - 1] = c.conkey)",
    )
    .await;
    assert!(
        unindexed.is_empty(),
        "foreign keys without an index: {unindexed:?}"
    );
    let without_user = names(
        conn,
        "SELECT t.table_name::text AS name FROM information_schema.tables t
          WHERE t.table_schema = 'public'
            -- The service's own rows, owned by no user.
            AND t.table_name NOT IN ('__diesel_schema_migrations', 'deployment')
            AND NOT EXISTS (SELECT 1 FROM information_schema.columns c
                             WHERE c.table_schema = 'public' AND c.table_name = t.table_name
                               AND c.column_name = 'user_id')",
    )
    .await;
    assert!(
        without_user.is_empty(),
        "tables without user_id: {without_user:?}"
    );
}

#[tokio::test]
async fn migrations_revert_and_reapply_once_under_concurrent_starts() {
    let db = TestDatabase::create().await;
    let url = db.url.clone();
    tokio::task::spawn_blocking(move || {
        use diesel::Connection;
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(&url).unwrap();
        conn.revert_all_migrations(MIGRATIONS)
            .expect("every down.sql runs");
    })
    .await
    .unwrap();
    let conn = &mut db.connection().await;
    let left = names(
        conn,
        "SELECT table_name::text AS name FROM information_schema.tables
          WHERE table_schema = 'public' AND table_name <> '__diesel_schema_migrations'",
    )
    .await;
    assert!(left.is_empty(), "down.sql left behind: {left:?}");

    // Four replicas starting at once: the advisory lock lets one migrate.
    let runs =
        futures::future::join_all((0..4).map(|_| payments_core::db::run_migrations(&db.url))).await;
    let applied: Vec<Vec<String>> = runs.into_iter().map(Result::unwrap).collect();
    assert_eq!(
        applied
            .iter()
            .filter(|versions| !versions.is_empty())
            .count(),
        1,
        "{applied:?}"
    );
    assert_eq!(count_rows(conn, "payments").await, 0);
}
