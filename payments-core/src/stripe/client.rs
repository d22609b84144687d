use std::collections::HashMap;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use stripe::{IdempotencyKey, RequestStrategy, StripeError, StripeRequest};
use stripe_core::dispute::{ListDispute, RetrieveDispute};
use stripe_core::event::ListEvent;
use stripe_core::payment_intent::{CancelPaymentIntent, CancelPaymentIntentCancellationReason};
use stripe_core::payment_intent::{
    CreatePaymentIntent, CreatePaymentIntentAutomaticPaymentMethods, RetrievePaymentIntent,
};
use stripe_core::refund::ListRefund;
use stripe_shared::{ApiErrorsType, Dispute, PaymentIntent, Refund};

use super::http::PooledStripeClient;
use super::{
    CREATED_BY_MARKER, EventsPage, EventsPosition, EventsQuery, GatewayError, ListedEvent,
    NewIntent, PaymentError, PaymentGateway, StripeDispute, StripeIntent, StripeRefund,
    is_intent_id, is_object_id,
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

/// The real Stripe API client: async-stripe's request types over a pooled
/// hyper + rustls client.
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

    /// Sends `request` until it succeeds, fails for good, or attempts run
    /// out; counted and timed as one call of `operation`.
    async fn send_with_retries<R>(
        &self,
        operation: StripeOperation,
        request: &R,
        idempotency_key: Option<&IdempotencyKey>,
    ) -> Result<R::Output, GatewayError>
    where
        R: StripeRequest,
        R::Output: miniserde::Deserialize,
    {
        let started = std::time::Instant::now();
        let answer = self
            .send_until_done(operation, request, idempotency_key)
            .await;
        let result = match &answer {
            Ok(_) => "ok",
            Err(GatewayError::Unavailable(_)) => "unavailable",
            Err(GatewayError::NotFound) => "not_found",
            Err(GatewayError::UnexpectedState(_)) => "unexpected_state",
            Err(GatewayError::IdempotencyConflict(_)) => "idempotency_conflict",
            Err(GatewayError::Rejected(_)) => "rejected",
            Err(GatewayError::Undecodable { .. }) => "decode_error",
        };
        self.metrics
            .stripe_call(operation, result, started.elapsed());
        answer
    }

    async fn send_until_done<R>(
        &self,
        operation: StripeOperation,
        request: &R,
        idempotency_key: Option<&IdempotencyKey>,
    ) -> Result<R::Output, GatewayError>
    where
        R: StripeRequest,
        R::Output: miniserde::Deserialize,
    {
        let strategy = match idempotency_key {
            Some(key) => RequestStrategy::Idempotent(key.clone()),
            None => RequestStrategy::Once,
        };
        let deadline = tokio::time::Instant::now() + self.deadline;
        let mut backoff = self.retry_backoff.min(MAX_RETRY_BACKOFF);
        let mut attempt = 1;
        loop {
            let send = request
                .customize()
                .request_strategy(strategy.clone())
                .send(&self.client);
            let result = match tokio::time::timeout_at(deadline, send).await {
                Ok(result) => result.map_err(|err| classify(operation, err)),
                Err(_) => Err(Failure::Transient("the call's deadline passed".into())),
            };
            match result {
                Ok(answer) => return Ok(answer),
                Err(Failure::Transient(reason))
                    if attempt < self.max_attempts
                        && tokio::time::Instant::now() + backoff < deadline =>
                {
                    tracing::warn!(attempt, %reason, "Stripe call failed; retrying");
                    self.metrics.stripe_retry(operation);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_RETRY_BACKOFF);
                    attempt += 1;
                }
                Err(Failure::Transient(reason)) => return Err(GatewayError::Unavailable(reason)),
                Err(Failure::Final(err)) => return Err(err),
            }
        }
    }
}

enum Failure {
    Transient(String),
    Final(GatewayError),
}

