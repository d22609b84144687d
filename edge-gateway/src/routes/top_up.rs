//! Buying credits: `POST /payments/create-payment-intent` and
//! `POST /payments/{intent_id}/sync`.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use payments_domain::top_up::{self, TopUpRefusal};
use payments_proto::CreatePaymentIntentRequest;
use serde::{Deserialize, Serialize};

use super::{API_BODY_LIMIT, read_body};
use crate::caller::{AuthenticatedUser, ClientIp};
use crate::error::ApiError;
use crate::openapi::payment_status_schema;
use crate::state::AppState;

/// The top-up asked for. Other fields are ignored (the user is the
/// token's); a repeated `amount_usd` is refused.
// Documentation only: `top_up::amount_from_json` reads the body, exactly.
#[derive(utoipa::ToSchema)]
#[schema(example = json!({"amount_usd": 10}))]
#[allow(dead_code)]
pub struct CreatePaymentIntentBody {
    // Dollars: see `dollars_schema`.
    #[schema(schema_with = dollars_schema)]
    amount_usd: (),
}

/// A JSON number of dollars above zero (no float format: it is read
/// exactly, in whole cents).
fn dollars_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::Number)
        .exclusive_minimum(Some(0))
        .description(Some(
            "Dollars, in whole cents: one of the tiers sold (by default 5, 10, 20, 50); \
             any other amount is 422 `invalid-amount`, naming them",
        ))
        .build()
}

/// The PaymentIntent made, for Stripe.js's `confirmPayment`.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq, utoipa::ToSchema)]
pub struct CreatedIntent {
    /// For Stripe.js only; never log it.
    pub client_secret: String,
    pub intent_id: String,
    /// In cents.
    pub amount: i64,
    #[schema(example = "usd")]
    pub currency: String,
    /// Stripe's PaymentIntent status.
    #[schema(schema_with = payment_status_schema)]
    pub status: String,
}

/// `POST /payments/create-payment-intent`: a PaymentIntent for one of the
/// tiers. With the same `Idempotency-Key`, a retry answers the same intent.
#[utoipa::path(
    post,
    path = "/payments/create-payment-intent",
    tag = "top-up",
    operation_id = "createPaymentIntent",
    security(("firebase_id_token" = [])),
    params((
        "Idempotency-Key" = Option<String>,
        Header,
        description = "Makes a retried create answer the first intent (1 to 255 visible ASCII characters)",
        min_length = 1,
        max_length = 255,
        pattern = "^[!-~]+$",
    )),
    request_body(content = CreatePaymentIntentBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The intent, new or (same key) the first one", body = CreatedIntent),
        (status = 400, response = crate::openapi::MalformedJson),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 409, response = crate::openapi::IdempotencyConflict),
        (status = 413, response = crate::openapi::TooLarge),
        (status = 422, response = crate::openapi::Unprocessable),
        (status = 429, response = crate::openapi::TooManyRequests),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn create_payment_intent(
    State(state): State<Arc<AppState>>,
    user: AuthenticatedUser,
    ClientIp(client_ip): ClientIp,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<CreatedIntent>, ApiError> {
    // Each create is a Stripe call and a row: limited before anything else.
    state.create_limit.check(&user.user_id, client_ip)?;
    let body = read_body(body, API_BODY_LIMIT).await?;
    // Which amounts are tiers is payments-grpc's rule and setting: an
    // amount the edge cannot read is refused naming the tiers it sells.
    let amount_cents = match top_up::amount_from_json(&body) {
        Ok(cents) => cents.get(),
        Err(TopUpRefusal::Malformed(detail)) => return Err(ApiError::malformed_json(detail)),
        Err(unusable @ TopUpRefusal::Unusable(_)) => {
            let (tiers, _) = state.top_up_options.on_sale(&state.upstream).await?;
            let tiers = tiers.iter().map(u32::to_string).collect::<Vec<_>>();
            return Err(ApiError::not_a_tier(
                &unusable.to_string(),
                &tiers.join(", "),
            ));
        }
    };
    // Absent is "no key"; present, it must be a key: an empty header is a
    // client's bug that would otherwise turn retries into new payments.
    let idempotency_key = match headers.get("idempotency-key") {
        Some(value) => match value.to_str() {
            Ok(key) if !key.is_empty() => key.to_owned(),
            _ => {
                return Err(ApiError::invalid_request(
                    "Idempotency-Key must be 1 to 255 visible ASCII characters (leave the header out for none)",
                ));
            }
        },
        None => String::new(),
    };
    let request = CreatePaymentIntentRequest {
        user_id: user.user_id,
        amount_cents,
        idempotency_key,
    };
    let intent = state
        .upstream
        .client()
        .create_payment_intent(request)
        .await
        .map_err(|status| ApiError::from_grpc(&status))?
        .into_inner();
    Ok(Json(CreatedIntent {
        client_secret: intent.client_secret,
        intent_id: intent.intent_id,
        amount: intent.amount,
        currency: intent.currency,
        status: intent.status,
    }))
}

/// What `POST /payments/{intent_id}/sync` answers.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq, utoipa::ToSchema)]
pub struct SyncedBody {
    pub intent_id: String,
    #[schema(schema_with = payment_status_schema)]
    pub status: String,
    pub amount_cents: i64,
    pub amount_received_cents: i64,
    pub amount_refunded_cents: i64,
    /// The user's balance right after the sync.
    pub balance_cents: i64,
}

/// `POST /payments/{intent_id}/sync`: the SPA calls it right after
/// `stripe.confirmPayment`; payments-grpc re-fetches the intent from Stripe
/// and applies it (the credit lands now, the webhook later finds nothing to
/// do). 404 for an intent that is not this user's.
#[utoipa::path(
    post,
    path = "/payments/{intent_id}/sync",
    tag = "top-up",
    operation_id = "syncPaymentIntent",
    security(("firebase_id_token" = [])),
    params(("intent_id" = String, Path, description = "The `intent_id` create-payment-intent answered")),
    responses(
        (status = 200, description = "The payment as Stripe has it now, and the balance after", body = SyncedBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, response = crate::openapi::NotFound),
        (status = 429, response = crate::openapi::TooManyRequests),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn sync_payment(
    State(state): State<Arc<AppState>>,
    user: AuthenticatedUser,
    ClientIp(client_ip): ClientIp,
    axum::extract::Path(intent_id): axum::extract::Path<String>,
) -> Result<Json<SyncedBody>, ApiError> {
    state.sync_limit.check(&user.user_id, client_ip)?;
    let request = payments_proto::SyncPaymentIntentRequest {
        user_id: user.user_id,
        intent_id,
    };
    let synced = state
        .upstream
        .client()
        .sync_payment_intent(request)
        .await
        .map_err(|status| ApiError::from_grpc(&status))?
        .into_inner();
    let payment = synced.payment.unwrap_or_default();
    Ok(Json(SyncedBody {
        intent_id: payment.intent_id,
        status: payment.status,
        amount_cents: payment.amount_cents,
        amount_received_cents: payment.amount_received_cents,
        amount_refunded_cents: payment.amount_refunded_cents,
        balance_cents: synced.balance_cents,
    }))
}
