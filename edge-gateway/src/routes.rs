//! The REST routes.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use payments_domain::stripe_event::StripeEvent;
use payments_domain::top_up::{self, TopUpRefusal};
use payments_proto::apply_stripe_event_response::Outcome;
use payments_proto::error_reason;
use payments_proto::{ApplyStripeEventRequest, CreatePaymentIntentRequest, GetBalanceRequest};
use serde::{Deserialize, Serialize};
use service_runtime::now_unix;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::caller::{AuthenticatedUser, ClientIp};
use crate::error::ApiError;
use crate::firebase::{TokenVerifier, VerifiedTokens};
use crate::keys::KeyCache;
use crate::rate_limit::RateLimit;
use crate::stripe_signature::{self, WebhookSecret};
use crate::upstream::Upstream;

/// Bodies of the SPA's calls are tiny.
const API_BODY_LIMIT: usize = 16 * 1024;
/// How long a webhook waits for a body place before it is shed with 503.
const WEBHOOK_PLACE_WAIT: Duration = Duration::from_secs(2);
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub struct AppState {
    pub verifier: TokenVerifier,
    /// Tokens already verified, until their `exp`.
    pub verified_tokens: VerifiedTokens,
    pub keys: KeyCache,
    pub webhook_secrets: Vec<WebhookSecret>,
    pub upstream: Upstream,
    pub webhook_body_limit: usize,
    /// Places for webhook bodies being read: past them a webhook is shed
    /// with 503 instead of holding more memory.
    pub webhook_bodies: tokio::sync::Semaphore,
    pub cors_allowed_origins: Vec<HeaderValue>,
    /// Intent creates per user and per client IP.
    pub create_limit: RateLimit,
    /// Syncs, each a few Stripe calls: limited as creates are.
    pub sync_limit: RateLimit,
    /// Where the client's IP is read when a proxy stands in front.
    pub client_ip_header: Option<HeaderName>,
    /// `GET /balance/stream` places, over all users and per user.
    pub balance_streams: crate::stream_places::StreamPlaces,
    pub metrics: Arc<crate::metrics::EdgeMetrics>,
}

/// The CORS answers for the SPA's routes, when origins are configured.
fn cors(state: &AppState) -> Option<CorsLayer> {
    (!state.cors_allowed_origins.is_empty()).then(|| {
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(state.cors_allowed_origins.clone()))
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("idempotency-key"),
            ])
            .expose_headers([REQUEST_ID])
            .max_age(Duration::from_secs(600))
    })
}

/// Every route, each with its document: registered only through
/// `routes!`, which reads the handler's `#[utoipa::path]`. Only the SPA's
/// routes answer browsers of other origins (`cors`).
pub(crate) fn documented_routes(cors: Option<CorsLayer>) -> OpenApiRouter<Arc<AppState>> {
    let spa = OpenApiRouter::with_openapi(crate::openapi::ApiDoc::openapi())
        .routes(routes!(create_payment_intent))
        .routes(routes!(sync_payment))
        .routes(routes!(balance))
        .routes(routes!(crate::balance_stream::balance_stream))
        .routes(routes!(crate::history::ledger))
        .routes(routes!(crate::history::payments));
    let spa = match cors {
        Some(cors) => spa.layer(cors),
        None => spa,
    };
    spa.merge(
        OpenApiRouter::default()
            .routes(routes!(stripe_webhook))
            .routes(routes!(healthz))
            .routes(routes!(readyz))
            .routes(routes!(crate::openapi::openapi_json)),
    )
}

pub fn router(state: Arc<AppState>, request_timeout: Duration) -> Router {
    let (routes, _document) = documented_routes(cors(&state)).split_for_parts();
    routes
        .route_layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            crate::metrics::record,
        ))
        .fallback(|| async { ApiError::not_found() })
        .with_state(state)
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, request_timeout))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<Body>| {
            let id = request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("http", method = %request.method(), path = %request.uri().path(), request_id = %id)
        }))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, RequestIds::new()))
        .layer(axum::middleware::map_request(drop_unsafe_request_id))
}

