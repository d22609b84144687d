//! Refunds and disputes of our payments reaching the balance (DESIGN.md
//! stage two, "Money rules"). An event only says where to look: the refunds
//! of its PaymentIntent, or its dispute, are re-fetched from Stripe and
//! booked as Stripe has them, each once per refund or dispute id, on
//! PaymentIntents this service created only. A clawback is booked in full,
//! even below zero (debt); a refund that fails or is canceled, and a dispute
//! that is won, are given back once.

use chrono::{DateTime, Utc};

use super::{CURRENCY, EventOutcome, PaymentsService};
use crate::Error;
use crate::db::clawbacks::{self, Clawback, ClawbackOutcome};
use crate::db::intent_owners;
use crate::db::stripe_events::{self, AppliedEvent, IgnoredEvent};
use crate::domain::LedgerKind;
use crate::stripe::{
    EventKind, GatewayError, PaymentGateway, StripeDispute, StripeEvent, StripeRefund,
    is_intent_id, is_object_id,
};

impl<G: PaymentGateway> PaymentsService<G> {
    /// Applies a refund or dispute event (`EventKind::Refund`,
    /// `EventKind::Dispute`); `ignored` records why when it concerns no
    /// payment of ours.
    pub(super) async fn apply_clawback_event<'a>(
        &self,
        event: &'a StripeEvent,
        payload: &'a str,
        received_at: DateTime<Utc>,
        ignored: &(impl Fn(&'static str) -> IgnoredEvent<'a> + Sync),
    ) -> Result<EventOutcome, Error> {
        // Where to look. A dispute is re-fetched first: its intent is the
        // one Stripe's copy names, not the event's.
        let (intent_id, dispute) = match event.kind() {
            EventKind::Dispute => {
                let Some(dispute_id) = event.object_id().filter(|id| is_object_id(id)) else {
                    return self.record_ignored(&ignored("not a dispute id")).await;
                };
                match self.gateway.retrieve_dispute(dispute_id).await {
                    Ok(dispute) => (dispute.intent_id.clone(), Some(dispute)),
                    Err(GatewayError::NotFound) => {
                        return self
                            .record_ignored(&ignored("Stripe has no such dispute"))
                            .await;
                    }
                    Err(err) => return Err(err.into()),
                }
            }
            _ => (event.named_intent_id().map(str::to_owned), None),
        };
        let Some(intent_id) = intent_id.filter(|id| is_intent_id(id)) else {
            return self
                .record_ignored(&ignored("names no PaymentIntent"))
                .await;
        };
        tracing::Span::current().record("intent_id", intent_id.as_str());
        let mut conn = self.connection().await?;
        let Some(owner) = intent_owners::find(&mut conn, &intent_id).await? else {
            return self
                .record_ignored(&ignored("PaymentIntent not created by this service"))
                .await;
        };
        tracing::Span::current().record("user_id", owner.as_str());
        if stripe_events::is_applied(&mut conn, &owner, &event.id).await? {
            tracing::info!("duplicate event");
            return Ok(EventOutcome::Duplicate);
        }
        drop(conn);

        let clawbacks = match dispute {
            Some(dispute) => dispute_clawbacks(&dispute, &intent_id),
            None => {
                let refunds = match self.gateway.list_refunds(&intent_id).await {
                    Ok(refunds) => refunds,
                    Err(GatewayError::NotFound) => Vec::new(),
                    Err(err) => return Err(err.into()),
                };
                refund_clawbacks(&refunds, &intent_id)
            }
        };

        let moved = self
            .book_clawbacks(&owner, &intent_id, &clawbacks, Some(&event.id))
            .await?;
        let mut conn = self.connection().await?;
        let recorded = stripe_events::record_applied(
            &mut conn,
            &AppliedEvent {
                user_id: &owner,
                event_id: &event.id,
                event_type: &event.event_type,
                stripe_intent_id: &intent_id,
                payload,
                received_at,
                processed_at: Utc::now(),
            },
        )
        .await?;
        Ok(if recorded || moved {
            tracing::info!(clawbacks = clawbacks.len(), "event applied");
            EventOutcome::Applied
        } else {
            EventOutcome::Duplicate
        })
    }
}

impl<G: PaymentGateway> PaymentsService<G> {
    /// Books each clawback of the owner's payment for `intent_id`, once per
    /// kind and Stripe object; true when one was booked now. Fails, having
    /// booked those before it, when the payment's credit has not landed yet.
    pub(super) async fn book_clawbacks(
        &self,
        owner: &str,
        intent_id: &str,
        clawbacks: &[Clawback],
        event_id: Option<&str>,
    ) -> Result<bool, Error> {
        let mut conn = self.connection().await?;
        let mut moved = false;
        for clawback in clawbacks {
            let outcome =
                clawbacks::apply(&mut conn, owner, intent_id, clawback, event_id, Utc::now()).await;
            match outcome {
                Ok(ClawbackOutcome::Made {
                    entry_id,
                    balance_cents,
                }) => {
                    moved = true;
                    self.metrics.booked(clawback.kind, clawback.signed_cents());
                    tracing::info!(
                        kind = clawback.kind.as_str(),
                        object_id = clawback.object_id,
                        amount_cents = clawback.amount_cents,
                        entry_id,
                        balance_cents,
                        "clawback booked"
                    );
                }
                Ok(ClawbackOutcome::Already | ClawbackOutcome::NothingToReverse) => {}
                Ok(ClawbackOutcome::NotCredited) | Err(_) => {
                    if moved {
                        self.announcer.changed(owner);
                    }
                    // The payment's credit has not landed yet (its webhook
                    // comes later, or was lost): the caller is told to come
                    // back, and an event is not recorded, so Stripe
                    // delivers it again; reconciliation credits the payment
                    // meanwhile.
                    return Err(match outcome {
                        Err(err) => err.into(),
                        _ => Error::Unavailable(
                            format!(
                                "{intent_id} is refunded or disputed at Stripe but not credited here yet; retry once it is"
                            )
                            .into(),
                        ),
                    });
                }
            }
        }
        if moved {
            self.announcer.changed(owner);
        }
        Ok(moved)
    }
}

