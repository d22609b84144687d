//! The `ledger_entries` table: every change of a balance, signed, with its cause.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::DbError;
use super::schema::ledger_entries;
use crate::domain::{Currency, LedgerKind};

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = ledger_entries, check_for_backend(diesel::pg::Pg))]
pub struct LedgerEntryRow {
    pub user_id: String,
    pub id: i64,
    pub amount_cents: i64,
    pub currency: Currency,
    pub kind: LedgerKind,
    pub stripe_intent_id: Option<String>,
    pub stripe_event_id: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The user's balance right after this entry.
    pub balance_after_cents: i64,
    /// Spends and adjustments: the caller's key.
    pub idempotency_key: Option<String>,
    pub reason: Option<String>,
    /// Adjustments: who made it.
    pub actor: Option<String>,
    /// Spend reversals: the spend given back.
    pub reverses_entry_id: Option<i64>,
    /// Refunds, disputes and their reversals: the Stripe refund or dispute.
    pub stripe_object_id: Option<String>,
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

/// Whether the top-up of the user's payment for `intent_id` is booked.
pub async fn top_up_booked(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    intent_id: &str,
) -> Result<bool, DbError> {
    Ok(diesel::select(diesel::dsl::exists(
        ledger_entries::table
            .filter(ledger_entries::user_id.eq(user_id))
            .filter(ledger_entries::stripe_intent_id.eq(intent_id))
            .filter(ledger_entries::kind.eq(LedgerKind::TopUp)),
    ))
    .get_result(conn)
    .await?)
}
