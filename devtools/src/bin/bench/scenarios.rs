//! The scenarios through our servers: REST and gRPC balances, webhooks, creates.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::ensure;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use edge_gateway::testing::stripe_signature;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use payments_devtools::local::{INTERNAL_TOKEN, WEBHOOK_SECRET};
use payments_proto::GetBalanceRequest;
use payments_proto::payments_service_client::PaymentsServiceClient;
use serde_json::json;
use service_runtime::now_unix;
use stripe_sandbox::stripe_event;

use crate::data::{balances, check_ledger};
use crate::fast_stripe::{amount_of, paid_intent_id, user_of};
use crate::load;
use crate::load::{Figures, cpu_seconds};
use crate::pgbench::seed_payments;
use crate::spends::grpc_channels;
use crate::wire;
use crate::world::{World, durations};

/// Ok for a 200 answer; the status and body otherwise.
pub(crate) async fn expect_ok(
    http: &wire::Http1,
    worker: usize,
    request: &[u8],
) -> Result<(), String> {
    match http.send(worker, request).await? {
        (200, _) => Ok(()),
        (status, body) => Err(format!("HTTP {status} {}", String::from_utf8_lossy(&body))),
    }
}

pub(crate) async fn http_call(
    http: &Client<HttpConnector, Full<Bytes>>,
    request: hyper::Request<Full<Bytes>>,
) -> Result<(u16, Bytes), String> {
    let response = http.request(request).await.map_err(|err| err.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|err| err.to_string())?
        .to_bytes();
    Ok((status, body))
}

/// Scenario 1: `GET /balance` with valid tokens over the users.
pub(crate) async fn balance_over_rest(world: &World) -> Figures {
    rest_balances(world, "GET /balance (REST)").await
}

/// How often the metrics scenario scrapes both `/metrics`: Prometheus's
/// usual interval is 15 to 60 s, so this is 15 to 60 times the usual cost.
const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);

/// What the metrics endpoints cost the REST path, two ways.
///
/// Scenario 1 four times, the middle two while a scraper reads both
/// servers' `/metrics` every second (A B B A, so that a drift of the
/// machine over the runs weighs on both sides alike); every scrape must
/// answer 200 with the metrics in it. On a shared two-core machine runs
/// differ by more than a scrape costs, so it also measures the servers'
/// CPU time: per REST request (over the unscraped runs) and per scrape
/// (over [`SCRAPES_MEASURED`] scrapes of each server with no load).
pub(crate) async fn metrics_cost(world: &World) -> anyhow::Result<(Vec<Figures>, MetricsCost)> {
    let http: Client<HttpConnector, Full<Bytes>> =
        Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let scrapes = [
        Scrape {
            url: format!("http://{}/metrics", world.edge_metrics_addr),
            expected: "edge_http_requests_total",
            pid: world.edge_pid,
        },
        Scrape {
            url: format!("http://{}/metrics", world.grpc_metrics_addr),
            expected: "payments_paid_not_credited",
            pid: world.grpc_pid,
        },
    ];
    let servers_cpu = || cpu_seconds(world.edge_pid) + cpu_seconds(world.grpc_pid);
    let plain_label = "GET /balance, no scraper";
    let scraped_label = format!(
        "GET /balance, /metrics every {} s",
        SCRAPE_INTERVAL.as_secs()
    );
    let before = servers_cpu();
    let mut runs = vec![rest_balances(world, plain_label).await];
    let mut plain_cpu = servers_cpu() - before;
    let scraped = Arc::new(AtomicU64::new(0));
    let scraper = tokio::spawn(scrape_until_failure(
        http.clone(),
        scrapes.clone(),
        scraped.clone(),
    ));
    runs.push(rest_balances(world, &scraped_label).await);
    runs.push(rest_balances(world, &scraped_label).await);
    if scraper.is_finished() {
        anyhow::bail!("a scrape failed: {}", scraper.await?);
    }
    scraper.abort();
    let before = servers_cpu();
    runs.push(rest_balances(world, plain_label).await);
    plain_cpu += servers_cpu() - before;
    let scraped = scraped.load(Ordering::Relaxed);
    ensure!(scraped >= 2, "only {scraped} scrapes during the scenario");

    let mut cpu_per_scrape = Vec::new();
    let mut wall_per_scrape = Vec::new();
    for scrape in &scrapes {
        let (cpu_before, started) = (cpu_seconds(scrape.pid), Instant::now());
        for _ in 0..SCRAPES_MEASURED {
            if let Err(failure) = scrape.once(&http).await {
                anyhow::bail!("a scrape failed: {failure}");
            }
        }
        cpu_per_scrape.push((cpu_seconds(scrape.pid) - cpu_before) / SCRAPES_MEASURED as f64);
        wall_per_scrape.push(started.elapsed().as_secs_f64() / SCRAPES_MEASURED as f64);
    }
    let rate = |figures: &[&Figures]| {
        figures.iter().map(|f| f.requests_per_sec).sum::<f64>() / figures.len() as f64
    };
    let plain_rate = rate(&[&runs[0], &runs[3]]);
    let cost = MetricsCost {
        throughput_change: (rate(&[&runs[1], &runs[2]]) - plain_rate) / plain_rate,
        cpu_per_request: plain_cpu / (runs[0].requests + runs[3].requests) as f64,
        plain_rate,
        cpu_per_scrape: [cpu_per_scrape[0], cpu_per_scrape[1]],
        wall_per_scrape: [wall_per_scrape[0], wall_per_scrape[1]],
    };
    Ok((runs, cost))
}