fn classify(operation: StripeOperation, err: StripeError) -> Failure {
    match err {
        StripeError::Stripe(api, status) => {
            let code = api
                .code
                .as_ref()
                .map(|c| c.as_str().to_owned())
                .unwrap_or_default();
            let message = api.message.clone().unwrap_or_default();
            match (status, &api.type_) {
                // 409: a request with this key is still in flight at Stripe.
                (409 | 429 | 500..=599, _) => {
                    Failure::Transient(format!("HTTP {status} {code}: {message}"))
                }
                (404, _) => Failure::Final(GatewayError::NotFound),
                (400, _) if code == "payment_intent_unexpected_state" => {
                    Failure::Final(GatewayError::UnexpectedState(message))
                }
                (_, ApiErrorsType::IdempotencyError) => {
                    Failure::Final(GatewayError::IdempotencyConflict(message))
                }
                _ => Failure::Final(GatewayError::Rejected(format!(
                    "HTTP {status} {code}: {message}"
                ))),
            }
        }
        StripeError::Timeout => Failure::Transient("timed out".into()),
        StripeError::ClientError(reason) => Failure::Transient(reason),
        // A success whose body the service cannot read (http.rs answers a
        // failure that is not Stripe JSON as a ClientError).
        StripeError::JSONDeserialize(detail) => {
            tracing::error!(operation = operation.as_str(), %detail, "Stripe's answer could not be read");
            Failure::Final(GatewayError::Undecodable {
                operation: operation.as_str(),
                detail,
            })
        }
        StripeError::ConfigError(reason) => Failure::Final(GatewayError::Rejected(reason)),
    }
}

fn to_stripe_intent(intent: PaymentIntent) -> Result<StripeIntent, GatewayError> {
    let status = intent
        .status
        .as_str()
        .parse()
        .map_err(GatewayError::Rejected)?;
    let last_payment_error = intent.last_payment_error.map(|err| PaymentError {
        code: err
            .decline_code
            .clone()
            .or_else(|| err.code.as_ref().map(|code| code.as_str().to_owned())),
        message: err.message.clone(),
    });
    Ok(StripeIntent {
        id: intent.id.as_str().to_owned(),
        amount: intent.amount,
        amount_received: intent.amount_received,
        currency: intent.currency.to_string(),
        status,
        client_secret: intent.client_secret.map(SecretString::from),
        user_id: intent.metadata.get("user_id").cloned(),
        created_by_us: intent.metadata.get("created_by").map(String::as_str)
            == Some(CREATED_BY_MARKER),
        deployment: intent.metadata.get("deployment").cloned(),
        last_payment_error,
    })
}

impl PaymentGateway for StripeGateway {
    #[tracing::instrument(skip_all, fields(user_id = %intent.user_id, amount = intent.tier.cents().get()))]
    async fn create_intent(&self, intent: &NewIntent<'_>) -> Result<StripeIntent, GatewayError> {
        let key = IdempotencyKey::new(intent.stripe_idempotency_key)
            .map_err(|err| GatewayError::Rejected(err.to_string()))?;
        let metadata = HashMap::from([
            ("user_id".to_owned(), intent.user_id.as_str().to_owned()),
            ("created_by".to_owned(), CREATED_BY_MARKER.to_owned()),
            ("deployment".to_owned(), intent.deployment.to_owned()),
        ]);
        // Exhaustive: a new currency of ours must name Stripe's here.
        let currency = match intent.currency {
            crate::domain::Currency::Usd => stripe_types::Currency::USD,
        };
        let request = CreatePaymentIntent::new(intent.tier.cents().get(), currency)
            .automatic_payment_methods(CreatePaymentIntentAutomaticPaymentMethods::new(true))
            .metadata(metadata);
        to_stripe_intent(
            self.send_with_retries(StripeOperation::CreatePaymentIntent, &request, Some(&key))
                .await?,
        )
    }

    #[tracing::instrument(skip_all, fields(intent_id = %intent_id))]
    async fn retrieve_intent(&self, intent_id: &str) -> Result<StripeIntent, GatewayError> {
        if !is_intent_id(intent_id) {
            return Err(GatewayError::NotFound);
        }
        let request = RetrievePaymentIntent::new(intent_id);
        to_stripe_intent(
            self.send_with_retries(StripeOperation::RetrievePaymentIntent, &request, None)
                .await?,
        )
    }

