//! Attacks on the servers themselves, run against the real binaries on
//! loopback, each bounded in count and time: what a hostile client can make
//! them hold (connections, memory, CPU) stays bounded, and a well-behaved
//! client is still served meanwhile.

use std::net::SocketAddr;
use std::time::Duration;

use futures::future::join_all;
use payments_tests::process::{cpu_secs, open_files, peak_rss_kib, rss_kib};
use payments_tests::stack::{HttpClient, Stack, now_unix};
use stripe_sandbox::SandboxConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

/// Reads until the server closes the connection (or `limit` passes); true
/// when the server closed it.
async fn closed_by_server(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        match timeout(deadline - Instant::now(), stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

/// The head (status line and headers, lower-cased) of the server's answer
/// on `stream`, if one comes within `limit`.
async fn answer_head(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + limit;
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match timeout(
            deadline.saturating_duration_since(Instant::now()),
            stream.read(&mut buf),
        )
        .await
        {
            Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&buf[..n]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&answer).to_lowercase())
}

/// `GET /healthz` as a new client would ask it: on a connection of its own,
/// not one the pool kept from an attack the edge may have just closed.
async fn healthz(edge: SocketAddr) -> Result<(u16, serde_json::Value), String> {
    HttpClient::new()
        .try_send(
            "GET",
            &format!("http://{edge}/healthz"),
            None,
            &[],
            Vec::new(),
        )
        .await
}

/// Slowloris: 300 clients sending their headers a line at a time (half of
/// them for `/balance/stream`), against an edge allowed 256 file
/// descriptors. The edge caps its connections below that, cuts each slow
/// client at the header-read timeout, and keeps answering a normal client.
#[tokio::test]
async fn slow_headers_cannot_exhaust_the_edges_descriptors_or_hold_connections() {
    let stack = Stack::start(SandboxConfig::default()).await;
    let (edge, addr) = stack
        .spawn_edge_process(
            &[
                ("EDGE_MAX_CONNECTIONS", "200"),
                ("EDGE_MAX_BALANCE_STREAMS", "136"),
                ("EDGE_HEADER_READ_TIMEOUT_MS", "1000"),
            ],
            Some(256),
        )
        .await;
    let pid = edge.id().expect("edge pid");

    // Half of them open a balance stream, the route that holds its connection.
    let slow_clients = (0..300).map(|n| async move {
        let Ok(mut stream) = TcpStream::connect(addr).await else {
            return (false, Duration::ZERO);
        };
        let started = Instant::now();
        let path = if n % 2 == 0 {
            "/healthz"
        } else {
            "/balance/stream"
        };
        let request_line = format!("GET {path} HTTP/1.1\r\nHost: edge\r\n");
        if stream.write_all(request_line.as_bytes()).await.is_err() {
            return (true, started.elapsed());
        }
        // One more header line every 200 ms, for at most 10 s.
        for n in 0..50 {
            let line = format!("X-Slow-{n}: 1\r\n");
            if stream.write_all(line.as_bytes()).await.is_err() {
                return (true, started.elapsed());
            }
            if closed_by_server(&mut stream, Duration::from_millis(200)).await {
                return (true, started.elapsed());
            }
        }
        (false, started.elapsed())
    });
    let attack = tokio::spawn(join_all(slow_clients));

    // While the attack runs, a normal client is answered.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let files_during_attack = open_files(pid);
    let answered = timeout(Duration::from_secs(10), healthz(addr)).await;
    assert!(
        matches!(answered, Ok(Ok((200, _)))),
        "/healthz during the attack: {answered:?}"
    );

    let outcomes = attack.await.unwrap();
    let cut = outcomes.iter().filter(|(closed, _)| *closed).count();
    let longest = outcomes
        .iter()
        .map(|(_, held)| *held)
        .max()
        .unwrap_or_default();
    assert_eq!(cut, 300, "every slow client is cut off by the server");
    assert!(
        files_during_attack < 256,
        "{files_during_attack} descriptors open"
    );
    eprintln!(
        "slowloris: 300 slow clients, {files_during_attack} descriptors open at most seen, each cut within {longest:?}, /healthz answered"
    );
    let answered = healthz(addr).await;
    assert!(matches!(answered, Ok((200, _))), "{answered:?}");
}

/// A connection that never sends a byte is closed at the header-read
/// timeout by the edge, and at the first-byte timeout by payments-grpc.
#[tokio::test]
async fn silent_connections_are_closed_by_both_servers() {
    let mut stack = Stack::start_with_grpc_process(SandboxConfig::default()).await;
    stack.stop_grpc().await;
    let mut grpc = stack.spawn_grpc_process(&[("PAYMENTS_FIRST_BYTE_TIMEOUT_MS", "500")]);
    stack.wait_ready().await;
    let (_edge, edge_addr) = stack
        .spawn_edge_process(&[("EDGE_HEADER_READ_TIMEOUT_MS", "500")], None)
        .await;

    for addr in [edge_addr, stack.grpc_addr] {
        let silent = (0..50).map(|_| async move {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            closed_by_server(&mut stream, Duration::from_secs(5)).await
        });
        let closed = join_all(silent).await;
        assert!(
            closed.iter().all(|closed| *closed),
            "{} of 50 silent connections to {addr} still open after 5 s",
            closed.iter().filter(|closed| !**closed).count()
        );
    }
    payments_tests::process::stop_gracefully(&mut grpc).await;
}

/// 300 webhook uploads with a well-formed signature header, each stalled
/// one byte short of its 256 KiB body: only a few bodies are read at a
/// time, the rest are shed with 503 and Retry-After, and the edge's memory
/// stays bounded.
#[tokio::test]
async fn stalled_webhook_uploads_hold_bounded_memory() {
    let stack = Stack::start(SandboxConfig::default()).await;
    let (edge, addr) = stack
        .spawn_edge_process(&[("WEBHOOK_MAX_CONCURRENT_BODIES", "8")], None)
        .await;
    let pid = edge.id().expect("edge pid");
    let before_kib = rss_kib(pid);

    const BODY: usize = 256 * 1024;
    let uploads = (0..300).map(|_| async move {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let head = format!(
            "POST /stripe/webhook HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\n\
             Content-Length: {BODY}\r\nStripe-Signature: t={},v1={}\r\n\r\n",
            now_unix(),
            "0".repeat(64)
        );
        stream.write_all(head.as_bytes()).await.expect("head");
        let body = vec![b' '; BODY - 1];
        // The edge may stop reading (a shed upload): the write then stalls.
        let _ = timeout(Duration::from_secs(5), stream.write_all(&body)).await;
        let head = answer_head(&mut stream, Duration::from_secs(5)).await;
        (stream, head)
    });
    let answered = join_all(uploads).await;
    let shed = answered
        .iter()
        .filter(|(_, head)| {
            // A shed upload is told when to come back.
            head.as_deref().is_some_and(|head| {
                head.starts_with("http/1.1 503 ") && head.contains("\r\nretry-after: 1\r\n")
            })
        })
        .count();
    let peak_kib = peak_rss_kib(pid);
    assert!(
        shed >= 250,
        "{shed} of 300 stalled uploads were shed with 503"
    );
    assert!(
        peak_kib < before_kib + 40 * 1024,
        "the edge grew from {before_kib} KiB to a peak of {peak_kib} KiB"
    );
    eprintln!(
        "stalled uploads: 300 × 256 KiB one byte short, {shed} shed with 503, edge RSS {} MiB → peak {} MiB",
        before_kib / 1024,
        peak_kib / 1024
    );
    drop(answered);
    // Once the attack is over, deliveries are read again.
    let (status, _) = stack
        .http
        .send(
            "POST",
            &format!("http://{addr}/stripe/webhook"),
            None,
            &[(
                "stripe-signature",
                &format!("t={},v1={}", now_unix(), "0".repeat(64)),
            )],
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(status, 400, "a small forged delivery is refused, not shed");
}

/// Stripe-Signature headers built to multiply the HMAC work (thousands of
/// empty `v1=` entries over a 256 KiB body) are refused from the header
/// alone: fifty of them cost the edge well under a second of CPU.
#[tokio::test]
async fn signature_headers_built_to_amplify_the_hmac_cost_almost_nothing() {
    let stack = Stack::start(SandboxConfig::default()).await;
    let (edge, addr) = stack.spawn_edge_process(&[], None).await;
    let pid = edge.id().expect("edge pid");
    let cpu_before = cpu_secs(pid);

    let header = format!(
        "t={},{}v1={}",
        now_unix(),
        "v1=,".repeat(5_000),
        "0".repeat(64)
    );
    let body = vec![b' '; 256 * 1024 - 1];
    let url = format!("http://{addr}/stripe/webhook");
    let headers = [("stripe-signature", header.as_str())];
    let attacks = (0..50).map(|_| {
        stack
            .http
            .try_send("POST", &url, None, &headers, body.clone())
    });
    let answers = join_all(attacks).await;
    let cpu_used = cpu_secs(pid) - cpu_before;
    // Refused from the header alone: a 400, or, when the edge closes the
    // connection before the client has finished sending the unread body,
    // an error on the client's side.
    let mut refused_with_400 = 0;
    for answer in &answers {
        let Ok((status, problem)) = answer else {
            continue;
        };
        assert_eq!(*status, 400, "{problem}");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("longer than 2048 bytes"),
            "{problem}"
        );
        refused_with_400 += 1;
    }
    assert!(refused_with_400 > 0, "{answers:?}");
    assert!(cpu_used < 2.0, "50 requests took {cpu_used:.2} s of CPU");
    eprintln!(
        "signature amplification: 50 × (20 KB header, 256 KiB body): {cpu_used:.2} s of edge CPU"
    );
    // A 400 KB header, past the server's own 32 KiB limit, is refused
    // before any handler: 431, or the connection closed while it is sent.
    let huge = format!("t={},{}", now_unix(), "v1=,".repeat(100_000));
    let answer = stack
        .http
        .try_send(
            "POST",
            &url,
            None,
            &[("stripe-signature", huge.as_str())],
            b"{}".to_vec(),
        )
        .await;
    assert!(matches!(answer, Ok((431, _)) | Err(_)), "{answer:?}");
    let answered = healthz(addr).await;
    assert!(matches!(answered, Ok((200, _))), "{answered:?}");
}

/// payments-grpc's health `Watch` and reflection need no token: together
/// they get 64 stream places, the rest are refused RESOURCE_EXHAUSTED at
/// once; health `Check` is still answered; their messages are capped at
/// 4 KiB (the 4 MB default let a client make the server buffer megabytes).
/// A client refused more than 64 times on one connection is disconnected
/// (h2's limit on streams the server had to reset).
#[tokio::test]
async fn unauthenticated_grpc_streams_and_messages_are_bounded() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let stack = Stack::start_with_grpc_process(SandboxConfig::default()).await;
    stack.wait_ready().await;
    let pid = stack.grpc_pid().expect("payments-grpc process");
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", stack.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let health = HealthClient::new(channel);
    let request = || HealthCheckRequest {
        service: String::new(),
    };

    let mut watching = Vec::new();
    let mut refused = 0;
    // 100 here: h2 closes a connection after 64 streams it had to reset,
    // and each refused Watch is one (its request was not read).
    for _ in 0..100 {
        match health.clone().watch(request()).await {
            Ok(stream) => watching.push(stream.into_inner()),
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
                refused += 1;
            }
        }
    }
    assert_eq!((watching.len(), refused), (64, 36));
    let peak_kib = peak_rss_kib(pid);
    eprintln!(
        "health watch flood: 100 Watch calls, 64 held, 36 refused; payments-grpc peak RSS {} MiB",
        peak_kib / 1024
    );
    let status = health
        .clone()
        .check(request())
        .await
        .unwrap()
        .into_inner()
        .status();
    assert_eq!(status, ServingStatus::Serving);

    let oversized = HealthCheckRequest {
        service: "x".repeat(8 * 1024),
    };
    let status = health.clone().check(oversized).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");

    // Places come back when streams end.
    drop(watching);
    let deadline = Instant::now() + Duration::from_secs(5);
    while health.clone().watch(request()).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "no Watch place came back within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Opens `GET /balance/stream` over HTTP/1.1 from `source` (a loopback
