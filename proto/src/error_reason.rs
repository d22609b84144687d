//! The `google.rpc.ErrorInfo` every non-OK status carries (domain
//! `payments.v1`, an UPPER_SNAKE reason), so that callers branch on the
//! reason and never on message text. Both sides of the wire use this module.

use std::collections::HashMap;

use prost::Message;
use tonic::{Code, Status};

/// The `domain` of every ErrorInfo this service sends.
pub const DOMAIN: &str = "payments.v1";

/// A request argument is malformed (user id, idempotency key, event JSON).
pub const INVALID_ARGUMENT: &str = "INVALID_ARGUMENT";
/// The amount is not a top-up tier; metadata `allowed_tiers_usd` names them.
pub const NOT_A_TIER: &str = "NOT_A_TIER";
/// The idempotency key was used before with other arguments.
pub const IDEMPOTENCY_KEY_REUSED: &str = "IDEMPOTENCY_KEY_REUSED";
/// The balance is below the amount asked; metadata `balance_cents` says what it is.
pub const INSUFFICIENT_CREDITS: &str = "INSUFFICIENT_CREDITS";
/// What the request names does not exist for this user.
pub const NOT_FOUND: &str = "NOT_FOUND";
/// The user holds as many unpaid intents as allowed.
pub const TOO_MANY_OPEN_INTENTS: &str = "TOO_MANY_OPEN_INTENTS";
/// Every place for an unauthenticated stream (health watch, reflection) is taken.
pub const TOO_MANY_OPEN_STREAMS: &str = "TOO_MANY_OPEN_STREAMS";
/// Too many calls of this kind right now (syncs past their budget of
/// Stripe calls); metadata `retry_after_secs` says when to retry.
pub const RATE_LIMITED: &str = "RATE_LIMITED";
/// Postgres cannot be reached right now; retry with the same key.
pub const DATABASE_UNAVAILABLE: &str = "DATABASE_UNAVAILABLE";
/// Stripe cannot be reached (or answers as if misconfigured) right now;
/// retry with the same key.
pub const STRIPE_UNAVAILABLE: &str = "STRIPE_UNAVAILABLE";
/// Unavailable for another passing reason (a payment kept changing under
/// concurrent events); retry with the same key.
pub const UNAVAILABLE: &str = "UNAVAILABLE";
/// The Stripe event failed for a reason that will not go away by itself
/// and was parked: retried with backoff, listed by `ListParkedEvents`
/// (UNAVAILABLE, so that Stripe delivers it again too).
pub const EVENT_PARKED: &str = "EVENT_PARKED";
/// AdminService is off: no `PAYMENTS_ADMIN_TOKEN` is configured.
pub const ADMIN_DISABLED: &str = "ADMIN_DISABLED";
/// The bearer token (internal, or admin for AdminService) is missing or wrong.
pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
/// A bug or a broken invariant; details are in payments-grpc's log.
pub const INTERNAL: &str = "INTERNAL";
/// No such method (made by tonic).
pub const UNIMPLEMENTED: &str = "UNIMPLEMENTED";
/// The call had no answer within the server's time limit.
pub const DEADLINE_EXCEEDED: &str = "DEADLINE_EXCEEDED";
/// The request message is over the size limit (made by tonic).
pub const MESSAGE_TOO_LARGE: &str = "MESSAGE_TOO_LARGE";
/// The request body is not the method's protobuf message (made by tonic).
pub const MALFORMED_MESSAGE: &str = "MALFORMED_MESSAGE";

/// Every reason above, for tests that must cover each.
pub const ALL: [&str; 19] = [
    INVALID_ARGUMENT,
    NOT_A_TIER,
    IDEMPOTENCY_KEY_REUSED,
    INSUFFICIENT_CREDITS,
    NOT_FOUND,
    TOO_MANY_OPEN_INTENTS,
    TOO_MANY_OPEN_STREAMS,
    RATE_LIMITED,
    DATABASE_UNAVAILABLE,
    STRIPE_UNAVAILABLE,
    UNAVAILABLE,
    EVENT_PARKED,
    ADMIN_DISABLED,
    UNAUTHENTICATED,
    INTERNAL,
    UNIMPLEMENTED,
    DEADLINE_EXCEEDED,
    MESSAGE_TOO_LARGE,
    MALFORMED_MESSAGE,
];

