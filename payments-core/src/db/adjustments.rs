//! Operators' adjustments: one call of the SQL function `adjust_balance`
//! (`migrations/functions/adjust_balance.sql`), one transaction on one
//! user's rows, the balance row locked first as for a spend.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::DbError;
use crate::domain::Currency;

/// What `adjust_balance` did (a replay answers the signed amount).
pub type AdjustmentOutcome = super::keyed_moves::KeyedOutcome;

/// One adjustment's arguments.
#[derive(Debug, Clone, Copy)]
pub struct Adjustment<'a> {
    pub user_id: &'a str,
    /// Signed, never 0.
    pub amount_cents: i64,
    pub key: &'a str,
    pub reason: &'a str,
    pub actor: &'a str,
    /// The balance's currency if this makes the user's first balance row.
    pub currency: Currency,
    pub now: DateTime<Utc>,
}

super::function_call!(AdjustCall =
    "SELECT outcome, entry_id, adjusted_cents, new_balance_cents FROM adjust_balance("
    => (Text, Nullable<BigInt>, Nullable<BigInt>, Nullable<BigInt>) {
        user_id: &'a str => Text,
        amount_cents: i64 => BigInt,
        key: &'a str => Text,
        reason: &'a str => Text,
        actor: &'a str => Text,
        currency: &'a str => Text,
        now: DateTime<Utc> => Timestamptz,
    }
);

pub async fn adjust(
    conn: &mut AsyncPgConnection,
    adjustment: &Adjustment<'_>,
) -> Result<AdjustmentOutcome, DbError> {
    let a = adjustment;
    let row: super::keyed_moves::KeyedRow = AdjustCall {
        user_id: a.user_id,
        amount_cents: a.amount_cents,
        key: a.key,
        reason: a.reason,
        actor: a.actor,
        currency: a.currency.code(),
        now: a.now,
    }
    .get_result(conn)
    .await?;
    row.outcome("adjust_balance", "adjusted")
}
