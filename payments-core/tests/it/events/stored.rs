//! What is kept of an event: no client secret, payloads emptied past their
//! retention, an ignored event applied once its cause is gone.

use super::*;

#[tokio::test]
async fn an_event_recorded_ignored_is_applied_when_delivered_again_after_the_cause_is_gone() {
    let world = World::new().await;
    let intent = world.intent_for("carla", 1000).await;
    world.stripe.succeed(&intent);
    // What the service used to record when a cause (since fixed) made it ignore the event.
    let mut conn = world.db.connection().await;
    conn.batch_execute(&format!(
        "INSERT INTO ignored_stripe_events (event_id, event_type, object_id, reason, payload, received_at)
         VALUES ('evt_was_ignored', 'payment_intent.succeeded', '{intent}', 'a cause since fixed', '{{}}', now())"
    ))
    .await
    .unwrap();
    let outcome = world
        .apply("evt_was_ignored", "payment_intent.succeeded", &intent)
        .await
        .unwrap();
    assert_eq!(outcome, EventOutcome::Applied);
    let row = stripe_events::find(&mut conn, "evt_was_ignored")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (row.outcome.as_str(), row.user_id.as_deref()),
        ("applied", Some("carla"))
    );
    let again = world
        .apply("evt_was_ignored", "payment_intent.succeeded", &intent)
        .await
        .unwrap();
    assert_eq!(again, EventOutcome::Duplicate);
    assert_eq!(world.balance("carla").await, 1000);
    world.check_ledger().await;
}

#[tokio::test]
async fn stored_event_payloads_carry_no_client_secret() {
    let world = World::new().await;
    let intent = world.intent_for("elia", 1000).await;
    world.stripe.succeed(&intent);
    let mut event: serde_json::Value = serde_json::from_str(&event_json(
        "evt_secret",
        "payment_intent.succeeded",
        &intent,
    ))
    .unwrap();
    event["data"]["object"]["client_secret"] = format!("{intent}_secret_topsecret").into();
    let outcome = world
        .service
        .apply_stripe_event(&event.to_string())
        .await
        .unwrap();
    assert_eq!(outcome, EventOutcome::Applied);
    let mut conn = world.db.connection().await;
    let row = stripe_events::find(&mut conn, "evt_secret")
        .await
        .unwrap()
        .unwrap();
    assert!(!row.payload.contains("topsecret"), "{}", row.payload);
    assert!(row.payload.contains(&intent));
}

#[tokio::test]
async fn event_payloads_past_their_retention_are_emptied_and_their_rows_kept() {
    let world = World::new().await;
    let intent = world.intent_for("fede", 1000).await;
    world.stripe.succeed(&intent);
    world
        .apply("evt_old", "payment_intent.succeeded", &intent)
        .await
        .unwrap();
    world
        .apply("evt_new", "payment_intent.processing", &intent)
        .await
        .unwrap();
    let mut conn = world.db.connection().await;
    conn.batch_execute(
        "UPDATE stripe_events SET received_at = now() - interval '31 days' WHERE event_id = 'evt_old'",
    )
    .await
    .unwrap();
    let forgotten = world
        .service
        .forget_old_event_payloads(chrono::Duration::days(30))
        .await
        .unwrap();
    assert_eq!(forgotten, 1);
    let old = stripe_events::find(&mut conn, "evt_old")
        .await
        .unwrap()
        .unwrap();
    let new = stripe_events::find(&mut conn, "evt_new")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (old.payload.as_str(), old.outcome.as_str()),
        ("", "applied")
    );
    assert!(new.payload.contains("evt_new"));
    // The registry still answers a redelivery of the old event.
    let again = world
        .apply("evt_old", "payment_intent.succeeded", &intent)
        .await
        .unwrap();
    assert_eq!(again, EventOutcome::Duplicate);
    assert_eq!(world.balance("fede").await, 1000);
}
