//! What the sandbox keeps: intents, idempotency replays, events.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use serde_json::{Value, json};
use service_runtime::now_unix;
use tokio::sync::{mpsc, watch};

use crate::faults::{QueuedFault, RecordedRequest};
use crate::{DeliveryStats, SandboxConfig};

pub(crate) struct IntentState {
    pub(crate) json: Value,
}

/// What an Idempotency-Key was first used for, and the answer given.
pub(crate) struct Replay {
    pub(crate) route: String,
    pub(crate) params: Vec<(String, String)>,
    pub(crate) status: StatusCode,
    pub(crate) body: Value,
}

pub(crate) struct Ledger {
    pub(crate) intents: HashMap<String, IntentState>,
    pub(crate) replays: HashMap<String, Replay>,
    pub(crate) events: Vec<Value>,
    /// By id; ids grow with time, so this is creation order.
    pub(crate) refunds: BTreeMap<String, Value>,
    pub(crate) disputes: BTreeMap<String, Value>,
    pub(crate) next_id: u64,
    /// Differs between sandbox runs, so ids never repeat across restarts.
    pub(crate) instance: String,
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
            refunds: BTreeMap::new(),
            disputes: BTreeMap::new(),
            next_id: 0,
            instance: format!("{:012x}", Shuffler(mix | 1).next() & 0xffff_ffff_ffff),
        }
    }
}

pub(crate) struct Shared {
    pub(crate) ledger: Mutex<Ledger>,
    pub(crate) config: Mutex<SandboxConfig>,
    pub(crate) stats: watch::Sender<DeliveryStats>,
    pub(crate) queue: mpsc::UnboundedSender<Value>,
    /// Deliveries queued or in flight.
    pub(crate) pending: watch::Sender<u64>,
    /// While true, events wait in the queue undelivered (`hold_webhooks`).
    pub(crate) held: watch::Sender<bool>,
    /// API requests received (with `record_requests`), oldest first.
    pub(crate) received: Mutex<Vec<RecordedRequest>>,
    /// Answers queued by tests in place of the API's.
    pub(crate) faults: Mutex<Vec<QueuedFault>>,
}

impl Ledger {
    pub(crate) fn next_id(&mut self, prefix: &str) -> String {
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

/// Records an event and queues it for delivery when a webhook is set.
pub(crate) fn emit(shared: &Shared, ledger: &mut Ledger, event_type: &str, object: &Value) {
    let event = stripe_event(&ledger.next_id("evt"), event_type, object);
    ledger.events.push(event.clone());
    shared.stats.send_modify(|s| s.events += 1);
    let config = shared.config.lock().unwrap();
    if config.drop_event_types.iter().any(|t| t == event_type) {
        // Recorded (the Events API lists it) but never delivered: a lost
        // webhook.
        shared.stats.send_modify(|s| s.dropped += 1);
        return;
    }
    if config.webhook.is_some() {
        shared.pending.send_modify(|n| *n += 1);
        let _ = shared.queue.send(event);
    }
}

/// What a new PaymentIntent is made of.
pub(crate) struct NewIntent<'a> {
    pub(crate) id: &'a str,
    pub(crate) amount: i64,
    pub(crate) currency: &'a str,
    pub(crate) metadata: BTreeMap<String, String>,
    pub(crate) automatic_payment_methods: bool,
    pub(crate) description: Option<&'a str>,
    pub(crate) client_secret: String,
}

/// A new PaymentIntent as Stripe's API returns it (`requires_payment_method`).
pub(crate) fn new_intent(new: NewIntent<'_>) -> Value {
    let automatic = if new.automatic_payment_methods {
        json!({"allow_redirects": "always", "enabled": true})
    } else {
        Value::Null
    };
    json!({
        "id": new.id,
        "object": "payment_intent",
        "amount": new.amount,
        "amount_capturable": 0,
        "amount_details": {"tip": {}},
        "amount_received": 0,
        "application": null,
        "application_fee_amount": null,
        "automatic_payment_methods": automatic,
        "canceled_at": null,
        "cancellation_reason": null,
        "capture_method": "automatic_async",
        "client_secret": new.client_secret,
        "confirmation_method": "automatic",
        "created": now_unix(),
        "currency": new.currency,
        "customer": null,
        "description": new.description,
        "last_payment_error": null,
        "latest_charge": null,
        "livemode": false,
        "metadata": new.metadata,
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
    })
}

pub(crate) fn succeed(intent: &mut Value, charge: String) {
    intent["status"] = json!("succeeded");
    intent["amount_received"] = intent["amount"].clone();
    intent["latest_charge"] = json!(charge);
    intent["last_payment_error"] = Value::Null;
    intent["next_action"] = Value::Null;
}

/// Records a failed attempt the way Stripe does; returns the error object.
pub(crate) fn decline(
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

/// A tiny deterministic PRNG for the shuffle (xorshift64*).
pub(crate) struct Shuffler(pub(crate) u64);

impl Shuffler {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}
