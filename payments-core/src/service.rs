//! The use cases. They own transactions and idempotency.

use chrono::{DateTime, Utc};
use diesel_async::RunQueryDsl;
use sha2::{Digest, Sha256};

use crate::Error;
use crate::db::apply::EventEffect;
use crate::db::balance_reads::BalanceReads;
use crate::db::payment_inserts::{PaymentInserts, PaymentToStore};
use crate::db::payments::{NewPayment, PaymentRow};
use crate::db::stripe_events::IgnoredEvent;
use crate::db::{CancelOnDrop, DbPool, apply, intent_owners, payments, stripe_events};
use crate::domain::{ClientIdempotencyKey, Currency, PaymentStatus, Tiers, UserId};
use crate::stripe::{EventKind, NewIntent, PaymentGateway, StripeEvent, StripeIntent};

const CURRENCY: Currency = Currency::Usd;

/// A PaymentIntent ready for the client to confirm.
#[derive(Clone, PartialEq, Eq)]
pub struct CreatedIntent {
    pub client_secret: String,
    pub intent_id: String,
    pub amount_cents: i64,
    pub currency: String,
    /// Stripe's word, e.g. `requires_payment_method`.
    pub status: String,
}

impl std::fmt::Debug for CreatedIntent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedIntent")
            .field("client_secret", &"<redacted>")
            .field("intent_id", &self.intent_id)
            .field("amount_cents", &self.amount_cents)
            .field("currency", &self.currency)
            .field("status", &self.status)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balance {
    pub user_id: String,
    pub balance_cents: i64,
    pub currency: String,
    /// `None` for a user whose balance never changed.
    pub updated_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    Applied,
    Duplicate,
    Ignored,
}

pub struct PaymentsService<G> {
    pool: DbPool,
    balance_reads: BalanceReads,
    payment_inserts: PaymentInserts,
    gateway: G,
    tiers: Tiers,
    open_intents: OpenIntentLimit,
    /// Read from the database once, on first use.
    deployment: tokio::sync::OnceCell<String>,
}

/// At most `max` unpaid intents created within `window` per user: against
/// card testing and floods of intents, each a Stripe call and a row.
/// `max` 0 turns the limit off (the benchmark's create scenario).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenIntentLimit {
    pub max: i64,
    pub window: chrono::Duration,
}

impl Default for OpenIntentLimit {
    fn default() -> Self {
        Self {
            max: 20,
            window: chrono::Duration::hours(24),
        }
    }
}

impl<G: PaymentGateway> PaymentsService<G> {
    pub fn new(pool: DbPool, gateway: G, tiers: Tiers) -> Self {
        Self {
            balance_reads: BalanceReads::new(pool.clone()),
            payment_inserts: PaymentInserts::new(pool.clone()),
            pool,
            gateway,
            tiers,
            open_intents: OpenIntentLimit::default(),
            deployment: tokio::sync::OnceCell::new(),
        }
    }

    pub fn with_open_intent_limit(mut self, limit: OpenIntentLimit) -> Self {
        self.open_intents = limit;
        self
    }

