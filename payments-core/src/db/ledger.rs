//! The `ledger_entries` table: every change of a balance, signed, with its cause.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::DbError;
use super::schema::ledger_entries;

pub const KIND_TOP_UP: &str = "top_up";

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = ledger_entries, check_for_backend(diesel::pg::Pg))]
pub struct LedgerEntryRow {
    pub id: i64,
    pub user_id: String,
    pub amount_cents: i64,
    pub currency: String,
    pub kind: String,
    pub payment_id: Option<i64>,
    pub stripe_intent_id: Option<String>,
    pub stripe_event_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = ledger_entries)]
pub struct NewTopUp<'a> {
    pub user_id: &'a str,
    pub amount_cents: i64,
    pub currency: &'a str,
    pub kind: &'a str,
    pub payment_id: i64,
    pub stripe_intent_id: &'a str,
    pub stripe_event_id: &'a str,
    pub created_at: DateTime<Utc>,
}

/// Writes the top-up credit of an intent unless it exists; true when written.
pub async fn insert_top_up_once(
    conn: &mut AsyncPgConnection,
    entry: &NewTopUp<'_>,
) -> Result<bool, DbError> {
    let inserted = diesel::insert_into(ledger_entries::table)
        .values(entry)
        .on_conflict((ledger_entries::stripe_intent_id, ledger_entries::kind))
        .do_nothing()
        .execute(conn)
        .await?;
    Ok(inserted == 1)
}

pub async fn for_user(
    conn: &mut AsyncPgConnection,
    user_id: &str,
) -> Result<Vec<LedgerEntryRow>, DbError> {
    Ok(ledger_entries::table
        .filter(ledger_entries::user_id.eq(user_id))
        .order(ledger_entries::id)
        .select(LedgerEntryRow::as_select())
        .load(conn)
        .await?)
}
