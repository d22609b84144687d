//! WatchBalance: the balance at once, then every change pushed from any
//! replica's write (Postgres NOTIFY), one database listener per process
//! however many watchers, and every watch ended when the server stops.

use std::time::Duration;

use diesel_async::RunQueryDsl;
use payments_grpc::proto::payments_service_client::PaymentsServiceClient;
use payments_grpc::proto::{
    GetBalanceResponse, SpendCreditsRequest, WatchBalanceRequest, error_reason,
};
use payments_grpc::testing::RunningGrpc;
use payments_test_support::TestDatabase;
use stripe_sandbox::Sandbox;
use tonic::transport::Channel;
use tonic::{Code, Request, Streaming};

const TOKEN: &str = "test-internal-token";
const ADMIN_TOKEN: &str = "test-admin-token";

fn authed<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

async fn replica(db: &TestDatabase, stripe: &Sandbox) -> (RunningGrpc, Channel) {
    let mut config = payments_grpc::testing::config(&db.url, &stripe.url(), TOKEN);
    config.payments_admin_token = Some(ADMIN_TOKEN.into());
    let server = RunningGrpc::start(config).await;
    let channel = Channel::from_shared(server.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    (server, channel)
}

async fn watch(channel: &Channel, user: &str) -> Streaming<GetBalanceResponse> {
    PaymentsServiceClient::new(channel.clone())
        .watch_balance(authed(
            WatchBalanceRequest {
                user_id: user.into(),
            },
            TOKEN,
        ))
        .await
        .unwrap()
        .into_inner()
}

/// The next message within `within`; panics when none comes.
async fn next(stream: &mut Streaming<GetBalanceResponse>, within: Duration) -> GetBalanceResponse {
    tokio::time::timeout(within, stream.message())
        .await
        .expect("a message in time")
        .expect("a message, not an error")
        .expect("the stream is open")
}

async fn adjust(channel: &Channel, user: &str, cents: i64, key: &str) {
    payments_grpc::proto::admin_service_client::AdminServiceClient::new(channel.clone())
        .adjust_balance(authed(
            payments_grpc::proto::AdjustBalanceRequest {
                user_id: user.into(),
                amount_cents: cents,
                reason: "test".into(),
                idempotency_key: key.into(),
                actor: "tests".into(),
            },
            ADMIN_TOKEN,
        ))
        .await
        .unwrap();
}

/// Connections of this database listening for balance changes.
async fn listeners(db: &TestDatabase) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let count: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM pg_stat_activity
          WHERE datname = current_database() AND query ILIKE 'LISTEN balance_changed%'",
    )
    .get_result(&mut db.connection().await)
    .await
    .unwrap();
    count.n
}

#[tokio::test]
async fn a_spend_through_one_replica_reaches_a_watcher_on_another_within_a_second() {
    let stripe = Sandbox::start_local().await;
    let db = TestDatabase::create().await;
    let (_a, replica_a) = replica(&db, &stripe).await;
    let (_b, replica_b) = replica(&db, &stripe).await;
    adjust(&replica_a, "ann", 1000, "gift").await;

    let mut stream = watch(&replica_b, "ann").await;
    let first = next(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(
        first.balance_cents, 1000,
        "the first message is the balance now"
    );

    PaymentsServiceClient::new(replica_a.clone())
        .spend_credits(authed(
            SpendCreditsRequest {
                user_id: "ann".into(),
                amount_cents: 300,
                idempotency_key: "job-1".into(),
                reason: String::new(),
            },
            TOKEN,
        ))
        .await
        .unwrap();
    let pushed = next(&mut stream, Duration::from_secs(1)).await;
    assert_eq!(pushed.balance_cents, 700);
    assert_eq!(pushed.user_id, "ann");

    // A paid top-up, applied by its webhook through replica A.
    let intent = PaymentsServiceClient::new(replica_a.clone())
        .create_payment_intent(authed(
            payments_grpc::proto::CreatePaymentIntentRequest {
                user_id: "ann".into(),
                amount_cents: 500,
                idempotency_key: String::new(),
            },
            TOKEN,
        ))
        .await
        .unwrap()
        .into_inner()
        .intent_id;
    stripe.succeed(&intent);
    PaymentsServiceClient::new(replica_a.clone())
        .apply_stripe_event(authed(
            payments_grpc::proto::ApplyStripeEventRequest {
                event_json: payments_test_support::event_json(
                    "evt_watch",
                    "payment_intent.succeeded",
                    &intent,
                ),
            },
            TOKEN,
        ))
        .await
        .unwrap();
    assert_eq!(
        next(&mut stream, Duration::from_secs(1))
            .await
            .balance_cents,
        1200
    );

    // A change of another user's balance is not sent to ann's watcher.
    adjust(&replica_a, "bob", 500, "gift").await;
    adjust(&replica_a, "ann", 5, "gift-2").await;
    assert_eq!(
        next(&mut stream, Duration::from_secs(1))
            .await
            .balance_cents,
        1205
    );
}

#[tokio::test]
async fn a_thousand_watchers_share_one_listener_and_all_hear_a_change() {
    let stripe = Sandbox::start_local().await;
    let db = TestDatabase::create().await;
    let (server, first_channel) = replica(&db, &stripe).await;
    adjust(&first_channel, "cid", 100, "gift").await;
    // Ten HTTP/2 connections, a hundred streams on each.
    let mut channels = Vec::new();
    for _ in 0..10 {
        let channel = Channel::from_shared(server.url())
            .unwrap()
            .connect()
            .await
            .unwrap();
        channels.push(channel);
    }
    let mut streams = Vec::new();
    for n in 0..1000 {
        streams.push(watch(&channels[n / 100], "cid").await);
    }
    for stream in &mut streams {
        assert_eq!(
            next(stream, Duration::from_secs(5)).await.balance_cents,
            100
        );
    }
    assert_eq!(
        listeners(&db).await,
        1,
        "one database listener for the process"
    );

    adjust(&first_channel, "cid", 1, "gift-2").await;
    let heard = futures::future::join_all(
        streams
            .iter_mut()
            .map(|stream| next(stream, Duration::from_secs(10))),
    )
    .await;
    assert!(heard.iter().all(|b| b.balance_cents == 101));
}

#[tokio::test]
async fn every_watch_ends_when_the_server_stops_and_a_bad_user_is_refused() {
    let stripe = Sandbox::start_local().await;
    let db = TestDatabase::create().await;
    let (mut server, channel) = replica(&db, &stripe).await;

    let refused = PaymentsServiceClient::new(channel.clone())
        .watch_balance(authed(
            WatchBalanceRequest {
                user_id: String::new(),
            },
            TOKEN,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        error_reason::of(&refused).unwrap().0,
        error_reason::INVALID_ARGUMENT
    );

    let mut stream = watch(&channel, "dee").await;
    assert_eq!(
        next(&mut stream, Duration::from_secs(5))
            .await
            .balance_cents,
        0
    );
    tokio::time::timeout(Duration::from_secs(10), server.stop())
        .await
        .expect("the server stops with a watch open");
    let end = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("the stream ends");
    assert!(matches!(end, Ok(None)) || end.is_err(), "{end:?}");
}
