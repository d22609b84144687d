use clap::CommandFactory;

use super::*;

#[test]
fn every_variable_is_a_flag_in_help() {
    let help = Config::command().render_long_help().to_string();
    for variable in [
        "EDGE_ADDR",
        "PAYMENTS_GRPC_URL",
        "PAYMENTS_INTERNAL_TOKEN",
        "STRIPE_WEBHOOK_SECRET",
        "FIREBASE_PROJECT_ID",
        "FIREBASE_JWKS_URL",
        "CORS_ALLOWED_ORIGINS",
        "WEBHOOK_MAX_CONCURRENT_BODIES",
        "EDGE_MAX_CONNECTIONS",
        "EDGE_METRICS_ADDR",
        "EDGE_MAX_BALANCE_STREAMS",
        "EDGE_MAX_BALANCE_STREAMS_PER_USER",
        "EDGE_MAX_BALANCE_STREAMS_PER_IP",
        "EDGE_HEADER_READ_TIMEOUT_MS",
        "EDGE_IDLE_TIMEOUT_SECS",
        "RATE_LIMIT_CREATES_PER_MINUTE",
        "RATE_LIMIT_CREATES_PER_MINUTE_PER_IP",
        "RATE_LIMIT_SYNCS_PER_MINUTE",
        "RATE_LIMIT_SYNCS_PER_MINUTE_PER_IP",
        "EDGE_CLIENT_IP_HEADER",
        "PAYMENTS_GRPC_CA_FILE",
        "PAYMENTS_GRPC_CLIENT_CERT_FILE",
        "PAYMENTS_GRPC_CLIENT_KEY_FILE",
    ] {
        assert!(help.contains(variable), "{variable} missing from --help");
        let flag = format!("--{}", variable.to_lowercase().replace('_', "-"));
        assert!(help.contains(&flag), "{flag} missing from --help");
    }
}

fn valid() -> Config {
    let mut config = Config::defaults();
    config.payments_internal_token = Some("token".into());
    config.stripe_webhook_secret = Some("whsec_a".into());
    config.firebase_project_id = Some("project".into());
    config
}

fn refusal(change: impl FnOnce(&mut Config)) -> String {
    let mut config = valid();
    change(&mut config);
    match Settings::from_config(&config) {
        Ok(_) => panic!("accepted"),
        Err(err) => err.to_string(),
    }
}

#[test]
fn the_defaults_with_the_required_values_are_valid() {
    let settings = Settings::from_config(&valid()).unwrap();
    assert_eq!(settings.webhook_secrets.len(), 1);
    assert_eq!(settings.connections.max_connections, 1024);
    assert!(settings.connections.idle_timeout > settings.request_timeout);
}

#[test]
fn bad_values_stop_the_start_with_one_line_naming_the_variable() {
    type Change = fn(&mut Config);
    let cases: [(&str, Change); 16] = [
        ("STRIPE_WEBHOOK_SECRET holds no secret", |c| {
            c.stripe_webhook_secret = Some(" , ".into())
        }),
        (
            "STRIPE_WEBHOOK_SECRET: every secret starts with whsec_",
            |c| c.stripe_webhook_secret = Some("whsec_a,sk_live_x".into()),
        ),
        ("STRIPE_WEBHOOK_SECRET holds more than 8", |c| {
            c.stripe_webhook_secret = Some(["whsec_a"; 9].join(","))
        }),
        ("CORS_ALLOWED_ORIGINS: \"*\"", |c| {
            c.cors_allowed_origins = "*".into()
        }),
        ("CORS_ALLOWED_ORIGINS: \"https://a.example/path\"", |c| {
            c.cors_allowed_origins = "https://a.example/path".into()
        }),
        (
            "PAYMENTS_GRPC_URL is https:// but PAYMENTS_GRPC_CA_FILE is not set",
            |c| c.payments_grpc_url = "https://grpc.internal:50051".into(),
        ),
        ("PAYMENTS_GRPC_URL: \"grpc.internal\"", |c| {
            c.payments_grpc_url = "grpc.internal".into()
        }),
        ("WEBHOOK_BODY_LIMIT_BYTES must be between", |c| {
            c.webhook_body_limit_bytes = 0
        }),
        ("WEBHOOK_MAX_CONCURRENT_BODIES must be between", |c| {
            c.webhook_max_concurrent_bodies = 0
        }),
        ("EDGE_MAX_CONNECTIONS must be between", |c| {
            c.edge_max_connections = 0
        }),
        ("EDGE_MAX_BALANCE_STREAMS must be between", |c| {
            c.edge_max_balance_streams = 0
        }),
        ("EDGE_MAX_BALANCE_STREAMS_PER_USER must be between", |c| {
            c.edge_max_balance_streams_per_user = 0
        }),
        ("EDGE_MAX_BALANCE_STREAMS_PER_IP must be between", |c| {
            c.edge_max_balance_streams_per_ip = 0
        }),
        (
            "EDGE_MAX_BALANCE_STREAMS (961) must be at least 64 below EDGE_MAX_CONNECTIONS (1024)",
            |c| c.edge_max_balance_streams = 961,
        ),
        ("EDGE_IDLE_TIMEOUT_SECS (10) must be longer", |c| {
            c.edge_idle_timeout_secs = 10
        }),
        ("PAYMENTS_INTERNAL_TOKEN is required", |c| {
            c.payments_internal_token = Some("  ".into())
        }),
    ];
    for (expected, change) in cases {
        let message = refusal(change);
        assert!(
            message.starts_with(expected),
            "{message:?} should start with {expected:?}"
        );
        assert!(!message.contains('\n'), "{message:?}");
    }
}

#[test]
fn origins_are_normalised() {
    let origins = parse_origins(" https://app.example , http://localhost:5173/").unwrap();
    assert_eq!(
        origins,
        vec!["https://app.example", "http://localhost:5173"]
    );
}
