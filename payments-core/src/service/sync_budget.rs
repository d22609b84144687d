//! What `SyncPaymentIntent` may cost Stripe (policy; Stripe's rate limit is
//! per account, shared with creates, webhooks' re-fetches and
//! reconciliation). A sync reaches Stripe only when the payment could still
//! change there and this replica has not just synced it; those that do draw
//! from a budget of Stripe calls per second (a token bucket, `governor`).
//! Past it a sync is refused at once with when to retry, so syncs never
//! queue, and creates and webhooks, which do not draw from it, never wait
//! behind them.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota};

use crate::Error;
use crate::db::payments::PaymentRow;
use crate::domain::PaymentStatus;

/// The Stripe calls one sync may make: the intent, its refunds, its disputes.
pub const CALLS_PER_SYNC: u32 = 3;
/// A payment synced this recently is answered from the database.
pub const FRESH_FOR: Duration = Duration::from_secs(5);
/// Recent syncs remembered at most; past it (a budget above 200 syncs a
/// second) the oldest are not remembered, and those syncs reach Stripe.
const MAX_REMEMBERED: usize = 1024;

pub struct SyncBudget {
    calls: DefaultDirectRateLimiter,
    /// Intents this replica synced within [`FRESH_FOR`].
    recent: Mutex<HashMap<String, Instant>>,
}

impl SyncBudget {
    /// Up to `calls_per_second` Stripe calls a second for syncs, a
    /// second's worth at once (at least one sync's).
    pub fn new(calls_per_second: u32) -> Self {
        let rate = NonZeroU32::new(calls_per_second.max(CALLS_PER_SYNC)).unwrap_or(NonZeroU32::MIN);
        Self {
            calls: DefaultDirectRateLimiter::direct(Quota::per_second(rate)),
            recent: Mutex::default(),
        }
    }

    /// Whether a sync of `payment` can be answered from the database: it is
    /// canceled, or paid with its top-up `credited` and nothing clawed back
    /// that could still be given back (a pending refund, an open dispute),
    /// or this replica synced it within [`FRESH_FOR`]. (Refunds and
    /// disputes made later reach it by their webhooks and by
    /// reconciliation's Events API walk.)
    pub fn answer_from_database(&self, payment: &PaymentRow, credited: bool) -> bool {
        let settled = match payment.status {
            PaymentStatus::Canceled => true,
            PaymentStatus::Succeeded => {
                credited && payment.amount_refunded_cents == 0 && payment.amount_disputed_cents == 0
            }
            _ => false,
        };
        settled || self.synced_recently(&payment.stripe_intent_id)
    }

    fn synced_recently(&self, intent_id: &str) -> bool {
        let recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        recent
            .get(intent_id)
            .is_some_and(|at| at.elapsed() < FRESH_FOR)
    }

    /// Takes a sync's calls from the budget, or says when to retry.
    pub fn take(&self) -> Result<(), Error> {
        let sync = NonZeroU32::MIN.saturating_add(CALLS_PER_SYNC - 1);
        let refused = match self.calls.check_n(sync) {
            Ok(Ok(())) => None,
            Ok(Err(not_until)) => Some(not_until.wait_time_from(DefaultClock::default().now())),
            // The bucket holds less than one sync (`new` never makes one).
            Err(_) => Some(Duration::from_secs(1)),
        };
        if let Some(wait) = refused {
            let retry_after_secs =
                u32::try_from(wait.as_secs().saturating_add(1)).unwrap_or(u32::MAX);
            tracing::warn!(
                retry_after_secs,
                "sync refused: the budget of Stripe calls for syncs is spent"
            );
            return Err(Error::RateLimited {
                message: "too many syncs reach Stripe right now".into(),
                retry_after_secs,
            });
        }
        Ok(())
    }

    /// Notes the intent as synced now: a sync that failed is not noted, so
    /// its retry asks Stripe again rather than reading the database.
    pub fn note_synced(&self, intent_id: &str) {
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if recent.len() >= MAX_REMEMBERED {
            recent.retain(|_, at| at.elapsed() < FRESH_FOR);
        }
        if recent.len() < MAX_REMEMBERED {
            recent.insert(intent_id.to_owned(), Instant::now());
        }
    }
}