/// A client's `X-Request-Id` is kept only when it is short and plain, so it
/// cannot flood the logs or forge log fields; otherwise one is made.
async fn drop_unsafe_request_id(
    mut request: axum::http::Request<Body>,
) -> axum::http::Request<Body> {
    let safe = request
        .headers()
        .get(REQUEST_ID)
        .is_none_or(|id| service_runtime::is_safe_request_id(id.as_bytes()));
    if !safe {
        request.headers_mut().remove(REQUEST_ID);
    }
    request
}

/// Request ids `<random per process>-<counter>`: unique across replicas and
/// restarts, without a random draw per request.
#[derive(Clone)]
struct RequestIds {
    prefix: Arc<str>,
    next: Arc<std::sync::atomic::AtomicU64>,
}

impl RequestIds {
    fn new() -> Self {
        Self {
            prefix: uuid::Uuid::new_v4().simple().to_string()[..12].into(),
            next: Arc::default(),
        }
    }
}

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        HeaderValue::from_str(&format!("{}-{n}", self.prefix))
            .ok()
            .map(RequestId::new)
    }
}

pub(crate) fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::too_large(limit))
}

/// The top-up asked for. Other fields are ignored (the user is the
/// token's); a repeated `amount_usd` is refused.
// Documentation only: `top_up::amount_from_json` reads the body, exactly.
#[derive(utoipa::ToSchema)]
#[schema(example = json!({"amount_usd": 10}))]
#[allow(dead_code)]
pub struct CreatePaymentIntentBody {
    // Dollars: see `dollars_schema`.
    #[schema(schema_with = dollars_schema)]
    amount_usd: (),
}

/// A JSON number of dollars above zero (no float format: it is read
/// exactly, in whole cents).
fn dollars_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::Number)
        .exclusive_minimum(Some(0))
        .description(Some(
            "Dollars, in whole cents: one of the tiers sold (by default 5, 10, 20, 50); \
             any other amount is 422 `invalid-amount`, naming them",
        ))
        .build()
}

/// The PaymentIntent made, for Stripe.js's `confirmPayment`.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq, utoipa::ToSchema)]
pub struct CreatedIntent {
    /// For Stripe.js only; never log it.
    pub client_secret: String,
    pub intent_id: String,
    /// In cents.
    pub amount: i64,
    #[schema(example = "usd")]
    pub currency: String,
    /// Stripe's PaymentIntent status.
    #[schema(schema_with = payment_status_schema)]
    pub status: String,
}

/// A string holding one of Stripe's PaymentIntent statuses.
pub(crate) fn payment_status_schema() -> utoipa::openapi::schema::Object {
    string_enum(
        payments_domain::PaymentStatus::ALL
            .iter()
            .map(|status| status.as_str()),
    )
}

pub(crate) fn string_enum<'a>(
    values: impl Iterator<Item = &'a str>,
) -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(values))
        .build()
}

/// `POST /payments/create-payment-intent`: a PaymentIntent for one of the
/// tiers. With the same `Idempotency-Key`, a retry answers the same intent.
#[utoipa::path(
    post,
    path = "/payments/create-payment-intent",
    tag = "top-up",
    operation_id = "createPaymentIntent",
    security(("firebase_id_token" = [])),
    params((
        "Idempotency-Key" = Option<String>,
        Header,
        description = "Makes a retried create answer the first intent (1 to 255 visible ASCII characters)",
        min_length = 1,
        max_length = 255,
        pattern = "^[!-~]+$",
    )),
    request_body(content = CreatePaymentIntentBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The intent, new or (same key) the first one", body = CreatedIntent),
        (status = 400, response = crate::openapi::MalformedJson),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 409, response = crate::openapi::IdempotencyConflict),
        (status = 413, response = crate::openapi::TooLarge),
        (status = 422, response = crate::openapi::Unprocessable),
        (status = 429, response = crate::openapi::TooManyRequests),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
