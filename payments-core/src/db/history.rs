//! A user's history, newest first, a page at a time: ledger entries by id,
//! payments by (created_at, intent id). Keyset pages (`WHERE key < cursor
//! ORDER BY key DESC LIMIT n`), never an OFFSET: each page is an index range
//! read, and rows written meanwhile land before the first page, never
//! between two.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Bool, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::DbError;
use super::ledger::LedgerEntryRow;
use super::payments::PaymentRow;
use super::schema::{ledger_entries, payments};

/// Up to `limit` of the user's ledger entries with ids below `before_id`
/// (all, when `None`), newest first.
pub async fn ledger_entries(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    before_id: Option<i64>,
    limit: i64,
) -> Result<Vec<LedgerEntryRow>, DbError> {
    let mut query = ledger_entries::table
        .filter(ledger_entries::user_id.eq(user_id))
        .select(LedgerEntryRow::as_select())
        .order(ledger_entries::id.desc())
        .limit(limit)
        .into_boxed();
    if let Some(before_id) = before_id {
        query = query.filter(ledger_entries::id.lt(before_id));
    }
    Ok(query.load(conn).await?)
}

/// The idempotency keys of the user's entries among `ids` (the spends that
/// reversals name), as `(id, key)`.
pub async fn keys_of_entries(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    ids: &[i64],
) -> Result<Vec<(i64, Option<String>)>, DbError> {
    Ok(ledger_entries::table
        .filter(ledger_entries::user_id.eq(user_id))
        .filter(ledger_entries::id.eq_any(ids))
        .select((ledger_entries::id, ledger_entries::idempotency_key))
        .load(conn)
        .await?)
}

/// Up to `limit` of the user's payments older than `before` (created at,
/// intent id; all, when `None`), newest first.
pub async fn payments(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    before: Option<(DateTime<Utc>, &str)>,
    limit: i64,
) -> Result<Vec<PaymentRow>, DbError> {
    let mut query = payments::table
        .filter(payments::user_id.eq(user_id))
        .select(PaymentRow::as_select())
        .order((
            payments::created_at.desc(),
            payments::stripe_intent_id.desc(),
        ))
        .limit(limit)
        .into_boxed();
    if let Some((created_at, intent_id)) = before {
        // A row comparison, so the index `payments_by_user_newest_first`
        // starts the range at the cursor.
        query = query.filter(
            diesel::dsl::sql::<Bool>("(payments.created_at, payments.stripe_intent_id) < (")
                .bind::<Timestamptz, _>(created_at)
                .sql(", ")
                .bind::<Text, _>(intent_id.to_owned())
                .sql(")"),
        );
    }
    Ok(query.load(conn).await?)
}
