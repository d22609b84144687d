//! Stripe's PaymentIntent API, behind the one small trait the use cases need.

mod client;
mod http;
mod wire;

use std::future::Future;

pub use client::{MAX_RETRY_BACKOFF, StripeConfig, StripeGateway};
pub use http::{MAX_RESPONSE_BYTES, STRIPE_API_VERSION};
pub use payments_domain::stripe_event::{EventKind, StripeEvent};

use secrecy::SecretString;

use crate::domain::{Currency, PaymentStatus, Tier, UserId};

/// `metadata[created_by]` value on every PaymentIntent this service creates;
/// events about intents without it are not ours to act on.
pub const CREATED_BY_MARKER: &str = "credits-topup";

/// What the service asks Stripe to create.
#[derive(Debug, Clone)]
pub struct NewIntent<'a> {
    pub user_id: &'a UserId,
    pub tier: Tier,
    pub currency: Currency,
    /// Sent as Stripe's `Idempotency-Key`; reused on every retry.
    pub stripe_idempotency_key: &'a str,
    /// This deployment's id, sent as `metadata[deployment]`.
    pub deployment: &'a str,
}

/// The fields of a Stripe PaymentIntent this service uses.
#[derive(Debug, Clone)]
pub struct StripeIntent {
    pub id: String,
    pub amount: i64,
    pub amount_received: i64,
    pub currency: String,
    pub status: PaymentStatus,
    /// The right to confirm the payment: never logged, never stored.
    pub client_secret: Option<SecretString>,
    /// `metadata[user_id]`.
    pub user_id: Option<String>,
    /// `metadata[created_by]` is our marker.
    pub created_by_us: bool,
    /// `metadata[deployment]`: which deployment of this service created it.
    pub deployment: Option<String>,
    pub last_payment_error: Option<PaymentError>,
}

/// Stripe's `last_payment_error`, as recorded on a failed payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentError {
    /// `decline_code` when Stripe gives one (it says why a card was declined),
    /// else `code`.
    pub code: Option<String>,
    pub message: Option<String>,
}

/// The fields of a Stripe Refund this service uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeRefund {
    pub id: String,
    pub amount: i64,
    pub currency: String,
    /// `pending`, `requires_action`, `succeeded`, `failed` or `canceled`.
    pub status: String,
    pub intent_id: Option<String>,
}

impl StripeRefund {
    /// Whether the money is leaving or has left: `succeeded`, and also
    /// `pending` (DESIGN.md leaves the choice; a pending card refund nearly
    /// always succeeds, and clawing back early means the credits cannot be
    /// spent on the way out). A refund that then fails is given back.
    pub fn takes_credits(&self) -> bool {
        matches!(self.status.as_str(), "succeeded" | "pending")
    }

    /// Whether it will never move money: a clawback made for it is given back.
    pub fn gives_credits_back(&self) -> bool {
        matches!(self.status.as_str(), "failed" | "canceled")
    }
}

/// The fields of a Stripe Dispute this service uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeDispute {
    pub id: String,
    pub amount: i64,
    pub currency: String,
    /// Stripe's dispute status (`needs_response`, `under_review`, `won`,
    /// `lost`, the `warning_*` of an inquiry, `prevented`).
    pub status: String,
    pub intent_id: Option<String>,
}

impl StripeDispute {
    /// Whether the disputed funds were taken from the account: a chargeback
    /// (any status but an inquiry's `warning_*` or `prevented`, which move
    /// no money).
    pub fn takes_credits(&self) -> bool {
        !self.status.starts_with("warning_") && self.status != "prevented"
    }

    /// Whether the funds came back: the dispute was won.
    pub fn gives_credits_back(&self) -> bool {
        self.status == "won"
    }
}

/// One page of Stripe's Events API, newest first.
#[derive(Debug, Clone, Default)]
pub struct EventsPage {
    /// Each event as JSON (what a webhook would carry), with its `created`.
    pub events: Vec<ListedEvent>,
    pub has_more: bool,
}

#[derive(Debug, Clone)]
pub struct ListedEvent {
    pub id: String,
    pub created: i64,
    pub json: String,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Network failure, timeout, 429 or 5xx after every retry.
    #[error("Stripe is unavailable: {0}")]
    Unavailable(String),
    /// Stripe has no such PaymentIntent.
    #[error("Stripe has no such PaymentIntent")]
    NotFound,
    /// The intent can no longer do what was asked (Stripe's
    /// `payment_intent_unexpected_state`): e.g. it succeeded before a cancel.
    #[error("the PaymentIntent is in an unexpected state: {0}")]
    UnexpectedState(String),
    /// The idempotency key was used with other parameters.
    #[error("Stripe refused the idempotency key: {0}")]
    IdempotencyConflict(String),
    /// Anything else Stripe refused; not worth retrying as is.
    #[error("Stripe refused the request: {0}")]
    Rejected(String),
    /// Stripe answered with success, but the service cannot read what it
    /// sent (an API version drift, a body rewritten on the way): retrying
    /// the same read gives the same answer.
    #[error("Stripe's answer could not be read ({operation}): {detail}")]
    Undecodable {
        operation: &'static str,
        detail: String,
    },
}

