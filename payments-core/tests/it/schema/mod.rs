//! The database itself refuses what the invariants forbid, and schema-wide
//! rules hold for every table.

use diesel::QueryableByName;
use diesel::sql_types::Text;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use diesel_migrations::MigrationHarness;
use payments_core::db::migrate::MIGRATIONS;
use payments_test_support::{TestDatabase, count_rows};

async fn exec(conn: &mut AsyncPgConnection, sql: &str) -> Result<usize, String> {
    diesel::sql_query(sql)
        .execute(conn)
        .await
        .map_err(|err| err.to_string())
}

const PAYMENT: &str = "INSERT INTO payments (stripe_intent_id, user_id, amount_cents, currency, status, idempotency_key)";
const OWNER: &str = "INSERT INTO intent_owners (stripe_intent_id, user_id)";

/// Asserts `sql` fails, and that the message names `constraint`.
async fn refused(conn: &mut AsyncPgConnection, sql: &str, constraint: &str) {
    let err = exec(conn, sql).await.expect_err(sql);
    assert!(
        err.contains(constraint),
        "{sql}\nfailed with {err:?}, expected {constraint:?}"
    );
}

const EVENT: &str = "INSERT INTO stripe_events (user_id, event_id, event_type, stripe_intent_id, payload, received_at)";

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

/// Tables that belong to no user: diesel's own; `deployment`, the service's
/// identity (one row); `intent_owners`, an intent's one owner, looked up by
/// intent id; `ignored_stripe_events`, events that concern no user;
/// `reconciliation_cursor`, where the read of Stripe's events stands. On Citus
/// they are reference tables or distributed by their own key (deploy/citus).
const GLOBAL_TABLES: &str =
    "'__diesel_schema_migrations', 'deployment', 'intent_owners', 'ignored_stripe_events',
     'parked_stripe_events', 'reconciliation_cursor', 'schema_functions'";

#[tokio::test]
async fn every_foreign_key_is_indexed_and_every_table_carries_user_id() {
    let db = TestDatabase::create().await;
    let conn = &mut db.connection().await;
    // An index whose leading columns are the key's columns, in any order.
    let unindexed = names(
        conn,
        "SELECT c.conname::text AS name FROM pg_constraint c
          WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace
            AND NOT EXISTS (SELECT 1 FROM pg_index i
                             WHERE i.indrelid = c.conrelid
                               AND (i.indkey::int2[])[0:cardinality(c.conkey) - 1] @> c.conkey
                               AND (i.indkey::int2[])[0:cardinality(c.conkey) - 1] <@ c.conkey)",
    )
    .await;
    assert!(
        unindexed.is_empty(),
        "foreign keys without an index: {unindexed:?}"
    );
    let without_user = names(
        conn,
        &format!(
            "SELECT t.table_name::text AS name FROM information_schema.tables t
              WHERE t.table_schema = 'public'
                AND t.table_name NOT IN ({GLOBAL_TABLES})
                AND NOT EXISTS (SELECT 1 FROM information_schema.columns c
                                 WHERE c.table_schema = 'public' AND c.table_name = t.table_name
                                   AND c.column_name = 'user_id' AND c.is_nullable = 'NO')"
        ),
    )
    .await;
    assert!(
        without_user.is_empty(),
        "tables without a NOT NULL user_id: {without_user:?}"
    );
}

