//! A stateless, fast Stripe stand-in, so the benchmark measures this service
//! and not Stripe: intents are synthesized from their ids.

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

fn intent(id: &str, amount: i64, user: &str, status: &str) -> Value {
    json!({
        "id": id, "object": "payment_intent", "amount": amount, "amount_capturable": 0,
        "amount_received": if status == "succeeded" { amount } else { 0 },
        "capture_method": "automatic_async", "client_secret": format!("{id}_secret_fast"),
        "confirmation_method": "automatic", "created": 1_764_000_000, "currency": "usd",
        "livemode": false, "metadata": {"user_id": user, "created_by": CREATED_BY_MARKER},
        "payment_method_types": ["card"], "status": status,
    })
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
