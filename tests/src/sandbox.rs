//! A local Stripe sandbox: the PaymentIntent API in Stripe's wire format
//! (form-encoded requests, PaymentIntent JSON, error objects, Idempotency-Key
//! replay, Bearer `sk_test_…` auth), the test payment methods, and webhooks
//! signed like Stripe's, delivered at least once and retried on failure.
//! Development and tests only.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use service_runtime::now_unix;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

/// Succeeds.
pub const PM_CARD_VISA: &str = "pm_card_visa";
/// Declined: 402 `card_error`, `payment_intent.payment_failed`.
pub const PM_CARD_DECLINED: &str = "pm_card_chargeDeclined";
/// Needs 3-D Secure: `requires_action` until the challenge is completed.
pub const PM_CARD_3DS: &str = "pm_card_authenticationRequired";

/// Where and how events are delivered.
#[derive(Clone, Debug)]
pub struct WebhookTarget {
    pub url: String,
    pub secret: String,
}

#[derive(Clone, Debug)]
pub struct SandboxConfig {
    pub webhook: Option<WebhookTarget>,
    /// Deliver every event twice.
    pub duplicate_events: bool,
    /// Collect events for `batch_window` and deliver each batch shuffled.
    pub shuffle_events: bool,
    pub batch_window: Duration,
    /// First retry delay after a failed delivery; doubled up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// A delivery still failing after this long is given up.
    pub give_up_after: Duration,
    /// Seed for the shuffle, so a failing order can be replayed.
    pub seed: u64,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            webhook: None,
            duplicate_events: false,
            shuffle_events: false,
            batch_window: Duration::from_millis(150),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            give_up_after: Duration::from_secs(120),
            seed: 0x5eed,
        }
    }
}

/// Delivery counters, for tests and the demo.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeliveryStats {
    pub events: u64,
    pub deliveries: u64,
    pub attempts: u64,
    pub failed_attempts: u64,
    pub delivered: u64,
    pub given_up: u64,
}

struct IntentState {
    json: Value,
}

/// What an Idempotency-Key was first used for, and the answer given.
struct Replay {
    route: String,
    params: Vec<(String, String)>,
    status: StatusCode,
    body: Value,
}

struct Ledger {
    intents: HashMap<String, IntentState>,
    replays: HashMap<String, Replay>,
    events: Vec<Value>,
    next_id: u64,
    /// Differs between sandbox runs, so ids never repeat across restarts.
    instance: String,
}

impl Default for Ledger {
    fn default() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let mix = (nanos as u64) ^ (u64::from(std::process::id()) << 32);
        Self {
            intents: HashMap::new(),
            replays: HashMap::new(),
            events: Vec::new(),
            next_id: 0,
            instance: format!("{:012x}", Shuffler(mix | 1).next() & 0xffff_ffff_ffff),
        }
    }
}

struct Shared {
    ledger: Mutex<Ledger>,
    config: Mutex<SandboxConfig>,
    stats: watch::Sender<DeliveryStats>,
    queue: mpsc::UnboundedSender<Value>,
    /// Deliveries queued or in flight.
    pending: watch::Sender<u64>,
}

