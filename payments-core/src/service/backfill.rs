//! Step 3 of a reconciliation pass: Stripe's Events API, read forward in
//! time from the last event handled, so that a refund or dispute whose
//! webhook was lost still reaches the balance and no volume of events can
//! stall the read.
//!
//! Stripe lists events newest first; `ending_before=<id>` answers the
//! events right after `<id>` in time (Stripe's documented way to read a list
//! in chronological order). The cursor is the last event handled: applied,
//! found applied, or parked (`service::parked`). Until a cursor exists (the
//! first pass, a cursor from before this walk, an event Stripe no longer
//! keeps) the pass walks back from the newest event down to a time, over as
//! many passes as that takes, and then forward from the newest it saw.
//! Events are applied in any order safely (each re-fetches its object), so
//! the walk back applies what it reads as it goes.

use chrono::Utc;

use super::{EventOutcome, PaymentsService, Reconciled};
use crate::Error;
use crate::db::reconciliation::{self, EventsCursor};
use crate::stripe::{EventsPage, EventsPosition, EventsQuery, ListedEvent, PaymentGateway};

/// Where the first walk back stops: Stripe retries a webhook for three
/// days, so older events were delivered or given up long ago.
const FIRST_EVENTS_LOOKBACK_SECS: i64 = 3 * 86_400;
/// Stripe keeps events 30 days; a walk back never reaches further.
const EVENTS_KEPT_SECS: i64 = 30 * 86_400;
/// With no event at all since the cursor's time, the time moves up to this
/// long before now (an event listed late by Stripe is still found).
const EMPTY_LIST_MARGIN_SECS: i64 = 300;

/// How handling one page ended.
enum PageEnd {
    /// Every event handled.
    Whole,
    /// A passing failure (Stripe or the database down) at this event; the
    /// events before it in time were handled.
    StoppedAt,
}

impl<G: PaymentGateway> PaymentsService<G> {
    pub(super) async fn backfill_events(&self, done: &mut Reconciled) -> Result<(), Error> {
        let now = Utc::now().timestamp();
        let mut conn = self.connection().await?;
        let mut cursor = reconciliation::events_cursor(&mut conn)
            .await?
            .unwrap_or_else(|| EventsCursor {
                created_at: now - FIRST_EVENTS_LOOKBACK_SECS,
                ..EventsCursor::default()
            });
        drop(conn);
        cursor.created_at = cursor.created_at.max(now - EVENTS_KEPT_SECS);
        let mut pages = 0;
        loop {
            if (cursor.last_id.is_none() || cursor.seek_id.is_some())
                && !self.walk_back(&mut cursor, &mut pages, done).await?
            {
                return Ok(());
            }
            // Walked forward as far as the pass reads, unless the cursor was
            // lost: then back from its time, in this pass (its pages bound it).
            if !self.walk_forward(&mut cursor, &mut pages, done).await? {
                return Ok(());
            }
        }
    }

