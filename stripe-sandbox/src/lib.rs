//! A local Stripe sandbox: the PaymentIntent API in Stripe's wire format
//! (form-encoded requests, PaymentIntent JSON, error objects, Idempotency-Key
//! replay, Bearer `sk_test_…` auth), the test payment methods, and webhooks
//! signed like Stripe's, delivered at least once and retried on failure.
//! Development and tests only.
//!
//! - `routes`: every route; `api` and `after_payment` answer Stripe's
//!   (PaymentIntents; refunds, disputes and events), `browser` what
//!   Stripe.js calls, `wire` their shared form, error and replay rules;
//! - `state`: the intents, idempotency replays and events it keeps;
//! - `controls` and `faults`: what tests set, inject and read;
//! - `delivery`: webhooks, signed by its own `signer` (never by the code
//!   under test), retried, optionally duplicated and shuffled.

mod after_payment;
mod api;
mod browser;
mod controls;
mod delivery;
mod faults;
mod routes;
pub mod signer;
mod state;
mod wire;
#[cfg(test)]
mod wire_check;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

pub use controls::IntentFields;
pub use faults::{Fault, RecordedRequest, form_fields};
use state::Shared;
pub use state::stripe_event;

/// Succeeds.
pub const PM_CARD_VISA: &str = "pm_card_visa";
/// Declined: 402 `card_error`, `payment_intent.payment_failed`.
pub const PM_CARD_DECLINED: &str = "pm_card_chargeDeclined";
/// Succeeds, then its charge is disputed at once (`charge.dispute.created`,
/// `charge.dispute.funds_withdrawn`), as Stripe's test card.
pub const PM_CARD_DISPUTED: &str = "pm_card_createDispute";
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
    /// Keep every API request for `requests_to` (tests; memory grows with them).
    pub record_requests: bool,
    /// Events of these types are recorded (the Events API lists them) but
    /// never delivered: lost webhooks, for reconciliation to heal.
    pub drop_event_types: Vec<String>,
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
            record_requests: false,
            drop_event_types: Vec::new(),
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
    /// Events never delivered (`drop_event_types`).
    pub dropped: u64,
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
            held: watch::channel(false).0,
            received: Mutex::default(),
            faults: Mutex::default(),
        });
        tokio::spawn(delivery::deliver_events(shared.clone(), events));
        let app = routes::router(shared.clone());
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

    /// Holds every webhook back (queued, not delivered) until called with
    /// `false`: shows what happens before Stripe's webhooks arrive.
    pub fn hold_webhooks(&self, held: bool) {
        self.shared.held.send_replace(held);
    }

    pub fn set_delivery(&self, duplicate: bool, shuffle: bool) {
        let mut config = self.shared.config.lock().unwrap();
        config.duplicate_events = duplicate;
        config.shuffle_events = shuffle;
    }

    /// Events of these types are no longer delivered (`[]`: all are again).
    pub fn drop_events(&self, event_types: &[&str]) {
        self.shared.config.lock().unwrap().drop_event_types =
            event_types.iter().map(|t| (*t).to_owned()).collect();
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

    /// The intent's whole JSON, as the API answers it.
    pub fn intent_json(&self, id: &str) -> Option<Value> {
        self.shared
            .ledger
            .lock()
            .unwrap()
            .intents
            .get(id)
            .map(|i| i.json.clone())
    }

    /// `POST /v1/refunds` of the intent (all that is left when `amount` is
    /// `None`), answered as the route answers: the refund, or Stripe's error.
    pub async fn refund(&self, intent_id: &str, amount: Option<i64>) -> Value {
        let mut form = format!("payment_intent={intent_id}");
        if let Some(amount) = amount {
            form.push_str(&format!("&amount={amount}"));
        }
        let answer = after_payment::create_refund(
            axum::extract::State(self.shared.clone()),
            axum::http::HeaderMap::new(),
            form.into(),
        )
        .await;
        json_of(answer).await
    }

    /// The sandbox control `POST /sandbox/refunds/{id}/fail`.
    pub async fn fail_refund(&self, refund_id: &str) -> Value {
        let answer = after_payment::fail_refund(
            axum::extract::State(self.shared.clone()),
            axum::extract::Path(refund_id.to_owned()),
        )
        .await;
        json_of(answer).await
    }

    /// Disputes the succeeded intent's charge, as the dispute test card does.
    pub fn dispute(&self, intent_id: &str) -> String {
        let mut ledger = self.shared.ledger.lock().unwrap();
        let intent = ledger.intents[intent_id].json.clone();
        after_payment::open_dispute(&self.shared, &mut ledger, &intent);
        ledger
            .disputes
            .keys()
            .next_back()
            .cloned()
            .expect("a dispute")
    }

    /// The sandbox control `POST /sandbox/disputes/{id}/close`.
    pub async fn close_dispute(&self, dispute_id: &str, won: bool) -> Value {
        let outcome = if won { "outcome=won" } else { "outcome=lost" };
        let answer = after_payment::close_dispute(
            axum::extract::State(self.shared.clone()),
            axum::extract::Path(dispute_id.to_owned()),
            outcome.into(),
        )
        .await;
        json_of(answer).await
    }

    /// The ids of the disputes opened so far, oldest first.
    pub fn dispute_ids(&self) -> Vec<String> {
        let ledger = self.shared.ledger.lock().unwrap();
        ledger.disputes.keys().cloned().collect()
    }

    /// Resolves once every event is delivered (or given up).
    pub async fn settled(&self) {
        let mut pending = self.shared.pending.subscribe();
        let _ = pending.wait_for(|n| *n == 0).await;
    }
}

async fn json_of(answer: axum::response::Response) -> Value {
    let body = axum::body::to_bytes(answer.into_body(), usize::MAX)
        .await
        .expect("an in-memory body");
    serde_json::from_slice(&body).expect("a JSON answer")
}
