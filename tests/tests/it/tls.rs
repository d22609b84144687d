//! The internal hop over TLS, with mutual TLS: the real binaries, the test
//! CA in tests/fixtures/tls. An https URL is honoured, never sent in clear;
//! a client without a certificate, or speaking plaintext, is refused.

use std::time::Duration;

use payments_tests::stack::Stack;
use stripe_sandbox::SandboxConfig;

fn fixture(name: &str) -> String {
    format!("{}/fixtures/tls/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Polls the edge's `/readyz` until it answers `status` (30 s at most).
async fn wait_readyz(stack: &Stack, edge: std::net::SocketAddr, status: u16) {
    let url = format!("http://{edge}/readyz");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let answer = stack
            .http
            .try_send("GET", &url, None, &[], Vec::new())
            .await;
        if matches!(answer, Ok((answered, _)) if answered == status) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz never answered {status}: last {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_edge_reaches_payments_grpc_over_mutual_tls_and_nothing_else_does() {
    let mut stack = Stack::start_with_grpc_process(SandboxConfig::default()).await;
    stack.stop_grpc().await;
    let (cert, key, ca) = (
        fixture("server.pem"),
        fixture("server.key"),
        fixture("ca.pem"),
    );
    let mut grpc = stack.spawn_grpc_process(&[
        ("PAYMENTS_TLS_CERT_FILE", &cert),
        ("PAYMENTS_TLS_KEY_FILE", &key),
        ("PAYMENTS_TLS_CLIENT_CA_FILE", &ca),
    ]);
    let https = format!("https://localhost:{}", stack.grpc_addr.port());
    let (client_cert, client_key) = (fixture("client.pem"), fixture("client.key"));
    let (_edge, edge) = stack
        .spawn_edge_process(
            &[
                ("PAYMENTS_GRPC_URL", &https),
                ("PAYMENTS_GRPC_CA_FILE", &ca),
                ("PAYMENTS_GRPC_CLIENT_CERT_FILE", &client_cert),
                ("PAYMENTS_GRPC_CLIENT_KEY_FILE", &client_key),
            ],
            None,
        )
        .await;
    wait_readyz(&stack, edge, 200).await;
    let token = stack.token("tls-user");
    let (status, balance) = stack
        .http
        .send(
            "GET",
            &format!("http://{edge}/balance"),
            Some(&token),
            &[],
            Vec::new(),
        )
        .await;
    assert_eq!((status, balance["balance_cents"].as_i64()), (200, Some(0)));

    // Without a client certificate the handshake is refused: never ready.
    let (_anonymous, anonymous_edge) = stack
        .spawn_edge_process(
            &[
                ("PAYMENTS_GRPC_URL", &https),
                ("PAYMENTS_GRPC_CA_FILE", &ca),
            ],
            None,
        )
        .await;
    wait_readyz(&stack, anonymous_edge, 503).await;

    // Plaintext HTTP/2 to the TLS port gets nowhere.
    let plaintext = tonic::transport::Endpoint::from_shared(format!("http://{}", stack.grpc_addr))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(2));
    let mut health = tonic_health::pb::health_client::HealthClient::new(plaintext.connect_lazy());
    let answer = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await;
    assert!(answer.is_err(), "{answer:?}");
    payments_tests::process::stop_gracefully(&mut grpc).await;
}

#[tokio::test]
async fn an_https_url_without_its_ca_stops_the_edge_at_start_with_one_line() {
    let binary = payments_tests::stack::server_binary("edge-gateway");
    let output = tokio::process::Command::new(binary)
        .env_clear()
        .envs([
            ("PAYMENTS_INTERNAL_TOKEN", "token"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_x"),
            ("FIREBASE_PROJECT_ID", "project"),
            ("PAYMENTS_GRPC_URL", "https://grpc.internal:50051"),
            ("EDGE_ADDR", "127.0.0.1:0"),
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.trim(),
        "edge-gateway: PAYMENTS_GRPC_URL is https:// but PAYMENTS_GRPC_CA_FILE is not set (the CA that signed payments-grpc's certificate)"
    );
}
