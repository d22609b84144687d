//! One bad object never stops the rest: an event whose apply fails for a
//! reason that will not go away by itself is parked (seen, retried with
//! backoff) and the Events API backfill goes on past it; a passing failure
//! still stops the pass where it is. The backfill reads Stripe's Events API
//! forward from the last event handled, so no volume of events stalls it.

use std::time::Duration;

use diesel_async::RunQueryDsl;
use payments_core::domain::LedgerKind;
use payments_core::{Error, EventOutcome, ReconcileSettings};
use payments_test_support::World;
use serde_json::json;
use stripe_sandbox::Fault;

const A_DAY: Duration = Duration::from_secs(86_400);

async fn world(events_page_size: u8, event_pages_per_pass: u32) -> World {
    World::with(|service| {
        service.with_reconciliation(ReconcileSettings {
            after: A_DAY,
            stale_after: A_DAY,
            events_page_size,
            event_pages_per_pass,
        })
    })
    .await
}

/// An intent of `user` paid and credited by a sync (no webhook).
async fn paid(world: &World, user: &str, cents: i64) -> String {
    let intent = world.intent_for(user, cents).await;
    world.stripe.succeed(&intent);
    world
        .service
        .sync_payment_intent(user, &intent)
        .await
        .unwrap();
    intent
}

/// The JSON of the sandbox's event of `event_type` about `object_id`.
fn event_about(world: &World, event_type: &str, object_id: &str) -> String {
    world
        .stripe
        .events()
        .into_iter()
        .find(|e| e["type"] == event_type && e["data"]["object"]["id"] == object_id)
        .unwrap_or_else(|| panic!("no {event_type} about {object_id}"))
        .to_string()
}

/// A paid intent of `user`, then a dispute of it whose reads Stripe answers
/// with `fault`, then a refund of 500; every webhook lost. Answers the
/// dispute's id.
async fn disputed_then_refunded(world: &World, user: &str, fault: Fault) -> String {
    let intent = paid(world, user, 2000).await;
    let dispute = world.stripe.dispute(&intent);
    world
        .stripe
        .fail_next_on("GET", "/v1/disputes", 1_000, fault)
        .await;
    world.stripe.refund(&intent, Some(500)).await;
    dispute
}

