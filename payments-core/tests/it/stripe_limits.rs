//! What a slow, hostile or drifting Stripe endpoint can do to a call: a
//! hanging attempt is retried within the call's deadline; an answer too
//! large to be Stripe's is refused before it is held in memory; objects are
//! read into the fields the service uses, so fields it does not use (gone,
//! or new enum values) change nothing, and a success it cannot read is a
//! final error of its own.

use std::time::{Duration, Instant};

use payments_core::domain::LedgerKind;
use payments_core::stripe::{MAX_RESPONSE_BYTES, STRIPE_API_VERSION};
use payments_core::{Error, EventOutcome};
use payments_test_support::{TestDatabase, World, count_rows, service};
use serde_json::json;
use stripe_sandbox::{Fault, Sandbox};

#[tokio::test]
async fn a_hanging_attempt_is_retried_and_the_call_succeeds() {
    let db = TestDatabase::create().await;
    let stripe = Sandbox::start_local().await;
    let service = service(&db, &stripe).await;
    // The first create hangs far past the attempt timeout (2 s here).
    stripe
        .fail_next(
            "POST",
            1,
            Fault::body(200, "").after(Duration::from_secs(60)),
        )
        .await;
    let created = service
        .create_payment_intent("alice", 1000, "key-1")
        .await
        .expect("the retry is answered");
    assert_eq!(stripe.intent_count(), 1);
    assert_eq!(
        stripe
            .requests_to("POST", "/v1/payment_intents")
            .await
            .len(),
        2
    );
    assert!(created.intent_id.starts_with("pi_"));
}

#[tokio::test]
async fn a_stripe_that_always_hangs_is_unavailable_by_the_deadline() {
    let db = TestDatabase::create().await;
    let stripe = Sandbox::start_local().await;
    let service = service(&db, &stripe).await;
    let deadline = payments_test_support::stripe_config(&stripe).deadline;
    stripe
        .fail_next(
            "POST",
            10,
            Fault::body(200, "").after(Duration::from_secs(60)),
        )
        .await;
    let started = Instant::now();
    let err = service
        .create_payment_intent("alice", 1000, "key-1")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < deadline + Duration::from_secs(1),
        "answered after {:?}, the deadline is {deadline:?}",
        started.elapsed()
    );
    assert_eq!(count_rows(&mut db.connection().await, "payments").await, 0);
}

#[tokio::test]
async fn an_answer_larger_than_a_mebibyte_is_refused_and_nothing_is_written() {
    let db = TestDatabase::create().await;
    let stripe = Sandbox::start_local().await;
    let service = service(&db, &stripe).await;
    let huge = format!(
        r#"{{"id":"pi_huge","padding":"{}"}}"#,
        "x".repeat(2 * MAX_RESPONSE_BYTES)
    );
    stripe.fail_next("POST", 10, Fault::body(200, huge)).await;
    let err = service
        .create_payment_intent("alice", 1000, "key-1")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    assert_eq!(count_rows(&mut db.connection().await, "payments").await, 0);
}

