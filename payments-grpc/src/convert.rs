//! Core results and errors ⇄ proto messages and gRPC statuses.

use payments_core::{Balance, CreatedIntent, Error, EventOutcome};
use tonic::Status;

use crate::proto::{self, apply_stripe_event_response::Outcome};

// Free functions: the orphan rule forbids `From` between two foreign crates' types.

pub fn created_intent(intent: CreatedIntent) -> proto::CreatePaymentIntentResponse {
    proto::CreatePaymentIntentResponse {
        client_secret: intent.client_secret,
        intent_id: intent.intent_id,
        amount: intent.amount_cents,
        currency: intent.currency,
        status: intent.status,
    }
}

pub fn balance(balance: Balance) -> proto::GetBalanceResponse {
    proto::GetBalanceResponse {
        user_id: balance.user_id,
        balance_cents: balance.balance_cents,
        currency: balance.currency,
        updated_at: balance.updated_at.map(|at| prost_types::Timestamp {
            seconds: at.timestamp(),
            nanos: at.timestamp_subsec_nanos() as i32,
        }),
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

/// The one place core errors become gRPC statuses.
pub fn to_status(err: Error) -> Status {
    match err {
        Error::InvalidArgument(message) => Status::invalid_argument(message),
        Error::IdempotencyConflict(message) => Status::failed_precondition(message),
        Error::TooManyOpenIntents(message) => Status::resource_exhausted(message),
        Error::Unavailable(message) => {
            tracing::warn!(error = %message, "dependency unavailable");
            Status::unavailable(message)
        }
        Error::Internal(message) => {
            tracing::error!(error = %message, "internal error");
            Status::internal("internal error; see the payments-grpc log")
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

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
        }
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
            balance_cents: 1500,
            currency: "usd".into(),
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
