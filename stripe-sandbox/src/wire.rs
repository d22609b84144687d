//! Stripe's wire format as the routes speak it: form-encoded parameters,
//! error objects, and Idempotency-Key replays.

use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::state::{Ledger, Replay, Shared};

/// Stripe's error object.
pub(crate) fn stripe_error(status: StatusCode, error: Value) -> Response {
    (status, Json(json!({ "error": error }))).into_response()
}

pub(crate) fn invalid_request(message: &str, param: Option<&str>) -> (StatusCode, Value) {
    let mut error = json!({"type": "invalid_request_error", "message": message});
    if let Some(param) = param {
        error["param"] = json!(param);
    }
    (StatusCode::BAD_REQUEST, json!({ "error": error }))
}

pub(crate) fn form(body: &[u8]) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    params.sort();
    params
}

pub(crate) fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Runs a POST once per Idempotency-Key, replaying its answer like Stripe.
pub(crate) fn idempotent(
    shared: &Shared,
    headers: &HeaderMap,
    route: &str,
    params: Vec<(String, String)>,
    run: impl FnOnce(&mut Ledger, &[(String, String)]) -> (StatusCode, Value),
) -> Response {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut ledger = shared.ledger.lock().unwrap();
    if let Some(key) = &key
        && let Some(replay) = ledger.replays.get(key)
    {
        if replay.route != route || replay.params != params {
            return stripe_error(
                StatusCode::BAD_REQUEST,
                json!({"type": "idempotency_error",
                       "message": format!("Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{key}' if you meant to execute a different request.")}),
            );
        }
        let mut response = (replay.status, Json(replay.body.clone())).into_response();
        response
            .headers_mut()
            .insert("idempotent-replayed", "true".parse().unwrap());
        return response;
    }
    let (status, body) = run(&mut ledger, &params);
    // Stripe does not store answers to requests that failed validation early.
    if let Some(key) = key
        && status != StatusCode::UNAUTHORIZED
    {
        let replay = Replay {
            route: route.to_owned(),
            params,
            status,
            body: body.clone(),
        };
        ledger.replays.insert(key, replay);
    }
    drop(ledger);
    (status, Json(body)).into_response()
}