/// `INSUFFICIENT_CREDITS` metadata: the balance, in cents.
pub const BALANCE_CENTS: &str = "balance_cents";

/// `RATE_LIMITED` metadata: seconds to wait before retrying.
pub const RETRY_AFTER_SECS: &str = "retry_after_secs";

/// `NOT_A_TIER` metadata: the tiers in whole dollars, `5, 10, 20, 50`.
pub const ALLOWED_TIERS_USD: &str = "allowed_tiers_usd";

/// `google.rpc.ErrorInfo` (google/rpc/error_details.proto), the one detail
/// this service sends: two messages do not need the whole of tonic-types.
#[derive(Clone, PartialEq, Message)]
struct ErrorInfo {
    #[prost(string, tag = "1")]
    reason: String,
    #[prost(string, tag = "2")]
    domain: String,
    #[prost(map = "string, string", tag = "3")]
    metadata: HashMap<String, String>,
}

/// `google.rpc.Status` (google/rpc/status.proto), carried in the
/// `grpc-status-details-bin` trailer.
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types::Any>,
}

const ERROR_INFO_TYPE_URL: &str = "type.googleapis.com/google.rpc.ErrorInfo";

/// A status carrying its reason (and metadata) as an ErrorInfo detail.
pub fn status(
    code: Code,
    message: impl Into<String>,
    reason: &str,
    metadata: HashMap<String, String>,
) -> Status {
    let message = message.into();
    let info = ErrorInfo {
        reason: reason.to_owned(),
        domain: DOMAIN.to_owned(),
        metadata,
    };
    let details = RpcStatus {
        code: code as i32,
        message: message.clone(),
        details: vec![prost_types::Any {
            type_url: ERROR_INFO_TYPE_URL.to_owned(),
            value: info.encode_to_vec(),
        }],
    };
    Status::with_details(code, message, details.encode_to_vec().into())
}

/// The reason and metadata of a status from this service, if it carries one.
pub fn of(status: &Status) -> Option<(String, HashMap<String, String>)> {
    let details = RpcStatus::decode(status.details()).ok()?;
    details
        .details
        .iter()
        .filter(|any| any.type_url == ERROR_INFO_TYPE_URL)
        .find_map(|any| ErrorInfo::decode(any.value.as_slice()).ok())
        .filter(|info| info.domain == DOMAIN)
        .map(|info| (info.reason, info.metadata))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_survives_the_status() {
        let metadata = HashMap::from([(ALLOWED_TIERS_USD.to_owned(), "5, 10".to_owned())]);
        let sent = status(Code::InvalidArgument, "no", NOT_A_TIER, metadata.clone());
        // As a client decodes it from the grpc-status-details-bin trailer.
        let received =
            Status::with_details(sent.code(), sent.message(), sent.details().to_vec().into());
        assert_eq!(of(&received), Some((NOT_A_TIER.to_owned(), metadata)));
        assert_eq!(of(&Status::invalid_argument("plain")), None);
    }

    /// Our two messages are google.rpc's own on the wire: what tonic-types
    /// (the standard encoding) writes, we read, and the other way round.
    #[test]
    fn the_detail_is_google_rpcs_error_info() {
        use tonic_types::{ErrorDetails, StatusExt};
        let metadata = HashMap::from([(ALLOWED_TIERS_USD.to_owned(), "5".to_owned())]);
        let ours = status(Code::InvalidArgument, "no", NOT_A_TIER, metadata.clone());
        let info = ours.get_details_error_info().expect("an ErrorInfo");
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str(), &info.metadata),
            (NOT_A_TIER, DOMAIN, &metadata)
        );
        let theirs = Status::with_error_details(
            Code::InvalidArgument,
            "no",
            ErrorDetails::with_error_info(NOT_A_TIER, DOMAIN, metadata.clone()),
        );
        assert_eq!(of(&theirs), Some((NOT_A_TIER.to_owned(), metadata)));
    }
}
