//! Core results and errors ⇄ proto messages and gRPC statuses.

use std::collections::HashMap;

use payments_core::db::DbError;
use payments_core::db::payments::PaymentRow;
use payments_core::stripe::GatewayError;
use payments_core::{
    Balance, CreatedIntent, Error, EventOutcome, LedgerEntry, Page, Spent, TopUpOptions,
};
use secrecy::ExposeSecret;
use tonic::{Code, Status};

use crate::proto::{self, apply_stripe_event_response::Outcome, error_reason};

// Free functions: the orphan rule forbids `From` between two foreign crates' types.

pub fn created_intent(intent: CreatedIntent) -> proto::CreatePaymentIntentResponse {
    proto::CreatePaymentIntentResponse {
        client_secret: intent.client_secret.expose_secret().to_owned(),
        intent_id: intent.intent_id,
        amount: intent.amount_cents.get(),
        currency: intent.currency.code().to_owned(),
        status: intent.status.as_str().to_owned(),
    }
}

pub fn top_up_options(options: TopUpOptions) -> proto::GetTopUpOptionsResponse {
    let cents = |tier: payments_core::domain::Tier| tier.cents().get();
    proto::GetTopUpOptionsResponse {
        tiers_cents: options.tiers.iter().map(cents).collect(),
        currency: options.currency.code().to_owned(),
        minimum_cents: cents(options.tiers.smallest()),
        maximum_cents: cents(options.tiers.largest()),
    }
}

