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
async fn stripe_failing_with_500_is_unavailable_retried_with_one_key_and_leaves_no_row() {
    let server = TestServer::start().await;
    server
        .stripe
        .fail_next(
            "POST",
            3,
            Fault::error(500, "api_error", "", "Stripe is down"),
        )
        .await;

    let status = server.create("user-1", 1000, "order-1").await.unwrap_err();

    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(reason(&status), error_reason::STRIPE_UNAVAILABLE);
    let attempts = server
        .stripe
        .requests_to("POST", "/v1/payment_intents")
        .await;
    assert_eq!(attempts.len(), 3, "one request and two retries");
    let keys: std::collections::HashSet<_> = attempts
        .iter()
        .map(|r| r.headers.get("idempotency-key").unwrap().clone())
        .collect();
    assert_eq!(keys.len(), 1, "every retry reuses the key");
    assert_eq!(server.rows("payments").await, 0);

    // The caller retries with the same key once Stripe is back: one intent.
    let intent = server.create("user-1", 1000, "order-1").await.unwrap();
    assert_eq!(server.stripe.intent_count(), 1);
    assert_eq!(server.rows("payments").await, 1);
    let last = server
        .stripe
        .requests_to("POST", "/v1/payment_intents")
        .await;
    assert_eq!(
        last.last().unwrap().headers.get("idempotency-key"),
        keys.iter().next()
    );
    assert!(intent.intent_id.starts_with("pi_"));
}

#[tokio::test]
async fn a_429_then_success_is_retried_transparently() {
    let server = TestServer::start().await;
    server
        .stripe
        .fail_next(
            "POST",
            1,
            Fault::error(
                429,
                "invalid_request_error",
                "rate_limit",
                "Too many requests",
            ),
        )
        .await;
    let intent = server.create("user-1", 500, "k").await.unwrap();
    assert_eq!(intent.amount, 500);
    assert_eq!(
        server
            .stripe
            .requests_to("POST", "/v1/payment_intents")
            .await
            .len(),
        2
    );
    assert_eq!(server.stripe.intent_count(), 1);
}

#[tokio::test]
async fn stripe_timing_out_is_unavailable_and_leaves_no_row() {
    let server = TestServer::start_with(|config| {
        config.stripe_timeout_ms = 200;
        config.stripe_max_attempts = 2;
    })
    .await;
    server
        .stripe
        .fail_next(
            "POST",
            2,
            Fault::body(200, "").after(Duration::from_secs(5)),
        )
        .await;

    let status = server.create("user-1", 1000, "").await.unwrap_err();

    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().contains("timed out"),
        "{}",
        status.message()
    );
    assert_eq!(server.rows("payments").await, 0);
}

#[tokio::test]
async fn stripe_refusing_the_key_reuse_is_a_failed_precondition() {
    let server = TestServer::start().await;
    server
        .stripe
        .fail_next(
            "POST",
            1,
            Fault::error(
                400,
                "idempotency_error",
                "idempotency_key_in_use",
                "Keys for idempotent requests can only be used with the same parameters",
            ),
        )
        .await;
    let status = server.create("user-1", 1000, "k").await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(server.rows("payments").await, 0);
}

