//! `GET /balance/stream`: changes pushed, places bounded and given back,
//! HTTP/1.1 served by hyper, the token's expiry.

use super::*;

/// The text of an open event stream, read until `wanted` appears in it or
/// `within` passes; `None` when the stream ends first.
async fn read_until(
    response: &mut reqwest::Response,
    seen: &mut String,
    wanted: &str,
    within: std::time::Duration,
) -> Option<()> {
    let deadline = tokio::time::Instant::now() + within;
    while !seen.contains(wanted) {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .unwrap_or_else(|_| panic!("{wanted:?} did not come in time; got {seen:?}"))
            .unwrap()?;
        seen.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    Some(())
}

#[tokio::test]
async fn the_balance_stream_sends_the_balance_then_each_change() {
    let stack = Stack::start().await;
    let token = stack.token("kira");
    let mut response = stack.get(&token, "/balance/stream").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");

    let mut seen = String::new();
    let second = std::time::Duration::from_secs(5);
    read_until(&mut response, &mut seen, "\n\n", second)
        .await
        .unwrap();
    assert!(
        seen.starts_with("event: balance\ndata: {\"balance_cents\":0,"),
        "{seen:?}"
    );

    stack.paid_top_up(&token, 10, "evt_stream_1").await;
    read_until(&mut response, &mut seen, "\"balance_cents\":1000", second)
        .await
        .unwrap();
    // Another user's top-up is not in kira's stream.
    stack
        .paid_top_up(&stack.token("liam"), 5, "evt_stream_2")
        .await;
    stack.paid_top_up(&token, 5, "evt_stream_3").await;
    read_until(&mut response, &mut seen, "\"balance_cents\":1500", second)
        .await
        .unwrap();
    assert!(!seen.contains("\"balance_cents\":500,"), "{seen:?}");

    let unauthenticated = stack
        .http
        .get(format!("{}/balance/stream", stack.edge))
        .send()
        .await
        .unwrap();
    problem(unauthenticated, StatusCode::UNAUTHORIZED).await;
}

/// A stopping edge ends its balance streams at once: their clients
/// reconnect to another replica, and the drain does not wait its whole
/// period (request timeout + 1 s, 11 s here) on them.
#[tokio::test]
async fn a_stopping_edge_ends_its_balance_streams_at_once() {
    let stack = Stack::start().await;
    let mut response = stack.get(&stack.token("ned"), "/balance/stream").await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut seen = String::new();
    let soon = std::time::Duration::from_secs(5);
    read_until(&mut response, &mut seen, "event: balance", soon)
        .await
        .unwrap();

    stack.stop_edge.send_replace(true);
    let ended = read_until(&mut response, &mut seen, "never sent", soon).await;
    assert_eq!(ended, None, "{seen:?}");
    tokio::time::timeout(soon, stack.edge_task)
        .await
        .expect("the edge stopped well inside its drain period")
        .unwrap();
}

/// Open streams are bounded per user (429) and per edge (503), and each
/// holds a place on a watch connection of its own, not on the calls'.
#[tokio::test]
async fn balance_streams_are_bounded_per_user_and_per_edge() {
    let stack = Stack::start_configured(JWKS_JSON, 0, |config| {
        config.edge_max_balance_streams = 3;
        config.edge_max_balance_streams_per_user = 2;
    })
    .await;
    let nora = stack.token("nora");
    let first = stack.get(&nora, "/balance/stream").await;
    let second = stack.get(&nora, "/balance/stream").await;
    assert_eq!(
        (first.status(), second.status()),
        (StatusCode::OK, StatusCode::OK)
    );
    let third = stack.get(&nora, "/balance/stream").await;
    let body = problem(third, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(body["type"], "urn:credits-topup:problem:too-many-streams");

    let otto = stack.get(&stack.token("otto"), "/balance/stream").await;
    assert_eq!(otto.status(), StatusCode::OK);
    let full = stack.get(&stack.token("pia"), "/balance/stream").await;
    let body = problem(full, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["type"], "urn:credits-topup:problem:overloaded");
    // Calls still go through while every stream place is taken.
    assert_eq!(stack.balance(&nora).await.status(), StatusCode::OK);
}

/// A stream's places are given back when its client goes away: a closed
/// tab does not keep the user's place until its next heartbeat fails.
#[tokio::test]
async fn a_balance_stream_whose_client_left_gives_its_place_back() {
    let stack = Stack::start_configured(JWKS_JSON, 0, |config| {
        config.edge_max_balance_streams_per_user = 1;
    })
    .await;
    let nora = stack.token("nora");
    let mut first = stack.get(&nora, "/balance/stream").await;
    assert_eq!(first.status(), StatusCode::OK);
    let mut seen = String::new();
    let wait = std::time::Duration::from_secs(5);
    read_until(&mut first, &mut seen, "event: balance", wait)
        .await
        .unwrap();
    let held = stack.get(&nora, "/balance/stream").await;
    problem(held, StatusCode::TOO_MANY_REQUESTS).await;

    // Dropping a response mid-body closes its connection.
    drop(first);
    let deadline = tokio::time::Instant::now() + wait;
    let again = loop {
        let response = stack.get(&nora, "/balance/stream").await;
        if response.status() != StatusCode::TOO_MANY_REQUESTS {
            break response;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place was not given back within {wait:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(again.status(), StatusCode::OK);
}

/// A raw connection to the edge, for what an HTTP client would tidy away.
async fn raw_connection(stack: &Stack) -> tokio::net::TcpStream {
    let address = stack.edge.trim_start_matches("http://");
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// What `stream` sends until `wanted` is in it, or until it closes (or is
/// reset) when `wanted` is `None`; within 5 s.
async fn raw_read(stream: &mut tokio::net::TcpStream, wanted: Option<&str>) -> String {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = String::from_utf8_lossy(&seen).into_owned();
        if wanted.is_some_and(|wanted| text.contains(wanted)) {
            return text;
        }
        let read = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{wanted:?} did not come in time; got {text:?}"))
            .unwrap_or(0);
        if read == 0 {
            assert!(wanted.is_none(), "closed before {wanted:?}; got {text:?}");
            return text;
        }
        seen.extend_from_slice(&buf[..read]);
    }
}

/// Over HTTP/1.1 a balance stream is hyper's like any answer: its head may
/// come in pieces, its events are chunked on a connection kept open.
#[tokio::test]
async fn an_http1_balance_stream_is_chunked_by_hyper() {
    use tokio::io::AsyncWriteExt;
    let stack = Stack::start().await;
    let token = stack.token("vera");
    let mut stream = raw_connection(&stack).await;
    let authorization = format!("zation: Bearer {token}\r\n\r\n");
    for piece in [
        "GET /bal",
        "ance/stream?from=tab HTTP/1.1\r\nHost: edge\r\nAuthori",
        &authorization,
    ] {
        stream.write_all(piece.as_bytes()).await.unwrap();
    }
    let seen = raw_read(&mut stream, Some("\"balance_cents\":0,")).await;
    let (head, events) = seen.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    let head = head.to_lowercase();
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert!(
        events.contains("event: balance\ndata: {\"balance_cents\":0,"),
        "{events:?}"
    );

    stack.paid_top_up(&token, 10, "evt_raw_stream_1").await;
    raw_read(&mut stream, Some("\"balance_cents\":1000,")).await;
}

/// A stream request's head that cannot be read is answered by hyper (400
/// or 431, no body, closed), before any handler; one without a token as
/// every route answers it.
#[tokio::test]
async fn bad_http1_stream_requests_are_refused_before_any_handler() {
    use tokio::io::AsyncWriteExt;
    let stack = Stack::start().await;
    // Exactly the 32 KiB a head may take, with no end: all of it is read.
    let opening = "GET /balance/stream HTTP/1.1\r\nX-Big: ";
    let endless = format!("{opening}{}", "a".repeat(32 * 1024 - opening.len()));
    let too_many = format!(
        "GET /balance/stream HTTP/1.1\r\n{}\r\n",
        (0..65).map(|n| format!("X-{n}: 1\r\n")).collect::<String>()
    );
    for (head, status) in [
        (endless.as_str(), "431"),
        (too_many.as_str(), "431"),
        ("GET /balance/stream HTTP/1.1\r\nBad Name: 1\r\n\r\n", "400"),
        (
            "GET /balance/stream HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "400",
        ),
        ("GET /balance/stream HTTP/9.9\r\n\r\n", "400"),
    ] {
        let mut stream = raw_connection(&stack).await;
        stream.write_all(head.as_bytes()).await.unwrap();
        let answer = raw_read(&mut stream, None).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{answer:?} to {:?}",
            &head[..head.len().min(80)]
        );
        let head = answer.to_lowercase();
        assert!(
            head.contains("\r\nconnection: close\r\n")
                && head.contains("\r\ncontent-length: 0\r\n")
                && head.ends_with("\r\n\r\n"),
            "{answer:?}"
        );
    }

    let mut stream = raw_connection(&stack).await;
    stream
        .write_all(b"GET /balance/stream HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = raw_read(&mut stream, None).await;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{head}");
    assert!(
        head.contains("content-type: application/problem+json"),
        "{head}"
    );
    assert!(
        head.contains(&format!("content-length: {}\r\n", body.len())),
        "{head}"
    );
    let problem: Value = serde_json::from_str(body).unwrap();
    assert_eq!(problem["status"], 401, "{problem}");
}

/// A connection that starts a stream request and stalls is cut at the
/// header-read timeout, as hyper cuts any other.
#[tokio::test]
async fn a_stalled_http1_stream_request_is_cut_at_the_header_read_timeout() {
    use tokio::io::AsyncWriteExt;
    let stack = Stack::start_configured(JWKS_JSON, 0, |config| {
        config.edge_header_read_timeout_ms = 300;
    })
    .await;
    for stalled in [
        "GET /balance/str",
        "GET /balance/stream HTTP/1.1\r\nHost: e",
    ] {
        let mut stream = raw_connection(&stack).await;
        stream.write_all(stalled.as_bytes()).await.unwrap();
        let started = tokio::time::Instant::now();
        assert_eq!(raw_read(&mut stream, None).await, "", "{stalled:?}");
        assert!(started.elapsed() < Duration::from_secs(2), "{stalled:?}");
    }
}

#[tokio::test]
async fn the_balance_stream_sends_heartbeats_and_ends_when_the_token_expires() {
    let stack = Stack::start().await;
    let mut claims = edge_gateway::testing::claims(PROJECT, "mia", now());
    claims["exp"] = (now() + 18).into();
    let token = sign(&claims, KID, edge_gateway::testing::PRIVATE_KEY_PEM);
    let mut response = stack.get(&token, "/balance/stream").await;
    assert_eq!(response.status(), StatusCode::OK);

    let mut seen = String::new();
    let wait = std::time::Duration::from_secs(17);
    read_until(&mut response, &mut seen, "event: balance", wait)
        .await
        .unwrap();
    read_until(&mut response, &mut seen, ": heartbeat\n", wait)
        .await
        .unwrap();
    // Ended at the token's expiry: the client reconnects with a fresh token.
    let ended = read_until(&mut response, &mut seen, "never sent", wait).await;
    assert_eq!(ended, None, "{seen:?}");
}

/// A token past its `exp` but inside the clock leeway still makes calls,
/// but gets no stream: a 401 at once, not a 200 that ends straight away
/// (which a reconnecting client would repeat in a loop).
#[tokio::test]
async fn a_stream_for_a_token_past_its_exp_is_refused_401() {
    let stack = Stack::start().await;
    let mut claims = edge_gateway::testing::claims(PROJECT, "max", now());
    claims["exp"] = (now() - 2).into();
    let token = sign(&claims, KID, edge_gateway::testing::PRIVATE_KEY_PEM);
    assert_eq!(stack.balance(&token).await.status(), StatusCode::OK);
    let response = stack.get(&token, "/balance/stream").await;
    let body = problem(response, StatusCode::UNAUTHORIZED).await;
    assert_eq!(body["detail"], "the token has expired");
}
