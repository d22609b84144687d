//! Test controls: the intents a test puts at "Stripe", what Stripe decides
//! about them, the requests it received, and the faults it answers with.
//! The API never reaches these; tests call them on [`Sandbox`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::Sandbox;
use crate::faults::{Fault, QueuedFault, RecordedRequest};
use crate::state::{IntentState, NewIntent, Shared, decline, new_intent, succeed};

/// The fields of a PaymentIntent a test reads and sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntentFields {
    pub id: String,
    pub amount: i64,
    pub amount_received: i64,
    pub currency: String,
    pub status: String,
    pub metadata: HashMap<String, String>,
    /// `(decline_code, message)` of the last failed attempt.
    pub last_payment_error: Option<(String, String)>,
}

impl IntentFields {
    fn from_json(json: &Value) -> Self {
        let text = |key: &str| json[key].as_str().unwrap_or_default().to_owned();
        let metadata = json["metadata"]
            .as_object()
            .map(|map| {
                map.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let error = &json["last_payment_error"];
        let last_payment_error = error.is_object().then(|| {
            let code = error["decline_code"]
                .as_str()
                .or(error["code"].as_str())
                .unwrap_or_default();
            (
                code.to_owned(),
                error["message"].as_str().unwrap_or_default().to_owned(),
            )
        });
        Self {
            id: text("id"),
            amount: json["amount"].as_i64().unwrap_or_default(),
            amount_received: json["amount_received"].as_i64().unwrap_or_default(),
            currency: text("currency"),
            status: text("status"),
            metadata,
            last_payment_error,
        }
    }

    /// Stripe's whole PaymentIntent JSON with these fields (the sandbox's
    /// one encoding of a PaymentIntent, also for stateless fronts such as
    /// the benchmark's).
    pub fn to_json(&self) -> Value {
        let mut json = new_intent(NewIntent {
            id: &self.id,
            amount: self.amount,
            currency: &self.currency,
            metadata: self
                .metadata
                .clone()
                .into_iter()
                .collect::<BTreeMap<_, _>>(),
            automatic_payment_methods: true,
            description: None,
            client_secret: format!("{}_secret_test", self.id),
        });
        json["amount_received"] = json!(self.amount_received);
        json["status"] = json!(self.status);
        if let Some((decline_code, message)) = &self.last_payment_error {
            decline(
                &mut json,
                format!("ch_{}", self.id),
                "card_declined",
                Some(decline_code),
                message,
            );
            json["status"] = json!(self.status);
        }
        json
    }
}

/// Largest request body recorded; Stripe's own limit is far below.
const MAX_RECORDED_BODY: usize = 1024 * 1024;

/// Records every API request (when asked to) and answers it with a queued
/// fault for its method, if any.
pub(crate) async fn record_and_inject(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().as_str().to_owned();
    let parts_path = request.uri().path().to_owned();
    let request = if shared.config.lock().unwrap().record_requests {
        let (parts, body) = request.into_parts();
        let Ok(body) = axum::body::to_bytes(body, MAX_RECORDED_BODY).await else {
            return StatusCode::PAYLOAD_TOO_LARGE.into_response();
        };
        shared.received.lock().unwrap().push(RecordedRequest {
            method: method.clone(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or_default().to_owned(),
            headers: parts.headers.clone(),
            body: body.clone(),
        });
        Request::from_parts(parts, Body::from(body))
    } else {
        request
    };
    let fault = {
        let mut faults = shared.faults.lock().unwrap();
        let found = faults.iter_mut().find(|queued| {
            queued.method == method
                && parts_path.starts_with(&queued.path_prefix)
                && queued.remaining > 0
        });
        found.map(|queued| {
            queued.remaining -= 1;
            queued.fault.clone()
        })
    };
    match fault {
        Some(fault) => {
            tokio::time::sleep(fault.delay).await;
            let mut response = (fault.status, fault.body).into_response();
            response
                .headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            response
        }
        None => next.run(request).await,
    }
}

impl Sandbox {
    /// A sandbox for one test: on a free loopback port, no webhooks, every
    /// request recorded.
    pub async fn start_local() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the sandbox");
        Self::start(
            listener,
            crate::SandboxConfig {
                record_requests: true,
                ..crate::SandboxConfig::default()
            },
        )
        .await
    }

    fn update_intent(&self, id: &str, change: impl FnOnce(&mut Value)) {
        let mut ledger = self.shared.ledger.lock().unwrap();
        let intent = ledger.intents.get_mut(id).expect("a known intent");
        change(&mut intent.json);
    }

    /// Adds (or replaces) an intent, e.g. one this service never created.
    pub fn put_intent(&self, intent: IntentFields) {
        let json = intent.to_json();
        self.shared
            .ledger
            .lock()
            .unwrap()
            .intents
            .insert(intent.id, IntentState { json });
    }

    pub fn intent(&self, id: &str) -> Option<IntentFields> {
        self.intent_json(id).as_ref().map(IntentFields::from_json)
    }

    pub fn intent_ids(&self) -> Vec<String> {
        let ledger = self.shared.ledger.lock().unwrap();
        ledger.intents.keys().cloned().collect()
    }

    pub fn intent_count(&self) -> usize {
        self.shared.ledger.lock().unwrap().intents.len()
    }

    /// Marks the intent paid in full, as a confirmed card payment does.
    pub fn succeed(&self, id: &str) {
        self.update_intent(id, |json| succeed(json, format!("ch_{id}")));
    }

    /// Marks the intent's attempt declined, as Stripe reports it.
    pub fn decline(&self, id: &str, decline_code: &str, message: &str) {
        self.update_intent(id, |json| {
            decline(
                json,
                format!("ch_{id}"),
                "card_declined",
                Some(decline_code),
                message,
            );
        });
    }

    pub fn set_status(&self, id: &str, status: &str) {
        self.update_intent(id, |json| json["status"] = json!(status));
    }

    /// The API requests received so far with `method` whose path starts
    /// with `path_prefix`, oldest first (with `record_requests`).
    pub async fn requests_to(&self, method: &str, path_prefix: &str) -> Vec<RecordedRequest> {
        let received = self.shared.received.lock().unwrap();
        received
            .iter()
            .filter(|r| r.method == method && r.path.starts_with(path_prefix))
            .cloned()
            .collect()
    }

    /// Drops every queued fault: the API answers for real again.
    pub fn clear_faults(&self) {
        self.shared.faults.lock().unwrap().clear();
    }

    /// Answers the next `times` API requests with `method` with `fault`.
    pub async fn fail_next(&self, method: &str, times: u64, fault: Fault) {
        self.fail_next_on(method, "/", times, fault).await;
    }

    /// Answers the next `times` API requests with `method` to a path that
    /// starts with `path_prefix` with `fault`.
    pub async fn fail_next_on(&self, method: &str, path_prefix: &str, times: u64, fault: Fault) {
        self.shared.faults.lock().unwrap().push(QueuedFault {
            method: method.to_owned(),
            path_prefix: path_prefix.to_owned(),
            remaining: times,
            fault,
        });
    }
}
