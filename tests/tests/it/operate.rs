//! What an operator reads: both `/metrics` endpoints, as Prometheus's own
//! parser reads them (`promtool check metrics`), moving with a top-up, a
//! spend, a refund and a reconciliation pass; and the alert rules in
//! `docs/alerts.yml`, as Prometheus loads and evaluates them.

use std::time::Duration;

use payments_tests::stack::Stack;
use payments_tests::tools::promtool;
use stripe_sandbox::{PM_CARD_VISA, SandboxConfig};

/// The value of the sample named exactly `series` (labels included).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} missing from:\n{text}"))
        .split(' ')
        .next()
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("{series} has no number in:\n{text}"))
}

/// Prometheus's own parser and linter accept `text`.
fn assert_prometheus_reads(text: &str) {
    let output = promtool(&["check", "metrics"], text.as_bytes());
    assert!(
        output.status.success(),
        "promtool check metrics refused the exposition:\n{}{}\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn both_metrics_endpoints_count_a_top_up_a_spend_a_refund_and_a_pass() {
    let stack = Stack::start(SandboxConfig::default()).await;
    let token = stack.token("ops-user");
    let (status, created) = stack.create_intent(&token, 10).await;
    assert_eq!(status, 200, "{created}");
    let intent_id = created["intent_id"].as_str().expect("intent_id").to_owned();
    stack.confirm(&intent_id, PM_CARD_VISA).await;
    settle(&stack).await;
    let spent = stack
        .spend("ops-user", 250, "ops-spend")
        .await
        .expect("spent");
    assert_eq!(spent.balance_cents, 750);
    stack.sandbox.refund(&intent_id, Some(300)).await;
    settle(&stack).await;
    let (_, balance) = stack.balance(&token).await;
    assert_eq!(balance["balance_cents"], 450, "{balance}");
    stack.reconcile().await;

    let grpc = stack.grpc_metrics().await;
    assert_prometheus_reads(&grpc);
    for (series, value) in [
        (
            r#"payments_ledger_cents_total{kind="top_up",direction="credit"}"#,
            1000.0,
        ),
        (
            r#"payments_ledger_cents_total{kind="spend",direction="debit"}"#,
            250.0,
        ),
        (
            r#"payments_ledger_cents_total{kind="refund",direction="debit"}"#,
            300.0,
        ),
        (
            r#"payments_ledger_cents_total{kind="dispute",direction="debit"}"#,
            0.0,
        ),
        (
            r#"payments_ledger_entries_total{kind="top_up",direction="credit"}"#,
            1.0,
        ),
        (
            r#"payments_ledger_entries_total{kind="refund",direction="debit"}"#,
            1.0,
        ),
        (
            r#"payments_stripe_calls_total{operation="create_payment_intent",result="ok"}"#,
            1.0,
        ),
        (
            r#"payments_stripe_call_duration_seconds_count{operation="create_payment_intent"}"#,
            1.0,
        ),
        (r#"payments_reconciliation_passes_total{result="ok"}"#, 1.0),
        (
            r#"payments_reconciliation_passes_total{result="error"}"#,
            0.0,
        ),
        ("payments_paid_not_credited", 0.0),
        ("payments_db_pool_waiting", 0.0),
        ("payments_db_pool_get_timeouts_total", 0.0),
    ] {
        assert_eq!(sample(&grpc, series), value, "{series}");
    }
    // The webhook and the pass read the refunds back from Stripe.
    assert!(
        sample(
            &grpc,
            r#"payments_stripe_calls_total{operation="list_refunds",result="ok"}"#
        ) >= 1.0
    );
    assert!(
        sample(
            &grpc,
            r#"payments_stripe_calls_total{operation="list_events",result="ok"}"#
        ) >= 1.0
    );
    let idle = sample(&grpc, r#"payments_db_pool_connections{state="idle"}"#);
    let in_use = sample(&grpc, r#"payments_db_pool_connections{state="in_use"}"#);
    assert!(
        idle + in_use >= 1.0,
        "the pool holds connections: {idle} + {in_use}"
    );
    let last_pass = sample(
        &grpc,
        "payments_reconciliation_last_success_timestamp_seconds",
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (now - 60.0..=now + 1.0).contains(&last_pass),
        "{last_pass} vs {now}"
    );

    let edge = stack.edge_metrics().await;
    assert_prometheus_reads(&edge);
    // The alerts read metrics that exist: a renamed metric would silence one.
    for name in metrics_the_alerts_read() {
        let exported = format!("\n{name}");
        assert!(
            grpc.contains(&exported) || edge.contains(&exported),
            "docs/alerts.yml reads {name}, which neither endpoint exports"
        );
    }
    for (series, value) in [
        (
            r#"edge_http_requests_total{route="/payments/create-payment-intent",method="POST",status="200"}"#,
            1.0,
        ),
        (
            r#"edge_stripe_webhooks_total{event_type="payment_intent.succeeded",outcome="applied"}"#,
            1.0,
        ),
        (
            r#"edge_stripe_webhooks_total{event_type="charge.refunded",outcome="applied"}"#,
            1.0,
        ),
    ] {
        assert_eq!(sample(&edge, series), value, "{series}");
    }
}

/// Every metric name `docs/alerts.yml` reads: words of its expressions
/// beginning `payments_` or `edge_`.
fn metrics_the_alerts_read() -> Vec<String> {
    let rules = std::fs::read_to_string(docs().join("alerts.yml")).expect("docs/alerts.yml");
    let mut names: Vec<String> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("payments_") || word.starts_with("edge_"))
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

fn docs() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs")
}

fn assert_promtool_accepts(args: &[&str]) {
    let output = promtool(args, b"");
    assert!(
        output.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_alert_rules_load_and_fire_exactly_on_the_series_they_test() {
    let rules = docs().join("alerts.yml");
    let tests = docs().join("alerts.test.yml");
    assert_promtool_accepts(&["check", "rules", rules.to_str().unwrap()]);
    // Each alert quiet on a healthy series and firing, with its runbook, on
    // the one that means money is at risk.
    assert_promtool_accepts(&["test", "rules", tests.to_str().unwrap()]);
    let test_file = std::fs::read_to_string(&tests).unwrap();
    for alert in [
        "PaymentsPaidNotCredited",
        "PaymentsWebhook5xx",
        "PaymentsStripeErrors",
        "PaymentsReconciliationNotRunning",
    ] {
        assert!(
            test_file.contains(&format!("alertname: {alert}")),
            "{alert} untested"
        );
    }
    let names = metrics_the_alerts_read();
    assert!(names.len() >= 5, "{names:?}");
}

async fn settle(stack: &Stack) {
    tokio::time::timeout(Duration::from_secs(20), stack.sandbox.settled())
        .await
        .expect("webhooks delivered within 20 s");
}
