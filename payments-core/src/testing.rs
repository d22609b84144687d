//! An HTTP-level Stripe stand-in (wiremock) that answers the PaymentIntent
//! API the way Stripe does, for this and other crates' tests. The test
//! databases are `payments-test-support`'s.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{header_exists, method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// One PaymentIntent as the stand-in keeps it.
#[derive(Debug, Clone)]
pub struct FakeIntent {
    pub id: String,
    pub amount: i64,
    pub amount_received: i64,
    pub currency: String,
    pub status: String,
    pub metadata: HashMap<String, String>,
    pub last_payment_error: Option<(String, String)>,
}

impl FakeIntent {
    /// Stripe's JSON for this intent (every field async-stripe requires).
    pub fn to_json(&self) -> Value {
        let last_payment_error = self.last_payment_error.as_ref().map(|(code, message)| {
            json!({"type": "card_error", "code": "card_declined", "decline_code": code, "message": message})
        });
        json!({
            "id": self.id,
            "object": "payment_intent",
            "amount": self.amount,
            "amount_capturable": 0,
            "amount_received": self.amount_received,
            "automatic_payment_methods": {"enabled": true},
            "capture_method": "automatic_async",
            "client_secret": format!("{}_secret_test", self.id),
            "confirmation_method": "automatic",
            "created": 1_764_000_000,
            "currency": self.currency,
            "last_payment_error": last_payment_error,
            "livemode": false,
            "metadata": self.metadata,
            "payment_method_types": ["card"],
            "status": self.status,
        })
    }
}

/// Stripe's error object.
pub fn stripe_error(status: u16, error_type: &str, code: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "error": {"type": error_type, "code": code, "message": message}
    }))
}

#[derive(Default)]
struct StandInState {
    intents: HashMap<String, FakeIntent>,
    /// Idempotency-Key → (request parameters, intent id), as Stripe replays keys.
    keys: HashMap<String, (Vec<(String, String)>, String)>,
    next_id: u64,
}

/// An HTTP-level stand-in for Stripe's PaymentIntent API.
pub struct StripeStandIn {
    pub server: MockServer,
    state: Arc<Mutex<StandInState>>,
}

impl StripeStandIn {
    pub async fn start() -> Self {
        let server = MockServer::start().await;
        let stand_in = Self {
            server,
            state: Arc::default(),
        };
        stand_in.mount_default_routes().await;
        stand_in
    }

    pub fn url(&self) -> String {
        self.server.uri()
    }

    /// The base a `StripeGateway` needs, with fast retries for tests.
    pub fn config(&self) -> crate::stripe::StripeConfig {
        crate::stripe::StripeConfig {
            secret_key: "sk_test_standin".into(),
            api_base: self.url(),
            timeout: Duration::from_secs(2),
            deadline: Duration::from_secs(5),
            max_attempts: 3,
            retry_backoff: Duration::from_millis(10),
        }
    }

    async fn mount_default_routes(&self) {
        Mock::given(method("POST"))
            .and(path("/v1/payment_intents"))
            .and(header_exists("authorization"))
            .respond_with(CreateIntent(self.state.clone()))
            .with_priority(10)
            .mount(&self.server)
            .await;
        Mock::given(method("GET"))
            .and(path_regex(r"^/v1/payment_intents/[^/]+$"))
            .respond_with(RetrieveIntent(self.state.clone()))
            .with_priority(10)
            .mount(&self.server)
            .await;
    }

