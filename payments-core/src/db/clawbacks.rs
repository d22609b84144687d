//! Refunds and disputes reaching the balance: one call of the SQL function
//! `apply_clawback` (`migrations/functions/apply_clawback.sql`) per
//! Stripe refund or dispute and kind, one transaction on one user's rows,
//! the balance row locked first as for a spend. Each kind of entry is made
//! once per Stripe object, whoever asks and however often.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::DbError;
use crate::domain::LedgerKind;

/// One clawback (or its reversal) to book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clawback {
    /// `Refund`, `RefundReversal`, `Dispute` or `DisputeReversal`.
    pub kind: LedgerKind,
    /// The Stripe refund or dispute.
    pub object_id: String,
    /// Stripe's amount of the refund or dispute, > 0. A reversal gives back
    /// what its clawback took.
    pub amount_cents: i64,
}

impl Clawback {
    /// What the entry does to the balance: a clawback takes, a reversal
    /// gives back (what its clawback took, Stripe's amount of the object).
    pub fn signed_cents(&self) -> i64 {
        match self.kind {
            LedgerKind::Refund | LedgerKind::Dispute => -self.amount_cents,
            _ => self.amount_cents,
        }
    }
}

/// What `apply_clawback` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClawbackOutcome {
    /// Booked now: the entry and the balance right after it.
    Made { entry_id: i64, balance_cents: i64 },
    /// Booked before (this kind of entry exists for the object).
    Already,
    /// The payment's top-up is not booked yet: nothing written.
    NotCredited,
    /// A reversal of a clawback never made: nothing written.
    NothingToReverse,
}

super::function_call!(ClawbackCall =
    "SELECT outcome, entry_id, new_balance_cents FROM apply_clawback("
    => (Text, Nullable<BigInt>, Nullable<BigInt>) {
        user_id: &'a str => Text,
        intent_id: &'a str => Text,
        kind: &'a str => Text,
        object_id: &'a str => Text,
        amount_cents: i64 => BigInt,
        event_id: Option<&'a str> => Nullable<Text>,
        now: DateTime<Utc> => Timestamptz,
    }
);

/// Books one clawback of the user's payment for `intent_id`.
pub async fn apply(
    conn: &mut AsyncPgConnection,
    user_id: &str,
    intent_id: &str,
    clawback: &Clawback,
    event_id: Option<&str>,
    now: DateTime<Utc>,
) -> Result<ClawbackOutcome, DbError> {
    let (outcome, entry_id, balance): (String, Option<i64>, Option<i64>) = ClawbackCall {
        user_id,
        intent_id,
        kind: clawback.kind.as_str(),
        object_id: &clawback.object_id,
        amount_cents: clawback.amount_cents,
        event_id,
        now,
    }
    .get_result(conn)
    .await?;
    match (outcome.as_str(), entry_id, balance) {
        ("made", Some(entry_id), Some(balance_cents)) => Ok(ClawbackOutcome::Made {
            entry_id,
            balance_cents,
        }),
        ("already", _, _) => Ok(ClawbackOutcome::Already),
        ("not_credited", _, _) => Ok(ClawbackOutcome::NotCredited),
        ("nothing_to_reverse", _, _) => Ok(ClawbackOutcome::NothingToReverse),
        _ => Err(DbError::Unexpected(format!(
            "apply_clawback answered {outcome} with entry {entry_id:?}, balance {balance:?}"
        ))),
    }
}
