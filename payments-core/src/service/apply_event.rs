//! Applying a verified Stripe event: at most once per event id, on the
//! PaymentIntent as re-fetched from Stripe.

use chrono::{DateTime, Utc};

use super::{CURRENCY, EventOutcome, PaymentsService};
use crate::Error;
use crate::db::apply::{self, EventEffect};
use crate::db::intent_owners;
use crate::db::payments::{self, NewPayment};
use crate::db::stripe_events::{self, IgnoredEvent};
use crate::domain::{PaymentStatus, UserId};
use crate::stripe::{EventKind, PaymentGateway, StripeEvent, StripeIntent};

impl<G: PaymentGateway> PaymentsService<G> {
    /// Applies one verified Stripe event, at most once per event id. The
    /// PaymentIntent is re-fetched from Stripe: the event's own numbers are
    /// never trusted, so a forged or stale event cannot mint credits. What
    /// fails for good is parked by the caller (`service::parked`).
    #[tracing::instrument(skip_all, fields(event_id, event_type, intent_id, user_id))]
    pub(super) async fn apply_event_now(
        &self,
        event: &StripeEvent,
        event_json: &str,
    ) -> Result<EventOutcome, Error> {
        let received_at = Utc::now();
        let span = tracing::Span::current();
        span.record("event_id", event.id.as_str());
        span.record("event_type", event.event_type.as_str());

        let payload = StripeEvent::payload_to_store(event_json);
        let ignored = |reason: &'static str| {
            tracing::info!(reason, "event ignored");
            IgnoredEvent {
                event_id: &event.id,
                event_type: &event.event_type,
                object_id: event.object_id(),
                reason,
                payload: &payload,
                received_at,
                processed_at: Utc::now(),
            }
        };
        if matches!(event.kind(), EventKind::Refund | EventKind::Dispute) {
            return self
                .apply_clawback_event(event, &payload, received_at, &ignored)
                .await;
        }
        let intent_id = match (event.kind(), event.object_id()) {
            (EventKind::Other, _) => {
                return self
                    .record_ignored(&ignored("event type not acted on"))
                    .await;
            }
            (_, Some(id)) if crate::stripe::is_intent_id(id) => id,
            _ => {
                return self
                    .record_ignored(&ignored("not a PaymentIntent id"))
                    .await;
            }
        };
        span.record("intent_id", intent_id);

        // Our row, when we hold one, is the authority on whose payment this
        // is and what was asked: Stripe's metadata can be edited.
        let mut conn = self.connection().await?;
        let ours =
            match read_payment(&mut conn, event.named_user_id(), intent_id, &event.id).await? {
                Read::Applied => {
                    tracing::info!("duplicate event");
                    return Ok(EventOutcome::Duplicate);
                }
                Read::Unapplied(row) => Some(*row),
                Read::Missing => None,
            };
        drop(conn);

        // Ours: Stripe not knowing it is a wrong key (UNAVAILABLE, retried).
        // Not ours: an intent Stripe does not know is nobody's.
        let intent = match &ours {
            Some(_) => self.fetch_our_intent(intent_id).await?,
            None => match self.gateway.retrieve_intent(intent_id).await {
                Ok(intent) => intent,
                Err(crate::stripe::GatewayError::NotFound) => {
                    return self
                        .record_ignored(&ignored("Stripe has no such PaymentIntent"))
                        .await;
                }
                Err(err) => return Err(err.into()),
            },
        };
        let owner = match &ours {
            Some(row) => {
                let owner =
                    UserId::parse(&row.user_id).map_err(|err| Error::Internal(err.0.into()))?;
                self.check_against_our_row(row, &intent).await?;
                owner
            }
            None => {
                // No row (a crash between Stripe's create and our insert):
                // only an intent of this deployment, in our currency, with
                // its owner in the metadata, is recovered.
                if !intent.created_by_us {
                    return self
                        .record_ignored(&ignored("PaymentIntent not created by this service"))
                        .await;
                }
                if intent.deployment.as_deref() != Some(self.deployment_id().await?) {
                    return self
                        .record_ignored(&ignored("PaymentIntent created by another deployment"))
                        .await;
                }
                if intent.currency != CURRENCY.code() {
                    return self
                        .record_ignored(&ignored("PaymentIntent in another currency"))
                        .await;
                }
                let Some(named) = intent
                    .user_id
                    .as_deref()
                    .and_then(|id| UserId::parse(id).ok())
                else {
                    return self
                        .record_ignored(&ignored("PaymentIntent has no valid metadata.user_id"))
                        .await;
                };
                // The first to store the intent fixed its owner; the
                // metadata only names one when nobody has.
                let mut conn = self.connection().await?;
                let owner = intent_owners::claim(&mut conn, &intent.id, named.as_str()).await?;
                if owner != named.as_str() {
                    tracing::error!(
                        %owner,
                        metadata_user_id = named.as_str(),
                        "PaymentIntent metadata names another user; its owner is credited"
                    );
                }
                UserId::parse(&owner).map_err(|err| Error::Internal(err.0.into()))?
            }
        };
        span.record("user_id", owner.as_str());

