//! Applying Stripe events: exactly-once credits, forward-only statuses, and
//! nothing trusted that Stripe's API does not confirm.

use std::collections::HashMap;

use diesel_async::SimpleAsyncConnection;
use futures::future::join_all;

use payments_core::db::{balances, ledger, payments, stripe_events};
use payments_core::stripe::StripeGateway;
use payments_core::{Error, EventOutcome, PaymentsService};
use payments_test_support::event_json;
use payments_test_support::{
    TestDatabase, assert_balances_match_ledger, backends_waiting_on_a_lock, count_rows, service,
};
use stripe_sandbox::{Fault, IntentFields, Sandbox};

struct World {
    db: TestDatabase,
    stripe: Sandbox,
    service: PaymentsService<StripeGateway>,
}

impl World {
    async fn new() -> Self {
        let db = TestDatabase::create().await;
        let stripe = Sandbox::start_local().await;
        let service = service(&db, &stripe).await;
        Self {
            db,
            stripe,
            service,
        }
    }

    /// An intent this service created for `user`, for `cents`.
    async fn intent_for(&self, user: &str, cents: i64) -> String {
        self.service
            .create_payment_intent(user, cents, "")
            .await
            .unwrap()
            .intent_id
    }

    async fn apply(
        &self,
        event_id: &str,
        event_type: &str,
        intent_id: &str,
    ) -> Result<EventOutcome, Error> {
        self.service
            .apply_stripe_event(&event_json(event_id, event_type, intent_id))
            .await
    }

    async fn balance(&self, user: &str) -> i64 {
        self.service
            .get_balance(user)
            .await
            .unwrap()
            .balance_cents
            .get()
    }

    async fn payment(&self, intent_id: &str) -> payments::PaymentRow {
        let mut conn = self.db.connection().await;
        payments::find_by_intent(&mut conn, intent_id)
            .await
            .unwrap()
            .expect("payment row")
    }

    /// The invariant every test ends with.
    async fn check_ledger(&self) {
        assert_balances_match_ledger(&mut self.db.connection().await).await;
    }
}

