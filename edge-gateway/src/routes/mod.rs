//! The REST resources, one module each, every handler with its
//! `#[utoipa::path]` document; [`crate::router`] mounts them.

pub mod balance;
pub mod balance_stream;
pub mod client_config;
pub mod health;
pub mod history;
pub mod top_up;
pub mod webhook;

use axum::body::{Body, Bytes};

use crate::error::ApiError;

/// Bodies of the SPA's calls are tiny.
pub(crate) const API_BODY_LIMIT: usize = 16 * 1024;

/// The body, or 413 past `limit` bytes.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError::too_large(limit))
}
