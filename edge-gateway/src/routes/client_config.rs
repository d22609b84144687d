//! `GET /config`: what the web client shows before anyone signs in, the
//! tiers on sale, served from payments-grpc's setting so that no client
//! keeps a copy. Public and cacheable.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::state::AppState;
use crate::top_up_options::FRESH_FOR;

/// What is on sale.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq, utoipa::ToSchema)]
pub struct ClientConfig {
    /// The amounts a top-up may be, in whole dollars, ascending: exactly
    /// what `POST /payments/create-payment-intent` accepts.
    #[schema(example = json!([5, 10, 20, 50]), min_items = 1)]
    pub tiers_usd: Vec<u32>,
    #[schema(example = "usd")]
    pub currency: String,
}

/// `GET /config`: the tiers on sale (`TOPUP_TIERS_USD` of payments-grpc)
/// and their currency.
#[utoipa::path(
    get,
    path = "/config",
    tag = "top-up",
    operation_id = "getConfig",
    responses(
        (
            status = 200,
            description = "What is on sale",
            body = ClientConfig,
            headers(("Cache-Control" = String, description = "`public, max-age=60`")),
        ),
        (status = 503, response = crate::openapi::Unavailable),
    )
)]
pub async fn client_config(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let (tiers_usd, currency) = state.top_up_options.on_sale(&state.upstream).await?;
    let cache = format!("public, max-age={}", FRESH_FOR.as_secs());
    let body = ClientConfig {
        tiers_usd,
        currency,
    };
    Ok(([(header::CACHE_CONTROL, cache)], Json(body)).into_response())
}
