//! Incoming Stripe events: only the fields this service reads, so that new
//! fields and event types never make parsing fail.

use serde::Deserialize;

use crate::InvalidInput;

/// The event types a webhook endpoint of ours is subscribed to: every
/// type [`StripeEvent::kind`] acts on.
pub const ACTED_ON_EVENT_TYPES: [&str; 15] = [
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "payment_intent.processing",
    "payment_intent.requires_action",
    "charge.refunded",
    "charge.refund.updated",
    "refund.created",
    "refund.updated",
    "refund.failed",
    "charge.dispute.created",
    "charge.dispute.updated",
    "charge.dispute.closed",
    "charge.dispute.funds_withdrawn",
    "charge.dispute.funds_reinstated",
];
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StripeEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub data: EventData,
    /// `"event"` on every Stripe event.
    #[serde(default)]
    pub object: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EventData {
    pub object: EventObject,
}

/// The object the event is about; only its id, kind and metadata are read.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EventObject {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub object: Option<String>,
    /// Any JSON: a malformed metadata never makes an event unreadable.
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
    /// Refunds, charges and disputes name their PaymentIntent: an id, or
    /// the intent itself when expanded.
    #[serde(default)]
    pub payment_intent: Option<serde_json::Value>,
}

/// What this service does with an event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    PaymentSucceeded,
    PaymentFailed,
    /// `canceled`, `processing`, `requires_action`: the status is recorded.
    PaymentStatusChanged,
    /// A refund of a charge was made or changed (`charge.refunded`,
    /// `charge.refund.updated`, `refund.*`).
    Refund,
    /// A dispute was opened, changed, closed, or moved funds
    /// (`charge.dispute.*`).
    Dispute,
    /// Recorded and answered IGNORED.
    Other,
}

impl StripeEvent {
    /// Parses an event as Stripe sends it.
    pub fn parse(json: &str) -> Result<Self, InvalidInput> {
        // serde would also read a struct from a JSON array; events are objects.
        if !json.trim_start().starts_with('{') {
            return Err(InvalidInput("not a Stripe event: not a JSON object".into()));
        }
        let event: StripeEvent = serde_json::from_str(json)
            .map_err(|err| InvalidInput(format!("not a Stripe event: {err}")))?;
        if event.id.is_empty() || event.id.len() > 255 {
            return Err(InvalidInput(
                "not a Stripe event: id must be 1 to 255 bytes".into(),
            ));
        }
        if event.event_type.is_empty() || event.event_type.len() > 255 {
            return Err(InvalidInput(
                "not a Stripe event: type must be 1 to 255 bytes".into(),
            ));
        }
        if event
            .object
            .as_deref()
            .is_some_and(|object| object != "event")
        {
            return Err(InvalidInput(
                "not a Stripe event: object is not \"event\"".into(),
            ));
        }
        // Stripe's ids and types are plain ASCII; a control character (NUL
        // above all, which Postgres cannot store) would fail on every retry.
        plain("id", &event.id)?;
        plain("type", &event.event_type)?;
        if let Some(object_id) = event.object_id() {
            if object_id.len() > 255 {
                return Err(InvalidInput(
                    "not a Stripe event: data.object.id is over 255 bytes".into(),
                ));
            }
            plain("data.object.id", object_id)?;
        }
        Ok(event)
    }

    /// The event as stored in the registry: as received, less every
    /// `client_secret` (a PaymentIntent's carries the right to confirm it).
    pub fn payload_to_store(json: &str) -> String {
        fn strip(value: &mut serde_json::Value) {
            match value {
                serde_json::Value::Object(map) => {
                    map.remove("client_secret");
                    map.values_mut().for_each(strip);
                }
                serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
                _ => {}
            }
        }
        match serde_json::from_str::<serde_json::Value>(json) {
            Ok(mut value) => {
                strip(&mut value);
                value.to_string()
            }
            // Unreachable for an event `parse` accepted; store nothing rather than a secret.
            Err(_) => "{}".to_owned(),
        }
    }

    pub fn kind(&self) -> EventKind {
        match self.event_type.as_str() {
            "payment_intent.succeeded" => EventKind::PaymentSucceeded,
            "payment_intent.payment_failed" => EventKind::PaymentFailed,
            "payment_intent.canceled"
            | "payment_intent.processing"
            | "payment_intent.requires_action" => EventKind::PaymentStatusChanged,
            "charge.refunded"
            | "charge.refund.updated"
            | "refund.created"
            | "refund.updated"
            | "refund.failed" => EventKind::Refund,
            "charge.dispute.created"
            | "charge.dispute.updated"
            | "charge.dispute.closed"
            | "charge.dispute.funds_withdrawn"
            | "charge.dispute.funds_reinstated" => EventKind::Dispute,
            _ => EventKind::Other,
        }
    }

