//! `POST /stripe/webhook`: Stripe's events, verified over the raw bytes.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use payments_domain::stripe_event::StripeEvent;
use payments_proto::ApplyStripeEventRequest;
use payments_proto::apply_stripe_event_response::Outcome;
use serde::{Deserialize, Serialize};
use service_runtime::now_unix;

use super::read_body;
use crate::error::ApiError;
use crate::openapi::string_enum;
use crate::state::AppState;
use crate::stripe_signature;

/// How long a webhook waits for a body place before it is shed with 503.
const WEBHOOK_PLACE_WAIT: Duration = Duration::from_secs(2);

/// What a webhook delivery is answered once handled.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq, utoipa::ToSchema)]
pub struct WebhookReceived {
    pub received: bool,
    /// `applied` (it changed a payment or balance), `duplicate` (seen
    /// before) or `ignored` (a type not acted on).
    #[schema(schema_with = webhook_outcome_schema)]
    pub outcome: String,
}

fn webhook_outcome_schema() -> utoipa::openapi::schema::Object {
    string_enum(["applied", "duplicate", "ignored"].into_iter())
}

/// `POST /stripe/webhook`: a Stripe event, verified over the raw bytes
/// before anything reads them.
#[utoipa::path(
    post,
    path = "/stripe/webhook",
    tag = "stripe",
    operation_id = "stripeWebhook",
    params((
        "Stripe-Signature" = String,
        Header,
        description = "`t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<body>\">` (several `v1` while secrets rotate)",
    )),
    request_body(
        content = Object,
        content_type = "application/json",
        description = "A Stripe event object, exactly as Stripe sent it",
    ),
    responses(
        (status = 200, description = "Applied, a duplicate, or a type not acted on", body = WebhookReceived),
        (status = 400, response = crate::openapi::InvalidWebhook),
        (status = 413, response = crate::openapi::TooLarge),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn stripe_webhook(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let refused = |err: stripe_signature::SignatureError| {
        tracing::warn!(reason = %err, "webhook signature refused");
        ApiError::invalid_webhook(err.to_string())
    };
    // The header's shape and time first: a malformed or stale delivery is
    // refused before its body is uploaded.
    let signature = stripe_signature::SignatureHeader::parse(
        headers
            .get("stripe-signature")
            .and_then(|v| v.to_str().ok()),
        now_unix(),
        stripe_signature::DEFAULT_TOLERANCE_SECS,
    )
    .map_err(refused)?;
    let declared_length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared_length.is_some_and(|length| length > state.webhook_body_limit as u64) {
        return Err(ApiError::too_large(state.webhook_body_limit));
    }
    let body = {
        // A place is held while the body is uploaded and checked, so
        // stalled or forged uploads hold a bounded amount of memory; a burst
        // of real deliveries waits a moment for one.
        let place = tokio::time::timeout(WEBHOOK_PLACE_WAIT, state.webhook_bodies.acquire()).await;
        let Ok(Ok(_place)) = place else {
            tracing::warn!("webhook shed: every body place is taken");
            return Err(ApiError::overloaded());
        };
        let body = read_body(body, state.webhook_body_limit).await?;
        signature
            .verify(&body, &state.webhook_secrets)
            .map_err(refused)?;
        body
    };
    let event_json = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::invalid_webhook("not a Stripe event: not UTF-8"))?;
    // The parser payments-grpc runs (and the one fuzzed): a body it would
    // refuse never crosses the internal hop.
    let event = StripeEvent::parse(&event_json)
        .map_err(|err| ApiError::invalid_webhook(err.to_string()))?;
    let request = ApplyStripeEventRequest { event_json };
    let outcome = state
        .upstream
        .client()
        .apply_stripe_event(request)
        .await
        .inspect_err(|_| state.metrics.webhook(&event.event_type, "failed"))
        .map_err(|status| match status.code() {
            // The edge checked the shape; payments-grpc may still refuse the content.
            tonic::Code::InvalidArgument => ApiError::invalid_webhook(status.message().to_owned()),
            _ => ApiError::from_grpc(&status),
        })?
        .into_inner()
        .outcome();
    let outcome = match outcome {
        Outcome::Applied => "applied",
        Outcome::Duplicate => "duplicate",
        Outcome::Ignored => "ignored",
        Outcome::Unspecified => {
            tracing::error!(event_id = %event.id, "payments-grpc answered no outcome");
            return Err(ApiError::internal());
        }
    };
    state.metrics.webhook(&event.event_type, outcome);
    tracing::info!(event_id = %event.id, event_type = %event.event_type, outcome, "webhook handled");
    Ok((
        StatusCode::OK,
        Json(WebhookReceived {
            received: true,
            outcome: outcome.to_owned(),
        }),
    )
        .into_response())
}
