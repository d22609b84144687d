//! Spending credits, and giving a spend back: what backend services do with
//! a balance. Each is one call of a SQL function (`db::spends`) on one
//! user's rows; spends that arrive together share one transaction
//! (`db::spend_batches`), each still whole.

use chrono::Utc;

use super::PaymentsService;
use crate::Error;
use crate::db::spend_batches::SpendToMake;
use crate::db::spends::{self, ReversalOutcome, SpendOutcome};
use crate::domain::{Cents, ClientIdempotencyKey, LedgerKind, Reason, UserId};
use crate::stripe::PaymentGateway;

/// A spend, as first made: a replay of its key answers the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spent {
    /// Its ledger entry.
    pub spend_id: i64,
    /// The balance right after it.
    pub balance_cents: Cents,
}

impl<G: PaymentGateway> PaymentsService<G> {
    /// Takes `amount_cents` from the user's balance, once per key: the same
    /// key and amount again answer the first answer and write nothing; the
    /// same key with another amount is refused. Never overdraws, however many
    /// spends of one user run at once: a short balance refuses the spend whole.
    #[tracing::instrument(skip_all, fields(user_id = %user_id, amount_cents))]
    pub async fn spend_credits(
        &self,
        user_id: &str,
        amount_cents: i64,
        idempotency_key: &str,
        reason: &str,
    ) -> Result<Spent, Error> {
        let user = UserId::parse(user_id)?;
        let amount = Cents::to_move(amount_cents)?;
        let key = ClientIdempotencyKey::parse_required(idempotency_key)?;
        let reason = Reason::parse_optional(reason)?;
        let outcome = match &self.spend_batches {
            Some(batches) => {
                let spend = SpendToMake {
                    user_id: user.as_str().to_owned(),
                    amount_cents: amount.get(),
                    key: key.as_str().to_owned(),
                    reason: reason.as_deref().map(str::to_owned),
                };
                batches.spend(spend).await?
            }
            None => {
                let mut conn = self.connection().await?;
                // It may wait on the balance's row lock: cancelled with its caller.
                conn.cancelling(async |conn| {
                    let now = Utc::now();
                    let (user, key) = (user.as_str(), key.as_str());
                    spends::spend(conn, user, amount.get(), key, reason.as_deref(), now).await
                })
                .await?
            }
        };
        match outcome {
            SpendOutcome::Made {
                entry_id,
                balance_cents,
            } => {
                tracing::info!(entry_id, balance_cents, "credits spent");
                self.metrics.booked(LedgerKind::Spend, -amount.get());
                self.announcer.changed(user.as_str());
                Ok(Spent {
                    spend_id: entry_id,
                    balance_cents: Cents::new(balance_cents),
                })
            }
            SpendOutcome::Replayed {
                entry_id,
                amount_cents: first,
                balance_cents,
            } if first == amount.get() => {
                tracing::info!(entry_id, "spend replayed");
                Ok(Spent {
                    spend_id: entry_id,
                    balance_cents: Cents::new(balance_cents),
                })
            }
            SpendOutcome::Replayed {
                amount_cents: first,
                ..
            } => Err(Error::IdempotencyConflict(format!(
                "idempotency_key was used for a spend of {first} cents, not {}",
                amount.get()
            ))),
            SpendOutcome::Insufficient { balance_cents } => {
                tracing::info!(balance_cents, "spend refused: insufficient credits");
                Err(Error::InsufficientCredits {
                    balance_cents,
                    asked_cents: amount.get(),
                })
            }
        }
    }

    /// Gives the user's spend of `spend_key` back whole, once; a second call
    /// answers the balance as it is and writes nothing. Answers the balance.
    #[tracing::instrument(skip_all, fields(user_id = %user_id))]
    pub async fn reverse_spend(
        &self,
        user_id: &str,
        spend_key: &str,
        reason: &str,
    ) -> Result<Cents, Error> {
        let user = UserId::parse(user_id)?;
        let key = ClientIdempotencyKey::parse_required(spend_key)?;
        let reason = Reason::parse_optional(reason)?;
        let mut conn = self.connection().await?;
        let outcome = conn
            .cancelling(async |conn| {
                let now = Utc::now();
                spends::reverse(conn, user.as_str(), key.as_str(), reason.as_deref(), now).await
            })
            .await?;
        match outcome {
            ReversalOutcome::Reversed {
                entry_id,
                amount_cents,
                balance_cents,
            } => {
                tracing::info!(entry_id, balance_cents, "spend reversed");
                self.metrics.booked(LedgerKind::SpendReversal, amount_cents);
                self.announcer.changed(user.as_str());
                Ok(Cents::new(balance_cents))
            }
            ReversalOutcome::AlreadyReversed { balance_cents } => {
                tracing::info!("spend already reversed");
                Ok(Cents::new(balance_cents))
            }
            ReversalOutcome::NotFound => Err(Error::NotFound(
                "this user has no spend with that idempotency key".into(),
            )),
        }
    }
}
