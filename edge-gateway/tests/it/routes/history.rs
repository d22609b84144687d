//! `GET /ledger` and `GET /payments` through the edge.

use super::*;

#[tokio::test]
async fn the_history_routes_page_the_callers_own_rows_newest_first() {
    let stack = Stack::start().await;
    let token = stack.token("hana");
    let first = stack.paid_top_up(&token, 10, "evt_h1").await;
    let second = stack.paid_top_up(&token, 20, "evt_h2").await;
    stack.paid_top_up(&stack.token("ivan"), 5, "evt_h3").await;

    let page: Value = stack
        .get(&token, "/payments?limit=1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["payments"].as_array().unwrap().len(), 1);
    let newest = &page["payments"][0];
    assert_eq!(newest["intent_id"], second.as_str());
    assert_eq!(newest["status"], "succeeded");
    assert_eq!(newest["amount_received_cents"], 2000);
    assert_eq!(newest["amount_refunded_cents"], 0);
    assert_eq!(newest["failure_code"], Value::Null);
    assert!(
        newest["created_at"].as_str().unwrap().ends_with('Z'),
        "{newest}"
    );
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let rest: Value = stack
        .get(&token, &format!("/payments?limit=1&cursor={cursor}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rest["payments"][0]["intent_id"], first.as_str());
    assert_eq!(rest["next_cursor"], Value::Null);

    let ledger: Value = stack.get(&token, "/ledger").await.json().await.unwrap();
    let entries = ledger["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "hana's only: {ledger}");
    assert_eq!(entries[0]["kind"], "top_up");
    assert_eq!(entries[0]["amount_cents"], 2000);
    assert_eq!(entries[0]["balance_after_cents"], 3000);
    assert_eq!(entries[0]["reference"], second.as_str());
    assert_eq!(entries[1]["balance_after_cents"], 1000);
    assert_eq!(ledger["next_cursor"], Value::Null);

    // Another user's cursor is refused, and shows nothing of hana's.
    let refused = stack
        .get(
            &stack.token("ivan"),
            &format!("/payments?limit=1&cursor={cursor}"),
        )
        .await;
    let body = problem(refused, StatusCode::BAD_REQUEST).await;
    assert_eq!(body["type"], "urn:credits-topup:problem:invalid-query");
}

#[tokio::test]
async fn bad_history_queries_are_400_and_no_token_is_401() {
    let stack = Stack::start().await;
    let token = stack.token("jude");
    for path in ["/ledger", "/payments"] {
        for query in [
            "?limit=0",
            "?limit=-5",
            "?limit=501",
            "?limit=99999999999999999999",
            "?limit=abc",
            "?cursor=L1.0000000000000000.5",
            "?cursor=P1.forged",
            "?cursor=%00",
            "?limit=1&limit=2",
        ] {
            let response = stack.get(&token, &format!("{path}{query}")).await;
            let body = problem(response, StatusCode::BAD_REQUEST).await;
            assert_eq!(
                body["type"], "urn:credits-topup:problem:invalid-query",
                "{path}{query}"
            );
        }
        let response = stack
            .http
            .get(format!("{}{path}", stack.edge))
            .send()
            .await
            .unwrap();
        problem(response, StatusCode::UNAUTHORIZED).await;
        let empty: Value = stack.get(&token, path).await.json().await.unwrap();
        assert_eq!(empty["next_cursor"], Value::Null, "{empty}");
    }
}