    #[tracing::instrument(skip_all, fields(intent_id = %intent_id))]
    async fn list_refunds(&self, intent_id: &str) -> Result<Vec<StripeRefund>, GatewayError> {
        if !is_intent_id(intent_id) {
            return Err(GatewayError::NotFound);
        }
        let mut refunds = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut request = ListRefund::new().payment_intent(intent_id).limit(100);
            if let Some(after) = after.take() {
                request = request.starting_after(after);
            }
            let page = self
                .send_with_retries(StripeOperation::ListRefunds, &request, None)
                .await?;
            for refund in &page.data {
                refunds.push(to_stripe_refund(refund));
            }
            match page.data.last() {
                Some(last) if page.has_more && refunds.len() < MAX_REFUNDS_PER_INTENT => {
                    after = Some(last.id.as_str().to_owned());
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
        let request = RetrieveDispute::new(dispute_id);
        let dispute = self
            .send_with_retries(StripeOperation::RetrieveDispute, &request, None)
            .await?;
        Ok(to_stripe_dispute(&dispute))
    }

    #[tracing::instrument(skip_all, fields(intent_id = %intent_id))]
    async fn list_disputes(&self, intent_id: &str) -> Result<Vec<StripeDispute>, GatewayError> {
        if !is_intent_id(intent_id) {
            return Err(GatewayError::NotFound);
        }
        // An intent has one charge, and a charge at most one dispute.
        let request = ListDispute::new().payment_intent(intent_id).limit(100);
        let page = self
            .send_with_retries(StripeOperation::ListDisputes, &request, None)
            .await?;
        Ok(page.data.iter().map(to_stripe_dispute).collect())
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
        let key = IdempotencyKey::new(idempotency_key)
            .map_err(|err| GatewayError::Rejected(err.to_string()))?;
        let request = CancelPaymentIntent::new(intent_id)
            .cancellation_reason(CancelPaymentIntentCancellationReason::Abandoned);
        to_stripe_intent(
            self.send_with_retries(StripeOperation::CancelPaymentIntent, &request, Some(&key))
                .await?,
        )
    }

    #[tracing::instrument(skip_all, fields(position = ?query.position))]
    async fn list_events(&self, query: &EventsQuery<'_>) -> Result<EventsPage, GatewayError> {
        let request = ListEvent::new()
            .types(
                query
                    .types
                    .iter()
                    .map(|t| (*t).to_owned())
                    .collect::<Vec<_>>(),
            )
            .limit(i64::from(query.limit.clamp(1, 100)));
        let request = match query.position {
            EventsPosition::Back {
                created_from,
                starting_after,
            } => {
                let window = stripe_types::RangeQueryTs::Bounds(stripe_types::RangeBoundsTs {
                    gte: Some(created_from),
                    ..Default::default()
                });
                let request = request.created(window);
                match starting_after {
                    Some(after) => request.starting_after(after),
                    None => request,
                }
            }
            EventsPosition::After { ending_before } => request.ending_before(ending_before),
        };
        let page = self
            .send_with_retries(StripeOperation::ListEvents, &request, None)
            .await?;
        let events = page
            .data
            .iter()
            .map(|event| ListedEvent {
                id: event.id.as_str().to_owned(),
                created: event.created,
                // What a webhook would carry, enough for `StripeEvent::parse`.
                json: format!(
                    r#"{{"id":{},"object":"event","type":{},"created":{},"livemode":{},"data":{{"object":{}}}}}"#,
                    miniserde::json::to_string(event.id.as_str()),
                    miniserde::json::to_string(event.type_.as_str()),
                    event.created,
                    event.livemode,
                    miniserde::json::to_string(&event.data.object),
                ),
            })
            .collect();
        Ok(EventsPage {
            events,
            has_more: page.has_more,
        })
    }
}

/// Refunds of one intent read at most (Stripe pages them 100 at a time); a
/// card payment has a handful at most.
const MAX_REFUNDS_PER_INTENT: usize = 1_000;

fn expandable_id<T: stripe_types::Object>(
    field: Option<&stripe_types::Expandable<T>>,
) -> Option<String>
where
    T::Id: AsRef<str>,
{
    field.map(|field| field.id().as_ref().to_owned())
}

fn to_stripe_refund(refund: &Refund) -> StripeRefund {
    StripeRefund {
        id: refund.id.as_str().to_owned(),
        amount: refund.amount,
        currency: refund.currency.to_string(),
        status: refund.status.clone().unwrap_or_default(),
        intent_id: expandable_id(refund.payment_intent.as_ref()),
    }
}

fn to_stripe_dispute(dispute: &Dispute) -> StripeDispute {
    StripeDispute {
        id: dispute.id.as_str().to_owned(),
        amount: dispute.amount,
        currency: dispute.currency.to_string(),
        status: dispute.status.as_str().to_owned(),
        intent_id: expandable_id(dispute.payment_intent.as_ref()),
    }
}