    /// Walks back from the newest event (or from where the last walk back
    /// stopped) to the cursor's time; true once it got there.
    async fn walk_back(
        &self,
        cursor: &mut EventsCursor,
        pages: &mut u32,
        done: &mut Reconciled,
    ) -> Result<bool, Error> {
        while *pages < self.reconcile.event_pages_per_pass {
            let page = self
                .events_page(EventsPosition::Back {
                    created_from: cursor.created_at,
                    starting_after: cursor.seek_id.as_deref(),
                })
                .await?;
            *pages += 1;
            if cursor.last_id.is_none() {
                // The newest event: where the walk forward begins.
                match page.events.first() {
                    Some(newest) => cursor.last_id = Some(newest.id.clone()),
                    None => {
                        cursor.created_at = cursor
                            .created_at
                            .max(Utc::now().timestamp() - EMPTY_LIST_MARGIN_SECS);
                        self.store_cursor(cursor).await?;
                        return Ok(false);
                    }
                }
            }
            if let PageEnd::StoppedAt = self.handle_page(&page.events, done, |_| {}).await {
                if cursor.seek_id.is_none() {
                    // The first page was not handled whole: the walk back
                    // starts again from the newest event next pass.
                    cursor.last_id = None;
                }
                self.store_cursor(cursor).await?;
                return Ok(false);
            }
            let reached_the_time = !page.has_more || page.events.is_empty();
            cursor.seek_id = match reached_the_time {
                true => None,
                false => page.events.last().map(|oldest| oldest.id.clone()),
            };
            self.store_cursor(cursor).await?;
            if reached_the_time {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Reads forward from the cursor's event until no newer event is left or
    /// the pass's pages are read; true when Stripe no longer knows the
    /// cursor's event (the cursor then says to walk back from its time).
    async fn walk_forward(
        &self,
        cursor: &mut EventsCursor,
        pages: &mut u32,
        done: &mut Reconciled,
    ) -> Result<bool, Error> {
        while *pages < self.reconcile.event_pages_per_pass {
            let Some(last_id) = cursor.last_id.clone() else {
                return Ok(false);
            };
            *pages += 1;
            let page = match self
                .events_page(EventsPosition::After {
                    ending_before: &last_id,
                })
                .await
            {
                Ok(page) => page,
                Err(err) if err.is_transient() => return Err(err),
                Err(err) => {
                    // Stripe keeps events 30 days: one older is refused.
                    tracing::warn!(%last_id, error = %err, "Stripe refused the events cursor; walking back from its time");
                    cursor.last_id = None;
                    cursor.seek_id = None;
                    self.store_cursor(cursor).await?;
                    return Ok(true);
                }
            };
            let end = self
                .handle_page(&page.events, done, |event| {
                    cursor.last_id = Some(event.id.clone());
                    cursor.created_at = cursor.created_at.max(event.created);
                })
                .await;
            self.store_cursor(cursor).await?;
            if matches!(end, PageEnd::StoppedAt) || !page.has_more || page.events.is_empty() {
                return Ok(false);
            }
        }
        Ok(false)
    }

    /// Applies a page's events oldest first, calling `handled` after each
    /// one handled, until a passing failure.
    async fn handle_page(
        &self,
        events: &[ListedEvent],
        done: &mut Reconciled,
        mut handled: impl FnMut(&ListedEvent),
    ) -> PageEnd {
        for event in events.iter().rev() {
            match self.apply_stripe_event(&event.json).await {
                Ok(EventOutcome::Applied) => done.events_backfilled += 1,
                Ok(EventOutcome::Duplicate | EventOutcome::Ignored) => {}
                Err(Error::EventParked(_)) => done.events_parked += 1,
                Err(err) if err.is_transient() => {
                    done.failed += 1;
                    tracing::warn!(event_id = %event.id, error = %err, "reconciliation could not apply an event; the next pass reads it again");
                    return PageEnd::StoppedAt;
                }
                // Not an event (it cannot be parked without one): nothing
                // will ever apply it.
                Err(err) => {
                    done.failed += 1;
                    tracing::error!(event_id = %event.id, error = %err, "Stripe listed an event the service cannot read; passed over");
                }
            }
            handled(event);
        }
        PageEnd::Whole
    }

    async fn events_page(&self, position: EventsPosition<'_>) -> Result<EventsPage, Error> {
        let query = EventsQuery {
            types: &super::ACTED_ON_EVENT_TYPES,
            limit: self.reconcile.events_page_size,
            position,
        };
        // A refusal is the caller's to read (a cursor Stripe no longer keeps).
        Ok(self.gateway.list_events(&query).await?)
    }

    async fn store_cursor(&self, cursor: &EventsCursor) -> Result<(), Error> {
        let mut conn = self.connection().await?;
        Ok(reconciliation::store_events_cursor(&mut conn, cursor, Utc::now()).await?)
    }
}
