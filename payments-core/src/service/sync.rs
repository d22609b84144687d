//! `SyncPaymentIntent`: a payment brought up to date with Stripe now, as
//! the webhook would bring it: the intent re-fetched and applied (the
//! credit, once), then its refunds and disputes. The SPA calls it right
//! after `stripe.confirmPayment`, so the balance is credited before the
//! webhook arrives; the webhook then finds nothing left to do.
//! Reconciliation uses the same path for payments whose webhooks are late.

use chrono::Utc;

use super::apply_event::Cause;
use super::clawbacks::{dispute_clawbacks, refund_clawbacks};
use super::{Balance, PaymentsService};
use crate::Error;
use crate::db::ledger;
use crate::db::payments::{self, PaymentRow};
use crate::domain::{PaymentStatus, UserId};
use crate::stripe::{GatewayError, PaymentGateway, StripeIntent, is_intent_id};

/// A payment as synced, and the balance right after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synced {
    pub payment: PaymentRow,
    pub balance: Balance,
}

/// What a sync of one payment did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct SyncOutcome {
    /// The payment's top-up was booked by this sync.
    pub credited: bool,
}

impl<G: PaymentGateway> PaymentsService<G> {
    /// Re-fetches the user's intent from Stripe and applies it now, unless
    /// the database can answer ([`super::sync_budget`]). NOT_FOUND for an
    /// intent that is not this user's, or not ours at all; `RateLimited`
    /// past the budget of Stripe calls for syncs.
    #[tracing::instrument(skip_all, fields(user_id = %user_id, intent_id = %intent_id))]
    pub async fn sync_payment_intent(
        &self,
        user_id: &str,
        intent_id: &str,
    ) -> Result<Synced, Error> {
        let user = UserId::parse(user_id)?;
        // The id is not echoed: it is the caller's text, whatever it holds.
        let not_found = || Error::NotFound("this user has no payment with that id".into());
        if !is_intent_id(intent_id) {
            return Err(not_found());
        }
        let mut conn = self.connection().await?;
        let payment = payments::find(&mut conn, user.as_str(), intent_id)
            .await?
            .ok_or_else(not_found)?;
        let credited = payment.status == PaymentStatus::Succeeded
            && ledger::top_up_booked(&mut conn, user.as_str(), intent_id).await?;
        drop(conn);
        if self.sync_budget.answer_from_database(&payment, credited) {
            let balance = self.get_balance(user.as_str()).await?;
            return Ok(Synced { payment, balance });
        }
        self.sync_budget.take()?;
        self.sync_payment(&user, payment).await?;
        self.sync_budget.note_synced(intent_id);
        let mut conn = self.connection().await?;
        let payment = payments::find(&mut conn, user.as_str(), intent_id)
            .await?
            .ok_or_else(|| Error::Internal("payment row gone after a sync".into()))?;
        drop(conn);
        let balance = self.get_balance(user.as_str()).await?;
        Ok(Synced { payment, balance })
    }

    /// Brings one of the owner's payments up to date with Stripe: the
    /// intent's state, then (once it is paid) its refunds and disputes.
    pub(super) async fn sync_payment(
        &self,
        owner: &UserId,
        payment: PaymentRow,
    ) -> Result<SyncOutcome, Error> {
        let intent = self.fetch_our_intent(&payment.stripe_intent_id).await?;
        self.apply_fetched(owner, payment, &intent).await
    }

    /// Applies an intent as just fetched from Stripe to the owner's payment.
    pub(super) async fn apply_fetched(
        &self,
        owner: &UserId,
        payment: PaymentRow,
        intent: &StripeIntent,
    ) -> Result<SyncOutcome, Error> {
        self.check_against_our_row(&payment, intent).await?;
        let cause = Cause {
            event: None,
            received_at: Utc::now(),
        };
        let applied = self
            .apply_intent(owner, intent, Some(payment), &cause)
            .await?;
        if intent.status == PaymentStatus::Succeeded {
            let mut clawbacks =
                refund_clawbacks(&self.gateway.list_refunds(&intent.id).await?, &intent.id);
            for dispute in self.gateway.list_disputes(&intent.id).await? {
                clawbacks.extend(dispute_clawbacks(&dispute, &intent.id));
            }
            self.book_clawbacks(owner.as_str(), &intent.id, &clawbacks, None)
                .await?;
        }
        Ok(SyncOutcome {
            credited: applied.credited_cents.is_some(),
        })
    }

    /// The intent as Stripe has it. It is ours (we hold its row): Stripe not
    /// knowing it means the wrong Stripe account, which retrying may fix.
    pub(super) async fn fetch_our_intent(&self, intent_id: &str) -> Result<StripeIntent, Error> {
        match self.gateway.retrieve_intent(intent_id).await {
            Ok(intent) => Ok(intent),
            Err(GatewayError::NotFound) => {
                tracing::error!(
                    intent_id,
                    "Stripe has no PaymentIntent this service created: is STRIPE_SECRET_KEY the right account's?"
                );
                Err(Error::Unavailable(crate::error::Cause {
                    message: "Stripe answered 404 for a PaymentIntent this service created; retry once the Stripe key is right".into(),
                    source: Some(std::sync::Arc::new(GatewayError::NotFound)),
                }))
            }
            Err(err) => Err(err.into()),
        }
    }
}
