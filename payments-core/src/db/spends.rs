//! Spends and their reversals: one call each of the SQL functions
//! `spend_credits` and `reverse_spend` (`migrations/functions/`),
//! each one transaction on one user's rows. The balance row is locked first
//! inside the call, so concurrent spends of one user take turns, none
//! overdraws, and a replay of a key finds the first spend.

use chrono::{DateTime, Utc};
use diesel::Queryable;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::DbError;

/// What `spend_credits` did.
pub type SpendOutcome = super::keyed_moves::KeyedOutcome;

/// What `reverse_spend` did; `balance_cents` is the balance after the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReversalOutcome {
    Reversed {
        entry_id: i64,
        /// Given back (> 0).
        amount_cents: i64,
        balance_cents: i64,
    },
    /// Reversed before; nothing was written.
    AlreadyReversed { balance_cents: i64 },
    /// No spend of this user has that key.
    NotFound,
}

/// The row `spend_credits` answers.
pub(super) type SpendRow = super::keyed_moves::KeyedRow;

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
    outcome(row)
}

/// A spend's row read as its outcome.
pub(super) fn outcome(row: SpendRow) -> Result<SpendOutcome, DbError> {
    row.outcome("spend_credits", "spent")
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
        "reversed" => {
            let entry_id = row.entry_id.ok_or_else(|| missing("entry"))?;
            Ok(ReversalOutcome::Reversed {
                entry_id,
                amount_cents: entry_amount(conn, user_id, entry_id).await?,
                balance_cents: row.balance_cents.ok_or_else(|| missing("balance"))?,
            })
        }
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

/// The amount of one of the user's ledger entries.
async fn entry_amount(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    entry_id: i64,
) -> Result<i64, DbError> {
    use super::schema::ledger_entries::dsl;
    use diesel::{ExpressionMethods, QueryDsl};
    Ok(dsl::ledger_entries
        .filter(dsl::user_id.eq(user_id))
        .filter(dsl::id.eq(entry_id))
        .select(dsl::amount_cents)
        .first(conn)
        .await?)
}
