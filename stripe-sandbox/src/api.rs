//! The PaymentIntent routes and the sandbox's own, answered as Stripe
//! answers them.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};
use service_runtime::now_unix;

use crate::after_payment;
use crate::browser::{self, Caller};
use crate::state::{IntentState, Ledger, NewIntent, Shared, decline, emit, new_intent, succeed};
use crate::wire::{form, idempotent, invalid_request, param, stripe_error};
use crate::{PM_CARD_3DS, PM_CARD_DECLINED, PM_CARD_DISPUTED, PM_CARD_VISA};

fn no_such_intent(id: &str) -> (StatusCode, Value) {
    (
        StatusCode::NOT_FOUND,
        json!({"error": {"type": "invalid_request_error", "code": "resource_missing",
                          "param": "intent", "message": format!("No such payment_intent: '{id}'")}}),
    )
}

/// A secret key (`sk_test_…`) opens every route; a publishable key
/// (`pk_test_…`, as Stripe.js sends it) only the routes a browser may call
/// (see [`browser`]). The handlers learn which from the [`Caller`]
/// extension.
pub(crate) async fn require_api_key(request: Request, next: Next) -> Response {
    let header_key = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(secret_key);
    let (mut request, key) = match browser::api_key(request, header_key).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    let key = key.unwrap_or_default();
    let caller = if test_key(&key, "sk_test_") {
        Caller::Server
    } else if test_key(&key, "pk_test_") {
        if !browser::publishable_route(request.method(), request.uri().path()) {
            return browser::publishable_key_refused();
        }
        Caller::Browser
    } else {
        return stripe_error(
            StatusCode::UNAUTHORIZED,
            json!({"type": "invalid_request_error",
                   "message": "Invalid API Key provided. The sandbox accepts only sk_test_ and pk_test_ keys."}),
        );
    };
    request.extensions_mut().insert(caller);
    next.run(request).await
}

fn test_key(key: &str, prefix: &str) -> bool {
    key.starts_with(prefix) && key.len() > prefix.len()
}

