//! Spends, coalesced: the spends waiting at once, of any users, are made by
//! one call of `spend_credits_batch`
//! (`migrations/functions/spend_credits_batch.sql`), one transaction and one commit. Each
//! spend in it is the lone spend's `spend_credits`, in arrival order, and
//! stands alone: a refused spend writes nothing and the others go on.

use chrono::{DateTime, Utc};
use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text, Timestamptz};
use diesel_async::RunQueryDsl;

use super::coalesce::{Batch, Coalescer};
use super::spends::{self, SpendOutcome, SpendRow};
use super::{DbError, DbPool};

/// Batches in flight at once (Postgres flushes their commits together), and
/// the most spends one batch makes. A user's spends always go to the same
/// lane: many spends of one user at once make one batch, not several that
/// wait on each other for the balance's row lock.
const LANES: usize = 4;
const MAX_BATCH: usize = 128;

/// A spend to make, as the spend use case checked it.
#[derive(Debug, Clone)]
pub struct SpendToMake {
    pub user_id: String,
    pub amount_cents: i64,
    pub key: String,
    pub reason: Option<String>,
}

pub struct SpendBatches(Coalescer<SpendBatch>);

impl SpendBatches {
    pub fn new(pool: DbPool) -> Self {
        Self(Coalescer::keyed(pool, LANES, MAX_BATCH))
    }

    /// Makes the spend in the next batch; answered once that batch committed.
    pub async fn spend(&self, spend: SpendToMake) -> Result<SpendOutcome, DbError> {
        self.0.call(spend).await
    }
}

struct SpendBatch;

impl Batch for SpendBatch {
    type Call = SpendToMake;
    type Answer = SpendOutcome;

    async fn run(pool: &DbPool, calls: &[SpendToMake]) -> Vec<Result<SpendOutcome, DbError>> {
        let mut conn = match pool.get().await {
            Ok(conn) => conn,
            Err(err) => return vec![Err(DbError::from(err)); calls.len()],
        };
        let now = Utc::now();
        match spend_all(&mut conn, calls, now).await {
            Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
            // A spend Postgres refuses (a constraint) must not fail the
            // others: one by one. Anything else (the database gone, a lock
            // or statement timeout) would fail each of them again, one
            // timeout after another: the whole batch gets it at once.
            Err(err) if !is_a_rows_refusal(&err) => vec![Err(err); calls.len()],
            Err(err) => {
                tracing::warn!(error = %err, spends = calls.len(), "a batch of spends was refused; spending one by one");
                let mut answers = Vec::with_capacity(calls.len());
                for call in calls {
                    let reason = call.reason.as_deref();
                    let (user, amount, key) = (&call.user_id, call.amount_cents, &call.key);
                    answers.push(spends::spend(&mut conn, user, amount, key, reason, now).await);
                }
                answers
            }
        }
    }

    fn lane_key(spend: &SpendToMake) -> &str {
        &spend.user_id
    }
}

/// Whether Postgres refused one row's values (a constraint), which the
/// other spends of the batch do not share.
fn is_a_rows_refusal(err: &DbError) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    match err {
        DbError::Conflict(_) => true,
        DbError::Query(err) => matches!(
            **err,
            Error::DatabaseError(
                DatabaseErrorKind::CheckViolation
                    | DatabaseErrorKind::NotNullViolation
                    | DatabaseErrorKind::ForeignKeyViolation,
                _
            )
        ),
        _ => false,
    }
}

/// One call of `spend_credits_batch`: each call's outcome, in the calls' order.
pub async fn spend_all(
    conn: &mut diesel_async::AsyncPgConnection,
    calls: &[SpendToMake],
    now: DateTime<Utc>,
) -> Result<Vec<SpendOutcome>, DbError> {
    let rows: Vec<(i32, SpendRow)> = BatchCall {
        user_ids: calls.iter().map(|c| c.user_id.as_str()).collect(),
        amount_cents: calls.iter().map(|c| c.amount_cents).collect(),
        keys: calls.iter().map(|c| c.key.as_str()).collect(),
        reasons: calls.iter().map(|c| c.reason.as_deref()).collect(),
        now,
    }
    .get_results(conn)
    .await?;
    let answered_in_order = rows.len() == calls.len()
        && rows
            .iter()
            .enumerate()
            .all(|(n, (call, _))| usize::try_from(*call) == Ok(n + 1));
    if !answered_in_order {
        return Err(DbError::Unexpected(format!(
            "spend_credits_batch answered {} rows for {} spends, or out of order",
            rows.len(),
            calls.len()
        )));
    }
    rows.into_iter()
        .map(|(_, row)| spends::outcome(row))
        .collect()
}

super::function_call!(BatchCall =
    "SELECT call, outcome, entry_id, spent_cents, new_balance_cents FROM spend_credits_batch("
    => (Integer, (Text, Nullable<BigInt>, Nullable<BigInt>, Nullable<BigInt>)) {
        user_ids: Vec<&'a str> => Array<Text>,
        amount_cents: Vec<i64> => Array<BigInt>,
        keys: Vec<&'a str> => Array<Text>,
        reasons: Vec<Option<&'a str>> => Array<Nullable<Text>>,
        now: DateTime<Utc> => Timestamptz,
    }
);

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use diesel::result::{DatabaseErrorKind, Error};

    use super::*;

    fn database_error(kind: DatabaseErrorKind, message: &str) -> DbError {
        DbError::Query(Arc::new(Error::DatabaseError(
            kind,
            Box::new(message.to_owned()),
        )))
    }

    /// Only a refusal of one row's values sends a batch's spends one by one:
    /// a timeout or the database gone would only repeat for each of them.
    #[test]
    fn only_a_rows_refusal_is_retried_spend_by_spend() {
        for refusal in [
            database_error(DatabaseErrorKind::CheckViolation, "check constraint"),
            database_error(DatabaseErrorKind::NotNullViolation, "null value"),
            database_error(DatabaseErrorKind::ForeignKeyViolation, "foreign key"),
            DbError::Conflict("duplicate key".into()),
        ] {
            assert!(is_a_rows_refusal(&refusal), "{refusal:?}");
        }
        for shared in [
            database_error(
                DatabaseErrorKind::Unknown,
                "canceling statement due to lock timeout",
            ),
            DbError::Unavailable("gone".into()),
            DbError::Unexpected("odd".into()),
        ] {
            assert!(!is_a_rows_refusal(&shared), "{shared:?}");
        }
    }
}
