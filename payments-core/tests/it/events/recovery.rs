//! Whose payment an event is: rows recovered from Stripe after a crash,
//! owners fixed whatever metadata says, other deployments' intents refused.

use super::*;

/// A paid intent at Stripe, made by a deployment of this service, with no row here.
fn orphan(id: &str, user: &str, deployment: &str) -> IntentFields {
    IntentFields {
        id: id.into(),
        amount: 2000,
        amount_received: 2000,
        currency: "usd".into(),
        status: "succeeded".into(),
        metadata: HashMap::from([
            ("user_id".into(), user.into()),
            (
                "created_by".into(),
                payments_core::stripe::CREATED_BY_MARKER.into(),
            ),
            ("deployment".into(), deployment.into()),
        ]),
        last_payment_error: None,
    }
}

#[tokio::test]
async fn another_deployments_intent_is_never_recovered_or_credited_here() {
    let world = World::new().await;
    // Staging and production share the Stripe account; this intent is staging's.
    world.stripe.put_intent(orphan(
        "pi_staging",
        "ivy",
        "dep_0123456789abcdef0123456789abcdef",
    ));
    let outcome = world
        .apply("evt_staging", "payment_intent.succeeded", "pi_staging")
        .await
        .unwrap();
    assert_eq!(outcome, EventOutcome::Ignored);
    assert_eq!(world.balance("ivy").await, 0);
    assert_eq!(
        count_rows(&mut world.db.connection().await, "payments").await,
        0
    );
    // Intents this deployment creates carry its id.
    let ours = world.intent_for("ivy", 1000).await;
    let deployment = world.service.deployment_id().await.unwrap().to_owned();
    assert!(
        deployment.starts_with("dep_") && deployment.len() == 36,
        "{deployment}"
    );
    assert_eq!(
        world
            .stripe
            .intent(&ours)
            .unwrap()
            .metadata
            .get("deployment"),
        Some(&deployment)
    );
}

#[tokio::test]
async fn our_intent_is_credited_to_its_owner_whatever_its_stripe_metadata_says() {
    let world = World::new().await;
    for (n, metadata) in [
        HashMap::new(),
        HashMap::from([("user_id".to_owned(), "mallory".to_owned())]),
        HashMap::from([
            ("user_id".to_owned(), "mallory".to_owned()),
            (
                "created_by".to_owned(),
                payments_core::stripe::CREATED_BY_MARKER.to_owned(),
            ),
            (
                "deployment".to_owned(),
                "dep_0123456789abcdef0123456789abcdef".to_owned(),
            ),
        ]),
    ]
    .into_iter()
    .enumerate()
    {
        let intent = world.intent_for("alice", 1000).await;
        // Someone with the Stripe key edited the intent's metadata.
        let mut edited = world.stripe.intent(&intent).unwrap();
        edited.metadata = metadata;
        world.stripe.put_intent(edited);
        world.stripe.succeed(&intent);
        let outcome = world
            .apply(
                &format!("evt_edited_{n}"),
                "payment_intent.succeeded",
                &intent,
            )
            .await
            .unwrap();
        assert_eq!(outcome, EventOutcome::Applied, "case {n}");
    }
    assert_eq!(world.balance("alice").await, 3000);
    assert_eq!(world.balance("mallory").await, 0);
    world.check_ledger().await;
}

#[tokio::test]
async fn a_404_for_an_intent_we_hold_is_unavailable_so_the_redelivery_credits_it() {
    let world = World::new().await;
    let intent = world.intent_for("bruno", 1000).await;
    world.stripe.succeed(&intent);
    // A wrong STRIPE_SECRET_KEY (another account) answers 404 for our intents.
    world
        .stripe
        .fail_next(
            "GET",
            1,
            Fault::error(
                404,
                "invalid_request_error",
                "resource_missing",
                "No such payment_intent",
            ),
        )
        .await;
    let err = world
        .apply("evt_404", "payment_intent.succeeded", &intent)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    let mut conn = world.db.connection().await;
    assert!(
        stripe_events::find(&mut conn, "evt_404")
            .await
            .unwrap()
            .is_none()
    );
    // Stripe retries once the key is right.
    let outcome = world
        .apply("evt_404", "payment_intent.succeeded", &intent)
        .await
        .unwrap();
    assert_eq!(outcome, EventOutcome::Applied);
    assert_eq!(world.balance("bruno").await, 1000);
    world.check_ledger().await;
}

