use clap::CommandFactory;

use super::*;

#[test]
fn every_variable_is_a_flag_in_help() {
    let help = Cli::command().render_long_help().to_string();
    for variable in [
        "DATABASE_URL",
        "STRIPE_SECRET_KEY",
        "STRIPE_API_BASE",
        "STRIPE_DEADLINE_MS",
        "STRIPE_RETRY_BACKOFF_MS",
        "PAYMENTS_GRPC_ADDR",
        "PAYMENTS_METRICS_ADDR",
        "PAYMENTS_INTERNAL_TOKEN",
        "PAYMENTS_ADMIN_TOKEN",
        "TOPUP_TIERS_USD",
        "DATABASE_STATEMENT_TIMEOUT_MS",
        "DATABASE_LOCK_TIMEOUT_MS",
        "DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS",
        "PAYMENTS_MAX_CONNECTIONS",
        "PAYMENTS_FIRST_BYTE_TIMEOUT_MS",
        "PAYMENTS_IDLE_TIMEOUT_SECS",
        "MAX_OPEN_INTENTS_PER_USER",
        "SYNC_STRIPE_CALLS_PER_SECOND",
        "PAYMENTS_COALESCE_SPENDS",
        "RECONCILE_INTERVAL_SECS",
        "RECONCILE_AFTER_SECS",
        "RECONCILE_EVENTS_PAGE_SIZE",
        "STALE_INTENT_AFTER_SECS",
        "STRIPE_EVENT_PAYLOAD_RETENTION_DAYS",
        "PAYMENTS_TLS_CERT_FILE",
        "PAYMENTS_TLS_KEY_FILE",
        "PAYMENTS_TLS_CLIENT_CA_FILE",
    ] {
        assert!(help.contains(variable), "{variable} missing from --help");
        let flag = format!("--{}", variable.to_lowercase().replace('_', "-"));
        assert!(help.contains(&flag), "{flag} missing from --help");
    }
}

#[test]
fn the_defaults_are_valid_and_retry_a_hanging_stripe_within_the_edges_deadline() {
    let config = Config::defaults();
    config.check().unwrap();
    let stripe = config.stripe_config("sk_test_x".into());
    assert!(stripe.timeout * 2 <= stripe.deadline, "{stripe:?}");
    assert!(stripe.deadline < EDGE_CALL_TIMEOUT, "{stripe:?}");
}

#[test]
fn bad_values_stop_the_start_with_one_line_naming_the_variable() {
    type Change = fn(&mut Config);
    let cases: [(&str, Change); 12] = [
        ("STALE_INTENT_AFTER_SECS must be between 3600", |c| {
            c.stale_intent_after_secs = 60
        }),
        ("RECONCILE_EVENTS_PAGE_SIZE must be between 1", |c| {
            c.reconcile_events_page_size = 0
        }),
        ("RECONCILE_AFTER_SECS must be between 1", |c| {
            c.reconcile_after_secs = 0
        }),
        ("DATABASE_POOL_SIZE must be between 1", |c| {
            c.database_pool_size = 0
        }),
        ("STRIPE_MAX_ATTEMPTS must be between 1", |c| {
            c.stripe_max_attempts = 0
        }),
        ("STRIPE_RETRY_BACKOFF_MS must be between", |c| {
            c.stripe_retry_backoff_ms = 60_000
        }),
        ("STRIPE_DEADLINE_MS must be between", |c| {
            c.stripe_deadline_ms = 10_000
        }),
        ("STRIPE_TIMEOUT_MS must be between 50 and half", |c| {
            c.stripe_timeout_ms = 8_000
        }),
        ("STRIPE_API_BASE: \"api.stripe.com\"", |c| {
            c.stripe_api_base = "api.stripe.com".into()
        }),
        ("DATABASE_URL is not a URL", |c| {
            c.database_url = "localhost/payments".into()
        }),
        ("DATABASE_LOCK_TIMEOUT_MS must be between", |c| {
            c.database_lock_timeout_ms = 0
        }),
        ("PAYMENTS_MAX_CONNECTIONS must be between", |c| {
            c.payments_max_connections = 0
        }),
    ];
    for (expected, change) in cases {
        let mut config = Config::defaults();
        change(&mut config);
        let message = config.check().unwrap_err().to_string();
        assert!(
            message.starts_with(expected),
            "{message:?} should start with {expected:?}"
        );
        assert!(!message.contains('\n'), "{message:?}");
    }
}

#[test]
fn the_admin_token_is_optional_and_never_the_internal_one() {
    let mut config = Config::defaults();
    config.stripe_secret_key = Some("sk_test_x".into());
    config.payments_internal_token = Some("internal".into());
    assert!(
        Settings::from_config(&config)
            .unwrap()
            .admin_token
            .is_none()
    );
    config.payments_admin_token = Some(String::new());
    assert!(
        Settings::from_config(&config)
            .unwrap()
            .admin_token
            .is_none(),
        "empty is unset"
    );
    config.payments_admin_token = Some("admin".into());
    assert!(
        Settings::from_config(&config)
            .unwrap()
            .admin_token
            .is_some()
    );
    config.payments_admin_token = Some("internal".into());
    let refused = Settings::from_config(&config).err().unwrap().to_string();
    assert!(
        refused.starts_with("PAYMENTS_ADMIN_TOKEN must differ from PAYMENTS_INTERNAL_TOKEN"),
        "{refused}"
    );
}
