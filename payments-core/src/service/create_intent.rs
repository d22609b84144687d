//! What is on sale, and creating a PaymentIntent for a tier, once per
//! idempotency key.

use chrono::Utc;
use secrecy::SecretString;
use sha2::{Digest, Sha256};

use super::{CURRENCY, PaymentsService};
use crate::Error;
use crate::db::intent_owners;
use crate::db::payment_inserts::PaymentToStore;
use crate::db::payments::{self, PaymentRow};
use crate::domain::{Cents, ClientIdempotencyKey, Currency, PaymentStatus, Tiers, UserId};
use crate::stripe::{NewIntent, PaymentGateway, StripeIntent};

/// A PaymentIntent ready for the client to confirm.
#[derive(Debug, Clone)]
pub struct CreatedIntent {
    /// The right to confirm the payment: for the paying client only.
    pub client_secret: SecretString,
    pub intent_id: String,
    pub amount_cents: Cents,
    pub currency: Currency,
    pub status: PaymentStatus,
}

/// What a top-up may buy: the tiers and their currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopUpOptions {
    pub tiers: Tiers,
    pub currency: Currency,
}

impl<G: PaymentGateway> PaymentsService<G> {
    /// What is on sale: the one list `create_payment_intent` checks amounts
    /// against, so a client showing it offers nothing that is refused.
    pub fn top_up_options(&self) -> TopUpOptions {
        TopUpOptions {
            tiers: self.tiers.clone(),
            currency: CURRENCY,
        }
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
            return Err(Error::Internal(
                format!(
                    "Stripe created {} {} for a request of {amount_cents} {CURRENCY}",
                    intent.amount, intent.currency
                )
                .into(),
            ));
        }

        let new = PaymentToStore {
            stripe_intent_id: intent.id.clone(),
            user_id: user.as_str().to_owned(),
            amount_cents,
            currency: CURRENCY,
            status: intent.status,
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
            return Err(Error::Internal(
                format!(
                    "Stripe answered intent {} stored for another user",
                    intent.id
                )
                .into(),
            ));
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
}

fn created_intent(intent: StripeIntent) -> Result<CreatedIntent, Error> {
    let client_secret = intent
        .client_secret
        .ok_or_else(|| Error::Internal("Stripe returned no client_secret".into()))?;
    let currency = Currency::from_code(&intent.currency).ok_or_else(|| {
        Error::Internal(
            format!(
                "Stripe answered intent {} in {}",
                intent.id, intent.currency
            )
            .into(),
        )
    })?;
    Ok(CreatedIntent {
        client_secret,
        intent_id: intent.id,
        amount_cents: Cents::new(intent.amount),
        currency,
        status: intent.status,
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