    /// A pooled connection; UNAVAILABLE when none comes within the pool's timeout.
    async fn connection(&self) -> Result<CancelOnDrop<'_>, Error> {
        let conn = self.pool.get().await.map_err(crate::db::DbError::from)?;
        Ok(CancelOnDrop::new(conn))
    }

    /// This deployment's id (`metadata[deployment]` of every intent it creates).
    pub async fn deployment_id(&self) -> Result<&str, Error> {
        let id = self
            .deployment
            .get_or_try_init(|| async {
                let mut conn = self.connection().await?;
                Ok::<_, Error>(crate::db::deployment::id(&mut conn).await?)
            })
            .await?;
        Ok(id.as_str())
    }

    /// Empties the stored payloads of events received more than `retention`
    /// ago, in batches; answers how many.
    pub async fn forget_old_event_payloads(
        &self,
        retention: chrono::Duration,
    ) -> Result<usize, Error> {
        const BATCH: i64 = 1_000;
        let cutoff = Utc::now() - retention;
        let mut forgotten = 0;
        loop {
            let mut conn = self.connection().await?;
            let done = stripe_events::forget_payloads_before(&mut conn, cutoff, BATCH).await?;
            forgotten += done;
            if (done as i64) < BATCH {
                return Ok(forgotten);
            }
        }
    }

    /// Whether Postgres answers, for health checks.
    pub async fn check_database(&self) -> Result<(), Error> {
        let mut conn = self.connection().await?;
        diesel::sql_query("SELECT 1").execute(&mut conn).await?;
        Ok(())
    }

    /// Creates a PaymentIntent for a tier, or returns the one created before
    /// for the same user and idempotency key.
    #[tracing::instrument(skip_all, fields(user_id = %user_id, amount_cents, intent_id))]
    pub async fn create_payment_intent(
        &self,
        user_id: &str,
        amount_cents: i64,
        idempotency_key: &str,
    ) -> Result<CreatedIntent, Error> {
        let user = UserId::parse(user_id)?;
        let tier = self.tiers.tier_for(amount_cents)?;
        let key = ClientIdempotencyKey::parse_optional(idempotency_key)?;

        {
            let mut conn = self.connection().await?;
            if let Some(key) = &key {
                let existing =
                    payments::find_by_idempotency_key(&mut conn, user.as_str(), key.as_str())
                        .await?;
                if let Some(existing) = existing {
                    drop(conn);
                    return self.replay(existing, amount_cents).await;
                }
            }
            let limit = self.open_intents;
            let since = Utc::now() - limit.window;
            let open = match limit.max {
                0 => 0,
                max => payments::count_open_since(&mut conn, user.as_str(), since, max).await?,
            };
            if limit.max > 0 && open >= limit.max {
                tracing::warn!(open, "create refused: too many open intents");
                return Err(Error::TooManyOpenIntents(format!(
                    "{open} unpaid top-ups are open; pay or abandon one first"
                )));
            }
        }

        // Stripe deduplicates retries, and concurrent requests with the same key.
        let stripe_key = match &key {
            Some(key) => stripe_idempotency_key(&user, key),
            None => format!("topup-{}", uuid::Uuid::new_v4()),
        };
        let intent = self
            .gateway
            .create_intent(&NewIntent {
                user_id: &user,
                tier,
                currency: CURRENCY,
                stripe_idempotency_key: &stripe_key,
                deployment: self.deployment_id().await?,
            })
            .await?;
        tracing::Span::current().record("intent_id", intent.id.as_str());
        if intent.amount != amount_cents || intent.currency != CURRENCY.code() {
            return Err(Error::Internal(format!(
                "Stripe created {} {} for a request of {amount_cents} {CURRENCY}",
                intent.amount, intent.currency
            )));
        }

        let new = PaymentToStore {
            stripe_intent_id: intent.id.clone(),
            user_id: user.as_str().to_owned(),
            amount_cents,
            currency: CURRENCY.code(),
            status: intent.status.as_str(),
            idempotency_key: key.as_ref().map(|key| key.as_str().to_owned()),
        };
        if !self.payment_inserts.insert_if_absent(new).await? {
            return self
                .answer_stored(intent, &user, key.as_ref(), amount_cents)
                .await;
        }
        tracing::info!("payment intent created");
        created_intent(intent)
    }

    /// Answers a create whose row was already there: stored by a concurrent
    /// request with the same key, or recovered from a webhook after a crash
    /// between Stripe's answer and our insert (that row has no key yet).
    async fn answer_stored(
        &self,
        intent: StripeIntent,
        user: &UserId,
        key: Option<&ClientIdempotencyKey>,
        amount_cents: i64,
    ) -> Result<CreatedIntent, Error> {
        let mut conn = self.connection().await?;
        if let Some(row) = payments::find(&mut conn, user.as_str(), &intent.id).await? {
            if let (Some(key), None) = (key, &row.idempotency_key) {
                // Kept, so the next retry is answered without asking Stripe
                // to create, even after Stripe forgets its idempotency key.
                payments::set_idempotency_key(&mut conn, user.as_str(), &intent.id, key.as_str())
                    .await?;
            }
            tracing::info!("payment intent created before; answered again");
            return created_intent(intent);
        }
        if let Some(owner) = intent_owners::find(&mut conn, &intent.id).await?
            && owner != user.as_str()
        {
            return Err(Error::Internal(format!(
                "Stripe answered intent {} stored for another user",
                intent.id
            )));
        }
        // The conflict was on the user's key, held by another intent.
        let by_key = match key {
            Some(key) => {
                payments::find_by_idempotency_key(&mut conn, user.as_str(), key.as_str()).await?
            }
            None => None,
        };
        drop(conn);
        match by_key {
            Some(row) => self.replay(row, amount_cents).await,
            None => Err(Error::Internal(
                "payment row vanished after a conflict".into(),
            )),
        }
    }

    /// Answers a repeated idempotency key with the intent stored for it.
    async fn replay(
        &self,
        existing: PaymentRow,
        amount_cents: i64,
    ) -> Result<CreatedIntent, Error> {
        tracing::Span::current().record("intent_id", existing.stripe_intent_id.as_str());
        if existing.amount_cents != amount_cents {
            return Err(key_reused(existing.amount_cents));
        }
        // The client secret is not stored; Stripe has it.
        let intent = self
            .gateway
            .retrieve_intent(&existing.stripe_intent_id)
            .await?;
        tracing::info!("idempotency key replayed");
        created_intent(intent)
    }

    #[tracing::instrument(skip_all, fields(user_id = %user_id))]
    pub async fn get_balance(&self, user_id: &str) -> Result<Balance, Error> {
        let user = UserId::parse(user_id)?;
        let balance = match self.balance_reads.find(user.as_str()).await? {
            Some(row) => Balance {
                user_id: row.user_id,
                balance_cents: row.balance_cents,
                currency: row.currency,
                updated_at: Some(row.updated_at),
            },
            None => Balance {
                user_id: user.as_str().to_owned(),
                balance_cents: 0,
                currency: CURRENCY.code().to_owned(),
                updated_at: None,
            },
        };
        Ok(balance)
    }

    /// Applies one verified Stripe event, at most once per event id. The
    /// PaymentIntent is re-fetched from Stripe: the event's own numbers are
    /// never trusted, so a forged or stale event cannot mint credits.
    #[tracing::instrument(skip_all, fields(event_id, event_type, intent_id, user_id))]
    pub async fn apply_stripe_event(&self, event_json: &str) -> Result<EventOutcome, Error> {
        let received_at = Utc::now();
        let event = StripeEvent::parse(event_json)?;
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

        let intent = match self.gateway.retrieve_intent(intent_id).await {
            Ok(intent) => intent,
            Err(crate::stripe::GatewayError::NotFound) if ours.is_some() => {
                tracing::error!(
                    "Stripe has no PaymentIntent this service created: is STRIPE_SECRET_KEY the right account's?"
                );
                return Err(Error::Unavailable(
                    "Stripe answered 404 for a PaymentIntent this service created; retry once the Stripe key is right".into(),
                ));
            }
            Err(crate::stripe::GatewayError::NotFound) => {
                return self
                    .record_ignored(&ignored("Stripe has no such PaymentIntent"))
                    .await;
            }
            Err(err) => return Err(err.into()),
        };
        let owner = match &ours {
            Some(row) => {
                let owner = UserId::parse(&row.user_id).map_err(|err| Error::Internal(err.0))?;
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
                UserId::parse(&owner).map_err(|err| Error::Internal(err.0))?
            }
        };
        span.record("user_id", owner.as_str());

        // Read, decide, write if unchanged: each try is one statement, so no
        // lock is held across round trips. A try fails only when another
        // event of this intent was applied in between; then read again.
        let mut conn = self.connection().await?;
        conn.cancelling(async |conn| {
            let mut read = ours;
            for _ in 0..APPLY_ATTEMPTS {
                let payment = match read.take() {
                    Some(payment) => payment,
                    None => match read_or_recover(conn, &owner, &intent, &event.id).await? {
                        Some(payment) => payment,
                        None => {
                            tracing::info!("duplicate event (concurrent delivery)");
                            return Ok(EventOutcome::Duplicate);
                        }
                    },
                };
                let effect = apply_intent_state(&event, &payload, received_at, &payment, &intent)?;
                if let Some(outcome) = write_effect(conn, &effect).await? {
                    return Ok(outcome);
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
    /// currency are not cents of ours): it fails, so Stripe retries and an
    /// operator can look; nothing is recorded.
    async fn check_against_our_row(
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
        if intent.currency != row.currency {
            tracing::error!(
                currency = %intent.currency,
                ours = %row.currency,
                "PaymentIntent currency was changed at Stripe; not credited"
            );
            return Err(Error::Internal(format!(
                "PaymentIntent {} is in {} at Stripe, {} in our records",
                intent.id, intent.currency, row.currency
            )));
        }
        Ok(())
    }

    async fn record_ignored(&self, event: &IgnoredEvent<'_>) -> Result<EventOutcome, Error> {
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
    event_id: &str,
) -> Result<Option<payments::PaymentRow>, Error> {
    let read = async |conn: &mut diesel_async::AsyncPgConnection| {
        payments::find_with_event(conn, owner.as_str(), &intent.id, event_id)
            .await
            .map(Read::from)
    };
    let mut found = read(conn).await?;
    if matches!(found, Read::Missing) {
        tracing::warn!("payment row missing; recovering it from Stripe");
        let new = NewPayment {
            stripe_intent_id: &intent.id,
            user_id: owner.as_str(),
            amount_cents: intent.amount,
            amount_received_cents: 0,
            currency: CURRENCY.code(),
            status: PaymentStatus::RequiresPaymentMethod.as_str(),
            idempotency_key: None,
        };
        payments::insert_all_if_absent(conn, &[new]).await?;
        found = read(conn).await?;
    }
    match found {
        Read::Applied => Ok(None),
        Read::Unapplied(payment) => Ok(Some(*payment)),
        Read::Missing => Err(Error::Internal("payment row missing after insert".into())),
    }
}

/// What the event does to the payment as read: the next status (never
/// backwards), the amount received, the failure, the credit.
fn apply_intent_state<'a>(
    event: &'a StripeEvent,
    payload: &'a str,
    received_at: DateTime<Utc>,
    payment: &'a payments::PaymentRow,
    intent: &'a StripeIntent,
) -> Result<EventEffect<'a>, Error> {
    let current: PaymentStatus = payment.status.parse().map_err(Error::Internal)?;
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
        read_status: &payment.status,
        read_amount_received_cents: payment.amount_received_cents,
        event_id: &event.id,
        event_type: &event.event_type,
        payload,
        received_at,
        processed_at: Utc::now(),
        status: status.as_str(),
        amount_received_cents: amount_received,
        failure_code: failure.and_then(|f| f.code.as_deref()),
        failure_message: failure.and_then(|f| f.message.as_deref()),
        credit_cents,
        currency: CURRENCY.code(),
    })
}

/// Writes the effect with one statement (`db::apply`); `None` when the
/// payment changed since it was read, or the event was applied meanwhile.
async fn write_effect(
    conn: &mut diesel_async::AsyncPgConnection,
    effect: &EventEffect<'_>,
) -> Result<Option<EventOutcome>, Error> {
    let applied = apply::apply(conn, effect).await?;
    if !applied.recorded {
        return Ok(None);
    }
    if !applied.updated {
        return Err(Error::Internal(
            "event recorded, yet its locked payment row was not updated".into(),
        ));
    }
    if let Some(balance_cents) = applied.balance_cents {
        tracing::info!(
            credited_cents = effect.credit_cents,
            balance_cents,
            "top-up credited"
        );
    }
    tracing::info!(status = effect.status, "event applied");
    Ok(Some(EventOutcome::Applied))
}

fn created_intent(intent: StripeIntent) -> Result<CreatedIntent, Error> {
    let client_secret = intent
        .client_secret
        .ok_or_else(|| Error::Internal("Stripe returned no client_secret".into()))?;
    Ok(CreatedIntent {
        client_secret,
        intent_id: intent.id,
        amount_cents: intent.amount,
        currency: intent.currency,
        status: intent.status.as_str().to_owned(),
    })
}

fn key_reused(stored_amount_cents: i64) -> Error {
    Error::IdempotencyConflict(format!(
        "idempotency_key was already used for a payment of {stored_amount_cents} cents; use a new key for a new payment"
    ))
}

/// The Stripe `Idempotency-Key` for a user's key: the same for every retry
/// and replica, bounded in length whatever the user id.
fn stripe_idempotency_key(user: &UserId, key: &ClientIdempotencyKey) -> String {
    let mut digest = Sha256::new();
    digest.update(user.as_str().as_bytes());
    digest.update([0]);
    digest.update(key.as_str().as_bytes());
    format!("topup-{}", hex::encode(digest.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripe_keys_are_stable_and_distinct_per_user_and_key() {
        let user = |s: &str| UserId::parse(s).unwrap();
        let key = |s: &str| ClientIdempotencyKey::parse_optional(s).unwrap().unwrap();
        let a = stripe_idempotency_key(&user("u1"), &key("k1"));
        assert_eq!(a, stripe_idempotency_key(&user("u1"), &key("k1")));
        assert_ne!(a, stripe_idempotency_key(&user("u2"), &key("k1")));
        assert_ne!(a, stripe_idempotency_key(&user("u1"), &key("k2")));
        // No ambiguity between ("u1k", "2") and ("u1", "k2").
        assert_ne!(
            stripe_idempotency_key(&user("u1k"), &key("2")),
            stripe_idempotency_key(&user("u1"), &key("k2"))
        );
        assert_eq!(a.len(), "topup-".len() + 64);
    }
}
