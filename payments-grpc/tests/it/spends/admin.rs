//! AdminService over gRPC: its own token, adjustments and reconciliation;
//! and the metrics both services' calls move.

use super::*;

#[tokio::test]
async fn adjust_balance_needs_the_admin_token_and_refuses_the_internal_one() {
    let replicas = Replicas::start_with(1, |config| {
        config.payments_admin_token = Some(ADMIN_TOKEN.into());
    })
    .await;
    let admin = format!("Bearer {ADMIN_TOKEN}");
    let internal = format!("Bearer {TOKEN}");

    let adjusted = replicas
        .adjust(Some(&admin), "ann", 300, "adj-1")
        .await
        .unwrap();
    assert_eq!(adjusted.balance_cents, 300);
    assert!(adjusted.entry_id.parse::<i64>().is_ok(), "{adjusted:?}");
    // A replay answers the same; a debit beyond the balance is refused.
    assert_eq!(
        replicas
            .adjust(Some(&admin), "ann", 300, "adj-1")
            .await
            .unwrap(),
        adjusted
    );
    let short = replicas
        .adjust(Some(&admin), "ann", -301, "adj-2")
        .await
        .unwrap_err();
    assert_eq!(
        code_and_reason(&short),
        (
            Code::FailedPrecondition,
            error_reason::INSUFFICIENT_CREDITS.into()
        )
    );

    for wrong in [Some(internal.as_str()), Some("Bearer nope"), None] {
        let refused = replicas
            .adjust(wrong, "ann", 100, "adj-3")
            .await
            .unwrap_err();
        assert_eq!(
            code_and_reason(&refused),
            (Code::Unauthenticated, error_reason::UNAUTHENTICATED.into()),
            "{wrong:?}"
        );
    }
    // The admin token is no key to PaymentsService either.
    let mut request = Request::new(GetBalanceRequest {
        user_id: "ann".into(),
    });
    request
        .metadata_mut()
        .insert("authorization", admin.parse().unwrap());
    let refused = replicas.client(0).get_balance(request).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);

    assert_eq!(replicas.balance("ann").await, 300);
    assert_eq!(replicas.entries().await, 1);
    let entry = &payments_core::db::ledger::for_user(&mut replicas.db.connection().await, "ann")
        .await
        .unwrap()[0];
    assert_eq!(entry.actor.as_deref(), Some("ops@example.com"));
    assert_eq!(entry.reason.as_deref(), Some("support ticket 17"));
}

#[tokio::test]
async fn without_an_admin_token_every_admin_call_is_refused() {
    let replicas = Replicas::start(1).await;

    for authorization in [
        Some(format!("Bearer {TOKEN}")),
        Some("Bearer ".into()),
        None,
    ] {
        let refused = replicas
            .adjust(authorization.as_deref(), "bob", 100, "adj-1")
            .await
            .unwrap_err();
        assert_eq!(
            code_and_reason(&refused),
            (Code::PermissionDenied, error_reason::ADMIN_DISABLED.into()),
            "{authorization:?}"
        );
    }
    assert_eq!(replicas.entries().await, 0);
}

#[tokio::test]
async fn run_reconciliation_needs_the_admin_token_and_credits_a_lost_webhook() {
    let replicas = Replicas::start_with(2, |config| {
        config.payments_admin_token = Some(ADMIN_TOKEN.into());
        config.reconcile_after_secs = 1;
    })
    .await;
    let intent = create_intent(&replicas, "ivy", 2000).await;
    replicas.stripe.succeed(&intent);
    let run = |authorization: &str| {
        let mut request = Request::new(RunReconciliationRequest {});
        request
            .metadata_mut()
            .insert("authorization", authorization.parse().unwrap());
        let mut admin = replicas.clients[0].1.clone();
        async move { admin.run_reconciliation(request).await }
    };
    let refused = run(&format!("Bearer {TOKEN}")).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert_eq!(replicas.balance("ivy").await, 0);

    // Not re-fetched before RECONCILE_AFTER_SECS; once it has passed, the
    // payment whose webhook never came is credited.
    let early = run(&format!("Bearer {ADMIN_TOKEN}"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((early.intents_checked, early.credited), (0, 0), "{early:?}");
    let mut conn = replicas.db.connection().await;
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query("UPDATE payments SET updated_at = now() - interval '1 minute'"),
        &mut conn,
    )
    .await
    .unwrap();
    let done = run(&format!("Bearer {ADMIN_TOKEN}"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((done.intents_checked, done.credited), (1, 1), "{done:?}");
    assert_eq!(replicas.balance("ivy").await, 2000);
    assert_balances_match_ledger(&mut conn).await;
}

#[tokio::test]
async fn the_metrics_endpoint_counts_calls_by_method_and_code_and_reads_the_lifecycle_gauges() {
    let replicas = Replicas::start(1).await;
    replicas.top_up("kim", 1000).await;
    let short = replicas
        .client(0)
        .spend_credits(authed(SpendCreditsRequest {
            user_id: "kim".into(),
            amount_cents: 5000,
            idempotency_key: "too-much".into(),
            reason: String::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(short.code(), Code::FailedPrecondition);
    assert_eq!(replicas.balance("kim").await, 1000);
    // A call without the token.
    let refused = replicas
        .client(0)
        .get_balance(Request::new(GetBalanceRequest {
            user_id: "kim".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    let open = create_intent(&replicas, "lee", 500).await;

    let text = replicas.servers[0].scrape_metrics().await;
    for line in [
        r#"payments_grpc_calls_total{method="/payments.v1.PaymentsService/SpendCredits",code="FAILED_PRECONDITION"} 1"#,
        r#"payments_grpc_calls_total{method="/payments.v1.PaymentsService/GetBalance",code="OK"} 1"#,
        r#"payments_grpc_calls_total{method="/payments.v1.PaymentsService/GetBalance",code="UNAUTHENTICATED"} 1"#,
        r#"payments_grpc_calls_total{method="/payments.v1.PaymentsService/ApplyStripeEvent",code="OK"} 1"#,
        r#"payments_grpc_call_duration_seconds_count{method="/payments.v1.PaymentsService/SpendCredits"} 1"#,
        "payments_paid_not_credited 0",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
    let age: f64 = text
        .lines()
        .find_map(|line| line.strip_prefix("payments_oldest_open_payment_age_seconds "))
        .expect("the age gauge")
        .parse()
        .unwrap();
    assert!((0.0..60.0).contains(&age), "{age}: {open} was just created");

    // A payment recorded paid without its top-up (what must never happen)
    // shows at the next scrape.
    let mut conn = replicas.db.connection().await;
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query(format!(
            "UPDATE payments SET status = 'succeeded', amount_received_cents = 500 WHERE stripe_intent_id = '{open}'"
        )),
        &mut conn,
    )
    .await
    .unwrap();
    let text = replicas.servers[0].scrape_metrics().await;
    assert!(text.contains("payments_paid_not_credited 1"), "{text}");
    assert!(
        text.contains("payments_oldest_open_payment_age_seconds 0.0"),
        "{text}"
    );
}
