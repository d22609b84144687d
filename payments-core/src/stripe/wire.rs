//! Stripe's objects as this service reads them: only the fields it uses, so
//! that a field it never uses, missing or shaped differently (an API version
//! drift, another payment method's details), cannot make an object
//! unreadable and stop a credit or a clawback. Enum values are kept as the
//! text Stripe sent; what a value means is decided where it is used (an
//! intent status the service does not know is refused there, by name).
//! A body that lacks a field the service uses is `Undecodable`, named by
//! serde's message (the field, and where).

use std::collections::HashMap;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{
    CREATED_BY_MARKER, GatewayError, ListedEvent, PaymentError, StripeDispute, StripeIntent,
    StripeRefund,
};

/// Reads a success body as `T`; `operation` names the call in the error.
pub fn decode<T: DeserializeOwned>(
    operation: &'static str,
    body: &[u8],
) -> Result<T, GatewayError> {
    serde_json::from_slice(body).map_err(|err| GatewayError::Undecodable {
        operation,
        detail: err.to_string(),
    })
}

/// An expandable field: the object's id, or the object itself.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum IdOrObject {
    Id(String),
    Object { id: String },
}

impl IdOrObject {
    fn id(self) -> String {
        match self {
            IdOrObject::Id(id) | IdOrObject::Object { id } => id,
        }
    }
}

/// A PaymentIntent.
#[derive(Debug, Clone, Deserialize)]
pub struct Intent {
    pub id: String,
    pub amount: i64,
    #[serde(default)]
    pub amount_received: i64,
    pub currency: String,
    pub status: String,
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub metadata: Option<HashMap<String, String>>,
    #[serde(default)]
    pub last_payment_error: Option<LastPaymentError>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LastPaymentError {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub decline_code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

impl Intent {
    /// The intent as the use cases see it; a status the service does not
    /// know is `Undecodable` (it cannot tell whether to credit).
    pub fn into_stripe_intent(self, operation: &'static str) -> Result<StripeIntent, GatewayError> {
        let status = self.status.parse().map_err(|_| GatewayError::Undecodable {
            operation,
            detail: format!(
                "PaymentIntent status {:?} is not one this service knows",
                self.status
            ),
        })?;
        let metadata = self.metadata.unwrap_or_default();
        Ok(StripeIntent {
            id: self.id,
            amount: self.amount,
            amount_received: self.amount_received,
            currency: self.currency,
            status,
            client_secret: self.client_secret.map(Into::into),
            user_id: metadata.get("user_id").cloned(),
            created_by_us: metadata.get("created_by").map(String::as_str)
                == Some(CREATED_BY_MARKER),
            deployment: metadata.get("deployment").cloned(),
            last_payment_error: self.last_payment_error.map(|err| PaymentError {
                // `decline_code` says why a card was declined; else `code`.
                code: err.decline_code.or(err.code),
                message: err.message,
            }),
        })
    }
}

/// A Refund.
#[derive(Debug, Clone, Deserialize)]
pub struct Refund {
    pub id: String,
    pub amount: i64,
    pub currency: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub payment_intent: Option<IdOrObject>,
}

impl From<Refund> for StripeRefund {
    fn from(refund: Refund) -> Self {
        Self {
            id: refund.id,
            amount: refund.amount,
            currency: refund.currency,
            status: refund.status.unwrap_or_default(),
            intent_id: refund.payment_intent.map(IdOrObject::id),
        }
    }
}

/// A Dispute.
#[derive(Debug, Clone, Deserialize)]
pub struct Dispute {
    pub id: String,
    pub amount: i64,
    pub currency: String,
    pub status: String,
    #[serde(default)]
    pub payment_intent: Option<IdOrObject>,
}

impl From<Dispute> for StripeDispute {
    fn from(dispute: Dispute) -> Self {
        Self {
            id: dispute.id,
            amount: dispute.amount,
            currency: dispute.currency,
            status: dispute.status,
            intent_id: dispute.payment_intent.map(IdOrObject::id),
        }
    }
}

/// A page of a list.
#[derive(Debug, Clone, Deserialize)]
pub struct List<T> {
    pub data: Vec<T>,
    #[serde(default)]
    pub has_more: bool,
}

/// An event of the Events API: its id and time, and the whole event as
/// Stripe sent it (what a webhook would carry) for `StripeEvent::parse`.
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "serde_json::Value")]
pub struct Event(pub serde_json::Value);

