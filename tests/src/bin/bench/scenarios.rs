//! The scenarios through our servers: REST and gRPC balances, webhooks, creates.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::ensure;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use edge_gateway::testing::stripe_signature;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use payments_proto::GetBalanceRequest;
use payments_proto::payments_service_client::PaymentsServiceClient;
use payments_tests::stack::{INTERNAL_TOKEN, WEBHOOK_SECRET, now_unix};
use serde_json::json;
use stripe_sandbox::stripe_event;

use crate::data::{balances, check_ledger};
use crate::fast_stripe::{amount_of, paid_intent_id, user_of};
use crate::load;
use crate::load::Figures;
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
        "GET /balance (REST)",
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