/// `object` with only the fields the service reads of it: what a Stripe of
/// another API version, or an emulator, may send.
fn only(object: &serde_json::Value, fields: &[&str]) -> serde_json::Value {
    fields
        .iter()
        .filter_map(|field| Some((field.to_string(), object.get(*field)?.clone())))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

#[tokio::test]
async fn objects_without_every_field_the_service_does_not_use_still_credit_and_claw_back() {
    let world = World::new().await;
    let intent = world.intent_for("ivy", 2000).await;
    world.stripe.succeed(&intent);
    let refund = world.stripe.refund(&intent, Some(500)).await;
    let dispute_id = world.stripe.dispute(&intent);
    let dispute = world
        .stripe
        .events()
        .into_iter()
        .find(|event| event["type"] == "charge.dispute.created")
        .unwrap()["data"]["object"]
        .clone();
    // The full objects as the sandbox serves them (Stripe's shape) read too.
    assert!(dispute["evidence"]["enhanced_evidence"].is_object());

    // Every field the service does not use gone, and Stripe's enum values
    // past the ones it knows: a refund status, a dispute status.
    let full_intent = world.stripe.intent_json(&intent).unwrap();
    let intent_fields = [
        "id",
        "amount",
        "amount_received",
        "currency",
        "status",
        "metadata",
    ];
    let bare_intent = only(&full_intent, &intent_fields);
    let mut bare_refund = only(&refund, &["id", "amount", "currency", "payment_intent"]);
    bare_refund["status"] = "succeeded".into();
    let mut bare_dispute = only(&dispute, &["id", "amount", "currency", "payment_intent"]);
    bare_dispute["status"] = "a_status_stripe_added_later".into();
    let list =
        |item: serde_json::Value| json!({"object": "list", "data": [item], "has_more": false});
    for (path, body) in [
        (format!("/v1/payment_intents/{intent}"), bare_intent.clone()),
        ("/v1/refunds".to_owned(), list(bare_refund)),
        (format!("/v1/disputes/{dispute_id}"), bare_dispute.clone()),
        ("/v1/disputes".to_owned(), list(bare_dispute)),
    ] {
        world
            .stripe
            .fail_next_on("GET", &path, 100, Fault::json(200, &body))
            .await;
    }

    for (event_id, event_type, object) in [
        ("evt_paid", "payment_intent.succeeded", intent.as_str()),
        (
            "evt_refund",
            "refund.created",
            refund["id"].as_str().unwrap(),
        ),
        ("evt_dispute", "charge.dispute.created", dispute_id.as_str()),
    ] {
        // The event names its object (and a refund its intent); the rest
        // is re-fetched, stripped as above.
        let event = json!({"id": event_id, "object": "event", "type": event_type,
                           "data": {"object": {"id": object, "payment_intent": intent}}});
        let applied = world.service.apply_stripe_event(&event.to_string()).await;
        assert_eq!(applied, Ok(EventOutcome::Applied), "{event_type}");
    }
    assert_eq!(
        world.kinds("ivy").await,
        [LedgerKind::TopUp, LedgerKind::Refund, LedgerKind::Dispute]
    );
    assert_eq!(world.balance("ivy").await, 2000 - 500 - 2000);

    // An intent status the service does not know: it cannot tell whether to
    // credit, so the event is parked with the status named, not credited.
    let other = world.intent_for("jon", 1000).await;
    let mut unknown = only(&world.stripe.intent_json(&other).unwrap(), &intent_fields);
    unknown["status"] = "requires_a_new_thing".into();
    world
        .stripe
        .fail_next_on(
            "GET",
            &format!("/v1/payment_intents/{other}"),
            100,
            Fault::json(200, &unknown),
        )
        .await;
    let event = json!({"id": "evt_new", "object": "event", "type": "payment_intent.succeeded",
                       "data": {"object": {"id": other, "object": "payment_intent"}}});
    let parked = world.service.apply_stripe_event(&event.to_string()).await;
    assert!(matches!(parked, Err(Error::EventParked(_))), "{parked:?}");
    let row = &world.service.list_parked_events(0, "").await.unwrap().items[0];
    assert!(
        row.last_error.contains("requires_a_new_thing"),
        "{}",
        row.last_error
    );
    assert_eq!(world.balance("jon").await, 0);
    world.check_ledger().await;
}

#[tokio::test]
async fn every_request_names_the_pinned_api_version_and_a_success_that_cannot_be_read_is_final() {
    let world = World::new().await;
    let intent = world.intent_for("kim", 1000).await;
    let requests = world
        .stripe
        .requests_to("POST", "/v1/payment_intents")
        .await;
    assert_eq!(
        requests[0].headers.get("stripe-version").unwrap(),
        STRIPE_API_VERSION
    );
    // A success whose body lacks what the service uses is asked once, not
    // retried as if Stripe were down.
    let path = format!("/v1/payment_intents/{intent}");
    let before = world.stripe.requests_to("GET", &path).await.len();
    world
        .stripe
        .fail_next_on("GET", &path, 100, Fault::json(200, &json!({"id": intent})))
        .await;
    let err = world
        .service
        .sync_payment_intent("kim", &intent)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Internal(_)), "{err:?}");
    assert_eq!(
        world.stripe.requests_to("GET", &path).await.len(),
        before + 1
    );
}

