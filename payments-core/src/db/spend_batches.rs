//! Spends, coalesced: the spends waiting at once, of any users, are made by
//! one call of `spend_credits_batch` (migration
//! `2026-12-03-000007_spend_batches`), one transaction and one commit. Each
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
            Err(DbError::Unavailable(reason)) => {
                vec![Err(DbError::Unavailable(reason)); calls.len()]
            }
            // A spend Postgres refuses must not fail the others: one by one.
            Err(err) => {
                tracing::warn!(error = %err, spends = calls.len(), "a batch of spends failed; spending one by one");
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
