//! The data a round starts from, and the ledger check it ends with.

use std::collections::HashMap;

use anyhow::ensure;
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::pgbench::seed_payments;

#[derive(QueryableByName)]
pub(crate) struct BalanceRow {
    #[diesel(sql_type = Text)]
    pub(crate) user_id: String,
    #[diesel(sql_type = BigInt)]
    pub(crate) balance_cents: i64,
}

pub(crate) async fn balances(conn: &mut AsyncPgConnection) -> anyhow::Result<HashMap<String, i64>> {
    let rows: Vec<BalanceRow> = diesel::sql_query(
        "SELECT user_id, balance_cents FROM balances WHERE user_id LIKE 'bench-user-%'",
    )
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.user_id, row.balance_cents))
        .collect())
}

/// Every user's balance equals the sum of their ledger entries.
pub(crate) async fn check_ledger(database_url: &str) -> anyhow::Result<()> {
    let mut conn = AsyncPgConnection::establish(database_url).await?;
    let rows: Vec<BalanceRow> = diesel::sql_query(
        "SELECT COALESCE(b.user_id, l.user_id) AS user_id, 0::bigint AS balance_cents
           FROM balances b
           FULL JOIN (SELECT user_id, SUM(amount_cents)::bigint AS total FROM ledger_entries GROUP BY user_id) l
             ON l.user_id = b.user_id
          WHERE COALESCE(b.balance_cents, 0) <> COALESCE(l.total, 0)
            AND COALESCE(b.user_id, l.user_id) NOT LIKE 'pgb-user-%'",
    )
    .load(&mut conn)
    .await?;
    ensure!(
        rows.is_empty(),
        "balance differs from ledger sum for {} users",
        rows.len()
    );
    Ok(())
}

/// One paid top-up per bench user, so every balance read in every round
/// finds a row (as the reads of users who topped up do).
pub(crate) async fn seed_balances(database_url: &str, users: u64) -> anyhow::Result<()> {
    let mut conn = AsyncPgConnection::establish(database_url).await?;
    seed_payments(
        &mut conn,
        &format!(
            "SELECT 'pi_seed_' || i AS stripe_intent_id, 'bench-user-' || i AS user_id,
                    500 AS amount_cents, 500 AS amount_received_cents, 'succeeded' AS status
               FROM generate_series(0, {users} - 1) AS i"
        ),
    )
    .await?;
    for sql in [
        "INSERT INTO stripe_events (user_id, event_id, event_type, stripe_intent_id, payload, received_at)
         SELECT user_id, 'evt_seed_' || stripe_intent_id, 'payment_intent.succeeded', stripe_intent_id, '{}', now()
           FROM payments WHERE stripe_intent_id LIKE 'pi_seed_%'"
            .to_owned(),
        // One top-up per user: its balance after is its amount.
        "INSERT INTO ledger_entries (user_id, amount_cents, balance_after_cents, currency, kind, stripe_intent_id, stripe_event_id)
         SELECT user_id, amount_received_cents, amount_received_cents, 'usd', 'top_up', stripe_intent_id, 'evt_seed_' || stripe_intent_id
           FROM payments WHERE stripe_intent_id LIKE 'pi_seed_%'"
            .to_owned(),
        "INSERT INTO balances (user_id, balance_cents, currency)
         SELECT user_id, amount_received_cents, 'usd' FROM payments WHERE stripe_intent_id LIKE 'pi_seed_%'"
            .to_owned(),
    ] {
        diesel::sql_query(sql).execute(&mut conn).await?;
    }
    Ok(())
}

pub(crate) async fn preload(database_url: &str, count: u64) -> anyhow::Result<()> {
    let mut conn = AsyncPgConnection::establish(database_url).await?;
    seed_payments(
        &mut conn,
        &format!(
            "SELECT 'pi_preload_' || i AS stripe_intent_id, 'preload-user-' || (i % 100000) AS user_id,
                    500 AS amount_cents, 500 AS amount_received_cents, 'succeeded' AS status
               FROM generate_series(1, {count}) AS i"
        ),
    )
    .await?;
    for sql in [
        // A history, as a deployment has one: one payment every 30 s over
        // the past year (the metrics scrape reads only recent ones).
        "UPDATE payments
            SET created_at = now() - substr(stripe_intent_id, 12)::bigint * interval '30 seconds',
                updated_at = now() - substr(stripe_intent_id, 12)::bigint * interval '30 seconds'
          WHERE stripe_intent_id LIKE 'pi_preload_%'"
            .to_owned(),
        format!(
            "INSERT INTO stripe_events (user_id, event_id, event_type, stripe_intent_id, payload, received_at)
             SELECT 'preload-user-' || (i % 100000), 'evt_preload_' || i, 'payment_intent.succeeded',
                    'pi_preload_' || i, '{{}}', now()
               FROM generate_series(1, {count}) AS i"
        ),
        // Written in each user's order, each with the running sum as its
        // balance after (the ledger's ids follow the rows' order).
        "INSERT INTO ledger_entries (user_id, amount_cents, balance_after_cents, currency, kind, stripe_intent_id, stripe_event_id)
         SELECT user_id, amount_received_cents,
                SUM(amount_received_cents) OVER (PARTITION BY user_id ORDER BY created_at, stripe_intent_id),
                'usd', 'top_up', stripe_intent_id, 'evt_preload_' || substr(stripe_intent_id, 12)
           FROM payments WHERE stripe_intent_id LIKE 'pi_preload_%'
          ORDER BY user_id, created_at, stripe_intent_id"
            .to_owned(),
        "INSERT INTO balances (user_id, balance_cents, currency)
         SELECT user_id, SUM(amount_cents), 'usd' FROM ledger_entries WHERE user_id LIKE 'preload-user-%' GROUP BY user_id"
            .to_owned(),
        "VACUUM ANALYZE".to_owned(),
        "CHECKPOINT".to_owned(),
    ] {
        diesel::sql_query(sql).execute(&mut conn).await?;
    }
    Ok(())
}
