//! Stripe's webhook through the edge: bad and poison deliveries, payments-grpc
//! failing or away, and the metrics they move.

use super::*;

#[tokio::test]
async fn bad_webhooks_are_400_and_change_nothing() {
    let stack = Stack::start().await;
    let event = event_json("evt_bad", "payment_intent.succeeded", "pi_x");
    let signature = stripe_signature(WEBHOOK_SECRET, now(), event.as_bytes());

    problem(stack.webhook(&event, "").await, StatusCode::BAD_REQUEST).await;
    problem(
        stack
            .webhook(
                &event,
                &stripe_signature("whsec_wrong", now(), event.as_bytes()),
            )
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    problem(
        stack
            .webhook(&event.replace("evt_bad", "evt_bae"), &signature)
            .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    let stale = stripe_signature(WEBHOOK_SECRET, now() - 301, event.as_bytes());
    problem(stack.webhook(&event, &stale).await, StatusCode::BAD_REQUEST).await;
    // Signed correctly, but not a Stripe event.
    let body = problem(
        stack.signed_webhook(r#"{"hello": "world"}"#).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("not a Stripe event"),
        "{body}"
    );
    problem(
        stack.signed_webhook("not json").await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    for hostile in [
        r#"["evt_1", "payment_intent.succeeded", {"object": {"id": "pi_1"}}]"#,
        r#"{"id": "evt_1", "id": "evt_2", "type": "payment_intent.succeeded", "data": {"object": {}}}"#,
        r#"{"id": 12, "type": "payment_intent.succeeded", "data": {"object": {}}}"#,
        r#"{"id": "evt_1", "type": "payment_intent.succeeded"}"#,
        "\"evt_1\"",
    ] {
        problem(stack.signed_webhook(hostile).await, StatusCode::BAD_REQUEST).await;
    }
    let huge = format!(r#"{{"id": "evt_1", "pad": "{}"}}"#, "x".repeat(70_000));
    problem(
        stack.signed_webhook(&huge).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;
    assert_eq!(stack.rows("stripe_events").await, 0);
    assert_eq!(stack.rows("ignored_stripe_events").await, 0);

    // The rotated-out secret is still accepted while it is configured.
    let rotated = stripe_signature("whsec_old_rotated", now(), event.as_bytes());
    let response = stack.webhook(&event, &rotated).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<Value>().await.unwrap()["outcome"],
        "ignored"
    );
}

#[tokio::test]
async fn an_internal_failure_is_a_500_that_leaks_nothing() {
    let stack = Stack::start().await;
    // Stripe refuses payments-grpc's API key: an operator's problem, not the user's.
    stack
        .stripe
        .fail_next(
            "POST",
            1,
            Fault::error(
                401,
                "invalid_request_error",
                "",
                "Invalid API Key provided: sk_test_****",
            ),
        )
        .await;
    let body = problem(
        stack
            .create(&stack.token("ivan"), r#"{"amount_usd": 10}"#)
            .await,
        StatusCode::INTERNAL_SERVER_ERROR,
    )
    .await;
    let text = body.to_string();
    assert!(
        !text.contains("sk_test") && !text.contains("API Key"),
        "{text}"
    );
}

#[tokio::test]
async fn the_grpc_service_down_answers_503_then_200_once_it_is_back() {
    let mut stack = Stack::start().await;
    let token = stack.token("dave");
    let intent: Value = stack
        .create(&token, r#"{"amount_usd": 50}"#)
        .await
        .json()
        .await
        .unwrap();
    let intent_id = intent["intent_id"].as_str().unwrap().to_owned();
    stack.stripe.succeed(&intent_id);
    let event = event_json("evt_outage", "payment_intent.succeeded", &intent_id);

    let addr = stack.grpc.addr();
    stack.grpc.stop().await;
    let response = stack.signed_webhook(&event).await;
    assert!(response.status().is_server_error(), "{}", response.status());
    problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
    problem(stack.balance(&token).await, StatusCode::SERVICE_UNAVAILABLE).await;
    let ready = stack
        .http
        .get(format!("{}/readyz", stack.edge))
        .send()
        .await
        .unwrap();
    problem(ready, StatusCode::SERVICE_UNAVAILABLE).await;
    let live = stack
        .http
        .get(format!("{}/healthz", stack.edge))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), StatusCode::OK);

    // Stripe retries after payments-grpc is back on the same address.
    stack.grpc = start_grpc(&stack.db, &stack.stripe, addr).await;
    let response = retry_until_ok(|| stack.signed_webhook(&event)).await;
    assert_eq!(
        response.json::<Value>().await.unwrap()["outcome"],
        "applied"
    );
    let balance: Value = stack.balance(&token).await.json().await.unwrap();
    assert_eq!(balance["balance_cents"], 5000);
    let ready = stack
        .http
        .get(format!("{}/readyz", stack.edge))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
}

#[tokio::test]
async fn poison_events_with_control_characters_are_400_not_500_and_write_nothing() {
    let stack = Stack::start().await;
    for body in [
        r#"{"id":"evt_\u0000","object":"event","type":"payment_intent.succeeded","data":{"object":{"id":"pi_1"}}}"#,
        r#"{"id":"evt_1","object":"event","type":"payment_intent.succeeded\u0000","data":{"object":{"id":"pi_1"}}}"#,
        r#"{"id":"evt_2","object":"event","type":"payment_intent.succeeded","data":{"object":{"id":"pi_\u0000"}}}"#,
    ] {
        let body = problem(stack.signed_webhook(body).await, StatusCode::BAD_REQUEST).await;
        assert_eq!(body["type"], "urn:credits-topup:problem:invalid-webhook");
    }
    let mut conn = stack.db.connection().await;
    assert_eq!(count_rows(&mut conn, "stripe_events").await, 0);
    assert_eq!(count_rows(&mut conn, "ignored_stripe_events").await, 0);
}

#[tokio::test]
async fn the_metrics_endpoint_counts_requests_by_route_template_and_webhooks_by_type() {
    let stack = Stack::start().await;
    let (edge, http) = (&stack.edge, &stack.http);
    assert_ne!(
        Some(stack.metrics_addr.port()),
        edge.rsplit(':').next().and_then(|port| port.parse().ok()),
        "never the public port"
    );
    let metrics = format!("http://{}/metrics", stack.metrics_addr);

    // Two syncs of made-up intents (404, a route with a parameter), one
    // unsigned webhook (400), one signed event of a type not acted on.
    for intent in ["pi_one", "pi_two"] {
        let response = http
            .post(format!("{edge}/payments/{intent}/sync"))
            .bearer_auth(stack.token("metrics-user"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
    let unsigned = http
        .post(format!("{edge}/stripe/webhook"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), StatusCode::BAD_REQUEST);
    let event = event_json("evt_metrics", "customer.created", "cus_1");
    assert_eq!(stack.signed_webhook(&event).await.status(), StatusCode::OK);

    // A scraper that asks for OpenMetrics gets it; any other gets the
    // classic text format, which every Prometheus version reads.
    let scrape = http
        .get(&metrics)
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(scrape.status(), StatusCode::OK);
    assert!(
        scrape.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = scrape.text().await.unwrap();
    let classic = http.get(&metrics).send().await.unwrap();
    assert_eq!(
        classic.headers()["content-type"].to_str().unwrap(),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let classic = classic.text().await.unwrap();
    assert!(
        classic.contains("# TYPE edge_http_requests_total counter") && !classic.contains("# EOF"),
        "{classic}"
    );
    for line in [
        r#"edge_http_requests_total{route="/payments/{intent_id}/sync",method="POST",status="404"} 2"#,
        r#"edge_http_requests_total{route="/stripe/webhook",method="POST",status="400"} 1"#,
        r#"edge_http_requests_total{route="/stripe/webhook",method="POST",status="200"} 1"#,
        r#"edge_stripe_webhooks_total{event_type="other",outcome="ignored"} 1"#,
        r#"edge_http_request_duration_seconds_count{route="/payments/{intent_id}/sync",method="POST"} 2"#,
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
    // Never a path as sent, never a user.
    assert!(
        !text.contains("pi_one") && !text.contains("metrics-user"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    let elsewhere = http
        .get(format!("http://{}/", stack.metrics_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), StatusCode::NOT_FOUND);
}