/// One delivery applied the event; every other one was a duplicate.
fn assert_applied_once(outcomes: &[Result<EventOutcome, Error>]) {
    let count = |wanted: EventOutcome| outcomes.iter().filter(|o| **o == Ok(wanted)).count();
    assert_eq!(
        (count(EventOutcome::Applied), count(EventOutcome::Duplicate)),
        (1, outcomes.len() - 1),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn a_succeeded_event_credits_amount_received_from_stripe_not_the_event() {
    let world = World::new().await;
    let intent = world.intent_for("alice", 2000).await;
    world.stripe.succeed(&intent);

    // The event claims 999999 cents; Stripe's API says 2000.
    let outcome = world
        .apply("evt_1", "payment_intent.succeeded", &intent)
        .await
        .unwrap();

    assert_eq!(outcome, EventOutcome::Applied);
    assert_eq!(world.balance("alice").await, 2000);
    let payment = world.payment(&intent).await;
    assert_eq!(payment.status, "succeeded");
    assert_eq!(payment.amount_received_cents, 2000);
    let mut conn = world.db.connection().await;
    let entries = ledger::for_user(&mut conn, "alice").await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].amount_cents, 2000);
    assert_eq!(
        entries[0].stripe_intent_id.as_deref(),
        Some(intent.as_str())
    );
    assert_eq!(entries[0].stripe_event_id.as_deref(), Some("evt_1"));
    let event = stripe_events::find(&mut conn, "evt_1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.outcome, "applied");
    assert_eq!(event.user_id.as_deref(), Some("alice"));
    assert_eq!(
        event.payload,
        event_json("evt_1", "payment_intent.succeeded", &intent)
    );
    world.check_ledger().await;
}

#[tokio::test]
async fn the_same_event_applied_20_times_concurrently_credits_once() {
    let world = World::new().await;
    let intent = world.intent_for("bob", 1000).await;
    world.stripe.succeed(&intent);

    let attempts = (0..20).map(|_| world.apply("evt_same", "payment_intent.succeeded", &intent));
    let outcomes = join_all(attempts).await;

    assert_applied_once(&outcomes);
    assert_eq!(world.balance("bob").await, 1000);
    let mut conn = world.db.connection().await;
    assert_eq!(count_rows(&mut conn, "ledger_entries").await, 1);
    assert_eq!(count_rows(&mut conn, "stripe_events").await, 1);
    world.check_ledger().await;
}

#[tokio::test]
async fn different_events_for_one_intent_credit_once_even_concurrently() {
    let world = World::new().await;
    let intent = world.intent_for("carol", 5000).await;
    world.stripe.succeed(&intent);

    let ids: Vec<String> = (0..10).map(|i| format!("evt_{i}")).collect();
    let outcomes = join_all(
        ids.iter()
            .map(|id| world.apply(id, "payment_intent.succeeded", &intent)),
    )
    .await;

    assert!(
        outcomes.iter().all(|o| *o == Ok(EventOutcome::Applied)),
        "{outcomes:?}"
    );
    assert_eq!(world.balance("carol").await, 5000);
    let mut conn = world.db.connection().await;
    assert_eq!(count_rows(&mut conn, "ledger_entries").await, 1);
    assert_eq!(count_rows(&mut conn, "stripe_events").await, 10);
    world.check_ledger().await;
}

#[tokio::test]
async fn a_late_payment_failed_does_not_undo_succeeded() {
    let world = World::new().await;
    let intent = world.intent_for("dave", 500).await;
    world.stripe.succeed(&intent);
    world
        .apply("evt_ok", "payment_intent.succeeded", &intent)
        .await
        .unwrap();

    // Even if Stripe's answer were stale, a final status never moves.
    world
        .stripe
        .decline(&intent, "generic_decline", "Your card was declined.");
    let outcome = world
        .apply("evt_late_fail", "payment_intent.payment_failed", &intent)
        .await
        .unwrap();

    assert_eq!(outcome, EventOutcome::Applied);
    let payment = world.payment(&intent).await;
    assert_eq!(payment.status, "succeeded");
    assert_eq!(payment.failure_code, None);
    assert_eq!(world.balance("dave").await, 500);
    world.check_ledger().await;
}

#[tokio::test]
async fn a_succeeded_event_for_an_intent_stripe_reports_unpaid_credits_nothing() {
    let world = World::new().await;
    let intent = world.intent_for("erin", 1000).await;
    // Stripe still says requires_payment_method: the event is forged or early.

    let outcome = world
        .apply("evt_forged", "payment_intent.succeeded", &intent)
        .await
        .unwrap();

    assert_eq!(outcome, EventOutcome::Applied);
    assert_eq!(world.balance("erin").await, 0);
    assert_eq!(
        world.payment(&intent).await.status,
        "requires_payment_method"
    );
    assert_eq!(
        count_rows(&mut world.db.connection().await, "ledger_entries").await,
        0
    );

    // When the payment really succeeds, the next event credits it.
    world.stripe.succeed(&intent);
    world
        .apply("evt_real", "payment_intent.succeeded", &intent)
        .await
        .unwrap();
    assert_eq!(world.balance("erin").await, 1000);
    world.check_ledger().await;
}

#[tokio::test]
async fn an_intent_this_service_did_not_create_is_ignored() {
    let world = World::new().await;
    world.stripe.put_intent(IntentFields {
        id: "pi_foreign".into(),
        amount: 5000,
        amount_received: 5000,
        currency: "usd".into(),
        status: "succeeded".into(),
        metadata: HashMap::from([("user_id".into(), "mallory".into())]),
        last_payment_error: None,
    });

    let outcome = world
        .apply("evt_foreign", "payment_intent.succeeded", "pi_foreign")
        .await
        .unwrap();

    assert_eq!(outcome, EventOutcome::Ignored);
    assert_eq!(world.balance("mallory").await, 0);
    let mut conn = world.db.connection().await;
    let event = stripe_events::find(&mut conn, "evt_foreign")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.outcome, "ignored");
    assert_eq!(count_rows(&mut conn, "payments").await, 0);
    // Redelivery is a duplicate, not an error Stripe would retry forever.
    let again = world
        .apply("evt_foreign", "payment_intent.succeeded", "pi_foreign")
        .await
        .unwrap();
    assert_eq!(again, EventOutcome::Duplicate);
    world.check_ledger().await;
}

