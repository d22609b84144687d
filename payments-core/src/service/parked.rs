//! Parked events: one Stripe event the service cannot apply never stops the
//! rest. An event whose apply fails for a reason that will not go away by
//! itself (a Stripe object the service cannot read, a request Stripe
//! refuses, a row the database refuses) is parked: kept with its attempts,
//! last error and next try, retried by the reconciliation pass with
//! backoff, listed for operators (`ListParkedEvents`, `RetryParkedEvent`,
//! the `payments_parked_events` gauge). A passing failure (Stripe or the
//! database down) is not parked: it is answered UNAVAILABLE as before.
//!
//! This module owns the policy (what parks, the backoff); `db::parked_events`
//! only stores it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;

use super::{EventOutcome, PaymentsService};
use crate::db::parked_events::{self, Failure, ParkedEvent};
use crate::error::Cause;
use crate::stripe::{PaymentGateway, StripeEvent};
use crate::{Error, Page};

/// The pause before a parked event's first retry; doubled after each
/// further failure.
pub const FIRST_RETRY_PAUSE: Duration = Duration::from_secs(60);
/// The longest pause between two tries of a parked event.
pub const MAX_RETRY_PAUSE: Duration = Duration::from_secs(6 * 3_600);
/// Parked events one reconciliation pass retries, the longest waiting first.
const RETRIES_PER_PASS: i64 = 100;
/// The stored error text is cut to this many characters.
const MAX_ERROR_CHARS: usize = 2_000;

/// The pause after the `attempts`-th failure.
pub fn retry_pause(attempts: i32) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(0)
        .min(20);
    FIRST_RETRY_PAUSE
        .saturating_mul(1 << doublings)
        .min(MAX_RETRY_PAUSE)
}

/// What retrying parked events did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retried {
    /// Applied (or found applied) now, and no longer parked.
    pub unparked: i32,
    /// Failed again, and parked until their next try.
    pub still_parked: i32,
}

impl<G: PaymentGateway> PaymentsService<G> {
    /// Applies one verified Stripe event (the webhook, the Events API
    /// backfill, a retry), at most once per event id; an event that fails
    /// for good is parked and answered `EventParked`, so that its sender
    /// (Stripe, or the pass) tries again later.
    pub async fn apply_stripe_event(&self, event_json: &str) -> Result<EventOutcome, Error> {
        self.apply_or_park(event_json, false).await
    }

    /// `retrying`: the event is known to be parked, so its row goes once it
    /// is applied. Otherwise the row is looked for only while this process
    /// knows of parked events (`parked_hint`): most deliveries of a healthy
    /// service then cost no statement for parking at all, and a row left by
    /// a stale hint goes at its next retry, which finds the event applied.
    async fn apply_or_park(&self, event_json: &str, retrying: bool) -> Result<EventOutcome, Error> {
        let event = StripeEvent::parse(event_json)?;
        match self.apply_event_now(&event, event_json).await {
            Ok(outcome) => {
                if retrying || self.parked_hint.load(Ordering::Relaxed) {
                    self.forget_parked(&event.id).await;
                }
                Ok(outcome)
            }
            Err(err) if err.is_transient() => Err(err),
            Err(err) => Err(self.park(&event, event_json, err).await),
        }
    }

    /// The event was applied: it is parked no longer. A failure here only
    /// leaves a row whose next retry finds the event applied.
    async fn forget_parked(&self, event_id: &str) {
        let forgotten = async {
            let mut conn = self.connection().await?;
            Ok::<_, Error>(parked_events::unpark(&mut conn, event_id).await?)
        };
        match forgotten.await {
            Ok(true) => tracing::info!(event_id, "parked event applied; no longer parked"),
            Ok(false) => {}
            Err(err) => {
                tracing::warn!(event_id, error = %err, "could not clear an applied event's parking")
            }
        }
    }