    pub fn object_id(&self) -> Option<&str> {
        self.data.object.id.as_deref()
    }

    /// The user the object's metadata names: a hint of where our payment
    /// row is, never proof of whose it is (metadata can be edited at Stripe).
    /// The PaymentIntent the event's object names (a charge, refund or
    /// dispute), if it names one with the shape of an id. Only a pointer:
    /// what it says is re-fetched from Stripe.
    pub fn named_intent_id(&self) -> Option<&str> {
        let named = match self.data.object.payment_intent.as_ref()? {
            serde_json::Value::String(id) => id.as_str(),
            serde_json::Value::Object(intent) => intent.get("id")?.as_str()?,
            _ => return None,
        };
        (named.len() <= 255 && named.bytes().all(|b| b.is_ascii_graphic())).then_some(named)
    }

    pub fn named_user_id(&self) -> Option<&str> {
        self.data.object.metadata.as_ref()?.get("user_id")?.as_str()
    }
}

/// Printable ASCII only (no spaces, no control characters).
fn plain(field: &str, value: &str) -> Result<(), InvalidInput> {
    if value.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(InvalidInput(format!(
            "not a Stripe event: {field} holds characters other than printable ASCII"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_acted_on_types_are_exactly_those_kind_acts_on() {
        for event_type in ACTED_ON_EVENT_TYPES {
            let event = StripeEvent::parse(&format!(
                r#"{{"id": "evt_1", "type": "{event_type}", "data": {{"object": {{}}}}}}"#
            ))
            .unwrap();
            assert_ne!(event.kind(), EventKind::Other, "{event_type}");
        }
        for other in [
            "payment_intent.created",
            "charge.succeeded",
            "customer.created",
        ] {
            let event = StripeEvent::parse(&format!(
                r#"{{"id": "evt_1", "type": "{other}", "data": {{"object": {{}}}}}}"#
            ))
            .unwrap();
            assert_eq!(event.kind(), EventKind::Other, "{other}");
        }
    }

    #[test]
    fn refund_and_dispute_events_name_their_intent_as_an_id_or_an_expanded_object() {
        let event = |event_type: &str, object: &str| {
            StripeEvent::parse(&format!(
                r#"{{"id": "evt_1", "object": "event", "type": "{event_type}", "data": {{"object": {object}}}}}"#
            ))
            .unwrap()
        };
        let refund = event(
            "charge.refunded",
            r#"{"id": "ch_1", "object": "charge", "payment_intent": "pi_1"}"#,
        );
        assert_eq!(refund.kind(), EventKind::Refund);
        assert_eq!(refund.named_intent_id(), Some("pi_1"));
        let dispute = event(
            "charge.dispute.closed",
            r#"{"id": "du_1", "object": "dispute", "payment_intent": {"id": "pi_2"}}"#,
        );
        assert_eq!(dispute.kind(), EventKind::Dispute);
        assert_eq!(dispute.named_intent_id(), Some("pi_2"));
        for kind in [
            "refund.created",
            "refund.updated",
            "refund.failed",
            "charge.refund.updated",
        ] {
            assert_eq!(event(kind, r#"{"id": "re_1"}"#).kind(), EventKind::Refund);
        }
        for kind in [
            "charge.dispute.created",
            "charge.dispute.updated",
            "charge.dispute.funds_withdrawn",
            "charge.dispute.funds_reinstated",
        ] {
            assert_eq!(event(kind, r#"{"id": "du_1"}"#).kind(), EventKind::Dispute);
        }
        // No intent, a number, or an id with spaces: none named.
        for object in [
            r#"{"id": "re_1"}"#,
            r#"{"id": "re_1", "payment_intent": 7}"#,
            r#"{"id": "re_1", "payment_intent": "pi 1"}"#,
        ] {
            assert_eq!(event("refund.created", object).named_intent_id(), None);
        }
    }

    #[test]
    fn parses_a_real_event_and_ignores_unknown_fields() {
        let json = r#"{
          "id": "evt_3MtwBwLkdIwHu7ix0hCZtxk0", "object": "event", "api_version": "2025-01-27",
          "created": 1680064028, "livemode": false, "pending_webhooks": 1,
          "request": {"id": null, "idempotency_key": null},
          "type": "payment_intent.succeeded",
          "data": {"object": {"id": "pi_3MtwBwLkdIwHu7ix28a3tqPa", "object": "payment_intent",
                   "amount": 2000, "brand_new_field": {"x": [1, 2]}}}
        }"#;
        let event = StripeEvent::parse(json).unwrap();
        assert_eq!(event.id, "evt_3MtwBwLkdIwHu7ix0hCZtxk0");
        assert_eq!(event.kind(), EventKind::PaymentSucceeded);
        assert_eq!(event.object_id(), Some("pi_3MtwBwLkdIwHu7ix28a3tqPa"));
    }

    #[test]
    fn the_metadata_names_a_user_when_it_holds_a_string_and_never_fails_the_parse() {
        let named = |metadata: &str| {
            let json = format!(
                r#"{{"id":"evt_1","type":"payment_intent.succeeded","data":{{"object":{{"id":"pi_1"{metadata}}}}}}}"#
            );
            StripeEvent::parse(&json)
                .unwrap()
                .named_user_id()
                .map(str::to_owned)
        };
        assert_eq!(
            named(r#","metadata":{"user_id":"user-1","x":"y"}"#).as_deref(),
            Some("user-1")
        );
        for odd in [
            "",
            r#","metadata":null"#,
            r#","metadata":{}"#,
            r#","metadata":{"user_id":7}"#,
            r#","metadata":{"user_id":null}"#,
            r#","metadata":["user_id"]"#,
            r#","metadata":"user_id""#,
        ] {
            assert_eq!(named(odd), None, "{odd}");
        }
    }

    #[test]
    fn unknown_types_are_other() {
        let json = r#"{"id":"evt_1","type":"customer.created","data":{"object":{"id":"cus_1"}}}"#;
        assert_eq!(StripeEvent::parse(json).unwrap().kind(), EventKind::Other);
    }

    #[test]
    fn event_kinds() {
        let kind = |t: &str| {
            let json = format!(r#"{{"id":"evt_1","type":"{t}","data":{{"object":{{}}}}}}"#);
            StripeEvent::parse(&json).unwrap().kind()
        };
        assert_eq!(
            kind("payment_intent.payment_failed"),
            EventKind::PaymentFailed
        );
        assert_eq!(
            kind("payment_intent.canceled"),
            EventKind::PaymentStatusChanged
        );
        assert_eq!(
            kind("payment_intent.processing"),
            EventKind::PaymentStatusChanged
        );
        assert_eq!(
            kind("payment_intent.requires_action"),
            EventKind::PaymentStatusChanged
        );
        assert_eq!(kind("payment_intent.created"), EventKind::Other);
    }

    #[test]
    fn non_events_are_refused() {
        for bad in [
            "",
            "null",
            "[]",
            "{}",
            r#"{"id":"evt_1","type":"x"}"#,
            r#"{"id":"","type":"x","data":{"object":{}}}"#,
            r#"{"id":"evt_1","type":"","data":{"object":{}}}"#,
            r#"{"id":"evt_1","type":"x","object":"charge","data":{"object":{}}}"#,
            r#"{"id":7,"type":"x","data":{"object":{}}}"#,
            r#"{"id":"evt_1","type":"x","data":{"object":{}}"#,
            r#"["evt_1","payment_intent.succeeded",{"object":{"id":"pi_1"}}]"#,
            r#"{"id":"evt_1","id":"evt_2","type":"x","data":{"object":{}}}"#,
            // Poison: control characters that used to fail at the database on every retry.
            r#"{"id":"evt_\u0000","type":"x","data":{"object":{}}}"#,
            r#"{"id":"evt_1","type":"payment_intent.succeeded\u0000","data":{"object":{}}}"#,
            r#"{"id":"evt_1","type":"x","data":{"object":{"id":"pi_1\u0000"}}}"#,
            r#"{"id":"evt 1","type":"x","data":{"object":{}}}"#,
            r#"{"id":"evt_\u00e9","type":"x","data":{"object":{}}}"#,
        ] {
            let err = StripeEvent::parse(bad).unwrap_err();
            assert!(err.0.starts_with("not a Stripe event"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn stored_payloads_carry_no_client_secret() {
        let json = r#"{"id":"evt_1","object":"event","type":"payment_intent.succeeded",
            "data":{"object":{"id":"pi_1","client_secret":"pi_1_secret_abc","amount":1000,
            "charges":[{"client_secret":"nested_secret"}]}}}"#;
        let stored = StripeEvent::payload_to_store(json);
        assert!(
            !stored.contains("secret_abc") && !stored.contains("nested_secret"),
            "{stored}"
        );
        let value: serde_json::Value = serde_json::from_str(&stored).unwrap();
        assert_eq!(value["data"]["object"]["amount"], 1000);
        assert_eq!(value["id"], "evt_1");
    }
}
