use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;

use super::http::{Call, Method, PooledStripeClient};
use super::wire::{self, ErrorBody};
use super::{
    CREATED_BY_MARKER, EventsPage, EventsPosition, EventsQuery, GatewayError, NewIntent,
    PaymentGateway, StripeDispute, StripeIntent, StripeRefund, is_intent_id, is_object_id,
};
use crate::metrics::{CoreMetrics, StripeOperation};

/// How to reach Stripe.
#[derive(Debug, Clone)]
pub struct StripeConfig {
    pub secret_key: SecretString,
    /// `https://api.stripe.com`, or a local stand-in.
    pub api_base: String,
    /// Per attempt.
    pub timeout: Duration,
    /// The whole call, retries and pauses included: no attempt starts or
    /// runs past it, so a hanging Stripe is retried within the caller's own
    /// deadline instead of using it up.
    pub deadline: Duration,
    /// Attempts per call, the first included; retries reuse the idempotency key.
    pub max_attempts: u32,
    /// Before the first retry; doubled before each next one.
    pub retry_backoff: Duration,
}

/// The real Stripe API client: the few requests the service makes, over a
/// pooled hyper + rustls client, each answer read into the fields used
/// (`wire`).
#[derive(Clone, Debug)]
pub struct StripeGateway {
    client: PooledStripeClient,
    metrics: CoreMetrics,
    deadline: Duration,
    max_attempts: u32,
    retry_backoff: Duration,
}

/// Pauses between attempts double up to this.
pub const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(2);

impl StripeGateway {
    pub fn new(config: &StripeConfig) -> Result<Self, GatewayError> {
        let client = PooledStripeClient::new(
            config.secret_key.expose_secret(),
            &config.api_base,
            config.timeout,
        )
        .map_err(|err| GatewayError::Rejected(format!("invalid Stripe configuration: {err}")))?;
        Ok(Self {
            client,
            metrics: CoreMetrics::default(),
            deadline: config.deadline,
            max_attempts: config.max_attempts.max(1),
            retry_backoff: config.retry_backoff,
        })
    }

    /// Counts its calls into `metrics`.
    pub fn with_metrics(mut self, metrics: CoreMetrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Sends `call` until it succeeds, fails for good, or attempts run
    /// out, and reads the answer as `T`; counted and timed as one call of
    /// `operation`.
    async fn send_with_retries<T: DeserializeOwned>(
        &self,
        operation: StripeOperation,
        call: &Call<'_>,
    ) -> Result<T, GatewayError> {
        let started = std::time::Instant::now();
        let answer = self
            .send_until_done(operation, call)
            .await
            .and_then(|body| wire::decode(operation.as_str(), &body));
        let result = match &answer {
            Ok(_) => "ok",
            Err(GatewayError::Unavailable(_)) => "unavailable",
            Err(GatewayError::NotFound) => "not_found",
            Err(GatewayError::UnexpectedState(_)) => "unexpected_state",
            Err(GatewayError::IdempotencyConflict(_)) => "idempotency_conflict",
            Err(GatewayError::Rejected(_)) => "rejected",
            Err(GatewayError::Undecodable { operation, detail }) => {
                tracing::error!(operation, %detail, "Stripe's answer could not be read");
                "decode_error"
            }
        };
        self.metrics
            .stripe_call(operation, result, started.elapsed());
        answer
    }

    /// The body of the first success.
    async fn send_until_done(
        &self,
        operation: StripeOperation,
        call: &Call<'_>,
    ) -> Result<hyper::body::Bytes, GatewayError> {
        if let Some(key) = call.idempotency_key
            && (key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(GatewayError::Rejected(
                "an Idempotency-Key must be 1 to 255 visible ASCII characters".into(),
            ));
        }
        let deadline = tokio::time::Instant::now() + self.deadline;
        let mut backoff = self.retry_backoff.min(MAX_RETRY_BACKOFF);
        let mut attempt = 1;
        loop {
            let result = match tokio::time::timeout_at(deadline, self.client.send(call)).await {
                Ok(Ok((status, body))) if status.is_success() => return Ok(body),
                Ok(Ok((status, body))) => classify(status.as_u16(), &body),
                Ok(Err(transport)) => Failure::Transient(transport.0),
                Err(_) => Failure::Transient("the call's deadline passed".into()),
            };
            match result {
                Failure::Transient(reason)
                    if attempt < self.max_attempts
                        && tokio::time::Instant::now() + backoff < deadline =>
                {
                    tracing::warn!(attempt, %reason, "Stripe call failed; retrying");
                    self.metrics.stripe_retry(operation);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_RETRY_BACKOFF);
                    attempt += 1;
                }
                Failure::Transient(reason) => return Err(GatewayError::Unavailable(reason)),
                Failure::Final(err) => return Err(err),
            }
        }
    }
}