        let cause = Cause {
            event: Some(EventRef {
                id: &event.id,
                event_type: &event.event_type,
                payload: &payload,
            }),
            received_at,
        };
        Ok(self
            .apply_intent(&owner, &intent, ours, &cause)
            .await?
            .outcome)
    }

    /// Applies the intent's state, as Stripe has it, to the owner's payment:
    /// its status (never backwards), failure and amount received, and the
    /// one credit of a paid intent. Read, decide, write if unchanged: each
    /// try is one statement, so no lock is held across round trips. A try
    /// fails only when another event of this intent was applied in between;
    /// then read again. `ours`: the payment as already read, if it was.
    pub(super) async fn apply_intent(
        &self,
        owner: &UserId,
        intent: &StripeIntent,
        ours: Option<payments::PaymentRow>,
        cause: &Cause<'_>,
    ) -> Result<IntentApplied, Error> {
        let event_id = cause.event.as_ref().map(|event| event.id);
        let mut conn = self.connection().await?;
        conn.cancelling(async |conn| {
            let mut read = ours;
            for _ in 0..APPLY_ATTEMPTS {
                let payment = match read.take() {
                    Some(payment) => payment,
                    None => match read_or_recover(conn, owner, intent, event_id).await? {
                        Some(payment) => payment,
                        None => {
                            tracing::info!("duplicate event (concurrent delivery)");
                            return Ok(IntentApplied {
                                outcome: EventOutcome::Duplicate,
                                credited_cents: None,
                            });
                        }
                    },
                };
                let effect = apply_intent_state(cause, &payment, intent)?;
                if let Some(applied) =
                    write_effect(conn, &effect, &self.announcer, &self.metrics).await?
                {
                    return Ok(applied);
                }
                tracing::info!("the payment changed since it was read; reading it again");
            }
            Err(Error::Unavailable(
                "the payment kept changing under concurrent events; retry".into(),
            ))
        })
        .await
    }

    /// Logs every way Stripe's copy of one of our intents disagrees with our
    /// row. Only a changed currency stops the event (amounts in another
    /// currency are not cents of ours): it fails and is parked, so Stripe
    /// and the pass retry it and an operator sees it; nothing is recorded.
    pub(super) async fn check_against_our_row(
        &self,
        row: &payments::PaymentRow,
        intent: &StripeIntent,
    ) -> Result<(), Error> {
        if intent.user_id.as_deref() != Some(row.user_id.as_str()) {
            tracing::error!(
                owner = %row.user_id,
                metadata_user_id = intent.user_id.as_deref().unwrap_or("<none>"),
                "PaymentIntent metadata names another user; the payment's owner is credited"
            );
        }
        if !intent.created_by_us {
            tracing::error!("PaymentIntent lost our created_by marker; it is ours by our records");
        } else if intent.deployment.is_some()
            && intent.deployment.as_deref() != Some(self.deployment_id().await?)
        {
            tracing::error!(
                deployment = intent.deployment.as_deref().unwrap_or_default(),
                "PaymentIntent names another deployment, yet this one holds its row"
            );
        }
        if intent.amount != row.amount_cents {
            tracing::error!(
                asked_cents = row.amount_cents,
                stripe_amount = intent.amount,
                "PaymentIntent amount was changed at Stripe; what Stripe received is credited"
            );
        }
        if intent.currency != row.currency.code() {
            tracing::error!(
                currency = %intent.currency,
                ours = %row.currency,
                "PaymentIntent currency was changed at Stripe; not credited"
            );
            return Err(Error::Internal(
                format!(
                    "PaymentIntent {} is in {} at Stripe, {} in our records",
                    intent.id, intent.currency, row.currency
                )
                .into(),
            ));
        }
        Ok(())
    }

    pub(super) async fn record_ignored(
        &self,
        event: &IgnoredEvent<'_>,
    ) -> Result<EventOutcome, Error> {
        let mut conn = self.connection().await?;
        Ok(if stripe_events::record_ignored(&mut conn, event).await? {
            EventOutcome::Ignored
        } else {
            EventOutcome::Duplicate
        })
    }
}

