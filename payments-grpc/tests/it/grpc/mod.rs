//! The gRPC API through a real tonic client on an ephemeral port, over a
//! fresh Postgres database, with Stripe replaced at the HTTP boundary.

use std::time::Duration;

use payments_grpc::config::Config;
use payments_grpc::proto::apply_stripe_event_response::Outcome;
use payments_grpc::proto::error_reason;
use payments_grpc::proto::payments_service_client::PaymentsServiceClient;
use payments_grpc::proto::{
    ApplyStripeEventRequest, CreatePaymentIntentRequest, GetBalanceRequest, GetTopUpOptionsRequest,
};
use payments_grpc::testing::RunningGrpc;
use payments_test_support::event_json;
use payments_test_support::{TestDatabase, assert_balances_match_ledger, count_rows};
use stripe_sandbox::{Fault, Sandbox, form_fields};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

const TOKEN: &str = "test-internal-token";

struct TestServer {
    db: TestDatabase,
    stripe: Sandbox,
    channel: Channel,
    _grpc: RunningGrpc,
}

impl TestServer {
    async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// The server with its configuration changed by `configure`.
    async fn start_with(configure: impl FnOnce(&mut Config)) -> Self {
        let stripe = Sandbox::start_local().await;
        let db = TestDatabase::create().await;
        let mut config = payments_grpc::testing::config(&db.url, &stripe.url(), TOKEN);
        configure(&mut config);
        let grpc = RunningGrpc::start(config).await;
        let channel = Channel::from_shared(grpc.url())
            .unwrap()
            .connect()
            .await
            .unwrap();
        Self {
            db,
            stripe,
            channel,
            _grpc: grpc,
        }
    }

    fn client(&self) -> PaymentsServiceClient<Channel> {
        PaymentsServiceClient::new(self.channel.clone())
    }

    async fn create(
        &self,
        user: &str,
        cents: i64,
        key: &str,
    ) -> Result<payments_grpc::proto::CreatePaymentIntentResponse, Status> {
        let request = CreatePaymentIntentRequest {
            user_id: user.into(),
            amount_cents: cents,
            idempotency_key: key.into(),
        };
        self.client()
            .create_payment_intent(authed(request))
            .await
            .map(tonic::Response::into_inner)
    }

    async fn balance(
        &self,
        user: &str,
    ) -> Result<payments_grpc::proto::GetBalanceResponse, Status> {
        self.client()
            .get_balance(authed(GetBalanceRequest {
                user_id: user.into(),
            }))
            .await
            .map(tonic::Response::into_inner)
    }

    async fn apply(&self, event_json: String) -> Result<Outcome, Status> {
        let response = self
            .client()
            .apply_stripe_event(authed(ApplyStripeEventRequest { event_json }))
            .await?;
        Ok(response.into_inner().outcome())
    }

    async fn rows(&self, table: &str) -> i64 {
        count_rows(&mut self.db.connection().await, table).await
    }
}

fn authed<T>(message: T) -> Request<T> {
    with_authorization(message, &format!("Bearer {TOKEN}"))
}

fn with_authorization<T>(message: T, value: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", value.parse().unwrap());
    request
}

fn maybe_authed<T>(message: T, authorization: Option<&str>) -> Request<T> {
    match authorization {
        Some(value) => with_authorization(message, value),
        None => Request::new(message),
    }
}

#[tokio::test]
async fn create_payment_intent_sends_stripe_exactly_the_tier_and_stores_the_payment() {
    let server = TestServer::start().await;

    let intent = server.create("user-1", 1000, "order-1").await.unwrap();

    assert!(intent.intent_id.starts_with("pi_"));
    // Stripe's own secret for that intent, passed through.
    assert_eq!(
        intent.client_secret,
        server.stripe.intent_json(&intent.intent_id).unwrap()["client_secret"]
    );
    assert_eq!(
        (
            intent.amount,
            intent.currency.as_str(),
            intent.status.as_str()
        ),
        (1000, "usd", "requires_payment_method")
    );

    let creates = server
        .stripe
        .requests_to("POST", "/v1/payment_intents")
        .await;
    assert_eq!(creates.len(), 1);
    let request = &creates[0];
    let form = form_fields(request);
    assert_eq!(form.get("amount").map(String::as_str), Some("1000"));
    assert_eq!(form.get("currency").map(String::as_str), Some("usd"));
    assert_eq!(
        form.get("automatic_payment_methods[enabled]")
            .map(String::as_str),
        Some("true")
    );
    assert_eq!(
        form.get("metadata[user_id]").map(String::as_str),
        Some("user-1")
    );
    assert_eq!(
        form.get("metadata[created_by]").map(String::as_str),
        Some("credits-topup")
    );
    assert_eq!(
        request.headers.get("content-type").unwrap(),
        "application/x-www-form-urlencoded"
    );
    assert_eq!(
        request.headers.get("authorization").unwrap(),
        "Bearer sk_test_standin"
    );
    let key = request
        .headers
        .get("idempotency-key")
        .expect("an Idempotency-Key")
        .to_str()
        .unwrap();
    assert!(key.starts_with("topup-") && key.len() == 70, "{key}");

    let mut conn = server.db.connection().await;
    let row = payments_core::db::payments::find_by_intent(&mut conn, &intent.intent_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (row.user_id.as_str(), row.amount_cents, row.status.as_str()),
        ("user-1", 1000, "requires_payment_method")
    );
    assert_eq!(row.idempotency_key.as_deref(), Some("order-1"));
}