impl From<serde_json::Value> for Event {
    fn from(value: serde_json::Value) -> Self {
        Self(value)
    }
}

impl Event {
    pub fn into_listed(self, operation: &'static str) -> Result<ListedEvent, GatewayError> {
        let id = self.0.get("id").and_then(|id| id.as_str());
        let created = self.0.get("created").and_then(|created| created.as_i64());
        match (id, created) {
            (Some(id), Some(created)) => Ok(ListedEvent {
                id: id.to_owned(),
                created,
                json: self.0.to_string(),
            }),
            _ => Err(GatewayError::Undecodable {
                operation,
                detail: "a listed event without its id or created".into(),
            }),
        }
    }
}

/// Stripe's error body.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ErrorBody {
    pub error: ApiError,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ApiError {
    #[serde(default, rename = "type")]
    pub type_: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expandable_field_reads_as_an_id_or_as_the_object() {
        for refund in [
            r#"{"id":"re_1","amount":5,"currency":"usd","payment_intent":"pi_1"}"#,
            r#"{"id":"re_1","amount":5,"currency":"usd","payment_intent":{"id":"pi_1","object":"payment_intent"}}"#,
        ] {
            let refund: StripeRefund = decode::<Refund>("list_refunds", refund.as_bytes())
                .unwrap()
                .into();
            assert_eq!(refund.intent_id.as_deref(), Some("pi_1"));
            assert_eq!(refund.status, "", "no status: neither takes nor gives");
        }
    }

    #[test]
    fn a_missing_field_the_service_uses_is_named() {
        let err = decode::<Dispute>("retrieve_dispute", br#"{"id":"du_1","currency":"usd"}"#)
            .unwrap_err();
        let GatewayError::Undecodable { operation, detail } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(*operation, "retrieve_dispute");
        assert!(detail.contains("missing field `amount`"), "{detail}");
        assert!(err.to_string().contains("retrieve_dispute"), "{err}");
    }

    #[test]
    fn an_intent_reads_its_decline_code_first_and_its_marker() {
        let intent = decode::<Intent>(
            "retrieve_payment_intent",
            br#"{"id":"pi_1","amount":500,"currency":"usd","status":"requires_payment_method",
                 "metadata":{"created_by":"credits-topup","user_id":"u1"},
                 "last_payment_error":{"code":"card_declined","decline_code":"insufficient_funds","message":"no"}}"#,
        )
        .unwrap()
        .into_stripe_intent("retrieve_payment_intent")
        .unwrap();
        assert!(intent.created_by_us);
        assert_eq!(intent.user_id.as_deref(), Some("u1"));
        assert_eq!(intent.amount_received, 0);
        assert_eq!(
            intent.last_payment_error.unwrap().code.as_deref(),
            Some("insufficient_funds")
        );
    }

    #[test]
    fn a_listed_event_keeps_what_stripe_sent() {
        let page = decode::<List<Event>>(
            "list_events",
            br#"{"object":"list","has_more":true,"data":[{"id":"evt_1","created":7,"type":"refund.created","a_new_field":{"x":1},"data":{"object":{"id":"re_1"}}}]}"#,
        )
        .unwrap();
        assert!(page.has_more);
        let listed = page
            .data
            .into_iter()
            .next()
            .unwrap()
            .into_listed("list_events")
            .unwrap();
        assert_eq!((listed.id.as_str(), listed.created), ("evt_1", 7));
        assert!(listed.json.contains("a_new_field"));
        let no_id = decode::<List<Event>>("list_events", br#"{"data":[{"created":7}]}"#).unwrap();
        assert!(
            no_id
                .data
                .into_iter()
                .next()
                .unwrap()
                .into_listed("list_events")
                .is_err()
        );
    }
}
