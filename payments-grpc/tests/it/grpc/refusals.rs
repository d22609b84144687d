//! What the server refuses before any use case runs: hostile values, bad
//! settings, raw bytes; and what needs no token (health, reflection).

use super::*;

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
