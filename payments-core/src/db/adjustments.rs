//! Operators' adjustments: one call of the SQL function `adjust_balance`
//! (migration `2026-12-03-000004_adjustments`), one transaction on one
//! user's rows, the balance row locked first as for a spend.

use chrono::{DateTime, Utc};
use diesel::Queryable;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::DbError;
use crate::domain::Currency;

/// What `adjust_balance` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdjustmentOutcome {
    /// A new adjustment: its entry and the balance right after it.
    Adjusted { entry_id: i64, balance_cents: i64 },
    /// The key was used before: that adjustment's entry, signed amount and
    /// balance after.
    Replayed {
        entry_id: i64,
        amount_cents: i64,
        balance_cents: i64,
    },
    /// A debit the balance does not cover; nothing was written.
    Insufficient { balance_cents: i64 },
}

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

#[derive(Debug, Queryable)]
struct AdjustmentRow {
    outcome: String,
    entry_id: Option<i64>,
    adjusted_cents: Option<i64>,
    balance_cents: Option<i64>,
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
    let row: AdjustmentRow = AdjustCall {
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
    let missing =
        |column: &str| DbError::Unexpected(format!("adjust_balance answered no {column}"));
    let balance_cents = row.balance_cents.ok_or_else(|| missing("balance"))?;
    match row.outcome.as_str() {
        "adjusted" => Ok(AdjustmentOutcome::Adjusted {
            entry_id: row.entry_id.ok_or_else(|| missing("entry"))?,
            balance_cents,
        }),
        "replayed" => Ok(AdjustmentOutcome::Replayed {
            entry_id: row.entry_id.ok_or_else(|| missing("entry"))?,
            amount_cents: row.adjusted_cents.ok_or_else(|| missing("amount"))?,
            balance_cents,
        }),
        "insufficient" => Ok(AdjustmentOutcome::Insufficient { balance_cents }),
        other => Err(DbError::Unexpected(format!(
            "adjust_balance answered the outcome {other:?}"
        ))),
    }
}
