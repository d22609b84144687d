//! What a browser reaches, as Stripe.js reaches Stripe: the Stripe.js
//! stand-in script, the publishable-key calls it makes (retrieve and
//! confirm a PaymentIntent with its client secret, card details in
//! `payment_method_data`), the answers' client-side subset, and CORS.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::wire::{form, param, stripe_error};
use crate::{PM_CARD_3DS, PM_CARD_DECLINED, PM_CARD_DISPUTED, PM_CARD_VISA};

/// The Stripe.js stand-in: `window.Stripe(pk)`, Elements, `confirmPayment`
/// and the 3-D Secure challenge, against this sandbox.
pub(crate) const STRIPE_JS: &str = include_str!("stripe.js");

/// The largest form a publishable-key call may send (Stripe.js sends a few
/// hundred bytes).
const MAX_BROWSER_FORM: usize = 16 * 1024;

/// Who called the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Caller {
    /// A server, with the secret key: every route, whole objects.
    Server,
    /// A browser, with the publishable key: only retrieve and confirm of a
    /// PaymentIntent whose client secret it holds, and only the client-side
    /// fields of the answer.
    Browser,
}

pub(crate) async fn stripe_js() -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                "application/javascript; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        STRIPE_JS,
    )
        .into_response()
}

/// Stripe's API answers browsers of any origin; so does the sandbox.
pub(crate) async fn cors(request: Request, next: Next) -> Response {
    if request.method() == Method::OPTIONS {
        let mut response = StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, DELETE"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(
                "authorization, content-type, idempotency-key, stripe-version",
            ),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("300"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        return response;
    }
    let mut response = next.run(request).await;
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

/// The API key of a call: the `Authorization` header's, else (as Stripe.js
/// sends it) the `key` parameter of the query or of the form. The request
/// comes back whole, its body read only when the key is in it.
pub(crate) async fn api_key(
    request: Request,
    header_key: Option<String>,
) -> Result<(Request, Option<String>), Response> {
    if header_key.is_some() {
        return Ok((request, header_key));
    }
    let query = request.uri().query().unwrap_or_default().as_bytes();
    if let Some(key) = param(&form(query), "key") {
        let key = key.to_owned();
        return Ok((request, Some(key)));
    }
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if request.method() != Method::POST || !is_form {
        return Ok((request, None));
    }
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BROWSER_FORM).await else {
        return Err(stripe_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({"type": "invalid_request_error", "message": "Request body too large."}),
        ));
    };
    let key = param(&form(&body), "key").map(str::to_owned);
    Ok((Request::from_parts(parts, Body::from(body)), key))
}

/// Whether `path` is one a publishable key may call.
pub(crate) fn publishable_route(method: &Method, path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/v1/payment_intents/") else {
        return false;
    };
    match rest.split_once('/') {
        None => method == Method::GET && !rest.is_empty(),
        Some((id, "confirm")) => method == Method::POST && !id.is_empty(),
        Some(_) => false,
    }
}

pub(crate) fn publishable_key_refused() -> Response {
    stripe_error(
        StatusCode::UNAUTHORIZED,
        json!({"type": "invalid_request_error",
               "message": "This API call cannot be made with a publishable API key. Please use a secret API key."}),
    )
}

/// A browser's call must carry the intent's own client secret.
pub(crate) fn check_client_secret(
    intent: &Value,
    params: &[(String, String)],
) -> Result<(), (StatusCode, Value)> {
    match param(params, "client_secret") {
        Some(secret) if intent["client_secret"] == secret => Ok(()),
        Some(_) => Err((
            StatusCode::BAD_REQUEST,
            json!({"error": {"type": "invalid_request_error", "code": "payment_intent_invalid_parameter",
                             "param": "client_secret",
                             "message": "The client_secret provided does not match the client_secret associated with the PaymentIntent."}}),
        )),
        None => Err((
            StatusCode::BAD_REQUEST,
            json!({"error": {"type": "invalid_request_error", "param": "client_secret",
                             "message": "Missing required param: client_secret."}}),
        )),
    }
}

/// The fields of a PaymentIntent a publishable key reads (Stripe's
/// client-side subset: no metadata, no charges, no customer).
const CLIENT_FIELDS: &[&str] = &[
    "id",
    "object",
    "amount",
    "automatic_payment_methods",
    "canceled_at",
    "cancellation_reason",
    "capture_method",
    "client_secret",
    "confirmation_method",
    "created",
    "currency",
    "description",
    "last_payment_error",
    "livemode",
    "next_action",
    "payment_method",
    "payment_method_types",
    "processing",
    "receipt_email",
    "setup_future_usage",
    "shipping",
    "status",
];