/// A running sandbox.
pub struct Sandbox {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Sandbox {
    /// Serves on `listener` until the runtime stops.
    pub async fn start(listener: TcpListener, config: SandboxConfig) -> Self {
        let addr = listener.local_addr().expect("bound listener");
        let (queue, events) = mpsc::unbounded_channel();
        let (pending, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            ledger: Mutex::default(),
            config: Mutex::new(config),
            stats: watch::channel(DeliveryStats::default()).0,
            queue,
            pending,
        });
        tokio::spawn(deliver_events(shared.clone(), events));
        let app = router(shared.clone());
        tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                tracing::error!(error = %err, "sandbox stopped");
            }
        });
        Self { addr, shared }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_webhook(&self, target: Option<WebhookTarget>) {
        self.shared.config.lock().unwrap().webhook = target;
    }

    pub fn set_delivery(&self, duplicate: bool, shuffle: bool) {
        let mut config = self.shared.config.lock().unwrap();
        config.duplicate_events = duplicate;
        config.shuffle_events = shuffle;
    }

    pub fn stats(&self) -> DeliveryStats {
        *self.shared.stats.borrow()
    }

    /// Resolves once the delivery counters satisfy `condition`.
    pub async fn wait_for_stats(
        &self,
        condition: impl FnMut(&DeliveryStats) -> bool,
    ) -> DeliveryStats {
        let mut stats = self.shared.stats.subscribe();
        *stats.wait_for(condition).await.expect("sandbox running")
    }

    /// Every event created so far, oldest first.
    pub fn events(&self) -> Vec<Value> {
        self.shared.ledger.lock().unwrap().events.clone()
    }

    pub fn intent(&self, id: &str) -> Option<Value> {
        self.shared
            .ledger
            .lock()
            .unwrap()
            .intents
            .get(id)
            .map(|i| i.json.clone())
    }

    /// Resolves once every event is delivered (or given up).
    pub async fn settled(&self) {
        let mut pending = self.shared.pending.subscribe();
        let _ = pending.wait_for(|n| *n == 0).await;
    }
}

fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/v1/payment_intents", post(create_intent))
        .route(
            "/v1/payment_intents/{id}",
            get(retrieve_intent).post(update_intent),
        )
        .route("/v1/payment_intents/{id}/confirm", post(confirm_intent))
        .route("/v1/payment_intents/{id}/cancel", post(cancel_intent))
        .layer(middleware::from_fn(require_secret_key));
    Router::new()
        .merge(api)
        // What Stripe.js does in the browser: pass or fail the 3-D Secure challenge.
        .route(
            "/sandbox/payment_intents/{id}/authenticate",
            post(authenticate),
        )
        .route("/sandbox/events", get(list_events))
        .route("/sandbox/health", get(|| async { "ok" }))
        .with_state(shared)
}

/// Stripe's error object.
fn stripe_error(status: StatusCode, error: Value) -> Response {
    (status, Json(json!({ "error": error }))).into_response()
}

fn invalid_request(message: &str, param: Option<&str>) -> (StatusCode, Value) {
    let mut error = json!({"type": "invalid_request_error", "message": message});
    if let Some(param) = param {
        error["param"] = json!(param);
    }
    (StatusCode::BAD_REQUEST, json!({ "error": error }))
}

fn no_such_intent(id: &str) -> (StatusCode, Value) {
    (
        StatusCode::NOT_FOUND,
        json!({"error": {"type": "invalid_request_error", "code": "resource_missing",
                          "param": "intent", "message": format!("No such payment_intent: '{id}'")}}),
    )
}

async fn require_secret_key(request: Request, next: Next) -> Response {
    let authorized = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(secret_key)
        .is_some_and(|key| key.starts_with("sk_test_") && key.len() > "sk_test_".len());
    if authorized {
        next.run(request).await
    } else {
        stripe_error(
            StatusCode::UNAUTHORIZED,
            json!({"type": "invalid_request_error",
                   "message": "Invalid API Key provided. The sandbox accepts only sk_test_ keys."}),
        )
    }
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

fn form(body: &[u8]) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    params.sort();
    params
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
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

/// Runs a POST once per Idempotency-Key, replaying its answer like Stripe.
fn idempotent(
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

impl Ledger {
    fn next_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}_sbx{}{:08}", self.instance, self.next_id)
    }
}

/// A Stripe event envelope around `object`, as Stripe sends it.
pub fn stripe_event(id: &str, event_type: &str, object: &Value) -> Value {
    json!({
        "id": id,
        "object": "event",
        "api_version": "2025-10-29.clover",
        "created": now_unix(),
        "livemode": false,
        "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null},
        "type": event_type,
        "data": {"object": object},
    })
}

fn emit(shared: &Shared, ledger: &mut Ledger, event_type: &str, object: &Value) {
    let event = stripe_event(&ledger.next_id("evt"), event_type, object);
    ledger.events.push(event.clone());
    shared.stats.send_modify(|s| s.events += 1);
    if shared.config.lock().unwrap().webhook.is_some() {
        shared.pending.send_modify(|n| *n += 1);
        let _ = shared.queue.send(event);
    }
}

