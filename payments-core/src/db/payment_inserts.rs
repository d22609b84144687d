//! New payment rows. On one Postgres, coalesced: the creates waiting at once
//! are stored by one multi-row `INSERT … ON CONFLICT DO NOTHING`, one
//! commit; each row is one user's and stands alone: a row that conflicts is
//! skipped, not the batch. On Citus, one at a time, each write on one
//! worker: the intent's owner is claimed first (on the intent's shard of
//! `intent_owners`), and only an owner who is this user gets the payment
//! row (on the user's shard); a batch of several users' rows, or one
//! statement writing both tables, would be a two-phase commit over workers.

use std::collections::HashSet;

use super::coalesce::{Batch, Coalescer};
use super::intent_owners;
use super::payments::{self, NewPayment};
use super::{DbError, DbPool};
use crate::domain::{Currency, PaymentStatus};

/// Statements in flight at once (Postgres flushes their commits together),
/// and the most rows one statement inserts.
const LANES: usize = 8;
const MAX_BATCH: usize = 128;

/// A payment row to store, as the create use case knows it.
#[derive(Debug, Clone)]
pub struct PaymentToStore {
    pub stripe_intent_id: String,
    pub user_id: String,
    pub amount_cents: i64,
    pub currency: Currency,
    pub status: PaymentStatus,
    pub idempotency_key: Option<String>,
}

impl PaymentToStore {
    fn as_new(&self) -> NewPayment<'_> {
        NewPayment {
            stripe_intent_id: &self.stripe_intent_id,
            user_id: &self.user_id,
            amount_cents: self.amount_cents,
            amount_received_cents: 0,
            currency: self.currency,
            status: self.status,
            idempotency_key: self.idempotency_key.as_deref(),
        }
    }
}

pub enum PaymentInserts {
    Coalesced(Coalescer<PaymentInsert>),
    OwnerFirst(DbPool),
}

impl PaymentInserts {
    pub fn new(pool: DbPool) -> Self {
        Self::Coalesced(Coalescer::new(pool, LANES, MAX_BATCH))
    }

    /// One at a time, the owner claimed first (Citus).
    pub fn owner_first(pool: DbPool) -> Self {
        Self::OwnerFirst(pool)
    }

    /// Stores the row unless one with its intent id, or its user and
    /// idempotency key, exists, or the intent is another user's; true if
    /// it was inserted, once committed.
    pub async fn insert_if_absent(&self, payment: PaymentToStore) -> Result<bool, DbError> {
        match self {
            Self::Coalesced(batches) => batches.call(payment).await,
            Self::OwnerFirst(pool) => {
                let mut conn = pool.get().await?;
                let owner =
                    intent_owners::claim(&mut conn, &payment.stripe_intent_id, &payment.user_id)
                        .await?;
                if owner != payment.user_id {
                    return Ok(false);
                }
                payments::insert_if_absent(&mut conn, &payment.as_new()).await
            }
        }
    }
}

pub struct PaymentInsert;

impl Batch for PaymentInsert {
    type Call = PaymentToStore;
    type Answer = bool;

    async fn run(pool: &DbPool, calls: &[PaymentToStore]) -> Vec<Result<bool, DbError>> {
        let mut conn = match pool.get().await {
            Ok(conn) => conn,
            Err(err) => return vec![Err(DbError::from(err)); calls.len()],
        };
        let new: Vec<NewPayment<'_>> = calls.iter().map(PaymentToStore::as_new).collect();
        match payments::insert_all_if_absent(&mut conn, &new).await {
            Ok(inserted) => {
                let mut inserted: HashSet<String> = inserted.into_iter().collect();
                // Of two calls for one intent, the first stored it.
                calls
                    .iter()
                    .map(|call| Ok(inserted.remove(&call.stripe_intent_id)))
                    .collect()
            }
            Err(DbError::Unavailable(reason)) => {
                vec![Err(DbError::Unavailable(reason)); calls.len()]
            }
            // A row Postgres refuses must not fail the others: one by one.
            Err(_) => {
                let mut answers = Vec::with_capacity(calls.len());
                for row in new.chunks(1) {
                    let inserted = payments::insert_all_if_absent(&mut conn, row).await;
                    answers.push(inserted.map(|ids| !ids.is_empty()));
                }
                answers
            }
        }
    }
}