fn timestamp(at: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

pub fn ledger_page(page: Page<LedgerEntry>) -> proto::ListLedgerEntriesResponse {
    proto::ListLedgerEntriesResponse {
        entries: page
            .items
            .into_iter()
            .map(|entry| proto::LedgerEntry {
                entry_id: entry.entry_id.to_string(),
                kind: entry.kind.as_str().to_owned(),
                amount_cents: entry.amount_cents,
                balance_after_cents: entry.balance_after_cents,
                currency: entry.currency.code().to_owned(),
                reference: entry.reference,
                reason: entry.reason.unwrap_or_default(),
                created_at: Some(timestamp(entry.created_at)),
            })
            .collect(),
        next_page_token: page.next_cursor.unwrap_or_default(),
    }
}

pub fn payments_page(page: Page<PaymentRow>) -> proto::ListPaymentsResponse {
    proto::ListPaymentsResponse {
        payments: page.items.into_iter().map(payment).collect(),
        next_page_token: page.next_cursor.unwrap_or_default(),
    }
}

pub fn balance(balance: Balance) -> proto::GetBalanceResponse {
    proto::GetBalanceResponse {
        user_id: balance.user_id,
        balance_cents: balance.balance_cents.get(),
        currency: balance.currency.code().to_owned(),
        updated_at: balance.updated_at.map(timestamp),
    }
}

pub fn spent(spent: Spent) -> proto::SpendCreditsResponse {
    proto::SpendCreditsResponse {
        spend_id: spent.spend_id.to_string(),
        balance_cents: spent.balance_cents.get(),
    }
}

pub fn event_outcome(outcome: EventOutcome) -> proto::ApplyStripeEventResponse {
    let outcome = match outcome {
        EventOutcome::Applied => Outcome::Applied,
        EventOutcome::Duplicate => Outcome::Duplicate,
        EventOutcome::Ignored => Outcome::Ignored,
    };
    proto::ApplyStripeEventResponse {
        outcome: outcome.into(),
    }
}

/// The one place core errors become gRPC statuses, each with its reason.
pub fn to_status(err: Error) -> Status {
    let plain =
        |code, message: String, reason| error_reason::status(code, message, reason, HashMap::new());
    match err {
        Error::InvalidArgument(message) => plain(
            Code::InvalidArgument,
            message,
            error_reason::INVALID_ARGUMENT,
        ),
        Error::NotATier(not_a_tier) => error_reason::status(
            Code::InvalidArgument,
            not_a_tier.to_string(),
            error_reason::NOT_A_TIER,
            HashMap::from([(
                error_reason::ALLOWED_TIERS_USD.to_owned(),
                not_a_tier.allowed.usd(),
            )]),
        ),
        Error::IdempotencyConflict(message) => plain(
            Code::FailedPrecondition,
            message,
            error_reason::IDEMPOTENCY_KEY_REUSED,
        ),
        Error::InsufficientCredits {
            balance_cents,
            asked_cents,
        } => error_reason::status(
            Code::FailedPrecondition,
            Error::InsufficientCredits {
                balance_cents,
                asked_cents,
            }
            .to_string(),
            error_reason::INSUFFICIENT_CREDITS,
            HashMap::from([(
                error_reason::BALANCE_CENTS.to_owned(),
                balance_cents.to_string(),
            )]),
        ),
        Error::NotFound(message) => plain(Code::NotFound, message, error_reason::NOT_FOUND),
        Error::TooManyWatchers(message) => plain(
            Code::ResourceExhausted,
            message,
            error_reason::TOO_MANY_OPEN_STREAMS,
        ),
        Error::RateLimited {
            message,
            retry_after_secs,
        } => error_reason::status(
            Code::ResourceExhausted,
            message,
            error_reason::RATE_LIMITED,
            HashMap::from([(
                error_reason::RETRY_AFTER_SECS.to_owned(),
                retry_after_secs.to_string(),
            )]),
        ),
        Error::TooManyOpenIntents(message) => plain(
            Code::ResourceExhausted,
            message,
            error_reason::TOO_MANY_OPEN_INTENTS,
        ),
        Error::Unavailable(cause) => {
            tracing::warn!(error = %cause.chain(), "dependency unavailable");
            let reason = if cause.source_is::<DbError>() {
                error_reason::DATABASE_UNAVAILABLE
            } else if cause.source_is::<GatewayError>() {
                error_reason::STRIPE_UNAVAILABLE
            } else {
                error_reason::UNAVAILABLE
            };
            plain(Code::Unavailable, cause.message, reason)
        }
        // Logged where it was parked.
        Error::EventParked(cause) => plain(
            Code::Unavailable,
            format!(
                "the event could not be applied and was parked (see ListParkedEvents): {}",
                cause.message
            ),
            error_reason::EVENT_PARKED,
        ),
        Error::Internal(cause) => {
            tracing::error!(error = %cause.chain(), "internal error");
            plain(
                Code::Internal,
                "internal error; see the payments-grpc log".into(),
                error_reason::INTERNAL,
            )
        }
    }
}

pub fn payment(payment: PaymentRow) -> proto::Payment {
    proto::Payment {
        intent_id: payment.stripe_intent_id,
        amount_cents: payment.amount_cents,
        amount_received_cents: payment.amount_received_cents,
        amount_refunded_cents: payment.amount_refunded_cents,
        amount_disputed_cents: payment.amount_disputed_cents,
        currency: payment.currency.code().to_owned(),
        status: payment.status.as_str().to_owned(),
        failure_code: payment.failure_code.unwrap_or_default(),
        failure_message: payment.failure_message.unwrap_or_default(),
        created_at: Some(timestamp(payment.created_at)),
        updated_at: Some(timestamp(payment.updated_at)),
    }
}

pub fn synced(synced: payments_core::Synced) -> proto::SyncPaymentIntentResponse {
    proto::SyncPaymentIntentResponse {
        balance_cents: synced.balance.balance_cents.get(),
        payment: Some(payment(synced.payment)),
    }
}

pub fn reconciled(done: payments_core::Reconciled) -> proto::RunReconciliationResponse {
    proto::RunReconciliationResponse {
        intents_checked: done.intents_checked,
        credited: done.credited,
        canceled: done.canceled,
        events_backfilled: done.events_backfilled,
        events_parked: done.events_parked,
        parked_events_applied: done.parked_events_applied,
    }
}

pub fn parked_page(
    page: Page<payments_core::db::parked_events::ParkedEvent>,
) -> proto::ListParkedEventsResponse {
    proto::ListParkedEventsResponse {
        events: page
            .items
            .into_iter()
            .map(|parked| proto::ParkedEvent {
                event_id: parked.event_id,
                event_type: parked.event_type,
                object_id: parked.object_id.unwrap_or_default(),
                attempts: parked.attempts,
                last_error: parked.last_error,
                first_failed_at: Some(timestamp(parked.first_failed_at)),
                last_failed_at: Some(timestamp(parked.last_failed_at)),
                next_attempt_at: Some(timestamp(parked.next_attempt_at)),
            })
            .collect(),
        next_page_token: page.next_cursor.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_core_error_has_its_status() {
        let cases = [
            (
                Error::InvalidArgument("bad".into()),
                Code::InvalidArgument,
                "bad",
            ),
            (
                Error::IdempotencyConflict("reused".into()),
                Code::FailedPrecondition,
                "reused",
            ),
            (
                Error::TooManyOpenIntents("open".into()),
                Code::ResourceExhausted,
                "open",
            ),
            (
                Error::Unavailable("db down".into()),
                Code::Unavailable,
                "db down",
            ),
        ];
        for (err, code, message) in cases {
            let status = to_status(err);
            assert_eq!(status.code(), code);
            assert_eq!(status.message(), message);
            assert!(
                error_reason::of(&status).is_some(),
                "{code:?} has no reason"
            );
        }
    }

    #[test]
    fn a_parked_event_is_unavailable_with_its_reason_and_why() {
        let status = to_status(Error::EventParked(
            "Stripe's answer could not be read (retrieve_dispute): missing field".into(),
        ));
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(
            error_reason::of(&status).unwrap().0,
            error_reason::EVENT_PARKED
        );
        assert!(
            status.message().contains("ListParkedEvents")
                && status.message().contains("retrieve_dispute"),
            "{}",
            status.message()
        );
    }

    #[test]
    fn a_non_tier_names_the_tiers_in_dollars() {
        let tiers = payments_core::domain::Tiers::default();
        let status = to_status(tiers.tier_for(700).unwrap_err().into());
        assert_eq!(status.code(), Code::InvalidArgument);
        let (reason, metadata) = error_reason::of(&status).unwrap();
        assert_eq!(reason, error_reason::NOT_A_TIER);
        assert_eq!(metadata[error_reason::ALLOWED_TIERS_USD], "5, 10, 20, 50");
    }

    #[test]
    fn a_sync_past_its_budget_says_when_to_retry() {
        let status = to_status(Error::RateLimited {
            message: "too many syncs reach Stripe right now".into(),
            retry_after_secs: 2,
        });
        assert_eq!(status.code(), Code::ResourceExhausted);
        let (reason, metadata) = error_reason::of(&status).unwrap();
        assert_eq!(reason, error_reason::RATE_LIMITED);
        assert_eq!(metadata[error_reason::RETRY_AFTER_SECS], "2");
    }

    #[test]
    fn internal_errors_do_not_leak_details() {
        let status = to_status(Error::Internal(
            "relation \"payments\" does not exist".into(),
        ));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("relation"));
    }

    #[test]
    fn balances_carry_their_timestamp() {
        let at = chrono::DateTime::from_timestamp(1_764_000_000, 5).unwrap();
        let balance = Balance {
            user_id: "u".into(),
            balance_cents: payments_core::domain::Cents::new(1500),
            currency: payments_core::domain::Currency::Usd,
            updated_at: Some(at),
        };
        let response = super::balance(balance);
        assert_eq!(
            response.updated_at,
            Some(prost_types::Timestamp {
                seconds: 1_764_000_000,
                nanos: 5
            })
        );
    }
}