#[tokio::test]
async fn an_intent_stripe_does_not_know_is_ignored() {
    let world = World::new().await;
    let outcome = world
        .apply("evt_ghost", "payment_intent.succeeded", "pi_doesnotexist")
        .await
        .unwrap();
    assert_eq!(outcome, EventOutcome::Ignored);
    // An object id that is not a PaymentIntent id never reaches Stripe.
    let outcome = world
        .apply("evt_path", "payment_intent.succeeded", "pi_1/cancel")
        .await
        .unwrap();
    assert_eq!(outcome, EventOutcome::Ignored);
    assert_eq!(
        world
            .stripe
            .requests_to("GET", "/v1/payment_intents/pi_1")
            .await
            .len(),
        0
    );
    world.check_ledger().await;
}

#[tokio::test]
async fn other_event_types_are_recorded_and_ignored() {
    let world = World::new().await;
    let outcome = world
        .apply("evt_cus", "customer.created", "cus_123")
        .await
        .unwrap();
    assert_eq!(outcome, EventOutcome::Ignored);
    assert_eq!(
        world
            .apply("evt_cus", "customer.created", "cus_123")
            .await
            .unwrap(),
        EventOutcome::Duplicate
    );
    assert!(
        world.stripe.requests_to("GET", "/v1").await.is_empty(),
        "ignored types need no Stripe call"
    );
    let mut conn = world.db.connection().await;
    let event = stripe_events::find(&mut conn, "evt_cus")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (event.event_type.as_str(), event.outcome.as_str()),
        ("customer.created", "ignored")
    );
}

#[tokio::test]
async fn a_payment_failure_records_stripes_code_and_message() {
    let world = World::new().await;
    let intent = world.intent_for("frank", 1000).await;
    world.stripe.decline(
        &intent,
        "insufficient_funds",
        "Your card has insufficient funds.",
    );

    let outcome = world
        .apply("evt_fail", "payment_intent.payment_failed", &intent)
        .await
        .unwrap();

    assert_eq!(outcome, EventOutcome::Applied);
    let payment = world.payment(&intent).await;
    assert_eq!(payment.status, "requires_payment_method");
    assert_eq!(payment.failure_code.as_deref(), Some("insufficient_funds"));
    assert_eq!(
        payment.failure_message.as_deref(),
        Some("Your card has insufficient funds.")
    );
    assert_eq!(world.balance("frank").await, 0);

    // The customer retries with another card and pays.
    world.stripe.succeed(&intent);
    world
        .apply("evt_ok", "payment_intent.succeeded", &intent)
        .await
        .unwrap();
    let payment = world.payment(&intent).await;
    assert_eq!(
        (payment.status.as_str(), payment.failure_code),
        ("succeeded", None)
    );
    assert_eq!(world.balance("frank").await, 1000);
    world.check_ledger().await;
}

#[tokio::test]
async fn statuses_only_move_forward_whatever_order_events_arrive_in() {
    let world = World::new().await;
    let intent = world.intent_for("gina", 2000).await;

    world.stripe.set_status(&intent, "processing");
    world
        .apply("evt_processing", "payment_intent.processing", &intent)
        .await
        .unwrap();
    assert_eq!(world.payment(&intent).await.status, "processing");

    // A stale requires_action delivered late cannot move processing back.
    world.stripe.set_status(&intent, "requires_action");
    world
        .apply("evt_action", "payment_intent.requires_action", &intent)
        .await
        .unwrap();
    assert_eq!(world.payment(&intent).await.status, "processing");

    world.stripe.set_status(&intent, "canceled");
    world
        .apply("evt_cancel", "payment_intent.canceled", &intent)
        .await
        .unwrap();
    assert_eq!(world.payment(&intent).await.status, "canceled");
    assert_eq!(world.balance("gina").await, 0);
    world.check_ledger().await;
}

