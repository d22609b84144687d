//! A stateless front on the sandbox's PaymentIntent encoding, so the
//! benchmark measures this service and not a stateful Stripe: intents are
//! synthesized from their ids (a million paid intents need no setup).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use payments_core::stripe::CREATED_BY_MARKER;
use serde_json::{Value, json};
use std::sync::Arc;
use stripe_sandbox::IntentFields;

pub const TIERS_CENTS: [i64; 4] = [500, 1000, 2000, 5000];

/// The paid intent behind webhook number `index` of a run (`pi_bench_<run>_<index>`).
pub fn paid_intent_id(run: &str, index: u64) -> String {
    format!("pi_bench_{run}_{index}")
}

pub fn user_of(index: u64, users: u64) -> String {
    format!("bench-user-{}", index % users)
}

pub fn amount_of(index: u64) -> i64 {
    TIERS_CENTS[(index % 4) as usize]
}

struct FastStripe {
    users: u64,
    created: AtomicU64,
}

pub fn router(users: u64) -> Router {
    Router::new()
        .route("/v1/payment_intents", post(create))
        .route("/v1/payment_intents/{id}", get(retrieve))
        .with_state(Arc::new(FastStripe {
            users,
            created: AtomicU64::new(0),
        }))
}

/// The intent as Stripe would answer it, in the sandbox's encoding.
fn intent(id: &str, amount: i64, user: &str, status: &str) -> Value {
    IntentFields {
        id: id.to_owned(),
        amount,
        amount_received: if status == "succeeded" { amount } else { 0 },
        currency: "usd".into(),
        status: status.into(),
        metadata: HashMap::from([
            ("user_id".into(), user.into()),
            ("created_by".into(), CREATED_BY_MARKER.into()),
        ]),
        last_payment_error: None,
    }
    .to_json()
}

async fn create(State(stripe): State<Arc<FastStripe>>, body: Bytes) -> Response {
    let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let Some(amount) = field("amount").and_then(|a| a.parse::<i64>().ok()) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"type": "invalid_request_error", "message": "amount"}})),
        )
            .into_response();
    };
    let user = field("metadata[user_id]").unwrap_or_default();
    let n = stripe.created.fetch_add(1, Ordering::Relaxed);
    Json(intent(
        &format!("pi_fast_{n}_{}", std::process::id()),
        amount,
        user,
        "requires_payment_method",
    ))
    .into_response()
}

async fn retrieve(State(stripe): State<Arc<FastStripe>>, Path(id): Path<String>) -> Response {
    let index = id.rsplit('_').next().and_then(|n| n.parse::<u64>().ok());
    match index {
        Some(index) if id.starts_with("pi_bench_") => {
            Json(intent(&id, amount_of(index), &user_of(index, stripe.users), "succeeded")).into_response()
        }
        _ => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": {"type": "invalid_request_error", "code": "resource_missing", "message": "No such payment_intent"}})),
        )
            .into_response(),
    }
}
