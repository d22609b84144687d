//! Spends and their reversals: one call each of the SQL functions
//! `spend_credits` and `reverse_spend` (migration `2026-12-03-000003_spends`),
//! each one transaction on one user's rows. The balance row is locked first
//! inside the call, so concurrent spends of one user take turns, none
//! overdraws, and a replay of a key finds the first spend.

use chrono::{DateTime, Utc};
use diesel::Queryable;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::DbError;

/// What `spend_credits` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpendOutcome {
    /// A new spend: its entry and the balance right after it.
    Spent { entry_id: i64, balance_cents: i64 },
    /// The key was spent before: that spend's entry, amount and balance after.
    Replayed {
        entry_id: i64,
        amount_cents: i64,
        balance_cents: i64,
    },
    /// The balance is below the amount; nothing was written.
    Insufficient { balance_cents: i64 },
}

/// What `reverse_spend` did; `balance_cents` is the balance after the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReversalOutcome {
    Reversed {
        entry_id: i64,
        balance_cents: i64,
    },
    /// Reversed before; nothing was written.
    AlreadyReversed {
        balance_cents: i64,
    },
    /// No spend of this user has that key.
    NotFound,
}

/// The row `spend_credits` answers.
#[derive(Debug, Queryable)]
pub(super) struct SpendRow {
    outcome: String,
    entry_id: Option<i64>,
    spent_cents: Option<i64>,
    balance_cents: Option<i64>,
}

/// The row `reverse_spend` answers.
#[derive(Debug, Queryable)]
struct ReversalRow {
    outcome: String,
    entry_id: Option<i64>,
    balance_cents: Option<i64>,
}

/// Takes `amount_cents` (> 0) from the user's balance under `key`, unless the
/// balance is short or the key was spent before.
pub async fn spend(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    amount_cents: i64,
    key: &str,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> Result<SpendOutcome, DbError> {
    let row: SpendRow = SpendCall {
        user_id,
        amount_cents,
        key,
        reason,
        now,
    }
    .get_result(conn)
    .await?;
    row.outcome()
}

impl SpendRow {
    pub(super) fn outcome(self) -> Result<SpendOutcome, DbError> {
        let missing =
            |column: &str| DbError::Unexpected(format!("spend_credits answered no {column}"));
        let balance_cents = self.balance_cents.ok_or_else(|| missing("balance"))?;
        match self.outcome.as_str() {
            "spent" => Ok(SpendOutcome::Spent {
                entry_id: self.entry_id.ok_or_else(|| missing("entry"))?,
                balance_cents,
            }),
            "replayed" => Ok(SpendOutcome::Replayed {
                entry_id: self.entry_id.ok_or_else(|| missing("entry"))?,
                amount_cents: self.spent_cents.ok_or_else(|| missing("amount"))?,
                balance_cents,
            }),
            "insufficient" => Ok(SpendOutcome::Insufficient { balance_cents }),
            other => Err(DbError::Unexpected(format!(
                "spend_credits answered the outcome {other:?}"
            ))),
        }
    }
}

/// Gives the user's spend of `key` back, once.
pub async fn reverse(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    key: &str,
    reason: Option<&str>,
    now: DateTime<Utc>,
) -> Result<ReversalOutcome, DbError> {
    let row: ReversalRow = ReversalCall {
        user_id,
        key,
        reason,
        now,
    }
    .get_result(conn)
    .await?;
    let missing = |column: &str| DbError::Unexpected(format!("reverse_spend answered no {column}"));
    match row.outcome.as_str() {
        "reversed" => Ok(ReversalOutcome::Reversed {
            entry_id: row.entry_id.ok_or_else(|| missing("entry"))?,
            balance_cents: row.balance_cents.ok_or_else(|| missing("balance"))?,
        }),
        "already_reversed" => Ok(ReversalOutcome::AlreadyReversed {
            balance_cents: row.balance_cents.ok_or_else(|| missing("balance"))?,
        }),
        "not_found" => Ok(ReversalOutcome::NotFound),
        other => Err(DbError::Unexpected(format!(
            "reverse_spend answered the outcome {other:?}"
        ))),
    }
}

super::function_call!(SpendCall =
    "SELECT outcome, entry_id, spent_cents, new_balance_cents FROM spend_credits("
    => (Text, Nullable<BigInt>, Nullable<BigInt>, Nullable<BigInt>) {
        user_id: &'a str => Text,
        amount_cents: i64 => BigInt,
        key: &'a str => Text,
        reason: Option<&'a str> => Nullable<Text>,
        now: DateTime<Utc> => Timestamptz,
    }
);

super::function_call!(ReversalCall =
    "SELECT outcome, entry_id, new_balance_cents FROM reverse_spend("
    => (Text, Nullable<BigInt>, Nullable<BigInt>) {
        user_id: &'a str => Text,
        key: &'a str => Text,
        reason: Option<&'a str> => Nullable<Text>,
        now: DateTime<Utc> => Timestamptz,
    }
);