/// Scrapes of each server measured for their CPU time, one after another.
const SCRAPES_MEASURED: u32 = 500;

/// The figures of [`metrics_cost`], in seconds and fractions.
pub(crate) struct MetricsCost {
    /// REST throughput while scraped, relative to without (-0.01: 1 % less).
    pub(crate) throughput_change: f64,
    /// Both servers' CPU time per REST request, unscraped.
    pub(crate) cpu_per_request: f64,
    /// REST requests per second, unscraped.
    pub(crate) plain_rate: f64,
    /// CPU time of one scrape: edge-gateway's, payments-grpc's.
    pub(crate) cpu_per_scrape: [f64; 2],
    /// Time one scrape takes to answer: edge-gateway's, payments-grpc's.
    pub(crate) wall_per_scrape: [f64; 2],
}

impl MetricsCost {
    /// The servers' CPU share one scrape of each per [`SCRAPE_INTERVAL`]
    /// takes at the unscraped REST throughput.
    pub(crate) fn cpu_share(&self) -> f64 {
        let scraping =
            (self.cpu_per_scrape[0] + self.cpu_per_scrape[1]) / SCRAPE_INTERVAL.as_secs_f64();
        scraping / (scraping + self.cpu_per_request * self.plain_rate)
    }
}

/// One server's `/metrics`, and a series its answer must hold.
#[derive(Clone)]
struct Scrape {
    url: String,
    expected: &'static str,
    pid: u32,
}

impl Scrape {
    async fn once(&self, http: &Client<HttpConnector, Full<Bytes>>) -> Result<(), String> {
        let request = hyper::Request::get(self.url.as_str())
            .body(Full::new(Bytes::new()))
            .map_err(|err| err.to_string())?;
        match http_call(http, request).await {
            Ok((200, body)) if String::from_utf8_lossy(&body).contains(self.expected) => Ok(()),
            Ok((status, _)) => Err(format!(
                "{} answered {status} without {}",
                self.url, self.expected
            )),
            Err(err) => Err(format!("{}: {err}", self.url)),
        }
    }
}

