//! Reconciliation (DESIGN.md stage two): nothing paid is left uncredited
//! because a webhook was lost, abandoned intents are cancelled, and a
//! refund or dispute whose webhook was lost still reaches the balance. A
//! pass:
//! 1. re-fetches payments not final and not updated for `after`, and
//!    applies them as a webhook would (a lost `succeeded` is credited);
//! 2. cancels at Stripe the intents still waiting for the customer after
//!    `stale_after` (`cancellation_reason=abandoned`, an Idempotency-Key);
//!    one that succeeded meanwhile is applied (credited) instead;
//! 3. reads Stripe's Events API from a stored cursor and applies every
//!    acted-on event not yet in the registry.
//!
//! Everything a pass does is once per intent, refund, dispute or event
//! whoever does it, so passes on several replicas at once double nothing;
//! the background loop still takes a Postgres advisory lock so that one
//! replica at a time does the work.

use std::time::Duration;

use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::{EventOutcome, PaymentsService};
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
}

impl Default for ReconcileSettings {
    fn default() -> Self {
        Self {
            after: Duration::from_secs(300),
            stale_after: Duration::from_secs(86_400),
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
    /// Payments or events that failed (Stripe or the database); the next
    /// pass tries them again.
    pub failed: i32,
}

/// Payments each of steps 1 and 2 takes per pass, oldest first; the rest
/// wait for the next pass.
const PAYMENTS_PER_PASS: i64 = 500;
/// Event pages (100 events each) read per pass.
const EVENT_PAGES_PER_PASS: usize = 50;
/// Where the first pass starts reading events: Stripe retries a webhook for
/// three days, so older events were delivered or given up long ago.
const FIRST_EVENTS_LOOKBACK_SECS: i64 = 3 * 86_400;
/// Stripe keeps events 30 days; an older cursor reads from there.
const EVENTS_KEPT_SECS: i64 = 30 * 86_400;
/// When more events wait than a pass reads, the span of history (from the
/// cursor) one pass reads instead.
const EVENTS_WINDOW_SECS: i64 = 3_600;
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
        tracing::info!(
            intents_checked = done.intents_checked,
            credited = done.credited,
            canceled = done.canceled,
            events_backfilled = done.events_backfilled,
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

    /// Step 3: the events created since the cursor, oldest first, each
    /// applied as its webhook would have been (a duplicate of one applied
    /// before is a no-op). Stripe lists newest first, so a read that stops
    /// at the pass's page limit has missed the oldest events: the pass then
    /// reads only the cursor's next `EVENTS_WINDOW_SECS` and moves the
    /// cursor to that window's end. The cursor stops at the first event that
    /// failed instead, to read again from there.
    async fn backfill_events(&self, done: &mut Reconciled) -> Result<(), Error> {
        let now = Utc::now().timestamp();
        let mut conn = self.connection().await?;
        let from = reconciliation::events_cursor(&mut conn)
            .await?
            .unwrap_or(now - FIRST_EVENTS_LOOKBACK_SECS)
            .max(now - EVENTS_KEPT_SECS);
        drop(conn);
        let (mut events, mut cursor) = match self.read_events(from, None).await? {
            (events, true) => {
                let newest = events.iter().map(|event| event.created).max();
                (events, newest)
            }
            (_, false) => {
                let until = from + EVENTS_WINDOW_SECS;
                match self.read_events(from, Some(until)).await? {
                    (events, true) => (events, Some(until)),
                    (events, false) => {
                        tracing::error!(
                            from,
                            until,
                            "more acted-on events in one window than a pass reads; the cursor stays"
                        );
                        (events, None)
                    }
                }
            }
        };
        events.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        for event in &events {
            match self.apply_stripe_event(&event.json).await {
                Ok(EventOutcome::Applied) => done.events_backfilled += 1,
                Ok(EventOutcome::Duplicate | EventOutcome::Ignored) => {}
                Err(err) => {
                    done.failed += 1;
                    tracing::warn!(event_id = %event.id, error = %err, "reconciliation could not apply an event");
                    // Read again from here next pass (`created` is
                    // inclusive; what was applied is a duplicate then).
                    cursor = cursor.map(|_| event.created);
                    break;
                }
            }
        }
        if let Some(cursor) = cursor {
            let mut conn = self.connection().await?;
            reconciliation::advance_events_cursor(&mut conn, cursor).await?;
        }
        Ok(())
    }

    /// The acted-on events created from `from` (and before `before`), up to
    /// the pass's page limit; true when that was all of them.
    async fn read_events(
        &self,
        from: i64,
        before: Option<i64>,
    ) -> Result<(Vec<crate::stripe::ListedEvent>, bool), Error> {
        let mut events = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..EVENT_PAGES_PER_PASS {
            let page = self
                .gateway
                .list_events(&ACTED_ON_EVENT_TYPES, from, before, after.as_deref())
                .await?;
            after = page.events.last().map(|event| event.id.clone());
            events.extend(page.events);
            if !page.has_more || after.is_none() {
                return Ok((events, true));
            }
        }
        Ok((events, false))
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
