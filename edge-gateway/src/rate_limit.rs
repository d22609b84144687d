//! Per-user and per-client-IP limits on the calls that cost a Stripe call
//! (creating an intent): in memory, per edge replica (GCRA, `governor`).
//! Over a limit the caller gets 429 with `Retry-After`.

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::error::ApiError;

/// One kind of call limited per user and per client IP. A limit of 0 is off.
pub struct RateLimit {
    per_user: Option<DefaultKeyedRateLimiter<String>>,
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    clock: DefaultClock,
}

fn per_minute<K: std::hash::Hash + Eq + Clone>(limit: u32) -> Option<DefaultKeyedRateLimiter<K>> {
    NonZeroU32::new(limit).map(|limit| DefaultKeyedRateLimiter::keyed(Quota::per_minute(limit)))
}

impl RateLimit {
    pub fn new(per_user_per_minute: u32, per_ip_per_minute: u32) -> Self {
        Self {
            per_user: per_minute(per_user_per_minute),
            per_ip: per_minute(per_ip_per_minute),
            clock: DefaultClock::default(),
        }
    }

    /// Counts one call by `user_id` from `client_ip`, or says when to retry.
    pub fn check(&self, user_id: &str, client_ip: IpAddr) -> Result<(), ApiError> {
        if let Some(per_ip) = &self.per_ip
            && let Err(not_until) = per_ip.check_key(&network_of(client_ip))
        {
            tracing::warn!(%client_ip, "rate limited: client IP");
            return Err(self.refusal(not_until.wait_time_from(self.clock.now())));
        }
        if let Some(per_user) = &self.per_user
            && let Err(not_until) = per_user.check_key(&user_id.to_owned())
        {
            tracing::warn!(user_id, "rate limited: user");
            return Err(self.refusal(not_until.wait_time_from(self.clock.now())));
        }
        Ok(())
    }

    fn refusal(&self, wait: std::time::Duration) -> ApiError {
        let secs = u32::try_from(wait.as_secs().saturating_add(1)).unwrap_or(u32::MAX);
        ApiError::rate_limited(secs)
    }

    /// Forgets callers whose allowance is whole again, so the limiter's
    /// memory follows the callers of the last minute, not every caller ever.
    pub fn forget_idle(&self) {
        if let Some(per_user) = &self.per_user {
            per_user.retain_recent();
            per_user.shrink_to_fit();
        }
        if let Some(per_ip) = &self.per_ip {
            per_ip.retain_recent();
            per_ip.shrink_to_fit();
        }
    }

    pub fn tracked_callers(&self) -> usize {
        self.per_user.as_ref().map_or(0, |l| l.len()) + self.per_ip.as_ref().map_or(0, |l| l.len())
    }
}

/// IPv6 clients are limited per /64 (one host's usual allocation), so
/// rotating addresses within it does not reset the limit.
pub(crate) fn network_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_user_gets_the_burst_then_429_with_retry_after() {
        let limit = RateLimit::new(3, 0);
        for _ in 0..3 {
            assert!(limit.check("alice", ip("10.0.0.1")).is_ok());
        }
        let refused = limit.check("alice", ip("10.0.0.2")).unwrap_err();
        assert_eq!(refused.status, axum::http::StatusCode::TOO_MANY_REQUESTS);
        // One call a minute comes back: 20 s at 3 a minute.
        assert!(
            (1..=21).contains(&refused.retry_after_secs.unwrap()),
            "{refused:?}"
        );
        assert!(limit.check("bob", ip("10.0.0.1")).is_ok(), "per user");
    }

    #[test]
    fn a_client_ip_is_limited_across_users_and_ipv6_per_64() {
        let limit = RateLimit::new(0, 2);
        assert!(limit.check("u1", ip("2001:db8::1")).is_ok());
        assert!(limit.check("u2", ip("2001:db8::ffff:2")).is_ok());
        assert!(limit.check("u3", ip("2001:db8::3")).is_err(), "same /64");
        assert!(limit.check("u4", ip("2001:db8:0:1::1")).is_ok(), "next /64");
        assert!(limit.check("u5", ip("192.0.2.1")).is_ok());
    }

    #[test]
    fn zero_turns_a_limit_off() {
        let limit = RateLimit::new(0, 0);
        for _ in 0..1_000 {
            assert!(limit.check("alice", ip("10.0.0.1")).is_ok());
        }
        assert_eq!(limit.tracked_callers(), 0);
    }
}
