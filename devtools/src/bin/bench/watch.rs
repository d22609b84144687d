//! The watch scenario: many `GET /balance/stream` streams open on one edge,
//! its memory with them open, and how long a spend takes to reach its
//! watcher's stream.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use edge_gateway::testing::id_token;
use payments_devtools::local::{INTERNAL_TOKEN, PROJECT_ID};
use payments_proto::SpendCreditsRequest;
use payments_proto::payments_service_client::PaymentsServiceClient;
use service_runtime::now_unix;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::load::{Figures, rss_kib, summarize};
use crate::spends::grpc_channels;
use crate::wire;
use crate::world::World;

/// Streams opened at once while connecting them all.
const OPENING_AT_ONCE: usize = 200;
/// Streams on one HTTP/2 connection (the edge allows 64).
const STREAMS_PER_H2_CONNECTION: usize = 64;

/// An open stream: its own HTTP/1.1 connection, or a stream of a shared
/// HTTP/2 connection.
enum Watch {
    Http1(TcpStream),
    Http2(hyper::body::Incoming),
}

type H2Sender = hyper::client::conn::http2::SendRequest<http_body_util::Empty<hyper::body::Bytes>>;

/// HTTP/2 connections to the edge (cleartext, prior knowledge), each
/// carrying up to [`STREAMS_PER_H2_CONNECTION`] streams.
async fn h2_connections(
    addr: std::net::SocketAddr,
    streams: usize,
) -> anyhow::Result<Vec<H2Sender>> {
    let mut senders = Vec::new();
    for _ in 0..streams.div_ceil(STREAMS_PER_H2_CONNECTION) {
        let tcp = TcpStream::connect(addr).await?;
        let (sender, connection) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await?;
        tokio::spawn(connection);
        senders.push(sender);
    }
    Ok(senders)
}

/// Opens `streams` streams, one per watch user, each read until its first
/// event; measures the edge's RSS; then spends 1 cent from sampled
/// watched users one at a time and times each until its event arrives.
pub(crate) async fn watchers(
    world: &World,
    streams: usize,
    samples: usize,
    http2: bool,
) -> anyhow::Result<Figures> {
    let users: Vec<String> = (0..streams).map(|n| format!("bench-watch-{n}")).collect();
    fund(&world.database_url, streams).await?;
    let rss_before = rss_kib(world.edge_pid).0;
    // Each reader reports the moment an event comes, after the first.
    let (arrivals, mut arrived) = mpsc::unbounded_channel::<(usize, Instant)>();
    let opened_at = Instant::now();
    let h2 = match http2 {
        true => Some(h2_connections(world.edge_addr, streams).await?),
        false => None,
    };
    let mut readers = tokio::task::JoinSet::new();
    let mut open = 0;
    for batch in users.chunks(OPENING_AT_ONCE).enumerate() {
        let (offset, batch) = batch;
        let mut opening = tokio::task::JoinSet::new();
        for (n, user) in batch.iter().enumerate() {
            let token = id_token(PROJECT_ID, user, now_unix());
            let addr = world.edge_addr;
            let index = offset * OPENING_AT_ONCE + n;
            let sender = h2
                .as_ref()
                .map(|senders| senders[index / STREAMS_PER_H2_CONNECTION].clone());
            opening.spawn(async move {
                let stream = match sender {
                    Some(sender) => open_h2_stream(sender, &token).await,
                    None => open_stream(addr, &token).await,
                };
                (index, stream)
            });
        }
        while let Some(done) = opening.join_next().await {
            let (n, stream) = done?;
            let stream = stream.with_context(|| format!("stream {n}"))?;
            open += 1;
            let arrivals = arrivals.clone();
            readers.spawn(read_events(n, stream, arrivals));
        }
    }
    let opening_secs = opened_at.elapsed().as_secs_f64();
    let (rss, peak) = rss_kib(world.edge_pid);
    println!(
        "    {}: {open} streams open ({}) in {opening_secs:.1} s; edge RSS {:.1} MiB (was {:.1}, peak {:.1})",
        world.label,
        match &h2 {
            Some(senders) => format!("HTTP/2, {} connections", senders.len()),
            None => "HTTP/1.1, a connection each".into(),
        },
        rss as f64 / 1024.0,
        rss_before as f64 / 1024.0,
        peak as f64 / 1024.0
    );

    let channels = grpc_channels(world).await?;
    let mut client = PaymentsServiceClient::new(channels[0].clone());
    let mut latencies = Vec::with_capacity(samples);
    let mut errors = 0;
    let started = Instant::now();
    for sample in 0..samples {
        let n = (sample * 7919) % streams;
        let mut request = tonic::Request::new(SpendCreditsRequest {
            user_id: users[n].clone(),
            amount_cents: 1,
            idempotency_key: format!("bench-watch-{}-{http2}-{sample}", world.label),
            reason: "bench".into(),
        });
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {INTERNAL_TOKEN}").parse()?);
        let sent = Instant::now();
        client.spend_credits(request).await?;
        // The event of this user's stream, within 5 s.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match tokio::time::timeout_at(deadline, arrived.recv()).await {
                Ok(Some((who, at))) if who == n => {
                    latencies.push(at.duration_since(sent).as_micros() as u32);
                    break;
                }
                Ok(Some(_)) => continue,
                _ => {
                    errors += 1;
                    break;
                }
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    readers.abort_all();
    let protocol = if h2.is_some() { "HTTP/2" } else { "HTTP/1.1" };
    let mut figures = summarize(
        &format!("spend → its SSE watcher ({open} {protocol} streams open)"),
        latencies,
        errors,
        seconds,
    );
    figures.rss_kib = vec![
        ("edge-gateway".into(), rss),
        ("edge-gateway peak".into(), peak),
        ("payments-grpc".into(), rss_kib(world.grpc_pid).0),
    ];
    ensure!(errors == 0, "{errors} spends never reached their watcher");
    Ok(figures)
}

/// Gives each watch user a balance to spend from, as an adjustment would.
async fn fund(database_url: &str, users: usize) -> anyhow::Result<()> {
    let mut conn = AsyncPgConnection::establish(database_url).await?;
    for sql in [
        format!(
            "INSERT INTO balances (user_id, balance_cents, currency)
             SELECT 'bench-watch-' || i, 1000000, 'usd' FROM generate_series(0, {users} - 1) AS i
             ON CONFLICT (user_id) DO NOTHING"
        ),
        format!(
            "INSERT INTO ledger_entries (user_id, amount_cents, balance_after_cents, currency, kind, idempotency_key, reason, actor)
             SELECT 'bench-watch-' || i, 1000000, 1000000, 'usd', 'adjustment', 'bench-watch-funds', 'bench funds', 'bench'
               FROM generate_series(0, {users} - 1) AS i
             ON CONFLICT DO NOTHING"
        ),
    ] {
        diesel::sql_query(sql).execute(&mut conn).await?;
    }
    Ok(())
}

/// A stream on a shared HTTP/2 connection, read up to the end of its first event.
async fn open_h2_stream(mut sender: H2Sender, token: &str) -> anyhow::Result<Watch> {
    use http_body_util::BodyExt;
    sender.ready().await?;
    let request = hyper::Request::get("/balance/stream")
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Empty::new())?;
    let response = sender.send_request(request).await?;
    ensure!(response.status() == 200, "{}", response.status());
    let mut body = response.into_body();
    let mut seen = Vec::new();
    while !first_event(&seen) {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await?
            .context("ended before the first event")??;
        if let Some(data) = frame.data_ref() {
            seen.extend_from_slice(data);
        }
    }
    Ok(Watch::Http2(body))
}

