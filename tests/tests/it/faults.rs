//! Money is never lost or doubled on a bad day: a crash in the middle of a
//! webhook stream, two replicas receiving the same events, and a burst larger
//! than the database pool.

use std::collections::HashMap;
use std::time::Duration;

use futures::future::join_all;
use payments_test_support::{assert_balances_match_ledger, count_recorded_events, count_rows};
use payments_tests::process::peak_rss_kib;
use payments_tests::stack::{Stack, WEBHOOK_SECRET, now_unix};
use serde_json::Value;
use stripe_sandbox::{PM_CARD_VISA, SandboxConfig};

const TIERS_USD: [u32; 4] = [5, 10, 20, 50];

/// Creates `count` intents spread over `users` users; answers (user, intent id, cents).
async fn create_intents(stack: &Stack, users: usize, count: usize) -> Vec<(String, String, i64)> {
    let mut created = Vec::with_capacity(count);
    for chunk in (0..count).collect::<Vec<_>>().chunks(16) {
        let calls = chunk.iter().map(|n| async move {
            let user = format!("fault-user-{}", n % users);
            let tier = TIERS_USD[n % TIERS_USD.len()];
            let (status, body) = stack.create_intent(&stack.token(&user), tier).await;
            assert_eq!(status, 200, "{body}");
            (
                user,
                body["intent_id"].as_str().unwrap().to_owned(),
                i64::from(tier) * 100,
            )
        });
        created.extend(join_all(calls).await);
    }
    created
}

async fn confirm_all(stack: &Stack, intents: &[(String, String, i64)]) {
    for chunk in intents.chunks(16) {
        let calls = chunk
            .iter()
            .map(|(_, id, _)| stack.confirm(id, PM_CARD_VISA));
        for (status, body) in join_all(calls).await {
            assert_eq!(status, 200, "{body}");
        }
    }
}

/// Every intent credited exactly once, by its amount, to its user.
async fn assert_each_credited_once(stack: &Stack, intents: &[(String, String, i64)]) {
    let mut expected: HashMap<&str, i64> = HashMap::new();
    for (user, _, cents) in intents {
        *expected.entry(user.as_str()).or_default() += cents;
    }
    for (user, cents) in expected {
        let (status, body) = stack.balance(&stack.token(user)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["balance_cents"], cents, "{user}");
    }
    let mut conn = stack.db.connection().await;
    assert_eq!(
        count_rows(&mut conn, "ledger_entries").await,
        intents.len() as i64
    );
    assert_balances_match_ledger(&mut conn).await;
}

/// Posts `event` to `edge`'s webhook, signed as Stripe does.
async fn deliver(stack: &Stack, edge: &str, event: &Value) -> (u16, Value) {
    let body = serde_json::to_vec(event).unwrap();
    let signature = edge_gateway::testing::stripe_signature(WEBHOOK_SECRET, now_unix(), &body);
    let headers = [("stripe-signature", signature.as_str())];
    stack
        .http
        .send(
            "POST",
            &format!("{edge}/stripe/webhook"),
            None,
            &headers,
            body,
        )
        .await
}

/// VmHWM: the peak resident set size of a process.
async fn settle(stack: &Stack) {
    tokio::time::timeout(Duration::from_secs(120), stack.sandbox.settled())
        .await
        .expect("every webhook delivered within 120 s");
}

/// Payments credited so far (ledger top-ups).
async fn credited(stack: &Stack) -> i64 {
    count_rows(&mut stack.db.connection().await, "ledger_entries").await
}

