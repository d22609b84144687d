//! Reconciliation (DESIGN.md stage two): nothing paid is left uncredited
//! because a webhook was lost, abandoned intents are cancelled, and a
//! refund or dispute whose webhook was lost still reaches the balance. A
//! pass:
//! 1. re-fetches payments not final and not updated for `after`, and
//!    applies them as a webhook would (a lost `succeeded` is credited);
//! 2. cancels at Stripe the intents still waiting for the customer after
//!    `stale_after` (`cancellation_reason=abandoned`, an Idempotency-Key);
//!    one that succeeded meanwhile is applied (credited) instead;
//! 3. reads Stripe's Events API forward from a stored cursor and applies
//!    every acted-on event not yet in the registry (`backfill`);
//! 4. retries the parked events whose next try is due (`parked`).
//!
//! Everything a pass does is once per intent, refund, dispute or event
//! whoever does it, so passes on several replicas at once double nothing;
//! the background loop still takes a Postgres advisory lock so that one
//! replica at a time does the work.

use std::time::Duration;

use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::PaymentsService;
use crate::Error;
use crate::db::payments::PaymentRow;
use crate::db::reconciliation;
use crate::domain::UserId;
use crate::stripe::{GatewayError, PaymentGateway};

/// When a pass acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileSettings {
    /// `RECONCILE_AFTER_SECS`: an open payment not updated for this long is
    /// re-fetched.
    pub after: Duration,
    /// `STALE_INTENT_AFTER_SECS`: an intent waiting for the customer this
    /// long after its creation is cancelled.
    pub stale_after: Duration,
    /// `RECONCILE_EVENTS_PAGE_SIZE`: events asked of Stripe per page (1 to 100).
    pub events_page_size: u8,
    /// Pages of events one pass reads at most; the next pass goes on from
    /// where this one stopped.
    pub event_pages_per_pass: u32,
}