enum Failure {
    Transient(String),
    Final(GatewayError),
}

/// A failure Stripe answered: passing (409: a request with this key is
/// still in flight at Stripe; 429; 5xx) or final. A body that is not
/// Stripe's error (a proxy's or an outage's page) is passing.
fn classify(status: u16, body: &[u8]) -> Failure {
    let Ok(ErrorBody { error }) = serde_json::from_slice::<ErrorBody>(body) else {
        return Failure::Transient(format!(
            "HTTP {status} with a body that is not a Stripe error"
        ));
    };
    let code = error.code.unwrap_or_default();
    let message = error.message.unwrap_or_default();
    match (status, error.type_.as_deref()) {
        (409 | 429 | 500..=599, _) => {
            Failure::Transient(format!("HTTP {status} {code}: {message}"))
        }
        (404, _) => Failure::Final(GatewayError::NotFound),
        (400, _) if code == "payment_intent_unexpected_state" => {
            Failure::Final(GatewayError::UnexpectedState(message))
        }
        (_, Some("idempotency_error")) => {
            Failure::Final(GatewayError::IdempotencyConflict(message))
        }
        _ => Failure::Final(GatewayError::Rejected(format!(
            "HTTP {status} {code}: {message}"
        ))),
    }
}

impl StripeGateway {
    async fn intent(
        &self,
        operation: StripeOperation,
        call: &Call<'_>,
    ) -> Result<StripeIntent, GatewayError> {
        self.send_with_retries::<wire::Intent>(operation, call)
            .await?
            .into_stripe_intent(operation.as_str())
    }
}

impl PaymentGateway for StripeGateway {
    #[tracing::instrument(skip_all, fields(user_id = %intent.user_id, amount = intent.tier.cents().get()))]
    async fn create_intent(&self, intent: &NewIntent<'_>) -> Result<StripeIntent, GatewayError> {
        let call = Call {
            method: Method::Post,
            path: "/payment_intents".into(),
            params: vec![
                ("amount", intent.tier.cents().get().to_string()),
                ("currency", intent.currency.code().to_owned()),
                ("automatic_payment_methods[enabled]", "true".into()),
                ("metadata[user_id]", intent.user_id.as_str().to_owned()),
                ("metadata[created_by]", CREATED_BY_MARKER.to_owned()),
                ("metadata[deployment]", intent.deployment.to_owned()),
            ],
            idempotency_key: Some(intent.stripe_idempotency_key),
        };
        self.intent(StripeOperation::CreatePaymentIntent, &call)
            .await
    }

    #[tracing::instrument(skip_all, fields(intent_id = %intent_id))]
    async fn retrieve_intent(&self, intent_id: &str) -> Result<StripeIntent, GatewayError> {
        if !is_intent_id(intent_id) {
            return Err(GatewayError::NotFound);
        }
        let call = Call {
            method: Method::Get,
            path: format!("/payment_intents/{intent_id}"),
            params: Vec::new(),
            idempotency_key: None,
        };
        self.intent(StripeOperation::RetrievePaymentIntent, &call)
            .await
    }