/// Scrapes each server every [`SCRAPE_INTERVAL`] until one answers other
/// than 200 with its series in it; returns what went wrong.
async fn scrape_until_failure(
    http: Client<HttpConnector, Full<Bytes>>,
    scrapes: [Scrape; 2],
    done: Arc<AtomicU64>,
) -> String {
    let mut every = tokio::time::interval(SCRAPE_INTERVAL);
    loop {
        every.tick().await;
        for scrape in &scrapes {
            if let Err(failure) = scrape.once(&http).await {
                return failure;
            }
            done.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn rest_balances(world: &World, label: &str) -> Figures {
    let (warmup, duration) = durations(world);
    let http = Arc::new(wire::Http1::new(world.edge_addr, world.args.connections));
    let requests: Arc<Vec<Vec<u8>>> = Arc::new(
        world
            .tokens
            .iter()
            .map(|token| {
                let authorization = format!("Bearer {token}");
                wire::request("GET", "/balance", &[("authorization", &authorization)], b"")
            })
            .collect(),
    );
    load::run(
        label,
        world.args.connections,
        warmup,
        duration,
        move |worker, n| {
            let (http, requests) = (http.clone(), requests.clone());
            async move {
                let request =
                    &requests[((worker as u64 * 7919 + n) % requests.len() as u64) as usize];
                Some(expect_ok(&http, worker, request).await)
            }
        },
    )
    .await
}

/// Scenario 2: gRPC `GetBalance` directly.
pub(crate) async fn balance_over_grpc(world: &World) -> anyhow::Result<Figures> {
    let (warmup, duration) = durations(world);
    let channels = grpc_channels(world).await?;
    let users = world.args.users;
    let authorization: tonic::metadata::MetadataValue<_> =
        format!("Bearer {INTERNAL_TOKEN}").parse()?;
    Ok(load::run(
        "GetBalance (gRPC)",
        world.args.connections,
        warmup,
        duration,
        move |worker, n| {
            let mut client = PaymentsServiceClient::new(channels[worker % channels.len()].clone());
            let mut request = tonic::Request::new(GetBalanceRequest {
                user_id: format!("bench-user-{}", (worker as u64 * 7919 + n) % users),
            });
            request
                .metadata_mut()
                .insert("authorization", authorization.clone());
            async move {
                Some(
                    client
                        .get_balance(request)
                        .await
                        .map(|_| ())
                        .map_err(|status| status.to_string()),
                )
            }
        },
    )
    .await)
}

/// Scenario 3: distinct signed `payment_intent.succeeded` events for paid
/// intents, then every one of them again; correctness checked after each pass.
pub(crate) async fn webhooks(world: &World, round: &str) -> anyhow::Result<(Figures, Figures)> {
    let (warmup, duration) = durations(world);
    let capacity = if world.args.smoke { 20_000 } else { 300_000 };
    let users = world.args.users;
    let mut conn = AsyncPgConnection::establish(&world.database_url).await?;
    seed_payments(
        &mut conn,
        &format!(
            "SELECT 'pi_bench_{round}_' || i AS stripe_intent_id, 'bench-user-' || (i % {users}) AS user_id,
                    (ARRAY[500, 1000, 2000, 5000])[i % 4 + 1] AS amount_cents, 0 AS amount_received_cents,
                    'requires_payment_method' AS status
               FROM generate_series(0, {capacity} - 1) AS i"
        ),
    )
    .await?;
    let before = balances(&mut conn).await?;

    let next = Arc::new(AtomicU64::new(0));
    let http = Arc::new(wire::Http1::new(world.edge_addr, world.args.connections));
    let send = {
        let round = round.to_owned();
        move |worker: usize, index: u64, expected: &'static str| {
            let body = event_body(&round, index, users);
            let signature = stripe_signature(WEBHOOK_SECRET, now_unix(), body.as_bytes());
            let request = wire::request(
                "POST",
                "/stripe/webhook",
                &[
                    ("content-type", "application/json"),
                    ("stripe-signature", &signature),
                ],
                body.as_bytes(),
            );
            let http = http.clone();
            async move {
                match http.send(worker, &request).await {
                    Ok((200, body))
                        if body
                            .windows(expected.len())
                            .any(|w| w == expected.as_bytes()) =>
                    {
                        Ok(())
                    }
                    Ok((status, body)) => {
                        Err(format!("HTTP {status} {}", String::from_utf8_lossy(&body)))
                    }
                    Err(err) => Err(err),
                }
            }
        }
    };
    let first = {
        let (next, send) = (next.clone(), send.clone());
        load::run(
            "POST /stripe/webhook (new events)",
            world.args.connections,
            warmup,
            duration,
            move |worker, _| {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let send = send.clone();
                async move {
                    if index >= capacity {
                        return None;
                    }
                    Some(send(worker, index, "\"applied\"").await)
                }
            },
        )
        .await
    };
    let sent = AtomicU64::load(&next, Ordering::Relaxed).min(capacity);
    ensure!(
        sent < capacity,
        "every prepared intent was used; raise the capacity"
    );
    let mut expected = before.clone();
    for index in 0..sent {
        *expected.entry(user_of(index, users)).or_insert(0) += amount_of(index);
    }
    let after_first = balances(&mut conn).await?;
    ensure!(
        after_first == expected,
        "after the first pass, balances differ from the paid intents"
    );
    check_ledger(&world.database_url).await?;
    println!(
        "    {round}: checked {sent} events, each balance = its paid intents, ledger sums equal"
    );

    let replayed = Arc::new(AtomicU64::new(0));
    let replay = {
        let replayed = replayed.clone();
        load::run(
            "POST /stripe/webhook (replays)",
            world.args.connections,
            Duration::ZERO,
            duration,
            move |worker, _| {
                let index = replayed.fetch_add(1, Ordering::Relaxed);
                let send = send.clone();
                async move {
                    if index >= sent {
                        return None;
                    }
                    Some(send(worker, index, "\"duplicate\"").await)
                }
            },
        )
        .await
    };
    let after_replay = balances(&mut conn).await?;
    ensure!(
        after_replay == expected,
        "a replayed event changed a balance"
    );
    println!(
        "    {round}: checked {} replays, all duplicates, balances unchanged",
        AtomicU64::load(&replayed, Ordering::Relaxed).min(sent)
    );
    Ok((first, replay))
}

/// A `payment_intent.succeeded` as Stripe sends it for one of our intents:
/// its metadata names the user, as ours always do.
pub(crate) fn event_body(round: &str, index: u64, users: u64) -> String {
    let intent = json!({
        "id": paid_intent_id(round, index), "object": "payment_intent", "amount": amount_of(index),
        "amount_received": amount_of(index), "currency": "usd", "status": "succeeded",
        "capture_method": "automatic_async", "confirmation_method": "automatic",
        "livemode": false, "payment_method_types": ["card"],
        "metadata": {"user_id": user_of(index, users), "created_by": "credits-topup"}
    });
    stripe_event(
        &format!("evt_bench_{round}_{index}"),
        "payment_intent.succeeded",
        &intent,
    )
    .to_string()
}

/// Scenario 4: `POST /payments/create-payment-intent` across the tiers.
pub(crate) async fn create_intents(world: &World) -> Figures {
    let (warmup, duration) = durations(world);
    let http = Arc::new(wire::Http1::new(world.edge_addr, world.args.connections));
    // One prepared request per user and tier, tier fastest.
    let requests: Arc<Vec<Vec<u8>>> = Arc::new(
        world
            .tokens
            .iter()
            .flat_map(|token| {
                let authorization = format!("Bearer {token}");
                [5, 10, 20, 50].map(|tier| {
                    wire::request(
                        "POST",
                        "/payments/create-payment-intent",
                        &[
                            ("authorization", &authorization),
                            ("content-type", "application/json"),
                        ],
                        format!("{{\"amount_usd\": {tier}}}").as_bytes(),
                    )
                })
            })
            .collect(),
    );
    load::run(
        "POST /payments/create-payment-intent",
        world.args.connections,
        warmup,
        duration,
        move |worker, n| {
            let (http, requests) = (http.clone(), requests.clone());
            async move {
                let user = (worker as u64 * 7919 + n) % (requests.len() as u64 / 4);
                let request = &requests[(user * 4 + n % 4) as usize];
                Some(expect_ok(&http, worker, request).await)
            }
        },
    )
    .await
}