#[tokio::test]
async fn a_sigkill_of_payments_grpc_mid_reconciliation_loses_and_doubles_nothing() {
    let mut stack = Stack::start_with_grpc_process(SandboxConfig {
        record_requests: true,
        ..SandboxConfig::default()
    })
    .await;
    stack.wait_ready().await;
    // Paid, and every `succeeded` webhook lost: only reconciliation credits.
    stack.sandbox.drop_events(&["payment_intent.succeeded"]);
    let intents = create_intents(&stack, 10, 60).await;
    confirm_all(&stack, &intents).await;
    settle(&stack).await;
    assert_eq!(credited(&stack).await, 0);
    {
        use diesel_async::RunQueryDsl;
        // RECONCILE_AFTER_SECS (300) have passed for every one.
        diesel::sql_query("UPDATE payments SET updated_at = updated_at - interval '301 seconds'")
            .execute(&mut stack.db.connection().await)
            .await
            .unwrap();
    }

    let fetched_before = stack
        .sandbox
        .requests_to("GET", "/v1/payment_intents/")
        .await
        .len();
    let pass = tokio::spawn(payments_tests::stack::run_reconciliation(stack.grpc_addr));
    // Killed once the pass has fetched ten intents from Stripe.
    tokio::time::timeout(Duration::from_secs(30), async {
        while stack
            .sandbox
            .requests_to("GET", "/v1/payment_intents/")
            .await
            .len()
            < fetched_before + 10
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("the pass fetches intents");
    stack.crash_grpc().await;
    assert!(pass.await.unwrap().is_err(), "the pass was cut off");
    let halfway = credited(&stack).await;
    assert!(
        halfway < intents.len() as i64,
        "killed after {halfway} credits"
    );

    stack.start_grpc().await;
    stack.wait_ready().await;
    let done = stack.reconcile().await;
    assert_eq!(
        i64::from(done.credited),
        intents.len() as i64 - halfway,
        "{done:?}"
    );
    assert_each_credited_once(&stack, &intents).await;
    // A further pass finds nothing left.
    let again = stack.reconcile().await;
    assert_eq!((again.intents_checked, again.credited), (0, 0), "{again:?}");
    eprintln!(
        "reconciliation crash: {} paid intents, {halfway} credited before the SIGKILL, {} by the next pass",
        intents.len(),
        done.credited
    );
}

#[tokio::test]
async fn a_sigkill_of_payments_grpc_mid_stream_loses_and_doubles_nothing() {
    let mut stack = Stack::start_with_grpc_process(SandboxConfig {
        duplicate_events: true,
        ..SandboxConfig::default()
    })
    .await;
    stack.wait_ready().await;
    let intents = create_intents(&stack, 10, 240).await;
    settle(&stack).await;

    let (first, rest) = intents.split_at(80);
    let (second, third) = rest.split_at(80);
    confirm_all(&stack, first).await;
    // Killed while those webhooks are being applied: no drain, no cleanup.
    stack.crash_grpc().await;
    confirm_all(&stack, second).await;
    let down = stack
        .sandbox
        .wait_for_stats(|s| s.failed_attempts >= 5)
        .await;
    stack.start_grpc().await;
    confirm_all(&stack, third).await;
    settle(&stack).await;

    assert_each_credited_once(&stack, &intents).await;
    let stats = stack.sandbox.stats();
    assert_eq!(stats.given_up, 0, "{stats:?}");
    assert_eq!(stats.delivered, stats.deliveries, "{stats:?}");
    eprintln!(
        "crash: {} intents, {} events, {} deliveries (each event twice), {} attempts, {} failed attempts ({} before the restart), 1 SIGKILL",
        intents.len(),
        stats.events,
        stats.deliveries,
        stats.attempts,
        stats.failed_attempts,
        down.failed_attempts
    );
}

#[tokio::test]
async fn two_replicas_receiving_every_event_at_the_same_instant_credit_once() {
    let stack = Stack::start(SandboxConfig::default()).await;
    let replica = stack.start_replica().await;
    let intents = create_intents(&stack, 5, 60).await;
    confirm_all(&stack, &intents).await;
    settle(&stack).await;

    // Every event again, to both edges at once, each edge on its own payments-grpc.
    let events = stack.sandbox.events();
    let edges = [stack.edge_url(), replica.edge_url.clone()];
    let sends = events
        .iter()
        .flat_map(|event| edges.iter().map(move |edge| (edge, event)))
        .map(|(edge, event)| deliver(&stack, edge, event));
    let answers: Vec<(u16, Value)> = join_all(sends).await;
    assert!(
        answers.iter().all(|(status, _)| *status == 200),
        "{answers:?}"
    );
    assert!(
        answers.iter().all(|(_, body)| body["outcome"] != "applied"),
        "every event was applied already"
    );

    assert_each_credited_once(&stack, &intents).await;
    assert_eq!(
        count_recorded_events(&mut stack.db.connection().await).await as usize,
        events.len()
    );
}

#[tokio::test]
async fn a_burst_larger_than_the_database_pool_is_answered_in_full() {
    // The sandbox only records events here; the burst delivers them.
    let stack = Stack::start_with_grpc_process(SandboxConfig::default()).await;
    stack.sandbox.set_webhook(None);
    stack.wait_ready().await;
    let intents = create_intents(&stack, 8, 150).await;
    confirm_all(&stack, &intents).await;

    // 300 concurrent deliveries (created + succeeded per intent) against a pool of 4.
    let events = stack.sandbox.events();
    let edge = stack.edge_url();
    let sends = events.iter().map(|event| deliver(&stack, &edge, event));
    let answers = join_all(sends).await;

    assert_eq!(answers.len(), 300);
    // Bounded memory: payments-grpc (a pool of 4 here) queues, it does not balloon.
    let peak_kib = peak_rss_kib(stack.grpc_pid().expect("payments-grpc process"));
    assert!(
        peak_kib < 100 * 1024,
        "payments-grpc peaked at {peak_kib} KiB"
    );
    eprintln!(
        "burst: 300 concurrent deliveries, pool of 4, payments-grpc peak RSS {} MiB",
        peak_kib / 1024
    );
    let failed: Vec<_> = answers
        .iter()
        .filter(|(status, _)| *status != 200)
        .collect();
    assert!(
        failed.is_empty(),
        "{} of 300 not answered 200: {:?}",
        failed.len(),
        failed.first()
    );
    assert_each_credited_once(&stack, &intents).await;
}

#[tokio::test]
async fn postgres_restarting_mid_stream_is_survived_without_a_restart_of_ours() {
    let cluster = payments_tests::cluster::Cluster::start();
    let stack = Stack::start_on(&cluster.url(), SandboxConfig::default()).await;
    stack.wait_ready().await;
    let intents = create_intents(&stack, 6, 90).await;
    let (first, rest) = intents.split_at(30);
    let (second, third) = rest.split_at(30);
    confirm_all(&stack, first).await;

    cluster.stop_server();
    // Readiness reports the outage while it lasts.
    stack.wait_readiness(503).await;
    confirm_all(&stack, second).await;
    stack
        .sandbox
        .wait_for_stats(|s| s.failed_attempts >= 3)
        .await;

    cluster.start_server();
    stack.wait_ready().await;
    confirm_all(&stack, third).await;
    settle(&stack).await;

    assert_each_credited_once(&stack, &intents).await;
    let stats = stack.sandbox.stats();
    assert_eq!(
        (stats.given_up, stats.delivered),
        (0, stats.deliveries),
        "{stats:?}"
    );
    eprintln!(
        "database restart: {} intents, {} deliveries, {} failed attempts during the outage, 1 stop/start",
        intents.len(),
        stats.deliveries,
        stats.failed_attempts
    );
}