async fn create_intent(
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
            let automatic = param(params, "automatic_payment_methods[enabled]") == Some("true");
            let intent = json!({
                "id": id,
                "object": "payment_intent",
                "amount": amount,
                "amount_capturable": 0,
                "amount_details": {"tip": {}},
                "amount_received": 0,
                "application": null,
                "application_fee_amount": null,
                "automatic_payment_methods": if automatic { json!({"allow_redirects": "always", "enabled": true}) } else { Value::Null },
                "canceled_at": null,
                "cancellation_reason": null,
                "capture_method": "automatic_async",
                "client_secret": format!("{id}_secret_{}", &ledger.next_id("cs")[6..]),
                "confirmation_method": "automatic",
                "created": now_unix(),
                "currency": currency.to_ascii_lowercase(),
                "customer": null,
                "description": param(params, "description"),
                "last_payment_error": null,
                "latest_charge": null,
                "livemode": false,
                "metadata": metadata(params),
                "next_action": null,
                "on_behalf_of": null,
                "payment_method": null,
                "payment_method_options": {"card": {"installments": null, "mandate_options": null, "network": null, "request_three_d_secure": "automatic"}},
                "payment_method_types": ["card"],
                "processing": null,
                "receipt_email": null,
                "review": null,
                "setup_future_usage": null,
                "shipping": null,
                "source": null,
                "statement_descriptor": null,
                "statement_descriptor_suffix": null,
                "status": "requires_payment_method",
                "transfer_data": null,
                "transfer_group": null,
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

async fn retrieve_intent(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let (status, body) = match shared.ledger.lock().unwrap().intents.get(&id) {
        Some(intent) => (StatusCode::OK, intent.json.clone()),
        None => no_such_intent(&id),
    };
    (status, Json(body)).into_response()
}

async fn update_intent(
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

async fn confirm_intent(
    State(shared): State<Arc<Shared>>,
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
            let Some(intent) = ledger.intents.get(&id) else {
                return no_such_intent(&id);
            };
            let mut json = intent.json.clone();
            let status = json["status"].as_str().unwrap_or_default().to_owned();
            if !matches!(
                status.as_str(),
                "requires_payment_method" | "requires_confirmation" | "requires_action"
            ) {
                return unexpected_state(&json);
            }
            let payment_method = param(params, "payment_method")
                .map(str::to_owned)
                .or_else(|| json["payment_method"].as_str().map(str::to_owned));
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
                PM_CARD_VISA => {
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
            ledger.intents.get_mut(&id).expect("exists").json = json.clone();
            match answer {
                Outcome::Event(event_type) => {
                    emit(&shared_ref, ledger, event_type, &json);
                    (StatusCode::OK, json)
                }
                Outcome::Declined(mut error) => {
                    emit(&shared_ref, ledger, "payment_intent.payment_failed", &json);
                    error["payment_intent"] = json;
                    (StatusCode::PAYMENT_REQUIRED, json!({ "error": error }))
                }
            }
        },
    )
}

enum Outcome {
    Event(&'static str),
    Declined(Value),
}

fn succeed(intent: &mut Value, charge: String) {
    intent["status"] = json!("succeeded");
    intent["amount_received"] = intent["amount"].clone();
    intent["latest_charge"] = json!(charge);
    intent["last_payment_error"] = Value::Null;
    intent["next_action"] = Value::Null;
}

/// Records a failed attempt the way Stripe does; returns the error object.
fn decline(
    intent: &mut Value,
    charge: String,
    code: &str,
    decline_code: Option<&str>,
    message: &str,
) -> Value {
    let mut error = json!({
        "type": "card_error",
        "code": code,
        "message": message,
        "charge": charge,
        "doc_url": format!("https://docs.stripe.com/error-codes/{}", code.replace('_', "-")),
    });
    if let Some(decline_code) = decline_code {
        error["decline_code"] = json!(decline_code);
    }
    intent["status"] = json!("requires_payment_method");
    intent["latest_charge"] = json!(charge);
    intent["last_payment_error"] = error.clone();
    intent["next_action"] = Value::Null;
    error
}

async fn cancel_intent(
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

async fn authenticate(
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

async fn list_events(State(shared): State<Arc<Shared>>) -> Json<Value> {
    let events = shared.ledger.lock().unwrap().events.clone();
    Json(json!({"object": "list", "data": events}))
}

/// A tiny deterministic PRNG for the shuffle (xorshift64*).
struct Shuffler(u64);

impl Shuffler {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

async fn deliver_events(shared: Arc<Shared>, mut events: mpsc::UnboundedReceiver<Value>) {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut shuffler = Shuffler(shared.config.lock().unwrap().seed | 1);
    while let Some(first) = events.recv().await {
        let config = shared.config.lock().unwrap().clone();
        let mut batch = vec![first];
        if config.shuffle_events {
            let deadline = tokio::time::Instant::now() + config.batch_window;
            while let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.recv()).await {
                batch.push(event);
            }
        }
        while let Ok(event) = events.try_recv() {
            batch.push(event);
        }
        if config.duplicate_events {
            shared.pending.send_modify(|n| *n += batch.len() as u64);
            batch = batch
                .into_iter()
                .flat_map(|event| [event.clone(), event])
                .collect();
        }
        if config.shuffle_events {
            shuffler.shuffle(&mut batch);
        }
        for event in batch {
            let Some(target) = config.webhook.clone() else {
                shared.pending.send_modify(|n| *n -= 1);
                continue;
            };
            shared.stats.send_modify(|s| s.deliveries += 1);
            tokio::spawn(deliver(
                shared.clone(),
                client.clone(),
                target,
                config.clone(),
                event,
            ));
        }
    }
}

/// Sends one event until a 2xx answer, backing off like Stripe (faster).
async fn deliver(
    shared: Arc<Shared>,
    client: Client<HttpConnector, Full<Bytes>>,
    target: WebhookTarget,
    config: SandboxConfig,
    event: Value,
) {
    let body = Bytes::from(serde_json::to_vec(&event).expect("event JSON"));
    let started = tokio::time::Instant::now();
    let mut backoff = config.initial_backoff;
    loop {
        let signature = edge_gateway::testing::stripe_signature(&target.secret, now_unix(), &body);
        let request = hyper::Request::post(&target.url)
            .header("content-type", "application/json; charset=utf-8")
            .header("stripe-signature", signature)
            .header(
                "user-agent",
                "Stripe/1.0 (+https://stripe.com/docs/webhooks) sandbox",
            )
            .body(Full::new(body.clone()))
            .expect("request");
        shared.stats.send_modify(|s| s.attempts += 1);
        let outcome = tokio::time::timeout(Duration::from_secs(10), client.request(request)).await;
        let delivered = matches!(&outcome, Ok(Ok(response)) if response.status().is_success());
        if delivered {
            shared.stats.send_modify(|s| s.delivered += 1);
            break;
        }
        let reason = match outcome {
            Ok(Ok(response)) => format!("HTTP {}", response.status()),
            Ok(Err(err)) => err.to_string(),
            Err(_) => "timed out".to_owned(),
        };
        shared.stats.send_modify(|s| s.failed_attempts += 1);
        if started.elapsed() >= config.give_up_after {
            tracing::warn!(event = %event["id"], %reason, "sandbox gave up delivering");
            shared.stats.send_modify(|s| s.given_up += 1);
            break;
        }
        tracing::debug!(event = %event["id"], %reason, ?backoff, "delivery failed; retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(config.max_backoff);
    }
    shared.pending.send_modify(|n| *n -= 1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shuffle_is_a_permutation() {
        let mut items: Vec<u32> = (0..50).collect();
        Shuffler(7).shuffle(&mut items);
        assert_ne!(items, (0..50).collect::<Vec<_>>());
        items.sort_unstable();
        assert_eq!(items, (0..50).collect::<Vec<_>>());
    }
}