/// A stream opened and read up to the end of its first event.
async fn open_stream(addr: std::net::SocketAddr, token: &str) -> anyhow::Result<Watch> {
    let mut stream = TcpStream::connect(addr).await?;
    let authorization = format!("Bearer {token}");
    let request = wire::request(
        "GET",
        "/balance/stream",
        &[("authorization", &authorization)],
        b"",
    );
    stream.write_all(&request).await?;
    let mut seen = Vec::new();
    let mut buffer = [0u8; 2048];
    while !first_event(&seen) {
        let read =
            tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer)).await??;
        ensure!(
            read > 0,
            "closed before the first event: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buffer[..read]);
    }
    ensure!(
        seen.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    Ok(Watch::Http1(stream))
}

/// Whether the first `event: balance` has been read whole.
fn first_event(seen: &[u8]) -> bool {
    let text = String::from_utf8_lossy(seen);
    text.find("event: balance")
        .is_some_and(|at| text[at..].contains("\n\n"))
}

/// Reports each later event of stream `n` (heartbeats are comments, not events).
async fn read_events(n: usize, watch: Watch, arrivals: mpsc::UnboundedSender<(usize, Instant)>) {
    let is_event = |chunk: &[u8]| chunk.windows(14).any(|w| w == b"event: balance");
    match watch {
        Watch::Http1(mut stream) => {
            let mut buffer = [0u8; 2048];
            loop {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(read) if is_event(&buffer[..read]) => {
                        let _ = arrivals.send((n, Instant::now()));
                    }
                    Ok(_) => {}
                }
            }
        }
        Watch::Http2(mut body) => {
            use http_body_util::BodyExt;
            while let Some(Ok(frame)) = body.frame().await {
                if frame.data_ref().is_some_and(|data| is_event(data)) {
                    let _ = arrivals.send((n, Instant::now()));
                }
            }
        }
    }
}
