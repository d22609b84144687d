//! Who is calling: ID tokens and Google's key URL failing or hanging, CORS,
//! and request ids.

use super::*;

#[tokio::test]
async fn bad_tokens_are_401_with_www_authenticate() {
    let stack = Stack::start().await;
    let mut expired_claims = claims(PROJECT, "alice", now());
    expired_claims["exp"] = json!(now() - 3600);
    let mut wrong_aud = claims(PROJECT, "alice", now());
    wrong_aud["aud"] = json!("other-project");
    let tokens = [
        None,
        Some("garbage".to_owned()),
        Some(sign(
            &expired_claims,
            KID,
            edge_gateway::testing::PRIVATE_KEY_PEM,
        )),
        Some(sign(
            &wrong_aud,
            KID,
            edge_gateway::testing::PRIVATE_KEY_PEM,
        )),
        Some(sign(
            &claims(PROJECT, "alice", now()),
            KID,
            edge_gateway::testing::OTHER_PRIVATE_KEY_PEM,
        )),
        Some(sign(
            &claims(PROJECT, "alice", now()),
            "unknown-kid",
            edge_gateway::testing::PRIVATE_KEY_PEM,
        )),
    ];
    for token in tokens {
        let mut request = stack.http.get(format!("{}/balance", stack.edge));
        if let Some(token) = &token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            response.headers()["www-authenticate"],
            r#"Bearer error="invalid_token""#
        );
        problem(response, StatusCode::UNAUTHORIZED).await;
        let response = stack
            .create(token.as_deref().unwrap_or(""), r#"{"amount_usd": 10}"#)
            .await;
        problem(response, StatusCode::UNAUTHORIZED).await;
    }
    assert!(stack.stripe.requests_to("POST", "/v1").await.is_empty());
}

#[tokio::test]
async fn cached_keys_keep_working_when_the_key_url_fails() {
    let stack = Stack::start_with_keys(X509_MAP_JSON, 0).await;
    let token = stack.token("erin");
    assert_eq!(stack.balance(&token).await.status(), StatusCode::OK);

    // Google's key URL starts failing; max-age=0 makes every request try a refresh.
    Mock::given(method("GET"))
        .and(path("/keys"))
        .respond_with(ResponseTemplate::new(500))
        .with_priority(1)
        .mount(&stack.keys)
        .await;
    // New tokens (not in the verified-token cache) still verify with the cached keys.
    for n in 0..3 {
        let mut fresh = claims(PROJECT, "erin", now());
        fresh["iat"] = json!(now() - 100 - n);
        let fresh = sign(&fresh, KID, edge_gateway::testing::PRIVATE_KEY_PEM);
        assert_eq!(stack.balance(&fresh).await.status(), StatusCode::OK);
    }
    // And an unknown kid does not hammer the failing URL.
    let unknown = sign(
        &claims(PROJECT, "erin", now()),
        "new-kid",
        edge_gateway::testing::PRIVATE_KEY_PEM,
    );
    for _ in 0..3 {
        problem(stack.balance(&unknown).await, StatusCode::UNAUTHORIZED).await;
    }
    let fetches = stack.keys.received_requests().await.unwrap().len();
    assert!(fetches <= 3, "{fetches} key fetches");
}

#[tokio::test]
async fn a_hanging_key_url_never_stalls_requests_while_good_keys_are_held() {
    let stack = Stack::start_with_keys(JWKS_JSON, 0).await;
    assert_eq!(
        stack.balance(&stack.token("gina")).await.status(),
        StatusCode::OK
    );
    // Google's key URL now hangs; max-age=0 makes every request want a refresh.
    Mock::given(method("GET"))
        .and(path("/keys"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(30)))
        .with_priority(1)
        .mount(&stack.keys)
        .await;
    for n in 0..5 {
        // New tokens each time, so none is answered from the verified-token cache.
        let mut fresh = claims(PROJECT, "gina", now());
        fresh["iat"] = json!(now() - 100 - n);
        let fresh = sign(&fresh, KID, edge_gateway::testing::PRIVATE_KEY_PEM);
        let answered = tokio::time::timeout(Duration::from_secs(1), stack.balance(&fresh)).await;
        assert_eq!(
            answered.expect("answered while the refresh hangs").status(),
            StatusCode::OK
        );
    }
    // One refresh at a time: the fetches before the URL hung (one or two,
    // as the first request raced the warm-up), then the one that hangs.
    let fetches = stack.keys.received_requests().await.unwrap().len();
    assert!(fetches <= 3, "{fetches} key fetches");
}

#[tokio::test]
async fn concurrent_requests_share_one_key_fetch() {
    let stack = Stack::start_with_keys(JWKS_JSON, 300).await;
    let token = stack.token("frank");
    let calls = (0..10).map(|_| stack.balance(&token));
    for response in futures::future::join_all(calls).await {
        assert_eq!(response.status(), StatusCode::OK);
    }
    // One fetch, shared by the concurrent first requests, then cached for max-age.
    let fetches = stack.keys.received_requests().await.unwrap().len();
    assert_eq!(fetches, 1, "{fetches} fetches for 10 concurrent requests");
}

#[tokio::test]
async fn cors_allows_only_the_configured_origin() {
    let stack = Stack::start().await;
    let preflight = |origin: &'static str| {
        stack
            .http
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/payments/create-payment-intent", stack.edge),
            )
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type,idempotency-key",
            )
            .send()
    };
    let allowed = preflight("https://app.example").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let refused = preflight("https://evil.example").await.unwrap();
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_unknown_routes_are_problems() {
    let stack = Stack::start().await;
    let response = stack
        .http
        .get(format!("{}/nope", stack.edge))
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key("x-request-id"));
    problem(response, StatusCode::NOT_FOUND).await;
    let response = stack
        .http
        .get(format!("{}/healthz", stack.edge))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "abc-123");
}

#[tokio::test]
async fn hostile_request_ids_are_replaced_never_logged_or_forwarded_as_sent() {
    let stack = Stack::start().await;
    let token = stack.token("request-ids");
    for hostile in [
        "x".repeat(20 * 1024),
        "x".repeat(65),
        "abc level=ERROR msg=forged".to_owned(),
        "id\"quoted".to_owned(),
        "caf\u{e9}".to_owned(),
    ] {
        // A balance read goes through payments-grpc with the id forwarded.
        let response = stack
            .http
            .get(format!("{}/balance", stack.edge))
            .bearer_auth(&token)
            .header("x-request-id", hostile.as_bytes())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{hostile:.40}");
        let given = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_ne!(given, hostile);
        assert!(
            given.len() <= 64
                && given
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-'),
            "{given:?}"
        );
    }
}