impl Default for ReconcileSettings {
    fn default() -> Self {
        Self {
            after: Duration::from_secs(300),
            stale_after: Duration::from_secs(86_400),
            events_page_size: 100,
            event_pages_per_pass: 50,
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reconciled {
    /// Payments re-fetched from Stripe (steps 1 and 2).
    pub intents_checked: i32,
    /// Of those, payments whose top-up this pass booked.
    pub credited: i32,
    /// Abandoned intents cancelled at Stripe and recorded.
    pub canceled: i32,
    /// Events from Stripe's Events API this pass applied (not duplicates).
    pub events_backfilled: i32,
    /// Events this pass could not apply for a reason that will not go away
    /// by itself, parked (or parked still) and passed over.
    pub events_parked: i32,
    /// Parked events this pass retried and applied.
    pub parked_events_applied: i32,
    /// Payments or events that failed (Stripe or the database); the next
    /// pass tries them again.
    pub failed: i32,
}

/// Payments each of steps 1 and 2 takes per pass, oldest first; the rest
/// wait for the next pass.
const PAYMENTS_PER_PASS: i64 = 500;
pub use crate::domain::stripe_event::ACTED_ON_EVENT_TYPES;
/// The advisory lock the background loop holds during a pass.
const RECONCILE_LOCK: i64 = 0x7265_636f_6e63_696c; // "reconcil"

impl<G: PaymentGateway> PaymentsService<G> {
    pub fn with_reconciliation(mut self, settings: ReconcileSettings) -> Self {
        self.reconcile = settings;
        self
    }

    /// Runs one pass now and says what it did (`RunReconciliation`). Safe
    /// to run beside any other pass.
    #[tracing::instrument(skip_all)]
    pub async fn run_reconciliation(&self) -> Result<Reconciled, Error> {
        let pass = self.reconciliation_pass().await;
        self.metrics.pass_done(pass.as_ref().map_err(|_| ()));
        pass
    }

    async fn reconciliation_pass(&self) -> Result<Reconciled, Error> {
        let mut done = Reconciled::default();
        self.reconcile_open_payments(&mut done).await?;
        self.cancel_abandoned_intents(&mut done).await?;
        self.backfill_events(&mut done).await?;
        let retried = self.retry_due_parked_events().await?;
        done.parked_events_applied += retried.unparked;
        done.events_parked += retried.still_parked;
        tracing::info!(
            intents_checked = done.intents_checked,
            credited = done.credited,
            canceled = done.canceled,
            events_backfilled = done.events_backfilled,
            events_parked = done.events_parked,
            parked_events_applied = done.parked_events_applied,
            failed = done.failed,
            "reconciliation pass"
        );
        Ok(done)
    }

    /// Step 1.
    async fn reconcile_open_payments(&self, done: &mut Reconciled) -> Result<(), Error> {
        let cutoff = Utc::now() - self.reconcile.after;
        let mut conn = self.connection().await?;
        let open =
            reconciliation::open_not_updated_since(&mut conn, cutoff, PAYMENTS_PER_PASS).await?;
        drop(conn);
        for payment in open {
            done.intents_checked += 1;
            let intent_id = payment.stripe_intent_id.clone();
            match self.sync_owned(payment).await {
                Ok(synced) => done.credited += i32::from(synced.credited),
                Err(err) => {
                    done.failed += 1;
                    tracing::warn!(%intent_id, error = %err, "reconciliation could not sync a payment");
                }
            }
        }
        Ok(())
    }

    /// Step 2.
    async fn cancel_abandoned_intents(&self, done: &mut Reconciled) -> Result<(), Error> {
        let cutoff = Utc::now() - self.reconcile.stale_after;
        let mut conn = self.connection().await?;
        let waiting = reconciliation::waiting_since(&mut conn, cutoff, PAYMENTS_PER_PASS).await?;
        drop(conn);
        for payment in waiting {
            done.intents_checked += 1;
            let intent_id = payment.stripe_intent_id.clone();
            let owner = match UserId::parse(&payment.user_id) {
                Ok(owner) => owner,
                Err(err) => return Err(Error::Internal(err.0.into())),
            };
            let key = format!("cancel-abandoned-{intent_id}");
            let outcome = match self.gateway.cancel_abandoned_intent(&intent_id, &key).await {
                Ok(intent) => self
                    .apply_fetched(&owner, payment, &intent)
                    .await
                    .map(|_| true),
                // It left the customer's hands meanwhile (paid, say): what
                // it is now is applied instead.
                Err(GatewayError::UnexpectedState(_)) => {
                    tracing::info!(%intent_id, "abandoned intent moved on before its cancel; syncing it");
                    self.sync_payment(&owner, payment).await.map(|synced| {
                        done.credited += i32::from(synced.credited);
                        false
                    })
                }
                Err(err) => Err(err.into()),
            };
            match outcome {
                Ok(canceled) => {
                    if canceled {
                        tracing::info!(%intent_id, "abandoned intent cancelled");
                    }
                    done.canceled += i32::from(canceled);
                }
                Err(err) => {
                    done.failed += 1;
                    tracing::warn!(%intent_id, error = %err, "reconciliation could not cancel an abandoned intent");
                }
            }
        }
        Ok(())
    }

    async fn sync_owned(&self, payment: PaymentRow) -> Result<super::sync::SyncOutcome, Error> {
        let owner = UserId::parse(&payment.user_id).map_err(|err| Error::Internal(err.0.into()))?;
        self.sync_payment(&owner, payment).await
    }

    /// The two gauges an operator alerts on: payments Stripe reported paid
    /// that the ledger has not credited among those updated since
    /// `paid_since` (all when `None`; should always be 0), and the age in
    /// seconds of the oldest payment not final.
    pub async fn lifecycle_gauges(
        &self,
        paid_since: Option<chrono::DateTime<Utc>>,
    ) -> Result<(reconciliation::PaidNotCredited, Option<f64>), Error> {
        let mut conn = self.connection().await?;
        let paid = reconciliation::paid_not_credited(&mut conn, paid_since).await?;
        let oldest = reconciliation::oldest_open_payment_age(&mut conn).await?;
        Ok((paid, oldest))
    }

    /// Runs a pass every `interval` on whichever replica holds the advisory
    /// lock then (others skip that round), until the task is aborted.
    pub fn spawn_reconciliation(
        self: &std::sync::Arc<Self>,
        database_url: String,
        interval: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let service = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is at once: wait one interval first.
            ticks.tick().await;
            loop {
                ticks.tick().await;
                match lock(&database_url).await {
                    Ok(Some(_held_until_dropped)) => {
                        if let Err(err) = service.run_reconciliation().await {
                            tracing::warn!(error = %err, "reconciliation pass failed");
                        }
                    }
                    Ok(None) => tracing::debug!("another replica is reconciling"),
                    Err(err) => {
                        tracing::warn!(error = %err, "reconciliation could not take its lock")
                    }
                }
            }
        })
    }
}

/// A connection of its own holding the reconciliation lock (released when
/// it closes, also if the process dies); `None` when another holds it.
async fn lock(database_url: &str) -> Result<Option<AsyncPgConnection>, Error> {
    #[derive(diesel::QueryableByName)]
    struct Taken {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        taken: bool,
    }
    let mut conn = AsyncPgConnection::establish(database_url)
        .await
        .map_err(|err| {
            Error::Unavailable(format!("connecting for the reconciliation lock: {err}").into())
        })?;
    let taken: Taken = diesel::sql_query("SELECT pg_try_advisory_lock($1) AS taken")
        .bind::<diesel::sql_types::BigInt, _>(RECONCILE_LOCK)
        .get_result(&mut conn)
        .await?;
    Ok(taken.taken.then_some(conn))
}
