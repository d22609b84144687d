//! What a keyed move of credits answers: a spend (`spend_credits`,
//! `spend_credits_batch`) or an operator's adjustment (`adjust_balance`).
//! Each is made once per user and key, under the balance's row lock.

use diesel::Queryable;

use super::DbError;

/// What the SQL function did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyedOutcome {
    /// A new move: its entry and the balance right after it.
    Made { entry_id: i64, balance_cents: i64 },
    /// The key was used before: that move's entry, amount (as the caller
    /// gave it: positive for a spend, signed for an adjustment) and balance
    /// after; nothing was written.
    Replayed {
        entry_id: i64,
        amount_cents: i64,
        balance_cents: i64,
    },
    /// The balance does not cover it; nothing was written.
    Insufficient { balance_cents: i64 },
}

/// The row the function answers: `outcome` is `made` (the function's own
/// word for it: `spent`, `adjusted`), `replayed` or `insufficient`.
#[derive(Debug, Queryable)]
pub(super) struct KeyedRow {
    outcome: String,
    entry_id: Option<i64>,
    amount_cents: Option<i64>,
    balance_cents: Option<i64>,
}

impl KeyedRow {
    pub(super) fn outcome(self, function: &str, made: &str) -> Result<KeyedOutcome, DbError> {
        let missing =
            |column: &str| DbError::Unexpected(format!("{function} answered no {column}"));
        let balance_cents = self.balance_cents.ok_or_else(|| missing("balance"))?;
        match self.outcome.as_str() {
            outcome if outcome == made => Ok(KeyedOutcome::Made {
                entry_id: self.entry_id.ok_or_else(|| missing("entry"))?,
                balance_cents,
            }),
            "replayed" => Ok(KeyedOutcome::Replayed {
                entry_id: self.entry_id.ok_or_else(|| missing("entry"))?,
                amount_cents: self.amount_cents.ok_or_else(|| missing("amount"))?,
                balance_cents,
            }),
            "insufficient" => Ok(KeyedOutcome::Insufficient { balance_cents }),
            other => Err(DbError::Unexpected(format!(
                "{function} answered the outcome {other:?}"
            ))),
        }
    }
}
