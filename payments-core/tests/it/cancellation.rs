//! A call that is cancelled (its client gone, its deadline passed) while
//! Postgres works for it must not leave a backend working for nobody.

use std::time::Duration;

use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use payments_core::db::{PoolConfig, SessionLimits};
use payments_core::domain::Tiers;
use payments_core::stripe::StripeGateway;
use payments_core::{EventOutcome, PaymentsService};
use payments_test_support::event_json;
use payments_test_support::{TestDatabase, backends_waiting_on_a_lock};
use stripe_sandbox::Sandbox;

#[tokio::test]
async fn cancelled_calls_waiting_on_a_locked_payment_leave_no_backend_behind() {
    let db = TestDatabase::create().await;
    let stripe = Sandbox::start_local().await;
    // Timeouts far longer than the test: only the cancellation can free the backends.
    let long = Duration::from_secs(120);
    let pool = db
        .pool_with(PoolConfig {
            max_size: 8,
            session: SessionLimits {
                statement_timeout: long,
                lock_timeout: long,
                idle_in_transaction_timeout: long,
            },
            ..PoolConfig::default()
        })
        .await;
    let gateway = StripeGateway::new(&payments_test_support::stripe_config(&stripe)).unwrap();
    let service = PaymentsService::new(pool, gateway, Tiers::default());
    let intent = service
        .create_payment_intent("alice", 1000, "")
        .await
        .unwrap()
        .intent_id;
    stripe.succeed(&intent);

    // Another session holds the payment row, as a slow transaction would.
    let mut holder = db.connection().await;
    holder
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM payments WHERE stripe_intent_id = '{intent}' FOR UPDATE"
        ))
        .await
        .unwrap();
    for n in 0..5 {
        let event = event_json(
            &format!("evt_cancelled_{n}"),
            "payment_intent.succeeded",
            &intent,
        );
        let call = service.apply_stripe_event(&event);
        let result = tokio::time::timeout(Duration::from_millis(300), call).await;
        assert!(result.is_err(), "the call waits for the locked row");
    }

    let mut observer = db.connection().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let waiting = backends_waiting_on_a_lock(&mut observer).await;
        if waiting == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{waiting} backends still wait for the lock 5 s after their calls were cancelled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Nothing was half-written: once the row is free, the event applies once.
    holder.batch_execute("ROLLBACK").await.unwrap();
    let event = event_json("evt_after", "payment_intent.succeeded", &intent);
    assert_eq!(
        service.apply_stripe_event(&event).await.unwrap(),
        EventOutcome::Applied
    );
    assert_eq!(
        service.get_balance("alice").await.unwrap().balance_cents,
        1000
    );
}

#[tokio::test]
async fn every_pooled_connection_carries_the_session_limits() {
    let db = TestDatabase::create().await;
    let pool = db
        .pool_with(PoolConfig {
            max_size: 2,
            session: SessionLimits {
                statement_timeout: Duration::from_millis(1500),
                lock_timeout: Duration::from_millis(700),
                idle_in_transaction_timeout: Duration::from_millis(9000),
            },
            ..PoolConfig::default()
        })
        .await;
    #[derive(diesel::QueryableByName)]
    struct Settings {
        #[diesel(sql_type = diesel::sql_types::Text)]
        statement: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        lock: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        idle: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        client_check: String,
    }
    let mut conn = pool.get().await.unwrap();
    let settings: Settings = diesel::sql_query(
        "SELECT current_setting('statement_timeout') AS statement, \
                current_setting('lock_timeout') AS lock, \
                current_setting('idle_in_transaction_session_timeout') AS idle, \
                current_setting('client_connection_check_interval') AS client_check",
    )
    .get_result(&mut *conn)
    .await
    .unwrap();
    assert_eq!(
        (
            settings.statement.as_str(),
            settings.lock.as_str(),
            settings.idle.as_str(),
            settings.client_check.as_str()
        ),
        ("1500ms", "700ms", "9s", "500ms")
    );
    // A statement over the limit is stopped by Postgres, and reported as
    // UNAVAILABLE (retry), not as a broken query.
    let err = diesel::sql_query("SELECT pg_sleep(3)")
        .execute(&mut *conn)
        .await
        .unwrap_err();
    assert!(
        matches!(
            payments_core::db::DbError::from(err),
            payments_core::db::DbError::Unavailable(_)
        ),
        "statement timeout is retryable"
    );
}
