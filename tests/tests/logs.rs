//! Secrets never reach the logs: run a whole top-up, with bad tokens and a
//! forged webhook, with every log at debug level, then search the logs of
//! both servers for every secret involved.

use std::io::Write;
use std::sync::{Arc, Mutex};

use payments_tests::stack::{INTERNAL_TOKEN, STRIPE_SECRET_KEY, Stack, WEBHOOK_SECRET};
use stripe_sandbox::{PM_CARD_VISA, SandboxConfig};

/// Collects what the in-process edge logs.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_secret_reaches_a_log_line() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter("debug")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let mut stack = Stack::start_with_grpc_process(SandboxConfig::default()).await;
    stack.grpc_log_filter = "debug";
    stack.stop_grpc().await;
    stack.start_grpc().await;
    stack.wait_ready().await;

    let token = stack.token("log-user");
    let (status, intent) = stack.create_intent(&token, 10).await;
    assert_eq!(status, 200, "{intent}");
    let intent_id = intent["intent_id"].as_str().unwrap().to_owned();
    let client_secret = intent["client_secret"].as_str().unwrap().to_owned();
    stack.confirm(&intent_id, PM_CARD_VISA).await;
    tokio::time::timeout(std::time::Duration::from_secs(30), stack.sandbox.settled())
        .await
        .unwrap();
    let (status, balance) = stack.balance(&token).await;
    assert_eq!(
        (status, balance["balance_cents"].as_i64()),
        (200, Some(1000))
    );
    // Every call the edge makes carries the request's id to payments-grpc
    // (one interceptor), whatever route it serves; a webhook's id is the
    // edge's own.
    let edge = stack.edge_url();
    let traced = |id| [("x-request-id", id), ("content-type", "application/json")];
    let (status, unpaid) = stack
        .http
        .send(
            "POST",
            &format!("{edge}/payments/create-payment-intent"),
            Some(&token),
            &traced("trace-create-1"),
            br#"{"amount_usd": 5}"#.to_vec(),
        )
        .await;
    assert_eq!(status, 200, "{unpaid}");
    let sync_url = format!(
        "{edge}/payments/{}/sync",
        unpaid["intent_id"].as_str().unwrap()
    );
    let (status, synced) = stack
        .http
        .send(
            "POST",
            &sync_url,
            Some(&token),
            &traced("trace-sync-1"),
            vec![],
        )
        .await;
    assert_eq!(status, 200, "{synced}");
    // Refused requests log their reasons; they must not log what was sent.
    let forged = stack.token("log-user").replace('.', "x.");
    assert_eq!(stack.balance(&forged).await.0, 401);
    let forged_signature = "t=1,v1=deadbeef";
    let (status, _) = stack
        .http
        .send(
            "POST",
            &format!("{}/stripe/webhook", stack.edge_url()),
            None,
            &[("stripe-signature", forged_signature)],
            br#"{"id":"evt_x"}"#.to_vec(),
        )
        .await;
    assert_eq!(status, 400);
    stack.stop_grpc().await;

    let edge_log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let grpc_log = std::fs::read_to_string(stack.grpc_log_path()).unwrap();
    // Written to a file, not a terminal: no colour escape codes.
    assert!(
        !grpc_log.contains('\u{1b}'),
        "ANSI escape codes in a log file"
    );
    assert!(
        edge_log.contains("webhook handled"),
        "the edge logged at debug level"
    );
    assert!(
        grpc_log.contains("top-up credited"),
        "payments-grpc logged at debug level"
    );
    for id in ["trace-create-1", "trace-sync-1"] {
        assert!(
            grpc_log.contains(&format!("request_id={id}")),
            "payments-grpc did not log the edge's request id {id}"
        );
    }
    assert!(
        grpc_log
            .lines()
            .any(|line| line.contains("ApplyStripeEvent request_id=")
                && !line.contains("ApplyStripeEvent request_id=-")),
        "a webhook's call carried no request id"
    );
    // SIGTERM drained and exited through the normal path, not the 10 s SIGKILL fallback.
    assert!(
        grpc_log.contains("payments-grpc stopped"),
        "payments-grpc did not shut down gracefully"
    );
    let client_secret_suffix = client_secret.split("_secret_").nth(1).unwrap().to_owned();
    let secrets = [
        ("Stripe secret key", STRIPE_SECRET_KEY.to_owned()),
        ("webhook secret", WEBHOOK_SECRET.to_owned()),
        ("internal token", INTERNAL_TOKEN.to_owned()),
        ("client secret", client_secret_suffix),
        (
            "ID token signature",
            token.rsplit('.').next().unwrap().to_owned(),
        ),
        (
            "forged ID token",
            forged.rsplit('.').next().unwrap().to_owned(),
        ),
    ];
    for (name, secret) in &secrets {
        assert!(
            !edge_log.contains(secret.as_str()),
            "the edge logged the {name}"
        );
        assert!(
            !grpc_log.contains(secret.as_str()),
            "payments-grpc logged the {name}"
        );
    }
}