/// Tries to write one event's effect before a concurrent event changes the
/// payment (see `apply`). `None`: nothing was written; read again.
const APPLY_ATTEMPTS: usize = 8;

/// Our payment for an intent, as the event finds it.
enum Read {
    /// The event was applied to it already.
    Applied,
    Unapplied(Box<payments::PaymentRow>),
    /// No row (not ours, or a crash between Stripe's create and our insert).
    Missing,
}

impl From<Option<(payments::PaymentRow, bool)>> for Read {
    fn from(found: Option<(payments::PaymentRow, bool)>) -> Self {
        match found {
            Some((_, true)) => Read::Applied,
            Some((row, false)) => Read::Unapplied(Box::new(row)),
            None => Read::Missing,
        }
    }
}

/// Reads our payment for an intent, and whether the event was applied to
/// it. The metadata's user is tried first: a row under that user and the
/// intent proves the user owns the intent (payments' foreign key to
/// `intent_owners`, keyed by the intent alone), so the common path is one
/// statement on the user's shard. Otherwise the owner is looked up.
async fn read_payment(
    conn: &mut diesel_async::AsyncPgConnection,
    named: Option<&str>,
    intent_id: &str,
    event_id: &str,
) -> Result<Read, Error> {
    let named = named.filter(|id| UserId::parse(id).is_ok());
    if let Some(named) = named {
        let found = Read::from(payments::find_with_event(conn, named, intent_id, event_id).await?);
        if !matches!(found, Read::Missing) {
            return Ok(found);
        }
    }
    match intent_owners::find(conn, intent_id).await? {
        Some(owner) if Some(owner.as_str()) != named => Ok(Read::from(
            payments::find_with_event(conn, &owner, intent_id, event_id).await?,
        )),
        _ => Ok(Read::Missing),
    }
}

/// The owner's payment for the intent, stored from Stripe's copy when it is
/// missing (created at Stripe, but never stored: e.g. a crash between the
/// Stripe call and the insert). `None`: the event was applied already.
async fn read_or_recover(
    conn: &mut diesel_async::AsyncPgConnection,
    owner: &UserId,
    intent: &StripeIntent,
    event_id: Option<&str>,
) -> Result<Option<payments::PaymentRow>, Error> {
    let read = async |conn: &mut diesel_async::AsyncPgConnection| match event_id {
        Some(event_id) => payments::find_with_event(conn, owner.as_str(), &intent.id, event_id)
            .await
            .map(Read::from),
        None => payments::find(conn, owner.as_str(), &intent.id)
            .await
            .map(|row| row.map_or(Read::Missing, |row| Read::Unapplied(Box::new(row)))),
    };
    let mut found = read(conn).await?;
    if matches!(found, Read::Missing) {
        tracing::warn!("payment row missing; recovering it from Stripe");
        let new = NewPayment {
            stripe_intent_id: &intent.id,
            user_id: owner.as_str(),
            amount_cents: intent.amount,
            amount_received_cents: 0,
            currency: CURRENCY,
            status: PaymentStatus::RequiresPaymentMethod,
            idempotency_key: None,
        };
        // Its owner was claimed before: the row alone, on the user's shard.
        payments::insert_if_absent(conn, &new).await?;
        found = read(conn).await?;
    }
    match found {
        Read::Applied => Ok(None),
        Read::Unapplied(payment) => Ok(Some(*payment)),
        Read::Missing => Err(Error::Internal("payment row missing after insert".into())),
    }
}