#[tokio::test]
async fn stripe_refusing_the_api_key_is_internal_without_details() {
    let server = TestServer::start().await;
    server
        .stripe
        .fail_next(
            "POST",
            1,
            Fault::error(
                401,
                "invalid_request_error",
                "",
                "Invalid API Key provided: sk_test_****din",
            ),
        )
        .await;
    let status = server.create("user-1", 1000, "").await.unwrap_err();
    assert_eq!(status.code(), Code::Internal);
    assert!(
        !status.message().contains("sk_test"),
        "{}",
        status.message()
    );
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

#[tokio::test]
async fn stripe_unreachable_during_an_event_is_unavailable_so_stripe_retries() {
    let server = TestServer::start().await;
    let intent = server.create("user-1", 500, "").await.unwrap();
    server.stripe.succeed(&intent.intent_id);
    server
        .stripe
        .fail_next("GET", 3, Fault::error(503, "api_error", "", "unavailable"))
        .await;

    let status = server
        .apply(event_json(
            "evt_1",
            "payment_intent.succeeded",
            &intent.intent_id,
        ))
        .await
        .unwrap_err();

    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(reason(&status), error_reason::STRIPE_UNAVAILABLE);
    assert_eq!(server.balance("user-1").await.unwrap().balance_cents, 0);
    assert_eq!(server.rows("stripe_events").await, 0);
    assert_eq!(server.rows("ignored_stripe_events").await, 0);
}

#[tokio::test]
async fn the_database_gone_is_unavailable() {
    let server = TestServer::start().await;
    server.create("user-1", 500, "").await.unwrap();
    server.db.drop_in_use().await;

    let status = server.balance("user-1").await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(reason(&status), error_reason::DATABASE_UNAVAILABLE);
    let status = server
        .apply(event_json("evt_1", "customer.created", "cus_1"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(reason(&status), error_reason::DATABASE_UNAVAILABLE);
}

/// The ErrorInfo reason a status carries.
fn reason(status: &Status) -> String {
    error_reason::of(status).expect("an ErrorInfo").0
}

#[tokio::test]
async fn health_and_reflection_need_no_token() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let server = TestServer::start().await;
    let mut health = HealthClient::new(server.channel.clone());
    let status = wait_for_serving(&mut health, "payments.v1.PaymentsService").await;
    assert_eq!(status, ServingStatus::Serving);
    let unknown = health
        .check(HealthCheckRequest {
            service: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(server.channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"payments.v1.PaymentsService".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_owned()),
        "{names:?}"
    );
}

async fn wait_for_serving(
    health: &mut tonic_health::pb::health_client::HealthClient<Channel>,
    service: &str,
) -> tonic_health::pb::health_check_response::ServingStatus {
    use tonic_health::pb::HealthCheckRequest;
    // Watch streams every status change; the first is the current one.
    let mut updates = health
        .watch(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner();
    loop {
        let update = updates.message().await.unwrap().expect("a status");
        let status = update.status();
        if status != tonic_health::pb::health_check_response::ServingStatus::ServiceUnknown {
            return status;
        }
    }
}

#[tokio::test]
async fn hostile_values_are_invalid_argument_and_write_nothing() {
    let server = TestServer::start().await;
    let creates = [
        ("u".repeat(10_000), 500, String::new()),
        ("line\nbreak".to_owned(), 500, String::new()),
        ("nul\0".to_owned(), 500, String::new()),
        ("user".to_owned(), i64::MIN, String::new()),
        ("user".to_owned(), -500, String::new()),
        ("user".to_owned(), 50_000, String::new()),
        ("user".to_owned(), 500, "ключ".to_owned()),
        ("user".to_owned(), 500, "k".repeat(100_000)),
        ("user".to_owned(), 500, "with\r\nnewline".to_owned()),
    ];
    for (user, cents, key) in creates {
        let status = server.create(&user, cents, &key).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::InvalidArgument,
            "{:.40} {cents} {:.40}",
            user,
            key
        );
    }
    let events = [
        String::new(),
        "{}".to_owned(),
        "[]".to_owned(),
        "null".to_owned(),
        r#"{"id": "evt_1", "id": "evt_2", "type": "payment_intent.succeeded", "data": {"object": {}}}"#.to_owned(),
        r#"{"id": "evt_1", "type": 7, "data": {"object": {}}}"#.to_owned(),
        format!(r#"{{"id": "{}", "type": "x", "data": {{"object": {{}}}}}}"#, "e".repeat(300)),
        "\u{feff}{}".to_owned(),
        "{".repeat(100_000),
    ];
    for event_json in events {
        let status = server.apply(event_json.clone()).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{:.60}", event_json);
    }
    // A user id of unicode within 128 characters is a user id like any other.
    let balance = server.balance("ユーザー🙂").await.unwrap();
    assert_eq!(balance.balance_cents, 0);

    assert!(
        server.stripe.requests_to("POST", "/v1").await.is_empty(),
        "Stripe was called"
    );
    assert_eq!(server.rows("payments").await, 0);
    assert_eq!(server.rows("stripe_events").await, 0);
    assert_eq!(server.rows("ignored_stripe_events").await, 0);
}

#[tokio::test]
async fn the_application_refuses_a_bad_setting_before_it_binds_or_migrates() {
    // Nothing listens on port 1: a start that got that far would fail otherwise.
    let config = || {
        payments_grpc::testing::config("postgres://127.0.0.1:1/none", "http://127.0.0.1:1", TOKEN)
    };
    type Change = fn(&mut Config);
    let cases: [(&str, Change); 3] = [
        ("STRIPE_SECRET_KEY is required", |c| {
            c.stripe_secret_key = None
        }),
        ("PAYMENTS_INTERNAL_TOKEN is required", |c| {
            c.payments_internal_token = Some(" ".into())
        }),
        ("STRIPE_DEADLINE_MS must be between", |c| {
            c.stripe_deadline_ms = 60_000
        }),
    ];
    for (expected, change) in cases {
        let mut config = config();
        change(&mut config);
        let err = match payments_grpc::Application::build(config).await {
            Ok(_) => panic!("{expected}: accepted"),
            Err(err) => format!("{err:#}"),
        };
        assert!(err.starts_with(expected), "{err}");
    }
    // With every setting right, the same start reaches the database.
    let err = match payments_grpc::Application::build(config()).await {
        Ok(_) => panic!("a database on port 1"),
        Err(err) => format!("{err:#}"),
    };
    assert!(err.contains("creating the database"), "{err}");
}

/// Statuses tonic makes itself carry a reason too: an unknown method, a
/// request over the size limit, a body that is not the method's message.
#[tokio::test]
async fn statuses_made_by_tonic_carry_a_reason_too() {
    let server = TestServer::start().await;

    let mut raw = tonic::client::Grpc::new(server.channel.clone());
    raw.ready().await.unwrap();
    let unknown = raw
        .unary::<(), (), _>(
            authed(()),
            "/payments.v1.PaymentsService/NoSuchMethod".parse().unwrap(),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::Unimplemented);
    assert_eq!(reason(&unknown), error_reason::UNIMPLEMENTED);

    // Past the 516 KiB limit of one call's message.
    let huge = server
        .client()
        .get_balance(authed(GetBalanceRequest {
            user_id: "u".repeat(600 * 1024),
        }))
        .await
        .unwrap_err();
    assert_eq!(huge.code(), Code::OutOfRange, "{huge:?}");
    assert_eq!(reason(&huge), error_reason::MESSAGE_TOO_LARGE);

    // Field 1 declared a string of 100 bytes, then the body ends.
    raw.ready().await.unwrap();
    let malformed = raw
        .unary::<_, GetBalanceRequest, _>(
            authed(RawBytes(vec![0x0a, 100, b'x'])),
            "/payments.v1.PaymentsService/GetBalance".parse().unwrap(),
            RawCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(malformed.code(), Code::Internal, "{malformed:?}");
    assert_eq!(reason(&malformed), error_reason::MALFORMED_MESSAGE);
}

/// A request body sent as given, to reach the server's decoder.
struct RawBytes(Vec<u8>);

#[derive(Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = RawBytes;
    type Decode = GetBalanceRequest;
    type Encoder = RawEncoder;
    type Decoder = <tonic_prost::ProstCodec<GetBalanceRequest, GetBalanceRequest> as tonic::codec::Codec>::Decoder;

    fn encoder(&mut self) -> Self::Encoder {
        RawEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic::codec::Codec::decoder(&mut tonic_prost::ProstCodec::<
            GetBalanceRequest,
            GetBalanceRequest,
        >::default())
    }
}

struct RawEncoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = RawBytes;
    type Error = Status;

    fn encode(
        &mut self,
        item: RawBytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Status> {
        bytes::BufMut::put_slice(dst, &item.0);
        Ok(())
    }
}