/// Stripe requests of any kind the sandbox has received.
async fn stripe_calls(stripe: &Sandbox) -> usize {
    stripe.requests_to("GET", "/v1/").await.len() + stripe.requests_to("POST", "/v1/").await.len()
}

/// A sync reaches Stripe only when the payment could still change there
/// and was not just synced: a second sync of a paid payment costs no call,
/// nor a second sync of an unpaid one within `FRESH_FOR`. Syncs that do
/// reach Stripe draw from a budget of calls (here 9 a second: three syncs);
/// past it they are refused at once with when to retry, while a webhook's
/// re-fetch, which does not draw from it, still goes through.
#[tokio::test]
async fn syncs_answer_from_the_database_when_they_can_and_stay_within_their_budget() {
    let world = World::with(|service| service.with_sync_budget(9)).await;
    let paid = world.intent_for("lea", 1000).await;
    world.stripe.succeed(&paid);
    let before = stripe_calls(&world.stripe).await;
    let synced = world
        .service
        .sync_payment_intent("lea", &paid)
        .await
        .unwrap();
    assert_eq!(synced.balance.balance_cents.get(), 1000);
    assert_eq!(
        stripe_calls(&world.stripe).await - before,
        3,
        "the intent, refunds, disputes"
    );

    // Paid with nothing clawed back: the database answers, ten times over.
    let before = stripe_calls(&world.stripe).await;
    for _ in 0..10 {
        let again = world
            .service
            .sync_payment_intent("lea", &paid)
            .await
            .unwrap();
        assert_eq!(
            (
                again.payment.status.as_str(),
                again.balance.balance_cents.get()
            ),
            ("succeeded", 1000)
        );
    }
    assert_eq!(stripe_calls(&world.stripe).await, before);

    // An unpaid one: the first sync asks Stripe, the next within FRESH_FOR does not.
    let unpaid = world.intent_for("lea", 500).await;
    world
        .service
        .sync_payment_intent("lea", &unpaid)
        .await
        .unwrap();
    let before = stripe_calls(&world.stripe).await;
    world
        .service
        .sync_payment_intent("lea", &unpaid)
        .await
        .unwrap();
    assert_eq!(stripe_calls(&world.stripe).await, before);

    // A flood across twenty users: what is left of the budget (at most a
    // second's worth, three syncs) reaches Stripe, one call each (the
    // intents are unpaid); the rest are refused at once.
    let mut intents = Vec::new();
    for n in 0..20 {
        let user = format!("flood-{n}");
        intents.push((world.intent_for(&user, 500).await, user));
    }
    let before = stripe_calls(&world.stripe).await;
    let started = Instant::now();
    let mut refused = 0;
    for (intent, user) in &intents {
        match world.service.sync_payment_intent(user, intent).await {
            Ok(_) => {}
            Err(Error::RateLimited {
                retry_after_secs, ..
            }) => {
                assert!((1..=2).contains(&retry_after_secs), "{retry_after_secs}");
                refused += 1;
            }
            Err(err) => panic!("{err:?}"),
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "refusals do not wait"
    );
    let through = 20 - refused;
    assert!(through <= 3, "{through} of 20 syncs reached Stripe");
    assert_eq!(stripe_calls(&world.stripe).await - before, through);

    // With the budget spent, a webhook's re-fetch still credits.
    let (webhook_intent, webhook_user) = &intents[19];
    world.stripe.succeed(webhook_intent);
    let event = json!({"id": "evt_paid_in_the_flood", "object": "event",
                       "type": "payment_intent.succeeded",
                       "data": {"object": {"id": webhook_intent, "object": "payment_intent"}}});
    let applied = world.service.apply_stripe_event(&event.to_string()).await;
    assert_eq!(applied, Ok(EventOutcome::Applied));
    assert_eq!(world.balance(webhook_user).await, 500);
}