/// The Stripe calls the use cases make.
pub trait PaymentGateway: Send + Sync + 'static {
    fn create_intent(
        &self,
        intent: &NewIntent<'_>,
    ) -> impl Future<Output = Result<StripeIntent, GatewayError>> + Send;

    fn retrieve_intent(
        &self,
        intent_id: &str,
    ) -> impl Future<Output = Result<StripeIntent, GatewayError>> + Send;

    /// Every refund of the intent (`GET /v1/refunds?payment_intent=`).
    fn list_refunds(
        &self,
        intent_id: &str,
    ) -> impl Future<Output = Result<Vec<StripeRefund>, GatewayError>> + Send;

    /// `GET /v1/disputes/{id}`.
    fn retrieve_dispute(
        &self,
        dispute_id: &str,
    ) -> impl Future<Output = Result<StripeDispute, GatewayError>> + Send;

    /// Every dispute of the intent (`GET /v1/disputes?payment_intent=`).
    fn list_disputes(
        &self,
        intent_id: &str,
    ) -> impl Future<Output = Result<Vec<StripeDispute>, GatewayError>> + Send;

    /// `POST /v1/payment_intents/{id}/cancel` with
    /// `cancellation_reason=abandoned`, under `idempotency_key`.
    fn cancel_abandoned_intent(
        &self,
        intent_id: &str,
        idempotency_key: &str,
    ) -> impl Future<Output = Result<StripeIntent, GatewayError>> + Send;

    /// One page of `GET /v1/events` of `types`, newest first within the page.
    fn list_events(
        &self,
        query: &EventsQuery<'_>,
    ) -> impl Future<Output = Result<EventsPage, GatewayError>> + Send;
}

/// Which page of Stripe's Events API to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventsQuery<'a> {
    pub types: &'a [&'a str],
    /// 1 to 100.
    pub limit: u8,
    pub position: EventsPosition<'a>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventsPosition<'a> {
    /// Walking back in time: the newest events created at or after
    /// `created_from`, older than `starting_after` when given
    /// (`created[gte]`, `starting_after`).
    Back {
        created_from: i64,
        starting_after: Option<&'a str>,
    },
    /// Walking forward: the `limit` events right after `ending_before` in
    /// time (`ending_before`, Stripe's way to read a list in chronological
    /// order).
    After { ending_before: &'a str },
}

/// Whether `id` has the shape of a PaymentIntent id (`pi_…`), so that it can
/// go into a URL path without escaping.
pub fn is_intent_id(id: &str) -> bool {
    id.len() <= 255
        && id.strip_prefix("pi_").is_some_and(|rest| {
            !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
}

/// Whether `id` has the shape of a Stripe object id (`du_…`, `re_…`), so
/// that it can go into a URL path without escaping.
pub fn is_object_id(id: &str) -> bool {
    id.len() <= 255
        && id.split_once('_').is_some_and(|(prefix, rest)| {
            !prefix.is_empty()
                && prefix.bytes().all(|b| b.is_ascii_lowercase())
                && !rest.is_empty()
                && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intent_ids_are_pi_and_url_safe() {
        assert!(is_intent_id("pi_3MtwBwLkdIwHu7ix28a3tqPa"));
        assert!(!is_intent_id("pi_"));
        assert!(!is_intent_id("ch_123"));
        assert!(!is_intent_id("pi_123/cancel"));
        assert!(!is_intent_id("pi_123?expand=x"));
        assert!(!is_intent_id(&format!("pi_{}", "a".repeat(300))));
    }

    #[test]
    fn object_ids_are_prefixed_and_url_safe() {
        assert!(is_object_id("du_1MtJUT2eZvKYlo2CNaw2HvEv"));
        assert!(is_object_id("re_3MtwBwLkdIwHu7ix0hCZtxk0"));
        assert!(!is_object_id("du_"));
        assert!(!is_object_id("_abc"));
        assert!(!is_object_id("du_1/close"));
        assert!(!is_object_id("DU_1"));
        assert!(!is_object_id(&format!("du_{}", "a".repeat(300))));
    }

    #[test]
    fn debug_output_hides_the_client_secret() {
        let intent = StripeIntent {
            id: "pi_1".into(),
            amount: 500,
            amount_received: 0,
            currency: "usd".into(),
            status: PaymentStatus::RequiresPaymentMethod,
            client_secret: Some("pi_1_secret_abc".into()),
            user_id: Some("u1".into()),
            created_by_us: true,
            deployment: None,
            last_payment_error: None,
        };
        let shown = format!("{intent:?}");
        assert!(!shown.contains("secret_abc"), "{shown}");
        assert!(shown.contains("[REDACTED]"), "{shown}");
    }

    #[test]
    fn debug_output_hides_the_secret_key() {
        let config = StripeConfig {
            secret_key: "sk_test_do_not_log".into(),
            api_base: "http://127.0.0.1:1".into(),
            timeout: std::time::Duration::from_secs(1),
            deadline: std::time::Duration::from_secs(3),
            max_attempts: 1,
            retry_backoff: std::time::Duration::ZERO,
        };
        let gateway = StripeGateway::new(&config).unwrap();
        for shown in [format!("{config:?}"), format!("{gateway:?}")] {
            assert!(!shown.contains("do_not_log"), "{shown}");
        }
    }
}