/// Why an intent's state is applied: an event, or none (a sync, a
/// reconciliation pass).
pub(super) struct Cause<'a> {
    pub event: Option<EventRef<'a>>,
    pub received_at: DateTime<Utc>,
}

/// The event an intent's state is applied for, as it is recorded.
pub(super) struct EventRef<'a> {
    pub id: &'a str,
    pub event_type: &'a str,
    /// As stored (`StripeEvent::payload_to_store`).
    pub payload: &'a str,
}

/// What applying an intent's state did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct IntentApplied {
    pub outcome: EventOutcome,
    /// The credit booked now, if this application booked the top-up.
    pub credited_cents: Option<i64>,
}

/// What the intent's state does to the payment as read: the next status
/// (never backwards), the amount received, the failure, the credit.
fn apply_intent_state<'a>(
    cause: &'a Cause<'a>,
    payment: &'a payments::PaymentRow,
    intent: &'a StripeIntent,
) -> Result<EventEffect<'a>, Error> {
    let current = payment.status;
    let status = current.transition(intent.status).unwrap_or_else(|refused| {
        tracing::info!(%refused, "kept the later status");
        current
    });
    // Mirrors Stripe's last_payment_error, which a later success clears.
    let failure = match status {
        PaymentStatus::Succeeded => None,
        _ => intent.last_payment_error.as_ref(),
    };
    let amount_received = if status == PaymentStatus::Succeeded {
        intent.amount_received
    } else {
        payment.amount_received_cents
    };
    let credit_cents = if status == PaymentStatus::Succeeded
        && intent.status == PaymentStatus::Succeeded
        && amount_received > 0
    {
        amount_received
    } else {
        0
    };
    Ok(EventEffect {
        user_id: &payment.user_id,
        intent_id: &payment.stripe_intent_id,
        read_status: payment.status,
        read_amount_received_cents: payment.amount_received_cents,
        event_id: cause.event.as_ref().map(|event| event.id),
        event_type: cause.event.as_ref().map_or("", |event| event.event_type),
        payload: cause.event.as_ref().map_or("", |event| event.payload),
        received_at: cause.received_at,
        processed_at: Utc::now(),
        status,
        amount_received_cents: amount_received,
        failure_code: failure.and_then(|f| f.code.as_deref()),
        failure_message: failure.and_then(|f| f.message.as_deref()),
        credit_cents,
        currency: CURRENCY,
    })
}

/// Writes the effect with one statement (`db::apply`); `None` when the
/// payment changed since it was read, or the event was applied meanwhile.
async fn write_effect(
    conn: &mut diesel_async::AsyncPgConnection,
    effect: &EventEffect<'_>,
    announcer: &crate::watch::Announcer,
    metrics: &crate::metrics::CoreMetrics,
) -> Result<Option<IntentApplied>, Error> {
    let applied = apply::apply(conn, effect).await?;
    if !applied.recorded {
        return Ok(None);
    }
    if !applied.updated {
        return Err(Error::Internal(
            "event recorded, yet its payment row was not updated".into(),
        ));
    }
    if let Some(balance_cents) = applied.balance_cents {
        announcer.changed(effect.user_id);
        metrics.booked(crate::domain::LedgerKind::TopUp, effect.credit_cents);
        tracing::info!(
            credited_cents = effect.credit_cents,
            balance_cents,
            "top-up credited"
        );
    }
    tracing::info!(status = effect.status.as_str(), "intent state applied");
    Ok(Some(IntentApplied {
        outcome: EventOutcome::Applied,
        credited_cents: applied.balance_cents.map(|_| effect.credit_cents),
    }))
}
