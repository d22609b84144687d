//! `GET /balance`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use payments_proto::GetBalanceRequest;
use serde::{Deserialize, Serialize};

use crate::caller::AuthenticatedUser;
use crate::error::ApiError;
use crate::state::AppState;

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
            updated_at: super::history::rfc3339(balance.updated_at.map(|t| (t.seconds, t.nanos))),
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
pub async fn balance(
    State(state): State<Arc<AppState>>,
    user: AuthenticatedUser,
) -> Result<Json<BalanceBody>, ApiError> {
    let request = GetBalanceRequest {
        user_id: user.user_id,
    };
    let balance = state
        .upstream
        .client()
        .get_balance(request)
        .await
        .map_err(|status| ApiError::from_grpc(&status))?
        .into_inner();
    Ok(Json(BalanceBody::from(balance)))
}