    #[tracing::instrument(skip_all, fields(intent_id = %intent_id))]
    async fn list_refunds(&self, intent_id: &str) -> Result<Vec<StripeRefund>, GatewayError> {
        if !is_intent_id(intent_id) {
            return Err(GatewayError::NotFound);
        }
        let mut refunds = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut params = vec![
                ("payment_intent", intent_id.to_owned()),
                ("limit", "100".to_owned()),
            ];
            if let Some(after) = after.take() {
                params.push(("starting_after", after));
            }
            let call = Call {
                method: Method::Get,
                path: "/refunds".into(),
                params,
                idempotency_key: None,
            };
            let page: wire::List<wire::Refund> = self
                .send_with_retries(StripeOperation::ListRefunds, &call)
                .await?;
            let last = page.data.last().map(|refund| refund.id.clone());
            refunds.extend(page.data.into_iter().map(StripeRefund::from));
            match last {
                Some(last) if page.has_more && refunds.len() < MAX_REFUNDS_PER_INTENT => {
                    after = Some(last);
                }
                _ => return Ok(refunds),
            }
        }
    }

    #[tracing::instrument(skip_all, fields(dispute_id = %dispute_id))]
    async fn retrieve_dispute(&self, dispute_id: &str) -> Result<StripeDispute, GatewayError> {
        if !is_object_id(dispute_id) {
            return Err(GatewayError::NotFound);
        }
        let call = Call {
            method: Method::Get,
            path: format!("/disputes/{dispute_id}"),
            params: Vec::new(),
            idempotency_key: None,
        };
        let dispute: wire::Dispute = self
            .send_with_retries(StripeOperation::RetrieveDispute, &call)
            .await?;
        Ok(dispute.into())
    }

    #[tracing::instrument(skip_all, fields(intent_id = %intent_id))]
    async fn list_disputes(&self, intent_id: &str) -> Result<Vec<StripeDispute>, GatewayError> {
        if !is_intent_id(intent_id) {
            return Err(GatewayError::NotFound);
        }
        // An intent has one charge, and a charge at most one dispute.
        let call = Call {
            method: Method::Get,
            path: "/disputes".into(),
            params: vec![
                ("payment_intent", intent_id.to_owned()),
                ("limit", "100".to_owned()),
            ],
            idempotency_key: None,
        };
        let page: wire::List<wire::Dispute> = self
            .send_with_retries(StripeOperation::ListDisputes, &call)
            .await?;
        Ok(page.data.into_iter().map(StripeDispute::from).collect())
    }

    #[tracing::instrument(skip_all, fields(intent_id = %intent_id))]
    async fn cancel_abandoned_intent(
        &self,
        intent_id: &str,
        idempotency_key: &str,
    ) -> Result<StripeIntent, GatewayError> {
        if !is_intent_id(intent_id) {
            return Err(GatewayError::NotFound);
        }
        let call = Call {
            method: Method::Post,
            path: format!("/payment_intents/{intent_id}/cancel"),
            params: vec![("cancellation_reason", "abandoned".to_owned())],
            idempotency_key: Some(idempotency_key),
        };
        self.intent(StripeOperation::CancelPaymentIntent, &call)
            .await
    }

    #[tracing::instrument(skip_all, fields(position = ?query.position))]
    async fn list_events(&self, query: &EventsQuery<'_>) -> Result<EventsPage, GatewayError> {
        let mut params: Vec<(&str, String)> = Vec::new();
        // `types[]` as Stripe's own libraries send an array: `types[0]=…`.
        let names: Vec<String> = (0..query.types.len())
            .map(|i| format!("types[{i}]"))
            .collect();
        for (name, event_type) in names.iter().zip(query.types) {
            params.push((name.as_str(), (*event_type).to_owned()));
        }
        params.push(("limit", query.limit.clamp(1, 100).to_string()));
        match query.position {
            EventsPosition::Back {
                created_from,
                starting_after,
            } => {
                params.push(("created[gte]", created_from.to_string()));
                if let Some(after) = starting_after {
                    params.push(("starting_after", after.to_owned()));
                }
            }
            EventsPosition::After { ending_before } => {
                params.push(("ending_before", ending_before.to_owned()));
            }
        }
        let call = Call {
            method: Method::Get,
            path: "/events".into(),
            params,
            idempotency_key: None,
        };
        let operation = StripeOperation::ListEvents;
        let page: wire::List<wire::Event> = self.send_with_retries(operation, &call).await?;
        let events = page
            .data
            .into_iter()
            .map(|event| event.into_listed(operation.as_str()))
            .collect::<Result<_, _>>()?;
        Ok(EventsPage {
            events,
            has_more: page.has_more,
        })
    }
}

/// Refunds of one intent read at most (Stripe pages them 100 at a time); a
/// card payment has a handful at most.
const MAX_REFUNDS_PER_INTENT: usize = 1_000;