/// The API key of `Bearer sk_…` or, as `curl -u sk_…:` sends it, `Basic …`.
fn secret_key(authorization: &str) -> Option<String> {
    if let Some(key) = authorization.strip_prefix("Bearer ") {
        return Some(key.to_owned());
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(authorization.strip_prefix("Basic ")?)
        .ok()?;
    let user_and_password = String::from_utf8(decoded).ok()?;
    Some(user_and_password.split(':').next()?.to_owned())
}

fn metadata(params: &[(String, String)]) -> BTreeMap<String, String> {
    params
        .iter()
        .filter_map(|(k, v)| {
            Some((
                k.strip_prefix("metadata[")?.strip_suffix(']')?.to_owned(),
                v.clone(),
            ))
        })
        .collect()
}

pub(crate) async fn create_intent(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let shared_ref = shared.clone();
    idempotent(
        &shared,
        &headers,
        "create",
        form(&body),
        move |ledger, params| {
            let Some(amount) = param(params, "amount").and_then(|a| a.parse::<i64>().ok()) else {
                return invalid_request("Missing required param: amount.", Some("amount"));
            };
            if !(50..=99_999_999).contains(&amount) {
                return invalid_request(
                    "Amount must be at least $0.50 usd and at most $999,999.99.",
                    Some("amount"),
                );
            }
            let Some(currency) = param(params, "currency") else {
                return invalid_request("Missing required param: currency.", Some("currency"));
            };
            let id = ledger.next_id("pi");
            let intent = new_intent(NewIntent {
                client_secret: format!("{id}_secret_{}", &ledger.next_id("cs")[6..]),
                id: &id,
                amount,
                currency: &currency.to_ascii_lowercase(),
                metadata: metadata(params),
                automatic_payment_methods: param(params, "automatic_payment_methods[enabled]")
                    == Some("true"),
                description: param(params, "description"),
            });
            ledger.intents.insert(
                id,
                IntentState {
                    json: intent.clone(),
                },
            );
            emit(&shared_ref, ledger, "payment_intent.created", &intent);
            (StatusCode::OK, intent)
        },
    )
}

pub(crate) async fn retrieve_intent(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    uri: Uri,
) -> Response {
    let query = form(uri.query().unwrap_or_default().as_bytes());
    let (status, body) = match shared.ledger.lock().unwrap().intents.get(&id) {
        None => no_such_intent(&id),
        Some(intent) if caller == Caller::Browser => {
            match browser::check_client_secret(&intent.json, &query) {
                Ok(()) => (StatusCode::OK, browser::client_side(&intent.json)),
                Err(refused) => refused,
            }
        }
        Some(intent) => (StatusCode::OK, intent.json.clone()),
    };
    (status, Json(body)).into_response()
}

pub(crate) async fn update_intent(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    idempotent(
        &shared,
        &headers,
        &format!("update {id}"),
        form(&body),
        |ledger, params| {
            let Some(intent) = ledger.intents.get_mut(&id) else {
                return no_such_intent(&id);
            };
            let json = &mut intent.json;
            if json["status"] == "succeeded" || json["status"] == "canceled" {
                return unexpected_state(json);
            }
            if let Some(amount) = param(params, "amount") {
                match amount.parse::<i64>() {
                    Ok(amount) if amount >= 50 => json["amount"] = json!(amount),
                    _ => return invalid_request("Invalid integer: amount", Some("amount")),
                }
            }
            if let Some(pm) = param(params, "payment_method") {
                json["payment_method"] = json!(pm);
            }
            for (key, value) in metadata(params) {
                json["metadata"][key] = json!(value);
            }
            (StatusCode::OK, json.clone())
        },
    )
}

fn unexpected_state(intent: &Value) -> (StatusCode, Value) {
    (
        StatusCode::BAD_REQUEST,
        json!({"error": {"type": "invalid_request_error", "code": "payment_intent_unexpected_state",
                          "message": format!("This PaymentIntent's status is {}; the operation is not allowed.", intent["status"].as_str().unwrap_or("?")),
                          "payment_intent": intent}}),
    )
}

pub(crate) async fn confirm_intent(
    State(shared): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let shared_ref = shared.clone();
    idempotent(
        &shared,
        &headers,
        &format!("confirm {id}"),
        form(&body),
        move |ledger, params| {
            if caller == Caller::Server {
                return confirm(&shared_ref, ledger, &id, params);
            }
            let Some(intent) = ledger.intents.get(&id) else {
                return no_such_intent(&id);
            };
            if let Err(refused) = browser::check_client_secret(&intent.json, params) {
                return refused;
            }
            let (status, body) = confirm(&shared_ref, ledger, &id, params);
            (status, browser::for_browser(body))
        },
    )
}

/// Confirms the intent with the payment method the call names, as Stripe's
/// test payment methods behave.
fn confirm(
    shared: &Arc<Shared>,
    ledger: &mut Ledger,
    id: &str,
    params: &[(String, String)],
) -> (StatusCode, Value) {
    let Some(intent) = ledger.intents.get(id) else {
        return no_such_intent(id);
    };
    let mut json = intent.json.clone();
    let status = json["status"].as_str().unwrap_or_default().to_owned();
    if !matches!(
        status.as_str(),
        "requires_payment_method" | "requires_confirmation" | "requires_action"
    ) {
        return unexpected_state(&json);
    }
    let named = match browser::payment_method_of(params) {
        Ok(named) => named,
        Err(refused) => return refused,
    };
    let payment_method = named.or_else(|| json["payment_method"].as_str().map(str::to_owned));
    let Some(payment_method) = payment_method else {
        return invalid_request(
            "You cannot confirm this PaymentIntent because it's missing a payment method.",
            Some("payment_method"),
        );
    };
    json["payment_method"] = json!(payment_method);
    json["last_payment_error"] = Value::Null;
    json["next_action"] = Value::Null;
    let answer = match payment_method.as_str() {
        PM_CARD_VISA | PM_CARD_DISPUTED => {
            let charge = ledger.next_id("ch");
            succeed(&mut json, charge);
            Outcome::Event("payment_intent.succeeded")
        }
        PM_CARD_DECLINED => {
            let charge = ledger.next_id("ch");
            let error = decline(
                &mut json,
                charge,
                "card_declined",
                Some("generic_decline"),
                "Your card was declined.",
            );
            Outcome::Declined(error)
        }
        PM_CARD_3DS => {
            json["status"] = json!("requires_action");
            json["next_action"] = json!({
                "type": "use_stripe_sdk",
                "use_stripe_sdk": {"type": "three_d_secure_redirect", "stripe_js": format!("{{sandbox}}/sandbox/payment_intents/{id}/authenticate")},
            });
            Outcome::Event("payment_intent.requires_action")
        }
        other => {
            return (
                StatusCode::BAD_REQUEST,
                json!({"error": {"type": "invalid_request_error", "code": "resource_missing", "param": "payment_method",
                              "message": format!("No such PaymentMethod: '{other}'")}}),
            );
        }
    };
    ledger.intents.get_mut(id).expect("exists").json = json.clone();
    match answer {
        Outcome::Event(event_type) => {
            emit(shared, ledger, event_type, &json);
            if payment_method == PM_CARD_DISPUTED {
                after_payment::open_dispute(shared, ledger, &json);
            }
            (StatusCode::OK, json)
        }
        Outcome::Declined(mut error) => {
            emit(shared, ledger, "payment_intent.payment_failed", &json);
            error["payment_intent"] = json;
            (StatusCode::PAYMENT_REQUIRED, json!({ "error": error }))
        }
    }
}

enum Outcome {
    Event(&'static str),
    Declined(Value),
}

pub(crate) async fn cancel_intent(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let shared_ref = shared.clone();
    idempotent(
        &shared,
        &headers,
        &format!("cancel {id}"),
        form(&body),
        move |ledger, params| {
            let Some(intent) = ledger.intents.get_mut(&id) else {
                return no_such_intent(&id);
            };
            let json = &mut intent.json;
            if json["status"] == "succeeded" || json["status"] == "canceled" {
                return unexpected_state(json);
            }
            json["status"] = json!("canceled");
            json["canceled_at"] = json!(now_unix());
            json["cancellation_reason"] =
                json!(param(params, "cancellation_reason").unwrap_or("requested_by_customer"));
            json["next_action"] = Value::Null;
            let json = json.clone();
            emit(&shared_ref, ledger, "payment_intent.canceled", &json);
            (StatusCode::OK, json)
        },
    )
}

pub(crate) async fn authenticate(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let params = form(&body);
    let pass = match param(&params, "outcome") {
        Some("pass") => true,
        Some("fail") => false,
        _ => {
            return stripe_error(
                StatusCode::BAD_REQUEST,
                json!({"type": "invalid_request_error", "message": "outcome must be pass or fail"}),
            );
        }
    };
    let mut ledger = shared.ledger.lock().unwrap();
    let charge = ledger.next_id("ch");
    let Some(intent) = ledger.intents.get_mut(&id) else {
        let (status, body) = no_such_intent(&id);
        return (status, Json(body)).into_response();
    };
    if intent.json["status"] != "requires_action" {
        let (status, body) = unexpected_state(&intent.json);
        return (status, Json(body)).into_response();
    }
    let event_type = if pass {
        succeed(&mut intent.json, charge);
        "payment_intent.succeeded"
    } else {
        decline(
            &mut intent.json,
            charge,
            "payment_intent_authentication_failure",
            None,
            "The provided PaymentMethod has failed authentication. You can provide payment_method_data or a new PaymentMethod to attempt to fulfill this PaymentIntent again.",
        );
        "payment_intent.payment_failed"
    };
    let json = intent.json.clone();
    emit(&shared, &mut ledger, event_type, &json);
    (StatusCode::OK, Json(json)).into_response()
}

/// Whether webhooks are held, and the delivery counters.
pub(crate) async fn webhook_state(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let stats = *shared.stats.borrow();
    Json(json!({
        "held": *shared.held.borrow(),
        "events": stats.events,
        "delivered": stats.delivered,
        "pending": *shared.pending.borrow(),
    }))
}

/// `held=true` keeps webhooks queued; `held=false` delivers them.
pub(crate) async fn hold_webhooks(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let held = match param(&form(&body), "held") {
        Some("true") => true,
        Some("false") => false,
        _ => {
            return stripe_error(
                StatusCode::BAD_REQUEST,
                json!({"type": "invalid_request_error", "message": "held must be true or false"}),
            );
        }
    };
    shared.held.send_replace(held);
    webhook_state(State(shared)).await.into_response()
}

pub(crate) async fn list_events(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let events = shared.ledger.lock().unwrap().events.clone();
    Json(json!({"object": "list", "data": events}))
}
