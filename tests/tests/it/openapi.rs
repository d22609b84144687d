//! `GET /openapi.json`: served as the code makes it, a valid OpenAPI 3.1
//! document (openapi-spec-validator), covering every route the edge serves;
//! and Schemathesis, generating requests from it against the live edge,
//! finds no 5xx and no answer the document does not describe.

use std::process::Command;
use std::time::Duration;

use axum::routing::get;
use payments_tests::stack::{PROJECT_ID, Stack, now_unix};
use payments_tests::tools::schemathesis_venv_bin;
use serde_json::Value;
use stripe_sandbox::{PM_CARD_VISA, SandboxConfig};

const USER: &str = "schemathesis-user";

async fn document(stack: &Stack) -> Value {
    let (status, document) = stack
        .http
        .send(
            "GET",
            &format!("{}/openapi.json", stack.edge_url()),
            None,
            &[],
            Vec::new(),
        )
        .await;
    assert_eq!(status, 200, "{document}");
    document
}

#[tokio::test]
async fn the_document_is_valid_openapi_3_1_and_every_operation_in_it_is_served() {
    let stack = Stack::start(SandboxConfig::default()).await;
    let served = document(&stack).await;
    let made: Value =
        serde_json::from_str(&edge_gateway::router::document().to_json().unwrap()).unwrap();
    assert_eq!(served, made, "the edge serves the document the code makes");
    assert_eq!(served["openapi"], "3.1.0");

    let file = std::env::temp_dir().join(format!("openapi-{}.json", std::process::id()));
    std::fs::write(&file, served.to_string()).unwrap();
    let validated = Command::new(schemathesis_venv_bin("python"))
        .args(["-m", "openapi_spec_validator", "--schema", "3.1.0"])
        .arg(&file)
        .output()
        .expect("openapi-spec-validator runs");
    let _ = std::fs::remove_file(&file);
    assert!(
        validated.status.success(),
        "openapi-spec-validator refused the document:\n{}{}",
        String::from_utf8_lossy(&validated.stdout),
        String::from_utf8_lossy(&validated.stderr)
    );

    // Each documented operation reaches its handler: never the fallback's
    // "No such route", never 405.
    let paths = served["paths"].as_object().expect("paths");
    let mut operations = 0;
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            let url = format!(
                "{}{}",
                stack.edge_url(),
                path.replace("{intent_id}", "pi_documented")
            );
            let (status, body) = stack
                .http
                .send(&method.to_uppercase(), &url, None, &[], Vec::new())
                .await;
            assert_ne!(status, 405, "{method} {path}");
            assert!(
                !(status == 404 && body["title"] == "No such route"),
                "{method} {path} is documented but not served"
            );
            operations += 1;
        }
    }
    assert_eq!(operations, 11, "{paths:?}");
    // Every user route names the bearer scheme and documents its 401.
    for path in [
        "/balance",
        "/balance/stream",
        "/ledger",
        "/payments",
        "/payments/create-payment-intent",
        "/payments/{intent_id}/sync",
    ] {
        let operation = paths[path].as_object().unwrap().values().next().unwrap();
        assert_eq!(
            operation["security"][0]["firebase_id_token"],
            serde_json::json!([]),
            "{path}"
        );
        assert!(operation["responses"]["401"].is_object(), "{path}");
    }
    assert_eq!(
        served["components"]["securitySchemes"]["firebase_id_token"]["scheme"],
        "bearer"
    );
}

/// Serves a fresh ID token for [`USER`] at `/token`, living a few seconds.
async fn serve_tokens() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/token",
        get(|| async { edge_gateway::testing::id_token_lasting(PROJECT_ID, USER, now_unix(), 3) }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_answer_off_the_document() {
    let stack = Stack::start(SandboxConfig::default()).await;
    stack.wait_ready().await;
    // A history to list: a paid top-up and a spend.
    let token = stack.token(USER);
    let (status, created) = stack.create_intent(&token, 10).await;
    assert_eq!(status, 200, "{created}");
    let intent_id = created["intent_id"].as_str().unwrap().to_owned();
    stack.confirm(&intent_id, PM_CARD_VISA).await;
    assert_eq!(stack.sync(&token, &intent_id).await.0, 200);
    stack.spend(USER, 100, "schemathesis-spend").await.unwrap();

    let token_url = serve_tokens().await;
    let report_dir =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/schemathesis-report");
    std::fs::create_dir_all(&report_dir).unwrap();
    let hooks = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemathesis");
    let schemathesis = tokio::process::Command::new(schemathesis_venv_bin("schemathesis"))
        .arg("--config-file")
        .arg(hooks.join("schemathesis.toml"))
        .arg("run")
        .arg(format!("{}/openapi.json", stack.edge_url()))
        .args([
            "--checks",
            "all",
            "--max-examples",
            "60",
            "--workers",
            "2",
            "--request-timeout",
            "10",
            "--report",
            "junit",
            "--no-color",
        ])
        .arg("--report-dir")
        .arg(&report_dir)
        // Its cache and the hooks' bytecode stay out of the source tree.
        .current_dir(&report_dir)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("PYTHONPATH", &hooks)
        .env("EDGE_TOKEN_URL", &token_url)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(600), schemathesis)
        .await
        .expect("schemathesis ends within 10 minutes")
        .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found defects:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // It did exercise every operation but the document itself, in each phase.
    assert!(stdout.contains("Tested: 10"), "{stdout}");
    for phase in ["Coverage", "Fuzzing", "Stateful"] {
        assert!(stdout.contains(&format!("✅ {phase}")), "{stdout}");
    }
}
