//! The sandbox's objects checked against Stripe's own description of them:
//! async-stripe's types, generated from Stripe's OpenAPI document for the
//! pinned API version, refuse an object that lacks a field Stripe always
//! sends (this is how the dispute's `payment_method_details.card.network`
//! was once found missing). The production client reads only the fields it
//! uses (`payments-core/src/stripe/wire.rs`), so this strict check lives
//! here, as a test of the stand-in; async-stripe is a dev-dependency only.

use serde_json::Value;

use crate::{IntentFields, Sandbox};

/// `json` read whole as Stripe's type `T` (serde names what is missing).
fn check<T: serde::de::DeserializeOwned>(what: &str, json: &Value) {
    if let Err(err) = serde_json::from_value::<T>(json.clone()) {
        panic!("the sandbox's {what} is not whole by Stripe's types: {err}\n{json:#}");
    }
}

/// Every event and the object it carries.
fn check_events(sandbox: &Sandbox) {
    for event in sandbox.events() {
        check::<stripe_shared::Event>("event", &event);
        let object = &event["data"]["object"];
        match object["object"].as_str().unwrap_or_default() {
            "payment_intent" => check::<stripe_shared::PaymentIntent>("event's intent", object),
            "refund" => check::<stripe_shared::Refund>("event's refund", object),
            "dispute" => check::<stripe_shared::Dispute>("event's dispute", object),
            "charge" => check::<stripe_shared::Charge>("event's charge", object),
            other => panic!("an event about {other:?}: {event:#}"),
        }
    }
}

#[tokio::test]
async fn every_object_the_sandbox_serves_is_whole_by_stripes_own_types() {
    let sandbox = Sandbox::start_local().await;
    let intent = IntentFields {
        id: "pi_wirecheck".into(),
        amount: 2000,
        amount_received: 0,
        currency: "usd".into(),
        status: "requires_payment_method".into(),
        metadata: [("user_id".to_owned(), "u1".to_owned())].into(),
        last_payment_error: None,
    };
    sandbox.put_intent(intent.clone());
    check::<stripe_shared::PaymentIntent>("new intent", &sandbox.intent_json(&intent.id).unwrap());
    sandbox.decline(
        &intent.id,
        "insufficient_funds",
        "Your card has insufficient funds.",
    );
    check::<stripe_shared::PaymentIntent>(
        "declined intent",
        &sandbox.intent_json(&intent.id).unwrap(),
    );
    sandbox.succeed(&intent.id);
    check::<stripe_shared::PaymentIntent>("paid intent", &sandbox.intent_json(&intent.id).unwrap());

    let refund = sandbox.refund(&intent.id, Some(500)).await;
    check::<stripe_shared::Refund>("refund", &refund);
    let failed = sandbox.fail_refund(refund["id"].as_str().unwrap()).await;
    check::<stripe_shared::Refund>("failed refund", &failed);
    let dispute = sandbox.dispute(&intent.id);
    let won = sandbox.close_dispute(&dispute, true).await;
    check::<stripe_shared::Dispute>("won dispute", &won);
    check_events(&sandbox);
    assert!(sandbox.events().len() >= 8, "{:#?}", sandbox.events());
}
