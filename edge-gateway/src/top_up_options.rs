//! What is on sale, as payments-grpc answers it (`GetTopUpOptions`), kept
//! for a minute. `GET /config` needs no token, so a flood of it costs
//! payments-grpc one call a minute rather than one a request; the tiers
//! change only when payments-grpc restarts with other ones, and a create
//! is always checked against payments-grpc's own list.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use payments_proto::{GetTopUpOptionsRequest, GetTopUpOptionsResponse};

use crate::error::ApiError;
use crate::upstream::Upstream;

/// How long an answer is used before it is asked for again; also the
/// `max-age` `GET /config` is answered with.
pub const FRESH_FOR: Duration = Duration::from_secs(60);

/// The last answer, and one refresh at a time.
#[derive(Debug, Default)]
pub struct TopUpOptionsCache {
    kept: Mutex<Option<(Instant, Arc<GetTopUpOptionsResponse>)>>,
    refreshing: tokio::sync::Mutex<()>,
}

impl TopUpOptionsCache {
    /// The options: kept ones younger than [`FRESH_FOR`], else asked for.
    /// While one request asks, the others answer the kept ones (or, before
    /// the first answer, wait for it). When payments-grpc cannot answer,
    /// kept options are used however old; with none, its status.
    pub async fn get(
        &self,
        upstream: &Upstream,
    ) -> Result<Arc<GetTopUpOptionsResponse>, tonic::Status> {
        if let Some(fresh) = self.kept(true) {
            return Ok(fresh);
        }
        let _refreshing = match self.refreshing.try_lock() {
            Ok(refreshing) => refreshing,
            Err(_) => {
                if let Some(stale) = self.kept(false) {
                    return Ok(stale);
                }
                self.refreshing.lock().await
            }
        };
        // Another request may have refreshed them while this one waited.
        if let Some(fresh) = self.kept(true) {
            return Ok(fresh);
        }
        match upstream
            .client()
            .get_top_up_options(GetTopUpOptionsRequest {})
            .await
        {
            Ok(answer) => {
                let answer = Arc::new(answer.into_inner());
                *self.kept.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some((Instant::now(), answer.clone()));
                Ok(answer)
            }
            Err(status) => match self.kept(false) {
                Some(stale) => {
                    tracing::warn!(code = ?status.code(), "top-up options not refreshed; using the kept ones");
                    Ok(stale)
                }
                None => Err(status),
            },
        }
    }

    /// What is on sale as the routes answer it: the tiers in whole dollars
    /// and the currency; 503 when payments-grpc never answered, 500 (logged)
    /// for a tier that is not whole dollars.
    pub async fn on_sale(&self, upstream: &Upstream) -> Result<(Vec<u32>, String), ApiError> {
        let options = self
            .get(upstream)
            .await
            .map_err(|status| ApiError::from_grpc(&status))?;
        let Some(tiers) = tiers_usd(&options) else {
            tracing::error!(tiers_cents = ?options.tiers_cents, "payments-grpc offers a tier that is not whole dollars");
            return Err(ApiError::internal());
        };
        Ok((tiers, options.currency.clone()))
    }

    /// The kept options; with `fresh`, only when younger than [`FRESH_FOR`].
    fn kept(&self, fresh: bool) -> Option<Arc<GetTopUpOptionsResponse>> {
        let kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let (at, options) = kept.as_ref()?;
        (!fresh || at.elapsed() < FRESH_FOR).then(|| options.clone())
    }
}

/// The tiers in whole dollars, or `None` when one is not a whole number of
/// dollars (payments-grpc's tiers always are: `Tiers::parse_usd`).
fn tiers_usd(options: &GetTopUpOptionsResponse) -> Option<Vec<u32>> {
    options
        .tiers_cents
        .iter()
        .map(|&cents| match cents % 100 {
            0 => u32::try_from(cents / 100)
                .ok()
                .filter(|&dollars| dollars > 0),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_are_whole_dollars_or_refused() {
        let options = |tiers_cents: Vec<i64>| GetTopUpOptionsResponse {
            tiers_cents,
            ..Default::default()
        };
        assert_eq!(tiers_usd(&options(vec![500, 1000])), Some(vec![5, 10]));
        assert_eq!(tiers_usd(&options(vec![500, 1050])), None);
        assert_eq!(tiers_usd(&options(vec![0])), None);
        assert_eq!(tiers_usd(&options(vec![-500])), None);
    }
}
