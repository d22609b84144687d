//! Operators' adjustments: a signed correction of a balance, with its
//! reason, its key and who made it.

use chrono::Utc;

use super::{CURRENCY, PaymentsService};
use crate::Error;
use crate::db::adjustments::{self, Adjustment, AdjustmentOutcome};
use crate::domain::{Actor, Cents, ClientIdempotencyKey, LedgerKind, Reason, UserId};
use crate::stripe::PaymentGateway;

/// An adjustment, as first made: a replay of its key answers the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Adjusted {
    /// Its ledger entry.
    pub entry_id: i64,
    /// The balance right after it.
    pub balance_cents: Cents,
}

impl<G: PaymentGateway> PaymentsService<G> {
    /// Adds `amount_cents` (signed, not 0) to the user's balance, once per
    /// key; a debit never takes the balance below zero (refused whole). The
    /// same key and amount again answer the first answer; another amount is
    /// refused.
    #[tracing::instrument(skip_all, fields(user_id = %user_id, amount_cents, actor = %actor))]
    pub async fn adjust_balance(
        &self,
        user_id: &str,
        amount_cents: i64,
        reason: &str,
        idempotency_key: &str,
        actor: &str,
    ) -> Result<Adjusted, Error> {
        let user = UserId::parse(user_id)?;
        // Signed: its size is checked as any move of credits.
        if Cents::to_move(amount_cents.checked_abs().unwrap_or(i64::MAX)).is_err() {
            return Err(Error::InvalidArgument(format!(
                "amount_cents must be non-zero and at most {} either way, got {amount_cents}",
                Cents::MAX_MOVE.get()
            )));
        }
        let reason = Reason::parse_required(reason)?;
        let key = ClientIdempotencyKey::parse_required(idempotency_key)?;
        let actor = Actor::parse(actor)?;
        let adjustment = Adjustment {
            user_id: user.as_str(),
            amount_cents,
            key: key.as_str(),
            reason: reason.as_deref().unwrap_or_default(),
            actor: actor.as_str(),
            currency: CURRENCY,
            now: Utc::now(),
        };
        let mut conn = self.connection().await?;
        // It may wait on the balance's row lock: cancelled with its caller.
        let outcome = conn
            .cancelling(async |conn| adjustments::adjust(conn, &adjustment).await)
            .await?;
        match outcome {
            AdjustmentOutcome::Made {
                entry_id,
                balance_cents,
            } => {
                tracing::warn!(
                    entry_id,
                    balance_cents,
                    reason = adjustment.reason,
                    "balance adjusted"
                );
                self.announcer.changed(user.as_str());
                self.metrics.booked(LedgerKind::Adjustment, amount_cents);
                Ok(Adjusted {
                    entry_id,
                    balance_cents: Cents::new(balance_cents),
                })
            }
            AdjustmentOutcome::Replayed {
                entry_id,
                amount_cents: first,
                balance_cents,
            } if first == amount_cents => Ok(Adjusted {
                entry_id,
                balance_cents: Cents::new(balance_cents),
            }),
            AdjustmentOutcome::Replayed {
                amount_cents: first,
                ..
            } => Err(Error::IdempotencyConflict(format!(
                "idempotency_key was used for an adjustment of {first} cents, not {amount_cents}"
            ))),
            AdjustmentOutcome::Insufficient { balance_cents } => Err(Error::InsufficientCredits {
                balance_cents,
                asked_cents: -amount_cents,
            }),
        }
    }
}