    /// Parks the event after `err`, and answers what its caller is told:
    /// `EventParked`, or `err` itself when even parking failed.
    async fn park(&self, event: &StripeEvent, event_json: &str, err: Error) -> Error {
        let text: String = describe(&err).chars().take(MAX_ERROR_CHARS).collect();
        let payload = StripeEvent::payload_to_store(event_json);
        let parked = async {
            let mut conn = self.connection().await?;
            let failed_at = Utc::now();
            let attempts = parked_events::find(&mut conn, &event.id)
                .await?
                .map_or(1, |parked| parked.attempts.saturating_add(1));
            let failure = Failure {
                event_id: &event.id,
                event_type: &event.event_type,
                object_id: event.object_id(),
                payload: &payload,
                error: &text,
                failed_at,
                next_attempt_at: failed_at + retry_pause(attempts),
            };
            Ok::<_, Error>(parked_events::park(&mut conn, &failure).await?)
        };
        match parked.await {
            Ok(row) => {
                self.parked_hint.store(true, Ordering::Relaxed);
                tracing::error!(
                    event_id = %row.event_id,
                    event_type = %row.event_type,
                    attempts = row.attempts,
                    next_attempt_at = %row.next_attempt_at,
                    error = %text,
                    "event parked: it failed for a reason that will not go away by itself"
                );
                Error::EventParked(Cause {
                    message: text,
                    source: Some(Arc::new(err)),
                })
            }
            Err(park_err) => {
                tracing::error!(event_id = %event.id, error = %text, park_error = %park_err, "a failed event could not be parked");
                err
            }
        }
    }

    /// Retries the parked events whose next try is due; stops at a passing
    /// failure (Stripe or the database down), like the rest of the pass.
    pub(super) async fn retry_due_parked_events(&self) -> Result<Retried, Error> {
        let mut conn = self.connection().await?;
        let due = parked_events::due(&mut conn, Utc::now(), RETRIES_PER_PASS).await?;
        drop(conn);
        let mut retried = Retried::default();
        for parked in due {
            match self.apply_or_park(&parked.payload, true).await {
                Ok(_) => retried.unparked += 1,
                Err(Error::EventParked(_)) => retried.still_parked += 1,
                // Not an event any more (cannot happen for a stored payload):
                // it stays parked for an operator, and the pass goes on.
                Err(Error::InvalidArgument(reason)) => {
                    tracing::error!(event_id = %parked.event_id, %reason, "a parked event's payload is not an event");
                    retried.still_parked += 1;
                }
                Err(err) => return Err(err),
            }
        }
        Ok(retried)
    }

    /// Retries one parked event now (`RetryParkedEvent`): its outcome when
    /// applied, `EventParked` when it failed again, `NotFound` when it is
    /// not parked.
    pub async fn retry_parked_event(&self, event_id: &str) -> Result<EventOutcome, Error> {
        let mut conn = self.connection().await?;
        let parked = parked_events::find(&mut conn, event_id).await?;
        drop(conn);
        let Some(parked) = parked else {
            return Err(Error::NotFound(
                "no parked event has this id (it may have been applied since)".into(),
            ));
        };
        self.apply_or_park(&parked.payload, true).await
    }

    /// A page of parked events by event id (`ListParkedEvents`): `page_size`
    /// as the other lists (0: the default); the cursor is the last event id
    /// of the page before.
    pub async fn list_parked_events(
        &self,
        page_size: i32,
        cursor: &str,
    ) -> Result<Page<ParkedEvent>, Error> {
        let page_size = super::history::page_size_of(page_size)?;
        let after = match cursor {
            "" => None,
            // Event ids are 1 to 255 bytes (`StripeEvent::parse`).
            cursor if cursor.len() <= 255 => Some(cursor),
            _ => {
                return Err(Error::InvalidArgument(
                    "page_token is not one this list gave".into(),
                ));
            }
        };
        let mut conn = self.connection().await?;
        let mut items = parked_events::page(&mut conn, after, page_size + 1).await?;
        let next_cursor = if items.len() as i64 > page_size {
            items.truncate(page_size as usize);
            items.last().map(|last| last.event_id.clone())
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    /// How many events are parked (the `payments_parked_events` gauge);
    /// also what this process knows of parked events from then on.
    pub async fn parked_event_count(&self) -> Result<i64, Error> {
        let mut conn = self.connection().await?;
        let count = parked_events::count(&mut conn).await?;
        self.parked_hint.store(count > 0, Ordering::Relaxed);
        Ok(count)
    }
}

/// An error's whole text, its causes included, for the log and the row.
fn describe(err: &Error) -> String {
    match err {
        Error::Internal(cause) | Error::Unavailable(cause) | Error::EventParked(cause) => {
            cause.chain()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_doubles_from_a_minute_up_to_six_hours() {
        assert_eq!(retry_pause(1), Duration::from_secs(60));
        assert_eq!(retry_pause(2), Duration::from_secs(120));
        assert_eq!(retry_pause(5), Duration::from_secs(960));
        assert_eq!(retry_pause(9), Duration::from_secs(15_360));
        assert_eq!(retry_pause(10), MAX_RETRY_PAUSE);
        assert_eq!(retry_pause(i32::MAX), MAX_RETRY_PAUSE);
        assert_eq!(retry_pause(0), FIRST_RETRY_PAUSE);
    }
}