/// address of its own) with `token`; the connection and the head of the
/// answer, lower-cased.
async fn open_stream(
    edge: SocketAddr,
    source: std::net::Ipv4Addr,
    token: &str,
) -> (TcpStream, Option<String>) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((source, 0)))
        .expect("bind a loopback source address");
    let mut stream = socket.connect(edge).await.expect("connect");
    let head = format!(
        "GET /balance/stream HTTP/1.1\r\nHost: edge\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    let answer = answer_head(&mut stream, Duration::from_secs(10)).await;
    (stream, answer)
}

fn status_of(head: &Option<String>) -> Option<&str> {
    head.as_deref()?.get(9..12)
}

/// 1,030 balance streams against an edge with the default limits (1,024
/// connections, 768 streams, 128 per address, 5 per user): one address gets
/// its 128 and then 429; from nine other addresses, streams past the budget
/// are answered 503 `overloaded` with `Retry-After` at once; with every
/// stream place taken, `/healthz`, a signed webhook and a balance read are
/// each answered within a second, and the edge's memory stays bounded.
#[tokio::test]
async fn streams_past_the_budget_are_shed_and_the_edge_keeps_answering() {
    use payments_tests::stack::WEBHOOK_SECRET;
    use std::net::Ipv4Addr;

    let stack = Stack::start(SandboxConfig::default()).await;
    let (edge, addr) = stack.spawn_edge_process(&[], None).await;
    let pid = edge.id().expect("edge pid");
    let before_kib = rss_kib(pid);

    // One address, 26 users × 5 streams: 128 open, then 429.
    let crowded = Ipv4Addr::new(127, 0, 0, 20);
    let tokens: Vec<String> = (0..26)
        .map(|n| stack.token(&format!("crowd-{n}")))
        .collect();
    let mut held = Vec::new();
    let mut too_many = 0;
    for n in 0..130 {
        let (stream, head) = open_stream(addr, crowded, &tokens[n / 5]).await;
        match status_of(&head) {
            Some("200") => held.push(stream),
            Some("429") => {
                assert!(head.as_deref().unwrap().contains("too-many-streams"));
                too_many += 1;
            }
            other => panic!("stream {n} from one address: {other:?} {head:?}"),
        }
    }
    assert_eq!((held.len(), too_many), (128, 2));

    // Nine more addresses, 100 streams each (20 users × 5): 640 places left.
    let tokens: Vec<String> = (0..180)
        .map(|n| stack.token(&format!("flood-{n}")))
        .collect();
    let flood = (0..900).map(|n| {
        let source = Ipv4Addr::new(127, 0, 0, 2 + (n / 100) as u8);
        open_stream(addr, source, &tokens[n / 5])
    });
    let started = Instant::now();
    let answered = join_all(flood).await;
    let opened_in = started.elapsed();
    let mut shed = 0;
    for (stream, head) in answered {
        match status_of(&head) {
            Some("200") => held.push(stream),
            Some("503") => {
                let head = head.unwrap();
                assert!(head.contains("\r\nretry-after: 1\r\n"), "{head}");
                assert!(head.contains("application/problem+json"), "{head}");
                // Its connection is given back, not kept alive holding a place.
                assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
                shed += 1;
            }
            other => panic!("a flood stream: {other:?} {head:?}"),
        }
    }
    assert_eq!((held.len(), shed), (768, 260));

    // Every stream place is taken; the rest of the edge is not.
    let quick = Duration::from_secs(1);
    let health = timeout(quick, healthz(addr)).await;
    assert!(matches!(health, Ok(Ok((200, _)))), "/healthz: {health:?}");
    let body = br#"{"id":"evt_during_streams","object":"event","type":"customer.created","data":{"object":{"id":"cus_1","object":"customer"}}}"#;
    let signature = stripe_sandbox::signer::signature_header(WEBHOOK_SECRET, now_unix(), body);
    let (client, webhook_url) = (HttpClient::new(), format!("http://{addr}/stripe/webhook"));
    let headers = [("stripe-signature", signature.as_str())];
    let webhook = client.try_send("POST", &webhook_url, None, &headers, body.to_vec());
    let webhook = timeout(quick, webhook).await;
    assert!(matches!(webhook, Ok(Ok((200, _)))), "webhook: {webhook:?}");
    let token = stack.token("reader");
    let balance_url = format!("http://{addr}/balance");
    let balance = client.try_send("GET", &balance_url, Some(&token), &[], Vec::new());
    let balance = timeout(quick, balance).await;
    assert!(matches!(balance, Ok(Ok((200, _)))), "balance: {balance:?}");

    let peak_kib = peak_rss_kib(pid);
    assert!(
        peak_kib < before_kib + 64 * 1024,
        "the edge grew from {before_kib} KiB to a peak of {peak_kib} KiB"
    );
    eprintln!(
        "stream flood: 1,030 streams from 10 addresses, 768 held, 2 refused 429 (one address), \
         260 shed 503 in {opened_in:?}; /healthz, a signed webhook and GET /balance each under 1 s; \
         edge RSS {} MiB → peak {} MiB",
        before_kib / 1024,
        peak_kib / 1024
    );
}