#[tokio::test]
async fn malformed_events_are_invalid_and_write_nothing() {
    let world = World::new().await;
    for bad in [
        "",
        "{",
        "[]",
        r#"{"id":"evt_1"}"#,
        r#"{"id":"","type":"x","data":{"object":{}}}"#,
    ] {
        let err = world.service.apply_stripe_event(bad).await.unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{bad:?}: {err:?}");
    }
    assert_eq!(
        count_rows(&mut world.db.connection().await, "stripe_events").await,
        0
    );
}

#[tokio::test]
async fn stripe_unavailable_leaves_the_event_unrecorded_so_a_retry_applies_it() {
    let world = World::new().await;
    let intent = world.intent_for("hank", 1000).await;
    world.stripe.succeed(&intent);
    world
        .stripe
        .fail_next("GET", 3, Fault::error(500, "api_error", "", "boom"))
        .await;

    let err = world
        .apply("evt_retry", "payment_intent.succeeded", &intent)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    assert_eq!(
        count_rows(&mut world.db.connection().await, "stripe_events").await,
        0
    );

    // Stripe redelivers the same event later.
    let outcome = world
        .apply("evt_retry", "payment_intent.succeeded", &intent)
        .await
        .unwrap();
    assert_eq!(outcome, EventOutcome::Applied);
    assert_eq!(world.balance("hank").await, 1000);
    world.check_ledger().await;
}

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

#[tokio::test]
async fn balances_of_several_users_stay_equal_to_their_ledgers() {
    let world = World::new().await;
    let mut expected = HashMap::new();
    for (n, (user, cents)) in [
        ("u1", 500),
        ("u2", 1000),
        ("u1", 2000),
        ("u3", 5000),
        ("u2", 500),
    ]
    .into_iter()
    .enumerate()
    {
        let intent = world.intent_for(user, cents).await;
        world.stripe.succeed(&intent);
        world
            .apply(&format!("evt_{n}"), "payment_intent.succeeded", &intent)
            .await
            .unwrap();
        world
            .apply(
                &format!("evt_{n}_again"),
                "payment_intent.succeeded",
                &intent,
            )
            .await
            .unwrap();
        *expected.entry(user).or_insert(0) += cents;
    }
    let mut conn = world.db.connection().await;
    for (user, cents) in expected {
        let balance = balances::find(&mut conn, user).await.unwrap().unwrap();
        assert_eq!(balance.balance_cents, cents, "{user}");
    }
    world.check_ledger().await;
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

/// The write is a compare-and-set on the payment as read: when another
/// event changes the payment between the read and the write, nothing is
/// written, the payment is read again, and the event is applied on what it
/// is now (never on what it was).
#[tokio::test]
async fn a_payment_changed_between_the_read_and_the_write_is_read_again() {
    let world = World::new().await;
    let intent = world.intent_for("ivan", 2000).await;
    world.stripe.succeed(&intent);

    // Another writer holds the row while the event is read and decided.
    let mut holder = world.db.connection().await;
    holder
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM payments WHERE stripe_intent_id = '{intent}' FOR UPDATE"
        ))
        .await
        .unwrap();
    let event = event_json("evt_cas", "payment_intent.succeeded", &intent);
    let mut observer = world.db.connection().await;
    let (outcome, ()) = tokio::join!(world.service.apply_stripe_event(&event), async {
        while backends_waiting_on_a_lock(&mut observer).await == 0 {
            tokio::task::yield_now().await;
        }
        // The write now waits on the row; the holder moves the payment on.
        holder
            .batch_execute(&format!(
                "UPDATE payments SET status = 'processing' WHERE stripe_intent_id = '{intent}'; COMMIT"
            ))
            .await
            .unwrap();
    });

    assert_eq!(outcome, Ok(EventOutcome::Applied));
    let payment = world.payment(&intent).await;
    assert_eq!(payment.status, "succeeded");
    assert_eq!(payment.amount_received_cents, 2000);
    assert_eq!(world.balance("ivan").await, 2000);
    let mut conn = world.db.connection().await;
    assert_eq!(count_rows(&mut conn, "stripe_events").await, 1);
    world.check_ledger().await;
}
