//! Webhook delivery: at least once, retried with backoff, optionally
//! duplicated and shuffled, each attempt signed afresh.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use service_runtime::now_unix;
use tokio::sync::mpsc;

use crate::state::{Shared, Shuffler};
use crate::{SandboxConfig, WebhookTarget, signer};

pub(crate) async fn deliver_events(
    shared: Arc<Shared>,
    mut events: mpsc::UnboundedReceiver<Value>,
) {
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut shuffler = Shuffler(shared.config.lock().unwrap().seed | 1);
    let mut held = shared.held.subscribe();
    while let Some(first) = events.recv().await {
        // Held webhooks stay queued until released.
        let _ = held.wait_for(|held| !*held).await;
        let config = shared.config.lock().unwrap().clone();
        let mut batch = vec![first];
        if config.shuffle_events {
            let deadline = tokio::time::Instant::now() + config.batch_window;
            while let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.recv()).await {
                batch.push(event);
            }
        }
        while let Ok(event) = events.try_recv() {
            batch.push(event);
        }
        if config.duplicate_events {
            shared.pending.send_modify(|n| *n += batch.len() as u64);
            batch = batch
                .into_iter()
                .flat_map(|event| [event.clone(), event])
                .collect();
        }
        if config.shuffle_events {
            shuffler.shuffle(&mut batch);
        }
        for event in batch {
            let Some(target) = config.webhook.clone() else {
                shared.pending.send_modify(|n| *n -= 1);
                continue;
            };
            shared.stats.send_modify(|s| s.deliveries += 1);
            tokio::spawn(deliver(
                shared.clone(),
                client.clone(),
                target,
                config.clone(),
                event,
            ));
        }
    }
}

/// Sends one event until a 2xx answer, backing off like Stripe (faster).
async fn deliver(
    shared: Arc<Shared>,
    client: Client<HttpConnector, Full<Bytes>>,
    target: WebhookTarget,
    config: SandboxConfig,
    event: Value,
) {
    let body = Bytes::from(serde_json::to_vec(&event).expect("event JSON"));
    let started = tokio::time::Instant::now();
    let mut backoff = config.initial_backoff;
    loop {
        let signature = signer::signature_header(&target.secret, now_unix(), &body);
        let request = hyper::Request::post(&target.url)
            .header("content-type", "application/json; charset=utf-8")
            .header("stripe-signature", signature)
            .header(
                "user-agent",
                "Stripe/1.0 (+https://stripe.com/docs/webhooks) sandbox",
            )
            .body(Full::new(body.clone()))
            .expect("request");
        shared.stats.send_modify(|s| s.attempts += 1);
        let outcome = tokio::time::timeout(Duration::from_secs(10), client.request(request)).await;
        let delivered = matches!(&outcome, Ok(Ok(response)) if response.status().is_success());
        if delivered {
            shared.stats.send_modify(|s| s.delivered += 1);
            break;
        }
        let reason = match outcome {
            Ok(Ok(response)) => format!("HTTP {}", response.status()),
            Ok(Err(err)) => err.to_string(),
            Err(_) => "timed out".to_owned(),
        };
        shared.stats.send_modify(|s| s.failed_attempts += 1);
        if started.elapsed() >= config.give_up_after {
            tracing::warn!(event = %event["id"], %reason, "sandbox gave up delivering");
            shared.stats.send_modify(|s| s.given_up += 1);
            break;
        }
        tracing::debug!(event = %event["id"], %reason, ?backoff, "delivery failed; retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(config.max_backoff);
    }
    shared.pending.send_modify(|n| *n -= 1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shuffle_is_a_permutation() {
        let mut items: Vec<u32> = (0..50).collect();
        Shuffler(7).shuffle(&mut items);
        assert_ne!(items, (0..50).collect::<Vec<_>>());
        items.sort_unstable();
        assert_eq!(items, (0..50).collect::<Vec<_>>());
    }
}
