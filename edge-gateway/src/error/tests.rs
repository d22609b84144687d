use std::collections::HashMap;

use super::*;

/// Statuses made by tonic or the transport carry no reason.
#[test]
fn statuses_without_a_reason_map_by_code() {
    let cases = [
        (Code::Unavailable, StatusCode::SERVICE_UNAVAILABLE),
        (Code::DeadlineExceeded, StatusCode::SERVICE_UNAVAILABLE),
        (Code::Cancelled, StatusCode::SERVICE_UNAVAILABLE),
        (Code::InvalidArgument, StatusCode::INTERNAL_SERVER_ERROR),
        (Code::Unimplemented, StatusCode::INTERNAL_SERVER_ERROR),
        (Code::Internal, StatusCode::INTERNAL_SERVER_ERROR),
        (Code::Unknown, StatusCode::INTERNAL_SERVER_ERROR),
    ];
    for (code, http) in cases {
        assert_eq!(
            ApiError::from_grpc(&tonic::Status::new(code, "m")).status,
            http,
            "{code:?}"
        );
    }
}

/// Every reason payments-grpc sends, and its answer: the code it comes
/// with does not matter, the reason does.
#[test]
fn every_reason_has_its_problem() {
    let cases = [
        (error_reason::INVALID_ARGUMENT, 422, "invalid-request"),
        (error_reason::NOT_A_TIER, 422, "invalid-amount"),
        (
            error_reason::IDEMPOTENCY_KEY_REUSED,
            409,
            "idempotency-conflict",
        ),
        (
            error_reason::INSUFFICIENT_CREDITS,
            409,
            "insufficient-credits",
        ),
        (error_reason::NOT_FOUND, 404, "not-found"),
        (
            error_reason::TOO_MANY_OPEN_INTENTS,
            429,
            "too-many-open-intents",
        ),
        (error_reason::TOO_MANY_OPEN_STREAMS, 503, "overloaded"),
        (error_reason::RATE_LIMITED, 429, "rate-limited"),
        (error_reason::DATABASE_UNAVAILABLE, 503, "unavailable"),
        (error_reason::STRIPE_UNAVAILABLE, 503, "unavailable"),
        (error_reason::UNAVAILABLE, 503, "unavailable"),
        (error_reason::EVENT_PARKED, 503, "unavailable"),
        (error_reason::UNAUTHENTICATED, 500, "internal"),
        (error_reason::ADMIN_DISABLED, 500, "internal"),
        (error_reason::INTERNAL, 500, "internal"),
        (error_reason::DEADLINE_EXCEEDED, 503, "unavailable"),
        (error_reason::UNIMPLEMENTED, 500, "internal"),
        (error_reason::MESSAGE_TOO_LARGE, 500, "internal"),
        (error_reason::MALFORMED_MESSAGE, 500, "internal"),
        ("A_REASON_FROM_A_NEWER_SERVER", 500, "internal"),
    ];
    assert_eq!(
        cases.len() - 1,
        error_reason::ALL.len(),
        "a reason is missing from this test"
    );
    for reason in error_reason::ALL {
        assert!(cases.iter().any(|(r, _, _)| *r == reason), "{reason}");
    }
    for (reason, http, kind) in cases {
        for code in [Code::FailedPrecondition, Code::Unknown] {
            let status = error_reason::status(code, "m", reason, HashMap::new());
            let error = ApiError::from_grpc(&status);
            assert_eq!(
                (error.status.as_u16(), error.kind),
                (http, kind),
                "{reason}"
            );
        }
    }
}

#[test]
fn a_non_tier_is_422_naming_the_tiers() {
    let status = error_reason::status(
        Code::InvalidArgument,
        "amount_cents 700 is not a top-up tier",
        error_reason::NOT_A_TIER,
        HashMap::from([(error_reason::ALLOWED_TIERS_USD.into(), "5, 10".into())]),
    );
    let err = ApiError::from_grpc(&status);
    assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err.kind, "invalid-amount");
    assert_eq!(
        err.detail,
        "amount_usd is not a top-up tier; allowed tiers (USD): 5, 10"
    );
}

#[test]
fn too_many_watches_is_503_overloaded_not_too_many_intents() {
    let status = error_reason::status(
        Code::ResourceExhausted,
        "this server holds 10000 balance watches",
        error_reason::TOO_MANY_OPEN_STREAMS,
        HashMap::new(),
    );
    let err = ApiError::from_grpc(&status);
    assert_eq!(err.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(err.kind, "overloaded");
    assert!(err.retry_after_secs.is_some());
}

#[test]
fn a_sync_past_its_budget_is_429_with_the_servers_retry_after() {
    let status = error_reason::status(
        Code::ResourceExhausted,
        "too many syncs reach Stripe right now",
        error_reason::RATE_LIMITED,
        HashMap::from([(error_reason::RETRY_AFTER_SECS.into(), "2".into())]),
    );
    let err = ApiError::from_grpc(&status);
    assert_eq!(
        (err.status, err.kind),
        (StatusCode::TOO_MANY_REQUESTS, "rate-limited")
    );
    assert_eq!(err.retry_after_secs, Some(2));
}

#[test]
fn internal_errors_leak_nothing() {
    let err = ApiError::from_grpc(&tonic::Status::internal("relation payments does not exist"));
    assert!(!err.detail.contains("relation"));
    let err = ApiError::from_grpc(&tonic::Status::unavailable(
        "connection refused 10.0.0.7:5432",
    ));
    assert!(!err.detail.contains("10.0.0.7"));
}
