//! Places for balance streams: at most `max` open on this edge (503
//! `overloaded` past it, at once), `per_user` for one user and `per_ip` for
//! one client IP or IPv6 /64 (429 `too-many-streams`). Open streams so bound
//! the edge's memory. Neither one user's tabs nor one address's accounts can
//! take everyone's places. Over HTTP/1.1 a stream holds its connection, so
//! `max` stays below the connection limit (`config::check_stream_places`):
//! webhooks, health checks and the API always find a place.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::error::ApiError;
use crate::rate_limit::network_of;

pub struct StreamPlaces {
    all: Arc<Semaphore>,
    per_user: usize,
    per_ip: usize,
    held: Arc<Mutex<Held>>,
    /// Set when the edge stops: every stream ends at once, so its client
    /// reconnects (to another replica) instead of the drain waiting on it.
    closing: watch::Sender<bool>,
}

/// Streams open, by user and by client network; a key goes when it
/// holds none, so the maps follow the open streams.
#[derive(Default)]
struct Held {
    by_user: HashMap<String, usize>,
    by_network: HashMap<IpAddr, usize>,
}

/// A stream's places, given back when it is dropped.
pub struct StreamPlace {
    _all: OwnedSemaphorePermit,
    user: String,
    network: IpAddr,
    held: Arc<Mutex<Held>>,
}

fn count<K: Borrow<Q> + Hash + Eq, Q: Hash + Eq + ?Sized>(
    map: &HashMap<K, usize>,
    key: &Q,
) -> usize {
    map.get(key).copied().unwrap_or(0)
}

fn give_back<K: Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(held) = map.get_mut(key) {
        *held -= 1;
        if *held == 0 {
            map.remove(key);
        }
    }
}

impl StreamPlaces {
    pub fn new(max: usize, per_user: usize, per_ip: usize) -> Self {
        Self {
            all: Arc::new(Semaphore::new(max)),
            per_user,
            per_ip,
            held: Arc::default(),
            closing: watch::channel(false).0,
        }
    }

    /// Ends every stream, open or opened from now on (the edge is stopping).
    pub fn close_all(&self) {
        self.closing.send_replace(true);
    }

    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for one more stream of `user` from `client_ip`, or why not.
    pub fn take(&self, user: &str, client_ip: IpAddr) -> Result<StreamPlace, ApiError> {
        let network = network_of(client_ip);
        let mut held = self.lock();
        if count(&held.by_user, user) >= self.per_user {
            return Err(ApiError::too_many_streams("one user", self.per_user));
        }
        if count(&held.by_network, &network) >= self.per_ip {
            tracing::warn!(%client_ip, "balance stream refused: this address holds its share");
            return Err(ApiError::too_many_streams("one address", self.per_ip));
        }
        let Ok(all) = self.all.clone().try_acquire_owned() else {
            tracing::warn!("balance stream refused: every place on this edge is taken");
            return Err(ApiError::overloaded());
        };
        *held.by_user.entry(user.to_owned()).or_default() += 1;
        *held.by_network.entry(network).or_default() += 1;
        Ok(StreamPlace {
            _all: all,
            user: user.to_owned(),
            network,
            held: self.held.clone(),
        })
    }

    /// Streams open now (for tests).
    pub fn open(&self) -> usize {
        self.lock().by_user.values().sum()
    }
}

impl Drop for StreamPlace {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        give_back(&mut held.by_user, &self.user);
        give_back(&mut held.by_network, &self.network);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn stream_places_are_bounded_per_user_and_in_all_and_given_back() {
        let here = ip("10.0.0.1");
        let places = StreamPlaces::new(3, 2, 10);
        let a1 = places.take("a", here).unwrap();
        let _a2 = places.take("a", here).unwrap();
        assert_eq!(
            places.take("a", here).err().map(|e| e.kind),
            Some("too-many-streams")
        );
        let _b1 = places.take("b", here).unwrap();
        assert_eq!(
            places.take("c", here).err().map(|e| e.kind),
            Some("overloaded")
        );
        assert_eq!(places.open(), 3);
        // A stream that ends gives both its places back.
        drop(a1);
        let _c1 = places.take("c", here).unwrap();
        assert_eq!(
            places.take("a", here).err().map(|e| e.kind),
            Some("overloaded")
        );
        assert_eq!(places.open(), 3);
    }

    #[test]
    fn one_address_or_ipv6_network_holds_at_most_its_share() {
        let places = StreamPlaces::new(100, 5, 2);
        let _one = places.take("a", ip("2001:db8::1")).unwrap();
        // Another address of the same /64, another user: the same share.
        let _two = places.take("b", ip("2001:db8::ffff:2")).unwrap();
        let Err(refused) = places.take("c", ip("2001:db8::3")) else {
            panic!("a third stream from one /64 was let in");
        };
        assert_eq!(
            (refused.status.as_u16(), refused.kind),
            (429, "too-many-streams")
        );
        assert!(
            refused.detail.contains("one address may hold 2"),
            "{}",
            refused.detail
        );
        // Another /64 and another IPv4 address each have their own.
        let _three = places.take("c", ip("2001:db8:0:1::3")).unwrap();
        let four = places.take("d", ip("192.0.2.7")).unwrap();
        let _five = places.take("e", ip("::ffff:192.0.2.7")).unwrap();
        assert!(places.take("f", ip("192.0.2.7")).is_err());
        drop(four);
        assert!(places.take("f", ip("192.0.2.7")).is_ok());
    }
}