    fn state(&self) -> MutexGuard<'_, StandInState> {
        self.state.lock().expect("stand-in state")
    }

    /// Adds (or replaces) an intent, e.g. one this service never created.
    pub fn put_intent(&self, intent: FakeIntent) {
        self.state().intents.insert(intent.id.clone(), intent);
    }

    pub fn intent(&self, id: &str) -> Option<FakeIntent> {
        self.state().intents.get(id).cloned()
    }

    pub fn intent_ids(&self) -> Vec<String> {
        self.state().intents.keys().cloned().collect()
    }

    pub fn intent_count(&self) -> usize {
        self.state().intents.len()
    }

    /// Marks the intent paid in full, as a confirmed card payment does.
    pub fn succeed(&self, id: &str) {
        let mut state = self.state();
        let intent = state.intents.get_mut(id).expect("known intent");
        intent.status = "succeeded".into();
        intent.amount_received = intent.amount;
        intent.last_payment_error = None;
    }

    /// Marks the intent failed with a decline, as Stripe reports it.
    pub fn decline(&self, id: &str, decline_code: &str, message: &str) {
        let mut state = self.state();
        let intent = state.intents.get_mut(id).expect("known intent");
        intent.status = "requires_payment_method".into();
        intent.last_payment_error = Some((decline_code.into(), message.into()));
    }

    pub fn set_status(&self, id: &str, status: &str) {
        self.state()
            .intents
            .get_mut(id)
            .expect("known intent")
            .status = status.into();
    }

    /// Requests received so far, optionally only those to `path`.
    pub async fn requests_to(&self, method_name: &str, path_prefix: &str) -> Vec<Request> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.method.as_str() == method_name && r.url.path().starts_with(path_prefix))
            .collect()
    }

    /// Answers the next `times` matching requests with `response` instead.
    pub async fn fail_next(&self, http_method: &str, times: u64, response: ResponseTemplate) {
        Mock::given(method(http_method))
            .and(path_regex(r"^/v1/payment_intents"))
            .respond_with(response)
            .up_to_n_times(times)
            .with_priority(1)
            .mount(&self.server)
            .await;
    }
}

/// Form fields of a Stripe request body (`a[b]=c` keys kept as written).
pub fn form_fields(request: &Request) -> HashMap<String, String> {
    url::form_urlencoded::parse(&request.body)
        .into_owned()
        .collect()
}

/// A Stripe event's JSON for an object id.
pub fn event_json(event_id: &str, event_type: &str, object_id: &str) -> String {
    json!({
        "id": event_id,
        "object": "event",
        "api_version": "2025-01-27.acacia",
        "created": 1_764_000_100,
        "livemode": false,
        "type": event_type,
        "data": {"object": {"id": object_id, "object": "payment_intent", "amount": 999_999, "amount_received": 999_999}}
    })
    .to_string()
}

struct CreateIntent(Arc<Mutex<StandInState>>);

impl Respond for CreateIntent {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let form = form_fields(request);
        // Stripe compares parameters, not their order in the body.
        let mut params: Vec<(String, String)> = form.clone().into_iter().collect();
        params.sort();
        let key = request
            .headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut state = self.0.lock().expect("stand-in state");
        if let Some((seen_params, id)) = key.as_ref().and_then(|k| state.keys.get(k)) {
            if *seen_params != params {
                return stripe_error(
                    400,
                    "idempotency_error",
                    "idempotency_key_in_use",
                    "Keys for idempotent requests can only be used with the same parameters they were first used with.",
                );
            }
            let intent = state.intents[id].to_json();
            return ResponseTemplate::new(200)
                .set_body_json(intent)
                .insert_header("idempotent-replayed", "true");
        }
        let Some(amount) = form.get("amount").and_then(|a| a.parse::<i64>().ok()) else {
            return stripe_error(
                400,
                "invalid_request_error",
                "parameter_missing",
                "Missing required param: amount.",
            );
        };
        let Some(currency) = form.get("currency").cloned() else {
            return stripe_error(
                400,
                "invalid_request_error",
                "parameter_missing",
                "Missing required param: currency.",
            );
        };
        state.next_id += 1;
        let id = format!("pi_standin{:06}", state.next_id);
        let metadata = form
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    k.strip_prefix("metadata[")?.strip_suffix(']')?.to_owned(),
                    v.clone(),
                ))
            })
            .collect();
        let intent = FakeIntent {
            id: id.clone(),
            amount,
            amount_received: 0,
            currency,
            status: "requires_payment_method".into(),
            metadata,
            last_payment_error: None,
        };
        let json = intent.to_json();
        state.intents.insert(id.clone(), intent);
        if let Some(key) = key {
            state.keys.insert(key, (params, id));
        }
        ResponseTemplate::new(200).set_body_json(json)
    }
}

struct RetrieveIntent(Arc<Mutex<StandInState>>);

impl Respond for RetrieveIntent {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let id = request.url.path().rsplit('/').next().unwrap_or_default();
        match self.0.lock().expect("stand-in state").intents.get(id) {
            Some(intent) => ResponseTemplate::new(200).set_body_json(intent.to_json()),
            None => stripe_error(
                404,
                "invalid_request_error",
                "resource_missing",
                &format!("No such payment_intent: '{id}'"),
            ),
        }
    }
}