#[tokio::test]
async fn the_same_idempotency_key_returns_the_same_intent_and_creates_nothing_new() {
    let server = TestServer::start().await;
    let first = server.create("user-1", 2000, "order-7").await.unwrap();
    let again = server.create("user-1", 2000, "order-7").await.unwrap();

    assert_eq!(first, again);
    assert_eq!(
        server
            .stripe
            .requests_to("POST", "/v1/payment_intents")
            .await
            .len(),
        1
    );
    assert_eq!(server.stripe.intent_count(), 1);
    assert_eq!(server.rows("payments").await, 1);

    // Another user's identical key is another payment.
    let other = server.create("user-2", 2000, "order-7").await.unwrap();
    assert_ne!(other.intent_id, first.intent_id);
    // No key: every call is a new intent.
    let a = server.create("user-1", 500, "").await.unwrap();
    let b = server.create("user-1", 500, "").await.unwrap();
    assert_ne!(a.intent_id, b.intent_id);
    assert_eq!(server.rows("payments").await, 4);
}

#[tokio::test]
async fn concurrent_requests_with_one_key_make_one_intent() {
    let server = TestServer::start().await;
    let calls = (0..8).map(|_| server.create("user-1", 5000, "double-click"));
    let results = futures::future::join_all(calls).await;
    let ids: std::collections::HashSet<String> =
        results.into_iter().map(|r| r.unwrap().intent_id).collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(server.stripe.intent_count(), 1);
    assert_eq!(server.rows("payments").await, 1);
}

#[tokio::test]
async fn reusing_a_key_for_another_amount_is_a_failed_precondition() {
    let server = TestServer::start().await;
    server.create("user-1", 1000, "order-9").await.unwrap();

    let status = server.create("user-1", 2000, "order-9").await.unwrap_err();

    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status
            .message()
            .contains("already used for a payment of 1000 cents"),
        "{}",
        status.message()
    );
    assert_eq!(server.stripe.intent_count(), 1);
    assert_eq!(server.rows("payments").await, 1);
}

#[tokio::test]
async fn invalid_arguments_are_refused_before_stripe_is_called() {
    let server = TestServer::start().await;
    let cases = [
        (
            "user-1",
            999,
            "",
            "not a top-up tier; allowed: 500, 1000, 2000, 5000",
        ),
        ("user-1", -500, "", "not a top-up tier"),
        ("user-1", 0, "", "not a top-up tier"),
        ("user-1", i64::MAX, "", "not a top-up tier"),
        ("", 500, "", "user_id must be 1 to 128 characters"),
        (
            &"u".repeat(129),
            500,
            "",
            "user_id must be 1 to 128 characters",
        ),
        ("user-1", 500, "has space", "idempotency_key must be"),
    ];
    for (user, cents, key, expected) in cases {
        let status = server.create(user, cents, key).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{cents} {key:?}");
        assert!(status.message().contains(expected), "{}", status.message());
        // The reason a client branches on, and for a non-tier the tiers.
        let (reason, metadata) = error_reason::of(&status).expect("an ErrorInfo");
        if expected.contains("tier") {
            assert_eq!(reason, error_reason::NOT_A_TIER);
            assert_eq!(metadata[error_reason::ALLOWED_TIERS_USD], "5, 10, 20, 50");
        } else {
            assert_eq!(reason, error_reason::INVALID_ARGUMENT);
        }
    }
    let status = server.balance("").await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = server.apply("not json".into()).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("not a Stripe event"),
        "{}",
        status.message()
    );

    assert!(
        server.stripe.requests_to("POST", "/v1").await.is_empty(),
        "Stripe was called"
    );
    assert_eq!(server.rows("payments").await, 0);
    assert_eq!(server.rows("stripe_events").await, 0);
    assert_eq!(server.rows("ignored_stripe_events").await, 0);
}

