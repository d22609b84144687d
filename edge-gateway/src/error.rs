//! One error type for every route, answered as `application/problem+json`.

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
    /// Answered with `Connection: close` (HTTP/1.1): the client's
    /// connection is given back, not kept idle holding a place.
    pub close_connection: bool,
}

/// An `application/problem+json` body (RFC 9457), as every error is answered.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "type": "urn:credits-topup:problem:unauthorized",
    "title": "Missing or invalid ID token",
    "status": 401,
    "detail": "the token has expired"
}))]
pub struct Problem<'a> {
    /// `urn:credits-topup:problem:<kind>`: what to branch on (the kinds are
    /// listed in docs/rest-api.md).
    #[serde(rename = "type")]
    #[schema(pattern = "^urn:credits-topup:problem:[a-z-]+$")]
    pub type_: String,
    /// The same for every problem of this type.
    pub title: &'a str,
    /// The HTTP status, repeated.
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    /// What was wrong with this request.
    pub detail: &'a str,
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
            close_connection: false,
        }
    }

    pub fn retry_after(mut self, secs: u32) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    /// This answer closes an HTTP/1.1 connection after it.
    pub fn closing_the_connection(mut self) -> Self {
        self.close_connection = true;
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

    /// An amount that is not a tier: `refused` says what was wrong
    /// ("amount_usd must be positive"), `tiers_usd` what is sold ("5, 10").
    pub fn not_a_tier(refused: &str, tiers_usd: &str) -> Self {
        Self::invalid_amount(format!("{refused}; allowed tiers (USD): {tiers_usd}"))
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

    /// The user holds as many balance streams open as one user may.
    /// `who` ("one user", "one address") holds `max` streams already.
    pub fn too_many_streams(who: &str, max: usize) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too-many-streams",
            "Too many balance streams open",
            format!("{who} may hold {max} open; close one first"),
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
            "GET /openapi.json lists the routes",
        )
    }

    /// What the request names does not exist for this user.
    pub fn no_such(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    pub fn insufficient_credits(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "insufficient-credits",
            "The balance is below the amount",
            detail,
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

    /// The one place gRPC statuses become HTTP answers: by the ErrorInfo
    /// reason every status of payments-grpc carries, one row per reason;
    /// by the code only for a status made by the transport (a deadline, a
    /// connection refused), which carries none.
    pub fn from_grpc(status: &tonic::Status) -> Self {
        let message = status.message().to_owned();
        let Some((reason, metadata)) = error_reason::of(status) else {
            return Self::from_grpc_code(status);
        };
        match reason.as_str() {
            error_reason::INVALID_ARGUMENT => Self::invalid_request(message),
            error_reason::NOT_A_TIER => Self::not_a_tier(
                "amount_usd is not a top-up tier",
                metadata
                    .get(error_reason::ALLOWED_TIERS_USD)
                    .map_or("", String::as_str),
            ),
            error_reason::IDEMPOTENCY_KEY_REUSED => Self::conflict(message),
            error_reason::INSUFFICIENT_CREDITS => Self::insufficient_credits(message),
            error_reason::NOT_FOUND => Self::no_such(message),
            error_reason::TOO_MANY_OPEN_INTENTS => Self::too_many_open_intents(message),
            error_reason::RATE_LIMITED => Self::rate_limited(
                metadata
                    .get(error_reason::RETRY_AFTER_SECS)
                    .and_then(|secs| secs.parse().ok())
                    .unwrap_or(1),
            ),
            // payments-grpc holds as many balance watches as it may.
            error_reason::TOO_MANY_OPEN_STREAMS => Self::overloaded(),
            error_reason::DATABASE_UNAVAILABLE
            | error_reason::STRIPE_UNAVAILABLE
            | error_reason::UNAVAILABLE
            // A webhook whose event was parked: 503, so that Stripe delivers
            // it again (payments-grpc retries it too, with backoff).
            | error_reason::EVENT_PARKED
            | error_reason::DEADLINE_EXCEEDED => {
                tracing::warn!(%reason, %message, "payments-grpc unavailable");
                Self::unavailable("try again shortly")
            }
            // The edge's own token was refused: a deployment error, not the caller's.
            error_reason::UNAUTHENTICATED => {
                tracing::error!("payments-grpc refused the internal token");
                Self::internal()
            }
            // ADMIN_DISABLED (the edge never calls AdminService), what tonic
            // refuses of the edge's own calls (UNIMPLEMENTED,
            // MESSAGE_TOO_LARGE, MALFORMED_MESSAGE: a mismatch of versions
            // or a bug), INTERNAL, and any reason newer than this edge.
            _ => {
                tracing::error!(%reason, %message, "payments-grpc failed");
                Self::internal()
            }
        }
    }

    /// A status without a reason: made by tonic or the transport.
    fn from_grpc_code(status: &tonic::Status) -> Self {
        let message = status.message();
        match status.code() {
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
        if self.close_connection {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
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
mod tests;