#[tokio::test]
async fn our_intent_whose_currency_was_changed_at_stripe_is_not_credited_not_recorded_but_parked() {
    let world = World::new().await;
    let intent = world.intent_for("dora", 1000).await;
    let mut edited = world.stripe.intent(&intent).unwrap();
    edited.currency = "jpy".into();
    world.stripe.put_intent(edited);
    world.stripe.succeed(&intent);
    let err = world
        .apply("evt_jpy", "payment_intent.succeeded", &intent)
        .await
        .unwrap_err();
    // It will not go away by itself: parked for an operator (and still
    // refused to Stripe, which delivers it again).
    assert!(matches!(err, Error::EventParked(_)), "{err:?}");
    assert_eq!(world.balance("dora").await, 0);
    let parked = world.service.list_parked_events(0, "").await.unwrap();
    assert_eq!(parked.items.len(), 1);
    assert_eq!(parked.items[0].event_id, "evt_jpy");
    assert!(
        parked.items[0].last_error.contains("is in jpy at Stripe"),
        "{}",
        parked.items[0].last_error
    );
    let mut conn = world.db.connection().await;
    assert!(
        stripe_events::find(&mut conn, "evt_jpy")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_paid_intent_whose_row_was_never_stored_is_recovered_and_credited() {
    let world = World::new().await;
    // Created by this service at Stripe, but the process died before the insert.
    let deployment = world.service.deployment_id().await.unwrap().to_owned();
    world
        .stripe
        .put_intent(orphan("pi_orphan", "ivy", &deployment));

    let outcome = world
        .apply("evt_orphan", "payment_intent.succeeded", "pi_orphan")
        .await
        .unwrap();

    assert_eq!(outcome, EventOutcome::Applied);
    assert_eq!(world.balance("ivy").await, 2000);
    let payment = world.payment("pi_orphan").await;
    assert_eq!(
        (payment.user_id.as_str(), payment.amount_cents),
        ("ivy", 2000)
    );
    world.check_ledger().await;
}

#[tokio::test]
async fn a_retry_after_a_crash_before_the_insert_answers_the_recovered_intent() {
    let world = World::new().await;
    // The insert fails, as when the process dies between Stripe's answer and it.
    let mut conn = world.db.connection().await;
    conn.batch_execute(
        "CREATE FUNCTION crash() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'crashed before the insert'; END $$; \
         CREATE TRIGGER crash BEFORE INSERT ON payments EXECUTE FUNCTION crash();",
    )
    .await
    .unwrap();
    let crashed = world
        .service
        .create_payment_intent("jay", 1000, "order-7")
        .await;
    assert!(matches!(crashed, Err(Error::Internal(_))), "{crashed:?}");
    conn.batch_execute("DROP TRIGGER crash ON payments;")
        .await
        .unwrap();
    let [intent] = world.stripe.intent_ids().try_into().unwrap();

    // The webhook recovers the row from Stripe, without the client's key.
    world.stripe.succeed(&intent);
    let outcome = world
        .apply("evt_jay", "payment_intent.succeeded", &intent)
        .await
        .unwrap();
    assert_eq!(outcome, EventOutcome::Applied);
    assert_eq!(world.payment(&intent).await.idempotency_key, None);

    // The client's retry gets that intent (Stripe replays its key) and the
    // row takes the key, so later retries never ask Stripe to create.
    let retried = world
        .service
        .create_payment_intent("jay", 1000, "order-7")
        .await
        .unwrap();
    assert_eq!(retried.intent_id, intent);
    let stored = world.payment(&intent).await;
    assert_eq!(stored.idempotency_key.as_deref(), Some("order-7"));
    let creates = world
        .stripe
        .requests_to("POST", "/v1/payment_intents")
        .await;
    let again = world
        .service
        .create_payment_intent("jay", 1000, "order-7")
        .await
        .unwrap();
    assert_eq!(again.intent_id, intent);
    let err = world
        .service
        .create_payment_intent("jay", 2000, "order-7")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::IdempotencyConflict(_)), "{err:?}");
    assert_eq!(
        world
            .stripe
            .requests_to("POST", "/v1/payment_intents")
            .await
            .len(),
        creates.len()
    );
    assert_eq!(world.stripe.intent_count(), 1);
    assert_eq!(world.balance("jay").await, 1000);
    assert_eq!(count_rows(&mut conn, "payments").await, 1);
    world.check_ledger().await;
}

#[tokio::test]
async fn stripe_answering_a_create_with_another_users_intent_is_refused() {
    let world = World::new().await;
    let kim = world.intent_for("kim", 1000).await;
    let answer = world.stripe.intent_json(&kim).unwrap();
    world
        .stripe
        .fail_next("POST", 1, Fault::json(200, &answer))
        .await;

    let err = world
        .service
        .create_payment_intent("lee", 1000, "order-1")
        .await
        .unwrap_err();

    assert!(matches!(err, Error::Internal(_)), "{err:?}");
    let stored = world.payment(&kim).await;
    assert_eq!(
        (stored.user_id.as_str(), stored.idempotency_key),
        ("kim", None)
    );
    assert_eq!(
        count_rows(&mut world.db.connection().await, "payments").await,
        1
    );
}