#[tokio::test]
async fn the_options_on_sale_are_the_configured_tiers_and_exactly_what_a_create_accepts() {
    let server = TestServer::start_with(|config| {
        config.topup_tiers_usd = payments_core::domain::Tiers::parse_usd("40, 7,15").unwrap();
    })
    .await;
    let options = server
        .client()
        .get_top_up_options(authed(GetTopUpOptionsRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(options.tiers_cents, vec![700, 1500, 4000]);
    assert_eq!(options.currency, "usd");
    assert_eq!((options.minimum_cents, options.maximum_cents), (700, 4000));
    for cents in &options.tiers_cents {
        let created = server
            .create("opt-user", *cents, &format!("k-{cents}"))
            .await;
        assert_eq!(created.unwrap().amount, *cents);
    }
    for cents in [500, 1000, 699, 4001] {
        let refused = server.create("opt-user", cents, "").await.unwrap_err();
        let (reason, metadata) = error_reason::of(&refused).unwrap();
        assert_eq!(reason, error_reason::NOT_A_TIER);
        assert_eq!(metadata[error_reason::ALLOWED_TIERS_USD], "7, 15, 40");
    }
}

#[tokio::test]
async fn calls_without_the_internal_token_are_unauthenticated() {
    let server = TestServer::start().await;
    let mut client = server.client();
    for header in [
        None,
        Some("Bearer wrong"),
        Some("test-internal-token"),
        Some("Bearer "),
    ] {
        let create = CreatePaymentIntentRequest {
            user_id: "u".into(),
            amount_cents: 500,
            idempotency_key: String::new(),
        };
        let statuses = [
            client
                .create_payment_intent(maybe_authed(create, header))
                .await
                .unwrap_err(),
            client
                .get_balance(maybe_authed(
                    GetBalanceRequest {
                        user_id: "u".into(),
                    },
                    header,
                ))
                .await
                .unwrap_err(),
            client
                .apply_stripe_event(maybe_authed(
                    ApplyStripeEventRequest {
                        event_json: "{}".into(),
                    },
                    header,
                ))
                .await
                .unwrap_err(),
            client
                .get_top_up_options(maybe_authed(GetTopUpOptionsRequest {}, header))
                .await
                .unwrap_err(),
        ];
        for status in statuses {
            assert_eq!(status.code(), Code::Unauthenticated, "{header:?}");
        }
    }
    assert!(server.stripe.requests_to("POST", "/v1").await.is_empty());
}

#[tokio::test]
async fn a_user_who_never_paid_has_a_zero_balance() {
    let server = TestServer::start().await;
    let balance = server.balance("newcomer").await.unwrap();
    assert_eq!(
        (
            balance.user_id.as_str(),
            balance.balance_cents,
            balance.currency.as_str()
        ),
        ("newcomer", 0, "usd")
    );
    assert_eq!(balance.updated_at, None);
}

#[tokio::test]
async fn a_paid_intent_applied_over_grpc_shows_in_the_balance_once() {
    let server = TestServer::start().await;
    let intent = server.create("user-1", 2000, "").await.unwrap();
    server.stripe.succeed(&intent.intent_id);
    let event = event_json("evt_1", "payment_intent.succeeded", &intent.intent_id);

    assert_eq!(server.apply(event.clone()).await.unwrap(), Outcome::Applied);
    assert_eq!(server.apply(event).await.unwrap(), Outcome::Duplicate);
    let other = event_json("evt_2", "charge.succeeded", "ch_1");
    assert_eq!(server.apply(other).await.unwrap(), Outcome::Ignored);

    let balance = server.balance("user-1").await.unwrap();
    assert_eq!(balance.balance_cents, 2000);
    assert!(balance.updated_at.is_some());
    assert_balances_match_ledger(&mut server.db.connection().await).await;
}

/// The ErrorInfo reason a status carries.
fn reason(status: &Status) -> String {
    error_reason::of(status).expect("an ErrorInfo").0
}

mod faults;
mod refusals;
