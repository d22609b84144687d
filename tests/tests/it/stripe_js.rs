//! The sandbox's browser side, as Stripe.js meets Stripe: the publishable
//! key (in the form or query, as Stripe.js sends it) opens only retrieve
//! and confirm of an intent whose client secret it holds; card details in
//! `payment_method_data` behave as Stripe's test cards; answers carry only
//! the client-side fields; CORS is open; the Stripe.js stand-in is served.

use payments_tests::stack::{HttpClient, STRIPE_SECRET_KEY};
use serde_json::Value;
use stripe_sandbox::{Sandbox, SandboxConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PK: &str = "pk_test_browser";
const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

async fn sandbox() -> Sandbox {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    Sandbox::start(listener, SandboxConfig::default()).await
}

/// Creates a $10 intent with the secret key, as payments-grpc does.
async fn create_intent(http: &HttpClient, sandbox: &Sandbox) -> Value {
    let (status, intent) = http
        .send(
            "POST",
            &format!("{}/v1/payment_intents", sandbox.url()),
            Some(STRIPE_SECRET_KEY),
            &[FORM],
            b"amount=1000&currency=usd&metadata[user_id]=browser-user".to_vec(),
        )
        .await;
    assert_eq!(status, 200, "{intent}");
    intent
}

/// `POST …/confirm` as Stripe.js sends it: the key and client secret in
/// the form, the card as typed.
async fn confirm_with_card(
    http: &HttpClient,
    sandbox: &Sandbox,
    intent: &Value,
    client_secret: &str,
    number: &str,
) -> (u16, Value) {
    let form = format!(
        "key={PK}&client_secret={client_secret}&use_stripe_sdk=true\
         &payment_method_data[type]=card&payment_method_data[card][number]={number}\
         &payment_method_data[card][exp_month]=12&payment_method_data[card][exp_year]=2034\
         &payment_method_data[card][cvc]=123"
    );
    http.send(
        "POST",
        &format!(
            "{}/v1/payment_intents/{}/confirm",
            sandbox.url(),
            intent["id"].as_str().unwrap()
        ),
        None,
        &[FORM],
        form.into_bytes(),
    )
    .await
}

/// Confirms `intent` with its own client secret.
async fn confirm_own(
    http: &HttpClient,
    sandbox: &Sandbox,
    intent: &Value,
    number: &str,
) -> (u16, Value) {
    confirm_with_card(http, sandbox, intent, secret_of(intent), number).await
}

fn secret_of(intent: &Value) -> &str {
    intent["client_secret"].as_str().unwrap()
}

/// The fields only a secret key reads are absent.
fn assert_client_side(intent: &Value) {
    assert_eq!(intent["object"], "payment_intent", "{intent}");
    for field in ["metadata", "latest_charge", "amount_received", "customer"] {
        assert!(intent.get(field).is_none(), "{field} in {intent}");
    }
}

#[tokio::test]
async fn the_success_card_confirms_with_the_publishable_key_and_the_answer_shows_only_client_fields()
 {
    let (sandbox, http) = (sandbox().await, HttpClient::new());
    let intent = create_intent(&http, &sandbox).await;

    let (status, confirmed) = confirm_own(&http, &sandbox, &intent, "4242424242424242").await;
    assert_eq!(status, 200, "{confirmed}");
    assert_eq!(confirmed["status"], "succeeded");
    assert_client_side(&confirmed);

    let id = intent["id"].as_str().unwrap();
    let (status, retrieved) = http
        .send(
            "GET",
            &format!(
                "{}/v1/payment_intents/{id}?key={PK}&client_secret={}",
                sandbox.url(),
                secret_of(&intent)
            ),
            None,
            &[],
            Vec::new(),
        )
        .await;
    assert_eq!(status, 200, "{retrieved}");
    assert_eq!(retrieved["status"], "succeeded");
    assert_client_side(&retrieved);

    // The server still sees everything.
    let full = sandbox.intent_json(id).unwrap();
    assert_eq!(full["amount_received"], 1000);
    assert_eq!(full["metadata"]["user_id"], "browser-user");
}

#[tokio::test]
async fn a_publishable_key_without_the_intents_own_client_secret_changes_nothing() {
    let (sandbox, http) = (sandbox().await, HttpClient::new());
    let intent = create_intent(&http, &sandbox).await;
    let other = create_intent(&http, &sandbox).await;
    let id = intent["id"].as_str().unwrap();

    let (status, refused) = confirm_with_card(
        &http,
        &sandbox,
        &intent,
        secret_of(&other),
        "4242424242424242",
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["code"], "payment_intent_invalid_parameter");
    assert_eq!(refused["error"]["param"], "client_secret");

    let (status, refused) = http
        .send(
            "GET",
            &format!("{}/v1/payment_intents/{id}?key={PK}", sandbox.url()),
            None,
            &[],
            Vec::new(),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["param"], "client_secret");

    assert_eq!(
        sandbox.intent_json(id).unwrap()["status"],
        "requires_payment_method"
    );
}

#[tokio::test]
async fn a_publishable_key_reaches_no_route_but_retrieve_and_confirm() {
    let (sandbox, http) = (sandbox().await, HttpClient::new());
    let intent = create_intent(&http, &sandbox).await;
    let id = intent["id"].as_str().unwrap();
    for (method, path, body) in [
        (
            "POST",
            "/v1/payment_intents".to_owned(),
            "amount=1000&currency=usd",
        ),
        ("POST", format!("/v1/payment_intents/{id}"), "amount=5000"),
        ("POST", format!("/v1/payment_intents/{id}/cancel"), ""),
        ("GET", "/v1/refunds".to_owned(), ""),
        ("GET", "/v1/events".to_owned(), ""),
    ] {
        let (status, refused) = http
            .send(
                method,
                &format!("{}{path}", sandbox.url()),
                Some(PK),
                &[FORM],
                body.as_bytes().to_vec(),
            )
            .await;
        assert_eq!(status, 401, "{method} {path}: {refused}");
        let message = refused["error"]["message"].as_str().unwrap();
        assert!(message.contains("publishable API key"), "{message}");
    }
    let (status, _) = http
        .send(
            "GET",
            &format!("{}/v1/payment_intents/{id}", sandbox.url()),
            Some("rk_live_nope"),
            &[],
            Vec::new(),
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(sandbox.intent_json(id).unwrap()["amount"], 1000);
}

#[tokio::test]
async fn stripes_test_card_numbers_decline_ask_for_3ds_or_are_refused_as_stripe_refuses_them() {
    let (sandbox, http) = (sandbox().await, HttpClient::new());

    let declined = create_intent(&http, &sandbox).await;
    let (status, answer) = confirm_own(&http, &sandbox, &declined, "4000 0000 0000 0002").await;
    assert_eq!(status, 402, "{answer}");
    assert_eq!(answer["error"]["type"], "card_error");
    assert_eq!(answer["error"]["code"], "card_declined");
    assert_eq!(answer["error"]["decline_code"], "generic_decline");
    assert_eq!(
        answer["error"]["payment_intent"]["status"],
        "requires_payment_method"
    );
    assert_client_side(&answer["error"]["payment_intent"]);

    let typo = create_intent(&http, &sandbox).await;
    let (status, answer) = confirm_own(&http, &sandbox, &typo, "4242424242424241").await;
    assert_eq!(status, 402, "{answer}");
    assert_eq!(answer["error"]["code"], "incorrect_number");
    let (status, answer) = confirm_own(&http, &sandbox, &typo, "4111111111111111").await;
    assert_eq!(status, 402, "{answer}");
    assert_eq!(answer["error"]["decline_code"], "test_mode_live_card");
    let typo_id = typo["id"].as_str().unwrap();
    assert_eq!(
        sandbox.intent_json(typo_id).unwrap()["status"],
        "requires_payment_method"
    );
    assert_eq!(sandbox.intent_json(typo_id).unwrap()["amount_received"], 0);

    let three_ds = create_intent(&http, &sandbox).await;
    let (status, answer) = confirm_own(&http, &sandbox, &three_ds, "4000002500003155").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "requires_action");
    assert_eq!(answer["next_action"]["type"], "use_stripe_sdk");
    let (status, passed) = http
        .send(
            "POST",
            &format!(
                "{}/sandbox/payment_intents/{}/authenticate",
                sandbox.url(),
                three_ds["id"].as_str().unwrap()
            ),
            None,
            &[FORM],
            b"outcome=pass".to_vec(),
        )
        .await;
    assert_eq!(status, 200, "{passed}");
    assert_eq!(passed["status"], "succeeded");
}

/// One raw HTTP/1.1 exchange: the status line and headers, and the body.
async fn raw(sandbox: &Sandbox, request: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(sandbox.addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    (head.to_ascii_lowercase(), body.to_owned())
}

#[tokio::test]
async fn browsers_of_any_origin_are_answered_and_the_stripe_js_stand_in_is_served() {
    let sandbox = sandbox().await;
    let (head, _) = raw(
        &sandbox,
        "OPTIONS /v1/payment_intents/pi_1/confirm HTTP/1.1\r\nhost: x\r\norigin: http://127.0.0.1:5173\r\n\
         access-control-request-method: POST\r\naccess-control-request-headers: content-type\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("http/1.1 204"), "{head}");
    assert!(head.contains("access-control-allow-origin: *"), "{head}");
    assert!(head.contains("content-type"), "{head}");

    let (head, body) = raw(
        &sandbox,
        "GET /v3/ HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains("content-type: application/javascript"),
        "{head}"
    );
    assert!(head.contains("access-control-allow-origin: *"), "{head}");
    for api in [
        "window.Stripe = Stripe",
        "confirmPayment",
        "confirmCardPayment",
        "retrievePaymentIntent",
        "3D Secure 2 Test Page",
    ] {
        assert!(body.contains(api), "{api} missing from the stand-in");
    }
}

#[tokio::test]
async fn held_webhooks_wait_in_the_queue_until_released() {
    let receiver = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", receiver.local_addr().unwrap());
    tokio::spawn(async move {
        let app = axum::Router::new().route("/hook", axum::routing::post(|| async { "ok" }));
        axum::serve(receiver, app).await.unwrap();
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sandbox = Sandbox::start(
        listener,
        SandboxConfig {
            webhook: Some(stripe_sandbox::WebhookTarget {
                url,
                secret: "whsec_test".into(),
            }),
            ..SandboxConfig::default()
        },
    )
    .await;
    let http = HttpClient::new();
    let control = format!("{}/sandbox/webhooks", sandbox.url());

    let (status, state) = http
        .send("POST", &control, None, &[FORM], b"held=true".to_vec())
        .await;
    assert_eq!((status, &state["held"]), (200, &Value::Bool(true)));
    let intent = create_intent(&http, &sandbox).await;
    let (status, _) = confirm_own(&http, &sandbox, &intent, "4242424242424242").await;
    assert_eq!(status, 200);
    let (_, state) = http.send("GET", &control, None, &[], Vec::new()).await;
    assert_eq!(state["events"], 2, "{state}");
    assert_eq!(state["delivered"], 0, "{state}");
    assert_eq!(state["pending"], 2, "{state}");

    let (status, _) = http
        .send("POST", &control, None, &[FORM], b"held=maybe".to_vec())
        .await;
    assert_eq!(status, 400);
    http.send("POST", &control, None, &[FORM], b"held=false".to_vec())
        .await;
    let stats = sandbox.wait_for_stats(|s| s.delivered == 2).await;
    assert_eq!(stats.delivered, 2);
}
