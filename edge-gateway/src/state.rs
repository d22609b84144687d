//! What every handler shares: the verifier and its keys, the webhook
//! secrets, the connection to payments-grpc, the limits and the metrics.

use std::sync::Arc;

use axum::http::{HeaderName, HeaderValue};

use crate::firebase::{TokenVerifier, VerifiedTokens};
use crate::keys::KeyCache;
use crate::rate_limit::RateLimit;
use crate::stripe_signature::WebhookSecret;
use crate::upstream::Upstream;

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
    /// What is on sale, kept for a minute (`GET /config`).
    pub top_up_options: crate::top_up_options::TopUpOptionsCache,
}
