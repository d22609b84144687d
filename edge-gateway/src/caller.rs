//! Who is calling: the user a valid Firebase ID token proves (verified
//! tokens cached until their `exp`, Google's keys refetched once on an
//! unknown `kid`), and the client's IP for the rate limits.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use service_runtime::now_unix;

use crate::error::ApiError;
use crate::firebase::TokenError;
use crate::state::AppState;

/// The caller, as proven by a valid Firebase ID token.
pub struct AuthenticatedUser {
    pub user_id: String,
    /// The token's `exp`, in Unix seconds: a stream ends there.
    pub expires_at: i64,
}

impl FromRequestParts<Arc<AppState>> for AuthenticatedUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("send Authorization: Bearer <Firebase ID token>")
            })?;
        let now = now_unix();
        if let Some(verified) = state
            .verified_tokens
            .get(token, now, state.verifier.leeway_secs())
        {
            return Ok(Self {
                user_id: verified.user_id,
                expires_at: verified.expires_at,
            });
        }
        let keys = state.keys.keys().await.map_err(|err| {
            tracing::error!(error = %err, "cannot verify ID tokens");
            ApiError::unavailable("ID tokens cannot be verified right now")
        })?;
        let verified = match state.verifier.verify(token, &keys, now) {
            // Google rotates keys: refetch once (at most once a minute) and retry.
            Err(TokenError::UnknownKid) => match state.keys.keys_after_unknown_kid().await {
                Ok(keys) => state.verifier.verify(token, &keys, now),
                Err(_) => Err(TokenError::UnknownKid),
            },
            other => other,
        };
        let verified = verified.map_err(|err| {
            tracing::info!(reason = %err, "ID token refused");
            ApiError::unauthorized(err.to_string())
        })?;
        state.verified_tokens.insert(token, verified.clone(), now);
        Ok(Self {
            user_id: verified.user_id,
            expires_at: verified.expires_at,
        })
    }
}

/// The caller's IP: the last entry of the configured proxy header, else the
/// peer address of the connection.
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<Arc<AppState>> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let from_proxy = state.client_ip_header.as_ref().and_then(|name| {
            let value = parts.headers.get_all(name).iter().next_back()?;
            value.to_str().ok()?.rsplit(',').next()?.trim().parse().ok()
        });
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| peer.ip());
        Ok(Self(
            from_proxy
                .or(peer)
                .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
        ))
    }
}