/// An intent's owner is fixed when it is first stored (`intent_owners`).
/// Here the owner row outlived a crash that lost the payment row, and the
/// intent's metadata was since edited to name another user: the recovered
/// payment, and its credit, go to the owner.
#[tokio::test]
async fn a_recovered_intent_is_credited_to_its_fixed_owner_not_to_edited_metadata() {
    let world = World::new().await;
    let deployment = world.service.deployment_id().await.unwrap().to_owned();
    world
        .stripe
        .put_intent(orphan("pi_owned", "mallory", &deployment));
    let mut conn = world.db.connection().await;
    conn.batch_execute(
        "INSERT INTO intent_owners (stripe_intent_id, user_id) VALUES ('pi_owned', 'olga')",
    )
    .await
    .unwrap();

    let outcome = world
        .apply("evt_owned", "payment_intent.succeeded", "pi_owned")
        .await
        .unwrap();

    assert_eq!(outcome, EventOutcome::Applied);
    assert_eq!(
        (world.balance("olga").await, world.balance("mallory").await),
        (2000, 0)
    );
    assert_eq!(world.payment("pi_owned").await.user_id, "olga");
    world.check_ledger().await;
}

/// Before its user is known (no row yet: the intent is recovered from
/// Stripe), the same event delivered 20 times at once is applied once.
#[tokio::test]
async fn an_event_for_an_unstored_intent_delivered_20_times_at_once_is_applied_once() {
    let world = World::new().await;
    let deployment = world.service.deployment_id().await.unwrap().to_owned();
    world
        .stripe
        .put_intent(orphan("pi_unstored", "pavel", &deployment));

    let outcomes = join_all(
        (0..20).map(|_| world.apply("evt_unstored", "payment_intent.succeeded", "pi_unstored")),
    )
    .await;

    assert_applied_once(&outcomes);
    assert_eq!(world.balance("pavel").await, 2000);
    let mut conn = world.db.connection().await;
    assert_eq!(count_rows(&mut conn, "intent_owners").await, 1);
    assert_eq!(count_rows(&mut conn, "ledger_entries").await, 1);
    world.check_ledger().await;
}

/// An event as Stripe sends it for our intents: the intent's metadata names
/// its user.
fn event_naming(event_id: &str, intent_id: &str, user: &serde_json::Value) -> String {
    let mut event: serde_json::Value =
        serde_json::from_str(&event_json(event_id, "payment_intent.succeeded", intent_id)).unwrap();
    event["data"]["object"]["metadata"] = serde_json::json!({ "user_id": user });
    event.to_string()
}

/// The metadata's user is where the service looks first; a payment row under
/// that user proves the user owns the intent. Whatever the metadata names
/// (the owner, another user with payments of their own, nobody, garbage),
/// the owner is credited once and every redelivery is a duplicate.
#[tokio::test]
async fn whatever_user_an_events_metadata_names_the_intents_owner_is_credited_once() {
    let world = World::new().await;
    let mallorys = world.intent_for("mallory", 500).await;
    world.stripe.succeed(&mallorys);
    let named = [
        serde_json::json!("alice"),
        serde_json::json!("mallory"),
        serde_json::json!("nobody-we-know"),
        serde_json::json!(""),
        serde_json::json!("x".repeat(10_000)),
        serde_json::json!(42),
    ];
    for (n, user) in named.iter().enumerate() {
        let intent = world.intent_for("alice", 1000).await;
        world.stripe.succeed(&intent);
        let event = event_naming(&format!("evt_named_{n}"), &intent, user);
        for (delivery, expected) in [(0, EventOutcome::Applied), (1, EventOutcome::Duplicate)] {
            assert_eq!(
                world.service.apply_stripe_event(&event).await,
                Ok(expected),
                "metadata {user}, delivery {delivery}"
            );
        }
    }
    assert_eq!(world.balance("alice").await, 6000);
    assert_eq!(world.balance("mallory").await, 0);
    let mut conn = world.db.connection().await;
    assert_eq!(count_rows(&mut conn, "stripe_events").await, 6);
    assert_eq!(
        payments::find_by_intent(&mut conn, &mallorys)
            .await
            .unwrap()
            .unwrap()
            .status,
        "requires_payment_method"
    );
    world.check_ledger().await;
}