async fn sql(world: &World, statement: &str) {
    let mut conn = world.db.connection().await;
    diesel::sql_query(statement)
        .execute(&mut conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_event_that_fails_for_good_is_parked_and_holds_back_no_later_event() {
    let world = world(100, 50).await;
    // A dispute Stripe answers in a shape the service cannot read, then a
    // refund.
    let unreadable = json!({"object": "dispute", "amount": "twenty dollars"});
    let dispute = disputed_then_refunded(&world, "gus", Fault::json(200, &unreadable)).await;

    let pass = world.service.run_reconciliation().await.unwrap();
    // Both dispute events (created, funds withdrawn) parked; the refund after
    // them booked all the same.
    assert_eq!(pass.events_parked, 2, "{pass:?}");
    assert_eq!(pass.failed, 0, "{pass:?}");
    assert_eq!(world.balance("gus").await, 1500);
    assert_eq!(
        world.kinds("gus").await,
        [LedgerKind::TopUp, LedgerKind::Refund]
    );
    let parked = world.service.list_parked_events(0, "").await.unwrap();
    assert_eq!(parked.items.len(), 2, "{parked:?}");
    assert_eq!(parked.next_cursor, None);
    for event in &parked.items {
        assert_eq!(event.attempts, 1);
        assert_eq!(event.object_id.as_deref(), Some(dispute.as_str()));
        assert!(
            event.last_error.contains("could not be read"),
            "{}",
            event.last_error
        );
        assert_eq!(
            event.next_attempt_at - event.last_failed_at,
            chrono::Duration::seconds(60)
        );
        assert!(!event.payload.contains("client_secret"));
    }
    // Pages of one, by event id.
    let first = world.service.list_parked_events(1, "").await.unwrap();
    let cursor = first.next_cursor.clone().expect("a second page");
    let second = world.service.list_parked_events(1, &cursor).await.unwrap();
    assert_eq!(second.items.len(), 1);
    assert!(second.items[0].event_id > first.items[0].event_id);
    assert_eq!(second.next_cursor, None);
    assert_eq!(world.service.parked_event_count().await, Ok(2));

    // The next pass reads past them and retries none before its time.
    let next = world.service.run_reconciliation().await.unwrap();
    assert_eq!((next.events_parked, next.events_backfilled), (0, 0));

    // Stripe delivers one again: still unreadable, answered EventParked
    // (503 at the edge, so Stripe keeps trying), one more attempt, twice
    // the pause.
    let created = event_about(&world, "charge.dispute.created", &dispute);
    let again = world.service.apply_stripe_event(&created).await;
    assert!(matches!(again, Err(Error::EventParked(_))), "{again:?}");
    let created_id = serde_json::from_str::<serde_json::Value>(&created).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let row = world
        .service
        .list_parked_events(0, "")
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|event| event.event_id == created_id)
        .unwrap();
    assert_eq!(row.attempts, 2);
    assert_eq!(
        row.next_attempt_at - row.last_failed_at,
        chrono::Duration::seconds(120)
    );

    // Fixed: a retry by hand applies it, and it is parked no more; the
    // other comes due and the next pass applies it.
    world.stripe.clear_faults();
    assert_eq!(
        world.service.retry_parked_event(&created_id).await,
        Ok(EventOutcome::Applied)
    );
    assert!(matches!(
        world.service.retry_parked_event(&created_id).await,
        Err(Error::NotFound(_))
    ));
    sql(
        &world,
        "UPDATE parked_stripe_events SET next_attempt_at = now() - interval '1 second'",
    )
    .await;
    let healed = world.service.run_reconciliation().await.unwrap();
    assert_eq!(healed.parked_events_applied, 1, "{healed:?}");
    assert_eq!(world.service.parked_event_count().await, Ok(0));
    assert_eq!(
        world.kinds("gus").await,
        [LedgerKind::TopUp, LedgerKind::Refund, LedgerKind::Dispute]
    );
    world.check_ledger().await;
}

#[tokio::test]
async fn a_passing_failure_parks_nothing_and_stops_the_pass_where_it_is() {
    let world = world(100, 50).await;
    let down = Fault::error(503, "api_error", "", "try later");
    let dispute = disputed_then_refunded(&world, "hal", down).await;

    let pass = world.service.run_reconciliation().await.unwrap();
    assert_eq!(pass.failed, 1, "{pass:?}");
    assert_eq!(pass.events_parked, 0, "{pass:?}");
    assert_eq!(world.service.parked_event_count().await, Ok(0));
    // The refund after the dispute waits for the dispute.
    assert_eq!(world.kinds("hal").await, [LedgerKind::TopUp]);
    let delivered = world
        .service
        .apply_stripe_event(&event_about(&world, "charge.dispute.created", &dispute))
        .await;
    assert!(
        matches!(delivered, Err(Error::Unavailable(_))),
        "{delivered:?}"
    );

    world.stripe.clear_faults();
    world.service.run_reconciliation().await.unwrap();
    assert_eq!(
        world.kinds("hal").await,
        [LedgerKind::TopUp, LedgerKind::Dispute, LedgerKind::Refund]
    );
    world.check_ledger().await;
}

/// Runs passes until one applies nothing and asks Stripe for one page (all
/// read); answers how many passes applied something.
async fn passes_until_read_whole(world: &World, pages_per_pass: usize) -> usize {
    for passes in 0..50 {
        let reads_before = world.stripe.requests_to("GET", "/v1/events").await.len();
        let pass = world.service.run_reconciliation().await.unwrap();
        let reads = world.stripe.requests_to("GET", "/v1/events").await.len() - reads_before;
        assert!(reads <= pages_per_pass, "{reads} pages read in one pass");
        assert_eq!(pass.failed, 0, "{pass:?}");
        if pass.events_backfilled == 0 && reads == 1 {
            return passes;
        }
    }
    panic!("the backfill never caught up");
}

#[tokio::test]
async fn the_events_api_is_walked_forward_over_as_many_passes_as_it_takes() {
    // Pages of 3, two per pass: six events a pass at most.
    let world = world(3, 2).await;
    let intents: Vec<String> = futures::future::join_all(
        (0..4).map(|i| paid(&world, ["ann", "bob", "cy", "dee"][i], 1000)),
    )
    .await;
    // Eight refund events (created, charge.refunded) whose webhooks were
    // lost. No cursor yet: the passes walk back from the newest event (over
    // more than one pass) and then forward.
    for intent in &intents {
        world.stripe.refund(intent, Some(100)).await;
    }
    let walked_back = passes_until_read_whole(&world, 2).await;
    assert!(walked_back >= 2, "{walked_back} passes");
    for user in ["ann", "bob", "cy", "dee"] {
        assert_eq!(world.balance(user).await, 900, "{user}");
    }

    // Eight more: read forward from the last one handled.
    for intent in &intents {
        world.stripe.refund(intent, Some(100)).await;
    }
    let reads_before = world.stripe.requests_to("GET", "/v1/events").await.len();
    let forward = passes_until_read_whole(&world, 2).await;
    assert!(forward >= 2, "{forward} passes");
    for user in ["ann", "bob", "cy", "dee"] {
        assert_eq!(world.balance(user).await, 800, "{user}");
    }
    // Forward reads name the last event, never a time.
    let reads = world.stripe.requests_to("GET", "/v1/events").await;
    for read in &reads[reads_before..] {
        assert!(read.query.contains("ending_before="), "{}", read.query);
        assert!(!read.query.contains("created%5B"), "{}", read.query);
        assert!(!read.query.contains("created["), "{}", read.query);
        assert!(read.query.contains("limit=3"), "{}", read.query);
    }

    // A cursor Stripe no longer knows (an event past its 30 days): the pass
    // walks back from the cursor's time instead, and loses nothing.
    sql(
        &world,
        "UPDATE reconciliation_cursor SET events_last_id = 'evt_gone', events_seek_id = NULL",
    )
    .await;
    world.stripe.refund(&intents[0], Some(100)).await;
    passes_until_read_whole(&world, 2).await;
    assert_eq!(world.balance("ann").await, 700);
    assert_eq!(
        world.kinds("ann").await,
        [
            LedgerKind::TopUp,
            LedgerKind::Refund,
            LedgerKind::Refund,
            LedgerKind::Refund
        ]
    );
    world.check_ledger().await;
}

/// A parked row as another replica would have written it, retried `in_secs`
/// from now.
async fn parked_elsewhere(world: &World, event_id: &str, payload: &str, in_secs: i32) {
    let mut conn = world.db.connection().await;
    diesel::sql_query(
        "INSERT INTO parked_stripe_events (event_id, event_type, object_id, payload, attempts,
                 last_error, first_failed_at, last_failed_at, next_attempt_at)
         VALUES ($1, 'payment_intent.succeeded', NULL, $2, 1, 'elsewhere', now(), now(),
                 now() + make_interval(secs => $3))",
    )
    .bind::<diesel::sql_types::Text, _>(event_id)
    .bind::<diesel::sql_types::Text, _>(payload)
    .bind::<diesel::sql_types::Integer, _>(in_secs)
    .execute(&mut conn)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_parked_row_goes_with_the_delivery_that_applies_it_or_at_its_next_retry() {
    let world = world(100, 50).await;
    let intent = paid(&world, "lea", 1000).await;
    // This process counted no parked event; another replica then parked one.
    assert_eq!(world.service.parked_event_count().await, Ok(0));
    let first = payments_test_support::event_json("evt_lea_1", "payment_intent.succeeded", &intent);
    parked_elsewhere(&world, "evt_lea_1", &first, -1).await;
    // Stripe's delivery applies it; this process did not know of it, so it
    // spent no statement on parking, and the row waits for its retry…
    assert_eq!(
        world.service.apply_stripe_event(&first).await,
        Ok(EventOutcome::Applied)
    );
    assert_eq!(world.service.parked_event_count().await, Ok(1));
    // …which finds the event applied and lets it go.
    let pass = world.service.run_reconciliation().await.unwrap();
    assert_eq!(pass.parked_events_applied, 1, "{pass:?}");
    assert_eq!(world.service.parked_event_count().await, Ok(0));

    // Knowing of parked events, the delivery that applies one lets it go at once.
    let second =
        payments_test_support::event_json("evt_lea_2", "payment_intent.succeeded", &intent);
    parked_elsewhere(&world, "evt_lea_2", &second, 3_600).await;
    assert_eq!(world.service.parked_event_count().await, Ok(1));
    assert_eq!(
        world.service.apply_stripe_event(&second).await,
        Ok(EventOutcome::Applied)
    );
    assert_eq!(world.service.parked_event_count().await, Ok(0));
    assert_eq!(world.balance("lea").await, 1000);
    world.check_ledger().await;
}
