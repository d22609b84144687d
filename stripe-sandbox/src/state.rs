//! What the sandbox keeps: intents, idempotency replays, events.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use serde_json::{Value, json};
use service_runtime::now_unix;
use tokio::sync::{mpsc, watch};

use crate::delivery::Shuffler;
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
    if shared.config.lock().unwrap().webhook.is_some() {
        shared.pending.send_modify(|n| *n += 1);
        let _ = shared.queue.send(event);
    }
}