/// DESIGN.md, "Past one Postgres": what Citus needs to distribute a table by
/// user, checked on every table a migration adds.
#[tokio::test]
async fn every_key_of_a_user_owned_table_includes_user_id() {
    let db = TestDatabase::create().await;
    let conn = &mut db.connection().await;
    let user_owned = names(
        conn,
        &format!(
            "SELECT table_name::text AS name FROM information_schema.tables
              WHERE table_schema = 'public' AND table_name NOT IN ({GLOBAL_TABLES})"
        ),
    )
    .await;
    assert!(user_owned.len() >= 4, "{user_owned:?}");
    // Primary keys, unique constraints and unique indexes alike.
    let keys_without_user = names(
        conn,
        &format!(
            "SELECT i.indexrelid::regclass::text AS name
               FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
              WHERE t.relnamespace = 'public'::regnamespace AND i.indisunique
                AND t.relname NOT IN ({GLOBAL_TABLES})
                AND NOT (SELECT a.attnum FROM pg_attribute a
                          WHERE a.attrelid = t.oid AND a.attname = 'user_id') = ANY (i.indkey::int2[])"
        ),
    )
    .await;
    assert!(
        keys_without_user.is_empty(),
        "unique keys without user_id (Citus refuses them): {keys_without_user:?}"
    );
    // Foreign keys between user-owned tables name user_id on both sides.
    let foreign_keys_without_user = names(
        conn,
        &format!(
            "SELECT c.conname::text AS name FROM pg_constraint c
               JOIN pg_class t ON t.oid = c.conrelid JOIN pg_class r ON r.oid = c.confrelid
              WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace
                AND t.relname NOT IN ({GLOBAL_TABLES}) AND r.relname NOT IN ({GLOBAL_TABLES})
                AND NOT ((SELECT attnum FROM pg_attribute WHERE attrelid = t.oid AND attname = 'user_id') = ANY (c.conkey)
                     AND (SELECT attnum FROM pg_attribute WHERE attrelid = r.oid AND attname = 'user_id') = ANY (c.confkey))"
        ),
    )
    .await;
    assert!(
        foreign_keys_without_user.is_empty(),
        "foreign keys that cross users: {foreign_keys_without_user:?}"
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
    let runs = futures::future::join_all(
        (0..4).map(|_| payments_core::db::migrate::run_migrations(&db.url)),
    )
    .await;
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

/// DESIGN.md, "Past one Postgres": every statement of a money transaction
/// filters by its user, so on Citus it runs on that user's shard alone. The
/// webhook's transaction is the read (checked as rendered, in
/// `db::apply`'s unit tests) and the call of `apply_stripe_event`; a spend
/// and a reversal are one call each. The functions' bodies are read back
/// from the database here.
#[tokio::test]
async fn every_statement_of_a_money_function_is_keyed_by_its_user() {
    let db = TestDatabase::create().await;
    let conn = &mut db.connection().await;
    // Each function, with how many statements on user-owned tables it holds.
    for (function, statements) in [
        // The event row, the payment, the event row taken back when the
        // payment changed since it was read, the check for a credit, the
        // balance, the credit, the balance moved back when the credit exists.
        ("apply_stripe_event", 7),
        // The balance locked, the key's spend, the balance, the entry.
        ("spend_credits", 4),
        // The balance locked, the spend, its reversal, the balance, the entry.
        ("reverse_spend", 5),
        // The balance made for a credit, locked, the key's adjustment, the
        // balance, the entry.
        ("adjust_balance", 5),
        // The balance locked, the object's entry, the payment's top-up, the
        // clawback a reversal gives back, the balance, the entry, the payment.
        ("apply_clawback", 7),
    ] {
        let body = names(
            conn,
            &format!("SELECT pg_get_functiondef('{function}'::regproc) AS name"),
        )
        .await
        .remove(0);
        let body = body[body.find("BEGIN").expect("a plpgsql body")..].to_lowercase();
        assert_eq!(keyed_statements(&body), statements, "{function}: {body}");
    }
}

/// How many statements of a plpgsql body read or write a user-owned table;
/// panics on one that is not keyed by `p_user_id`.
fn keyed_statements(body: &str) -> usize {
    let user_owned = ["payments", "stripe_events", "ledger_entries", "balances"];
    let mut checked = 0;
    for statement in body
        .split(';')
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
    {
        let Some(table) = user_owned.iter().find(|table| {
            [" from ", "insert into ", "update "]
                .iter()
                .any(|verb| statement.contains(&format!("{verb}{table} ")))
        }) else {
            continue;
        };
        checked += 1;
        let keyed = if statement.contains("insert into") {
            statement.contains("(user_id,") && statement.contains("values (p_user_id,")
        } else {
            statement.contains("where user_id = p_user_id")
        };
        assert!(
            keyed,
            "a statement on {table} not keyed by its user: {statement}"
        );
    }
    checked
}

#[derive(QueryableByName)]
struct PlanLine {
    #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
    line: String,
}

/// A spend's key look-up is planned on the key's own index even when the
/// statistics were taken while the ledger was empty and one user has since
/// spent thousands of times: no other index of `ledger_entries` shares its
/// `(user_id, kind)` prefix for a look-up that names no Stripe object.
#[tokio::test]
async fn a_spends_key_is_looked_up_by_its_own_index_whatever_the_statistics() {
    let db = TestDatabase::create().await;
    let conn = &mut db.connection().await;
    exec(
        conn,
        "ALTER TABLE ledger_entries SET (autovacuum_enabled = false)",
    )
    .await
    .unwrap();
    exec(conn, "ANALYZE ledger_entries").await.unwrap();
    exec(
        conn,
        "INSERT INTO ledger_entries (user_id, amount_cents, balance_after_cents, currency, kind, idempotency_key)
         SELECT 'hot', -1, 0, 'usd', 'spend', 'k' || i FROM generate_series(1, 5000) AS i",
    )
    .await
    .unwrap();
    for mode in ["force_generic_plan", "force_custom_plan"] {
        exec(conn, &format!("SET plan_cache_mode = {mode}"))
            .await
            .unwrap();
        exec(conn, "DEALLOCATE ALL").await.unwrap();
        exec(
            conn,
            "PREPARE key_lookup(text, text) AS SELECT id FROM ledger_entries
              WHERE user_id = $1 AND kind = 'spend' AND idempotency_key = $2",
        )
        .await
        .unwrap();
        let plan: Vec<PlanLine> = diesel::sql_query("EXPLAIN EXECUTE key_lookup('hot', 'k4999')")
            .load(conn)
            .await
            .unwrap();
        let plan: Vec<String> = plan.into_iter().map(|p| p.line).collect();
        assert!(
            plan[0].contains("ledger_one_entry_per_key_and_kind"),
            "{mode}: {plan:#?}"
        );
        assert!(
            !plan.iter().any(|line| line.contains("Filter")),
            "{mode}: {plan:#?}"
        );
    }
}

mod constraints;