async fn create_payment_intent(
    State(state): State<Arc<AppState>>,
    user: AuthenticatedUser,
    ClientIp(client_ip): ClientIp,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<CreatedIntent>, ApiError> {
    // Each create is a Stripe call and a row: limited before anything else.
    state.create_limit.check(&user.user_id, client_ip)?;
    let body = read_body(body, API_BODY_LIMIT).await?;
    // Which amounts are tiers is payments-grpc's rule and setting. An amount
    // the edge cannot read is asked for as 0 cents, never a tier, so that
    // every refused amount gets payments-grpc's answer naming the tiers.
    let (amount_cents, unusable) = match top_up::amount_from_json(&body) {
        Ok(cents) => (cents.get(), None),
        Err(TopUpRefusal::Malformed(detail)) => return Err(ApiError::malformed_json(detail)),
        Err(unusable @ TopUpRefusal::Unusable(_)) => (0, Some(unusable)),
    };
    // Absent is "no key"; present, it must be a key: an empty header is a
    // client's bug that would otherwise turn retries into new payments.
    let idempotency_key = match headers.get("idempotency-key") {
        Some(value) => match value.to_str() {
            Ok(key) if !key.is_empty() => key.to_owned(),
            _ => {
                return Err(ApiError::invalid_request(
                    "Idempotency-Key must be 1 to 255 visible ASCII characters (leave the header out for none)",
                ));
            }
        },
        None => String::new(),
    };
    let request = CreatePaymentIntentRequest {
        user_id: user.user_id,
        amount_cents,
        idempotency_key,
    };
    let intent = state
        .upstream
        .client()
        .create_payment_intent(state.upstream.request(request, user.request_id.as_deref()))
        .await
        .map_err(|status| match (&unusable, error_reason::of(&status)) {
            (Some(unusable), Some((reason, metadata))) if reason == error_reason::NOT_A_TIER => {
                ApiError::not_a_tier(&unusable.to_string(), &metadata)
            }
            _ => ApiError::from_grpc(&status),
        })?
        .into_inner();
    if unusable.is_some() {
        tracing::error!("payments-grpc accepted an amount of 0 cents: check TOPUP_TIERS_USD");
        return Err(ApiError::internal());
    }
    Ok(Json(CreatedIntent {
        client_secret: intent.client_secret,
        intent_id: intent.intent_id,
        amount: intent.amount,
        currency: intent.currency,
        status: intent.status,
    }))
}

/// What `POST /payments/{intent_id}/sync` answers.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq, utoipa::ToSchema)]
pub struct SyncedBody {
    pub intent_id: String,
    #[schema(schema_with = payment_status_schema)]
    pub status: String,
    pub amount_cents: i64,
    pub amount_received_cents: i64,
    pub amount_refunded_cents: i64,
    /// The user's balance right after the sync.
    pub balance_cents: i64,
}

/// `POST /payments/{intent_id}/sync`: the SPA calls it right after
/// `stripe.confirmPayment`; payments-grpc re-fetches the intent from Stripe
/// and applies it (the credit lands now, the webhook later finds nothing to
/// do). 404 for an intent that is not this user's.
#[utoipa::path(
    post,
    path = "/payments/{intent_id}/sync",
    tag = "top-up",
    operation_id = "syncPaymentIntent",
    security(("firebase_id_token" = [])),
    params(("intent_id" = String, Path, description = "The `intent_id` create-payment-intent answered")),
    responses(
        (status = 200, description = "The payment as Stripe has it now, and the balance after", body = SyncedBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 404, response = crate::openapi::NotFound),
        (status = 429, response = crate::openapi::TooManyRequests),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
async fn sync_payment(
    State(state): State<Arc<AppState>>,
    user: AuthenticatedUser,
    ClientIp(client_ip): ClientIp,
    axum::extract::Path(intent_id): axum::extract::Path<String>,
) -> Result<Json<SyncedBody>, ApiError> {
    state.sync_limit.check(&user.user_id, client_ip)?;
    let request = payments_proto::SyncPaymentIntentRequest {
        user_id: user.user_id,
        intent_id,
    };
    let synced = state
        .upstream
        .client()
        .sync_payment_intent(state.upstream.request(request, user.request_id.as_deref()))
        .await
        .map_err(|status| ApiError::from_grpc(&status))?
        .into_inner();
    let payment = synced.payment.unwrap_or_default();
    Ok(Json(SyncedBody {
        intent_id: payment.intent_id,
        status: payment.status,
        amount_cents: payment.amount_cents,
        amount_received_cents: payment.amount_received_cents,
        amount_refunded_cents: payment.amount_refunded_cents,
        balance_cents: synced.balance_cents,
    }))
}

/// A balance, as `GET /balance` and each `balance` event of
/// `GET /balance/stream` carry it.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq, utoipa::ToSchema)]
pub struct BalanceBody {
    /// May be below zero after a refund or a dispute of spent credits.
    pub balance_cents: i64,
    #[schema(example = "usd")]
    pub currency: String,
    /// RFC 3339, or null for a user who never paid.
    #[schema(format = DateTime)]
    pub updated_at: Option<String>,
}

impl From<payments_proto::GetBalanceResponse> for BalanceBody {
    /// As `GET /balance` and every event of `GET /balance/stream` answer it.
    fn from(balance: payments_proto::GetBalanceResponse) -> Self {
        Self {
            balance_cents: balance.balance_cents,
            currency: balance.currency,
            updated_at: crate::history::rfc3339(balance.updated_at.map(|t| (t.seconds, t.nanos))),
        }
    }
}

/// `GET /balance`: the caller's balance (0 for a user who never paid).
#[utoipa::path(
    get,
    path = "/balance",
    tag = "balance",
    operation_id = "getBalance",
    security(("firebase_id_token" = [])),
    responses(
        (status = 200, description = "The caller's balance", body = BalanceBody),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
async fn balance(
    State(state): State<Arc<AppState>>,
    user: AuthenticatedUser,
) -> Result<Json<BalanceBody>, ApiError> {
    let request = GetBalanceRequest {
        user_id: user.user_id,
    };
    let balance = state
        .upstream
        .client()
        .get_balance(state.upstream.request(request, user.request_id.as_deref()))
        .await
        .map_err(|status| ApiError::from_grpc(&status))?
        .into_inner();
    Ok(Json(BalanceBody::from(balance)))
}

/// What a webhook delivery is answered once handled.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq, utoipa::ToSchema)]
pub struct WebhookReceived {
    pub received: bool,
    /// `applied` (it changed a payment or balance), `duplicate` (seen
    /// before) or `ignored` (a type not acted on).
    #[schema(schema_with = webhook_outcome_schema)]
    pub outcome: String,
}

fn webhook_outcome_schema() -> utoipa::openapi::schema::Object {
    string_enum(["applied", "duplicate", "ignored"].into_iter())
}

/// `POST /stripe/webhook`: a Stripe event, verified over the raw bytes
/// before anything reads them.
#[utoipa::path(
    post,
    path = "/stripe/webhook",
    tag = "stripe",
    operation_id = "stripeWebhook",
    params((
        "Stripe-Signature" = String,
        Header,
        description = "`t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<body>\">` (several `v1` while secrets rotate)",
    )),
    request_body(
        content = Object,
        content_type = "application/json",
        description = "A Stripe event object, exactly as Stripe sent it",
    ),
    responses(
        (status = 200, description = "Applied, a duplicate, or a type not acted on", body = WebhookReceived),
        (status = 400, response = crate::openapi::InvalidWebhook),
        (status = 413, response = crate::openapi::TooLarge),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
async fn stripe_webhook(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let refused = |err: stripe_signature::SignatureError| {
        tracing::warn!(reason = %err, "webhook signature refused");
        ApiError::invalid_webhook(err.to_string())
    };
    // The header's shape and time first: a malformed or stale delivery is
    // refused before its body is uploaded.
    let signature = stripe_signature::SignatureHeader::parse(
        headers
            .get("stripe-signature")
            .and_then(|v| v.to_str().ok()),
        now_unix(),
        stripe_signature::DEFAULT_TOLERANCE_SECS,
    )
    .map_err(refused)?;
    let declared_length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared_length.is_some_and(|length| length > state.webhook_body_limit as u64) {
        return Err(ApiError::too_large(state.webhook_body_limit));
    }
    let body = {
        // A place is held while the body is uploaded and checked, so
        // stalled or forged uploads hold a bounded amount of memory; a burst
        // of real deliveries waits a moment for one.
        let place = tokio::time::timeout(WEBHOOK_PLACE_WAIT, state.webhook_bodies.acquire()).await;
        let Ok(Ok(_place)) = place else {
            tracing::warn!("webhook shed: every body place is taken");
            return Err(ApiError::overloaded());
        };
        let body = read_body(body, state.webhook_body_limit).await?;
        signature
            .verify(&body, &state.webhook_secrets)
            .map_err(refused)?;
        body
    };
    let event_json = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::invalid_webhook("not a Stripe event: not UTF-8"))?;
    // The parser payments-grpc runs (and the one fuzzed): a body it would
    // refuse never crosses the internal hop.
    let event = StripeEvent::parse(&event_json)
        .map_err(|err| ApiError::invalid_webhook(err.to_string()))?;
    let request = ApplyStripeEventRequest { event_json };
    let outcome = state
        .upstream
        .client()
        .apply_stripe_event(
            state
                .upstream
                .request(request, request_id(&headers).as_deref()),
        )
        .await
        .inspect_err(|_| state.metrics.webhook(&event.event_type, "failed"))
        .map_err(|status| match status.code() {
            // The edge checked the shape; payments-grpc may still refuse the content.
            tonic::Code::InvalidArgument => ApiError::invalid_webhook(status.message().to_owned()),
            _ => ApiError::from_grpc(&status),
        })?
        .into_inner()
        .outcome();
    let outcome = match outcome {
        Outcome::Applied => "applied",
        Outcome::Duplicate => "duplicate",
        Outcome::Ignored => "ignored",
        Outcome::Unspecified => {
            tracing::error!(event_id = %event.id, "payments-grpc answered no outcome");
            return Err(ApiError::internal());
        }
    };
    state.metrics.webhook(&event.event_type, outcome);
    tracing::info!(event_id = %event.id, event_type = %event.event_type, outcome, "webhook handled");
    Ok((
        StatusCode::OK,
        Json(WebhookReceived {
            received: true,
            outcome: outcome.to_owned(),
        }),
    )
        .into_response())
}

/// What the probes answer.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq, utoipa::ToSchema)]
pub struct Health {
    /// `ok` (live) or `ready`.
    pub status: String,
}

/// `GET /healthz`: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    operation_id = "healthz",
    responses((status = 200, description = "Live", body = Health, example = json!({"status": "ok"})))
)]
async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// `GET /readyz`: payments-grpc answers its health check.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    operation_id = "readyz",
    responses(
        (status = 200, description = "Ready: payments-grpc serves", body = Health, example = json!({"status": "ready"})),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
async fn readyz(State(state): State<Arc<AppState>>) -> Result<Json<Health>, ApiError> {
    state
        .upstream
        .ready()
        .await
        .map_err(ApiError::unavailable)?;
    Ok(Json(Health {
        status: "ready".into(),
    }))
}
