//! The sandbox answers bad requests as Stripe does: its error objects, for
//! PaymentIntents, refunds and lists, checked against Stripe's documented
//! shapes.

use super::*;

#[tokio::test]
async fn the_sandbox_speaks_stripes_errors() {
    let stack = Stack::start(SandboxConfig::default()).await;
    let http = &stack.http;
    let url = format!("{}/v1/payment_intents", stack.sandbox.url());
    let form = [("content-type", "application/x-www-form-urlencoded")];

    let (status, body) = http
        .send(
            "POST",
            &url,
            Some("sk_live_nope"),
            &form,
            b"amount=500&currency=usd".to_vec(),
        )
        .await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (401, Some("invalid_request_error"))
    );
    let (status, body) = http
        .send(
            "POST",
            &url,
            Some("sk_test_x"),
            &form,
            b"currency=usd".to_vec(),
        )
        .await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("amount"))
    );

    let keyed = [
        ("content-type", "application/x-www-form-urlencoded"),
        ("idempotency-key", "k1"),
    ];
    let (_, first) = http
        .send(
            "POST",
            &url,
            Some("sk_test_x"),
            &keyed,
            b"amount=500&currency=usd".to_vec(),
        )
        .await;
    let (_, replay) = http
        .send(
            "POST",
            &url,
            Some("sk_test_x"),
            &keyed,
            b"currency=usd&amount=500".to_vec(),
        )
        .await;
    assert_eq!(
        first["id"], replay["id"],
        "same parameters in another order replay"
    );
    let (status, body) = http
        .send(
            "POST",
            &url,
            Some("sk_test_x"),
            &keyed,
            b"amount=900&currency=usd".to_vec(),
        )
        .await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (400, Some("idempotency_error"))
    );

    let id = first["id"].as_str().unwrap();
    let update = format!("{url}/{id}");
    let (status, body) = http
        .send(
            "POST",
            &update,
            Some("sk_test_x"),
            &form,
            b"metadata[order]=42&amount=700".to_vec(),
        )
        .await;
    assert_eq!(
        (
            status,
            body["amount"].as_i64(),
            body["metadata"]["order"].as_str()
        ),
        (200, Some(700), Some("42"))
    );
    let (status, body) = stack.confirm(id, "pm_card_unknown").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("resource_missing"))
    );
    let (status, _) = stack.confirm(id, PM_CARD_VISA).await;
    assert_eq!(status, 200);
    let (status, body) = stack.confirm(id, PM_CARD_VISA).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("payment_intent_unexpected_state"))
    );
    let cancel = format!("{url}/{id}/cancel");
    let (status, _) = http
        .send("POST", &cancel, Some("sk_test_x"), &form, Vec::new())
        .await;
    assert_eq!(status, 400, "a succeeded intent cannot be canceled");
    let (status, body) = http
        .send(
            "GET",
            &format!("{url}/pi_nope"),
            Some("sk_test_x"),
            &[],
            Vec::new(),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("resource_missing"))
    );
}

#[tokio::test]
async fn the_sandbox_speaks_stripes_refund_and_list_errors() {
    let stack = Stack::start(SandboxConfig::default()).await;
    let token = stack.token("qa-sandbox");
    let unpaid = create(&stack, &token, 10).await;
    let http = &stack.http;
    let form = [("content-type", "application/x-www-form-urlencoded")];
    let refunds_url = format!("{}/v1/refunds", stack.sandbox.url());
    let refund = |body: String| {
        http.send(
            "POST",
            &refunds_url,
            Some("sk_test_x"),
            &form,
            body.into_bytes(),
        )
    };
    let (status, body) = refund(format!("payment_intent={unpaid}")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("charge_not_refundable")),
        "{body}"
    );
    let paid = create(&stack, &token, 10).await;
    stack.confirm(&paid, PM_CARD_VISA).await;
    let (status, body) = refund(format!("payment_intent={paid}&amount=1001")).await;
    assert_eq!(
        (
            status,
            body["error"]["code"].as_str(),
            body["error"]["param"].as_str()
        ),
        (400, Some("amount_too_large"), Some("amount")),
        "{body}"
    );
    let (status, body) = refund("amount=100".into()).await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (400, Some("invalid_request_error"))
    );
    let (status, body) = refund(format!("payment_intent={paid}&amount=400")).await;
    assert_eq!(
        (status, body["object"].as_str(), body["status"].as_str()),
        (200, Some("refund"), Some("succeeded"))
    );
    refund(format!("payment_intent={paid}&amount=600")).await;

    let get = |path_and_query: &str| {
        let url = format!("{}{path_and_query}", stack.sandbox.url());
        async move {
            http.send("GET", &url, Some("sk_test_x"), &[], Vec::new())
                .await
        }
    };
    // Lists: newest first, paged by `starting_after`, `limit` 1–100.
    let (status, page) = get(&format!("/v1/refunds?payment_intent={paid}&limit=1")).await;
    assert_eq!(
        (status, page["object"].as_str(), page["has_more"].as_bool()),
        (200, Some("list"), Some(true))
    );
    assert_eq!(page["data"][0]["amount"], 600, "{page}");
    let after = page["data"][0]["id"].as_str().unwrap().to_owned();
    let (_, next) = get(&format!(
        "/v1/refunds?payment_intent={paid}&limit=1&starting_after={after}"
    ))
    .await;
    assert_eq!(
        (
            next["data"][0]["amount"].as_i64(),
            next["has_more"].as_bool()
        ),
        (Some(400), Some(false)),
        "{next}"
    );
    for bad in [
        "/v1/refunds?limit=0",
        "/v1/refunds?limit=101",
        "/v1/events?type=refund.created&types[]=charge.refunded",
    ] {
        let (status, body) = get(bad).await;
        assert_eq!(
            (status, body["error"]["type"].as_str()),
            (400, Some("invalid_request_error")),
            "{bad}: {body}"
        );
    }
    let (status, events) =
        get("/v1/events?types[0]=refund.created&types[1]=charge.refunded&created[gte]=0&limit=100")
            .await;
    assert_eq!(status, 200);
    let types: Vec<&str> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "charge.refunded",
            "refund.created",
            "charge.refunded",
            "refund.created"
        ]
    );
    let (_, grouped) = get("/v1/events?type=refund.*").await;
    assert_eq!(grouped["data"].as_array().unwrap().len(), 2, "{grouped}");
    let (status, body) = get("/v1/disputes/du_nope").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("resource_missing"))
    );
}