/// What the intent's refunds, as Stripe has them, ask of the ledger: a
/// clawback for each refund whose money is leaving, a reversal for each
/// that failed or was canceled (a no-op when nothing was clawed back).
/// Refunds of another intent or currency are left out, loudly.
pub(super) fn refund_clawbacks(refunds: &[StripeRefund], intent_id: &str) -> Vec<Clawback> {
    let mut clawbacks = Vec::new();
    for refund in refunds {
        if refund.intent_id.as_deref() != Some(intent_id)
            || refund.currency != CURRENCY.code()
            || refund.amount <= 0
            || !is_object_id(&refund.id)
        {
            tracing::error!(refund_id = %refund.id, intent = ?refund.intent_id, currency = %refund.currency, amount = refund.amount, "refund not booked: not of this intent, not in our currency, or no amount");
            continue;
        }
        let kind = if refund.takes_credits() {
            LedgerKind::Refund
        } else if refund.gives_credits_back() {
            LedgerKind::RefundReversal
        } else {
            continue;
        };
        clawbacks.push(Clawback {
            kind,
            object_id: refund.id.clone(),
            amount_cents: refund.amount,
        });
    }
    clawbacks
}

/// What a dispute asks of the ledger: its amount clawed back once funds are
/// withdrawn, and given back when it is won (both, in that order, for a
/// dispute first seen won).
pub(super) fn dispute_clawbacks(dispute: &StripeDispute, intent_id: &str) -> Vec<Clawback> {
    if dispute.intent_id.as_deref() != Some(intent_id)
        || dispute.currency != CURRENCY.code()
        || dispute.amount <= 0
    {
        tracing::error!(dispute_id = %dispute.id, currency = %dispute.currency, amount = dispute.amount, "dispute not booked: not in our currency, or no amount");
        return Vec::new();
    }
    let mut clawbacks = Vec::new();
    if dispute.takes_credits() {
        clawbacks.push(Clawback {
            kind: LedgerKind::Dispute,
            object_id: dispute.id.clone(),
            amount_cents: dispute.amount,
        });
        if dispute.gives_credits_back() {
            clawbacks.push(Clawback {
                kind: LedgerKind::DisputeReversal,
                object_id: dispute.id.clone(),
                amount_cents: dispute.amount,
            });
        }
    }
    clawbacks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refund(id: &str, status: &str, amount: i64) -> StripeRefund {
        StripeRefund {
            id: id.into(),
            amount,
            currency: "usd".into(),
            status: status.into(),
            intent_id: Some("pi_1".into()),
        }
    }

    #[test]
    fn refunds_leaving_are_clawed_back_and_failed_ones_given_back() {
        let mut other_intent = refund("re_5", "succeeded", 100);
        other_intent.intent_id = Some("pi_2".into());
        let mut other_currency = refund("re_6", "succeeded", 100);
        other_currency.currency = "eur".into();
        let refunds = [
            refund("re_1", "succeeded", 500),
            refund("re_2", "pending", 200),
            refund("re_3", "failed", 300),
            refund("re_4", "requires_action", 100),
            refund("re_7", "canceled", 50),
            other_intent,
            other_currency,
            refund("re_8", "succeeded", 0),
        ];
        let booked: Vec<_> = refund_clawbacks(&refunds, "pi_1")
            .into_iter()
            .map(|c| (c.kind, c.object_id, c.amount_cents))
            .collect();
        assert_eq!(
            booked,
            [
                (LedgerKind::Refund, "re_1".to_owned(), 500),
                (LedgerKind::Refund, "re_2".to_owned(), 200),
                (LedgerKind::RefundReversal, "re_3".to_owned(), 300),
                (LedgerKind::RefundReversal, "re_7".to_owned(), 50),
            ]
        );
    }

    #[test]
    fn a_dispute_is_clawed_back_unless_an_inquiry_and_given_back_when_won() {
        let dispute = |status: &str| StripeDispute {
            id: "du_1".into(),
            amount: 1000,
            currency: "usd".into(),
            status: status.into(),
            intent_id: Some("pi_1".into()),
        };
        let kinds = |status: &str| -> Vec<LedgerKind> {
            dispute_clawbacks(&dispute(status), "pi_1")
                .into_iter()
                .map(|c| c.kind)
                .collect()
        };
        for taken in ["needs_response", "under_review", "lost"] {
            assert_eq!(kinds(taken), [LedgerKind::Dispute], "{taken}");
        }
        assert_eq!(
            kinds("won"),
            [LedgerKind::Dispute, LedgerKind::DisputeReversal]
        );
        for untouched in [
            "warning_needs_response",
            "warning_under_review",
            "warning_closed",
            "prevented",
        ] {
            assert!(kinds(untouched).is_empty(), "{untouched}");
        }
        assert!(dispute_clawbacks(&dispute("lost"), "pi_2").is_empty());
    }
}