/// `intent` as a publishable key sees it.
pub(crate) fn client_side(intent: &Value) -> Value {
    let Some(object) = intent.as_object() else {
        return intent.clone();
    };
    let subset: Map<String, Value> = CLIENT_FIELDS
        .iter()
        .filter_map(|field| Some(((*field).to_owned(), object.get(*field)?.clone())))
        .collect();
    Value::Object(subset)
}

/// An answer for a browser: a PaymentIntent, or an error that carries one,
/// cut to the client-side fields.
pub(crate) fn for_browser(mut body: Value) -> Value {
    if body["object"] == "payment_intent" {
        return client_side(&body);
    }
    if body["error"]["payment_intent"].is_object() {
        body["error"]["payment_intent"] = client_side(&body["error"]["payment_intent"]);
    }
    body
}

/// The payment method a confirm names: `payment_method=pm_…`, or card
/// details in `payment_method_data` (as Stripe.js sends what the card
/// form holds), read as Stripe's test cards. A number that fails the Luhn
/// check is Stripe's `incorrect_number`; any other card is declined as a
/// live card used in test mode.
pub(crate) fn payment_method_of(
    params: &[(String, String)],
) -> Result<Option<String>, (StatusCode, Value)> {
    if let Some(pm) = param(params, "payment_method") {
        return Ok(Some(pm.to_owned()));
    }
    let Some(number) = param(params, "payment_method_data[card][number]") else {
        return Ok(None);
    };
    let digits: String = number.chars().filter(|c| !c.is_whitespace()).collect();
    let card_error = |code: &str, decline_code: Option<&str>, message: &str| {
        let mut error = json!({"type": "card_error", "code": code, "message": message,
                               "param": "payment_method_data[card][number]",
                               "doc_url": format!("https://docs.stripe.com/error-codes/{}", code.replace('_', "-"))});
        if let Some(decline_code) = decline_code {
            error["decline_code"] = json!(decline_code);
        }
        Err((StatusCode::PAYMENT_REQUIRED, json!({ "error": error })))
    };
    if !luhn_valid(&digits) {
        return card_error("incorrect_number", None, "Your card number is incorrect.");
    }
    let pm = match digits.as_str() {
        "4242424242424242" | "5555555555554444" | "378282246310005" => PM_CARD_VISA,
        "4000000000000002" => PM_CARD_DECLINED,
        "4000002500003155" | "4000002760003184" => PM_CARD_3DS,
        "4000000000000259" => PM_CARD_DISPUTED,
        _ => {
            return card_error(
                "card_declined",
                Some("test_mode_live_card"),
                "Your card was declined. Your request was in test mode, but used a non test (live) card. For a list of valid test cards, visit: https://stripe.com/docs/testing.",
            );
        }
    };
    Ok(Some(pm.to_owned()))
}

fn luhn_valid(digits: &str) -> bool {
    if !(12..=19).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripes_test_numbers_pass_the_luhn_check_and_a_typo_does_not() {
        for number in [
            "4242424242424242",
            "4000000000000002",
            "4000002500003155",
            "4000000000000259",
        ] {
            assert!(luhn_valid(number), "{number}");
        }
        assert!(!luhn_valid("4242424242424241"));
        assert!(!luhn_valid("4242"));
        assert!(!luhn_valid("42424242424242a2"));
    }

    #[test]
    fn only_retrieve_and_confirm_take_a_publishable_key() {
        assert!(publishable_route(&Method::GET, "/v1/payment_intents/pi_1"));
        assert!(publishable_route(
            &Method::POST,
            "/v1/payment_intents/pi_1/confirm"
        ));
        assert!(!publishable_route(
            &Method::POST,
            "/v1/payment_intents/pi_1"
        ));
        assert!(!publishable_route(&Method::POST, "/v1/payment_intents"));
        assert!(!publishable_route(
            &Method::POST,
            "/v1/payment_intents/pi_1/cancel"
        ));
        assert!(!publishable_route(&Method::GET, "/v1/refunds"));
        assert!(!publishable_route(&Method::GET, "/v1/payment_intents/"));
    }
}
