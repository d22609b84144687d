//! One error type for every route, answered as `application/problem+json`.

use std::collections::HashMap;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use payments_proto::error_reason;
use serde::Serialize;
use tonic::Code;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// Last part of the problem `type` URI.
    pub kind: &'static str,
    pub title: &'static str,
    pub detail: String,
    /// Sent as `Retry-After` (seconds) with 429 and 503 answers.
    pub retry_after_secs: Option<u32>,
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    type_: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
}

impl ApiError {
    fn new(
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            kind,
            title,
            detail: detail.into(),
            retry_after_secs: None,
        }
    }

    pub fn retry_after(mut self, secs: u32) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Missing or invalid ID token",
            detail,
        )
    }

    pub fn malformed_json(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "malformed-json",
            "The body is not valid JSON",
            detail,
        )
    }

    pub fn invalid_amount(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-amount",
            "The amount is not a top-up tier",
            detail,
        )
    }

    /// An amount payments-grpc refused as not a tier: `refused` says what
    /// was wrong ("amount_usd must be positive"), the metadata of its
    /// `NOT_A_TIER` answer the tiers.
    pub fn not_a_tier(refused: &str, metadata: &HashMap<String, String>) -> Self {
        let tiers = metadata
            .get(error_reason::ALLOWED_TIERS_USD)
            .map_or("", String::as_str);
        Self::invalid_amount(format!("{refused}; allowed tiers (USD): {tiers}"))
    }

    pub fn invalid_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-request",
            "The request is not valid",
            detail,
        )
    }

    /// A query parameter is wrong (`limit`, `cursor`).
    pub fn invalid_query(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid-query",
            "A query parameter is not valid",
            detail,
        )
    }

    pub fn invalid_webhook(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid-webhook",
            "Not a validly signed Stripe event",
            detail,
        )
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            "The body is too large",
            format!("the limit is {limit} bytes"),
        )
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "idempotency-conflict",
            "The idempotency key was used for another request",
            detail,
        )
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "The payments service is unavailable",
            detail,
        )
    }

    /// Over a per-user or per-client rate limit.
    pub fn rate_limited(retry_after_secs: u32) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Too many requests",
            format!("try again in {retry_after_secs} s"),
        )
        .retry_after(retry_after_secs)
    }

    pub fn too_many_open_intents(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too-many-open-intents",
            "Too many unpaid top-ups are open",
            detail,
        )
    }

    /// Load shed: too much of one kind of work in flight right now.
    pub fn overloaded() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "Too many requests of this kind in flight",
            "try again shortly",
        )
        .retry_after(1)
    }

    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "No such route",
            "see the README for the routes",
        )
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the error was logged",
        )
    }

    /// The one place gRPC statuses become HTTP answers.
    pub fn from_grpc(status: &tonic::Status) -> Self {
        let message = status.message().to_owned();
        match error_reason::of(status) {
            Some((reason, metadata)) if reason == error_reason::NOT_A_TIER => {
                return Self::not_a_tier("amount_usd is not a top-up tier", &metadata);
            }
            // payments-grpc holds as many balance watches as it may.
            Some((reason, _)) if reason == error_reason::TOO_MANY_OPEN_STREAMS => {
                return Self::overloaded();
            }
            _ => {}
        }
        match status.code() {
            Code::InvalidArgument => Self::invalid_request(message),
            Code::Unauthenticated => {
                // The edge's own token was refused: a deployment error, not the caller's.
                tracing::error!("payments-grpc refused the internal token");
                Self::internal()
            }
            Code::AlreadyExists | Code::FailedPrecondition => Self::conflict(message),
            Code::ResourceExhausted => Self::too_many_open_intents(message),
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
                tracing::warn!(grpc_code = ?status.code(), %message, "payments-grpc unavailable");
                Self::unavailable("try again shortly")
            }
            code => {
                tracing::error!(grpc_code = ?code, %message, "payments-grpc failed");
                Self::internal()
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = Problem {
            type_: format!("urn:credits-topup:problem:{}", self.kind),
            title: self.title,
            status: self.status.as_u16(),
            detail: &self.detail,
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer error="invalid_token""#),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_map_to_http_statuses() {
        let cases = [
            (Code::InvalidArgument, StatusCode::UNPROCESSABLE_ENTITY),
            (Code::Unauthenticated, StatusCode::INTERNAL_SERVER_ERROR),
            (Code::AlreadyExists, StatusCode::CONFLICT),
            (Code::FailedPrecondition, StatusCode::CONFLICT),
            (Code::ResourceExhausted, StatusCode::TOO_MANY_REQUESTS),
            (Code::Unavailable, StatusCode::SERVICE_UNAVAILABLE),
            (Code::DeadlineExceeded, StatusCode::SERVICE_UNAVAILABLE),
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
    fn internal_errors_leak_nothing() {
        let err = ApiError::from_grpc(&tonic::Status::internal("relation payments does not exist"));
        assert!(!err.detail.contains("relation"));
        let err = ApiError::from_grpc(&tonic::Status::unavailable(
            "connection refused 10.0.0.7:5432",
        ));
        assert!(!err.detail.contains("10.0.0.7"));
    }
}
