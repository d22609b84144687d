//! Google's key set, fetched over HTTPS and cached per `Cache-Control:
//! max-age`; one refresh at a time, in the background once a set is held
//! (requests go on with the last good set meanwhile, even while Google's URL
//! hangs); an unknown `kid` refetches at most once a minute; the last good
//! set is kept when a refresh fails.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{Mutex, RwLock};
use tokio::time::Instant;

use crate::firebase::KeySet;

/// Google's default `kid` → X.509 certificate map for Firebase ID tokens.
pub const GOOGLE_X509_URL: &str =
    "https://www.googleapis.com/robot/v1/metadata/x509/securetoken@system.gserviceaccount.com";

const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
const UNKNOWN_KID_INTERVAL: Duration = Duration::from_secs(60);
/// After a failed refresh, the last good set serves this long before a retry.
const FAILED_REFRESH_BACKOFF: Duration = Duration::from_secs(5);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_KEY_SET_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
#[error("no Firebase keys available: {0}")]
pub struct KeysUnavailable(String);

struct Cached {
    keys: Option<Arc<KeySet>>,
    /// Fetch again after this instant.
    refresh_at: Instant,
    last_fetch: Option<Instant>,
}

#[derive(Clone)]
pub struct KeyCache(Arc<Shared>);

struct Shared {
    url: hyper::Uri,
    /// The URL's host is this machine (tests, the demo): only then may it
    /// be plain http, and its set hold the repository's public test key.
    loopback: bool,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    cached: RwLock<Cached>,
    /// Held while fetching, so concurrent requests make one fetch.
    fetching: Arc<Mutex<()>>,
}

impl KeyCache {
    pub fn new(url: &str) -> Result<Self, String> {
        let url: hyper::Uri = url
            .parse()
            .map_err(|err| format!("FIREBASE_JWKS_URL: {err}"))?;
        let loopback = is_loopback(&url);
        match url.scheme_str() {
            Some("https") => {}
            Some("http") if loopback => {}
            _ => {
                return Err(format!(
                    "FIREBASE_JWKS_URL must be https:// (http:// only for a loopback host: tests, the demo), got {url}"
                ));
            }
        }
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self(Arc::new(Shared {
            url,
            loopback,
            client: Client::builder(TokioExecutor::new()).build(connector),
            cached: RwLock::new(Cached {
                keys: None,
                refresh_at: Instant::now(),
                last_fetch: None,
            }),
            fetching: Arc::new(Mutex::new(())),
        })))
    }

    /// The current key set. Past its max-age, the last good set is answered
    /// at once while one refresh runs in the background; only a cache that
    /// never held a set waits for a fetch.
    pub async fn keys(&self) -> Result<Arc<KeySet>, KeysUnavailable> {
        let stale = {
            let cached = self.0.cached.read().await;
            match &cached.keys {
                Some(keys) if Instant::now() < cached.refresh_at => return Ok(keys.clone()),
                Some(keys) => keys.clone(),
                None => {
                    drop(cached);
                    return self.refresh(|cached| cached.keys.is_some()).await;
                }
            }
        };
        if let Ok(one_at_a_time) = self.0.fetching.clone().try_lock_owned() {
            let shared = self.0.clone();
            tokio::spawn(async move {
                let _one_at_a_time = one_at_a_time;
                let _ = shared.fetch_and_store().await;
            });
        }
        Ok(stale)
    }

    /// At start, away from loopback: fetches the set once and refuses to go
    /// on if it holds the repository's public test key (a configuration
    /// copied from the demo or a test). A set that cannot be fetched now
    /// only warns: Google may be out of reach for a moment, and every later
    /// fetch refuses such a set too.
    pub async fn check_at_start(&self) -> Result<(), String> {
        if self.0.loopback {
            return Ok(());
        }
        let _one_at_a_time = self.0.fetching.lock().await;
        match self.0.fetch_and_store().await {
            Err(KeysUnavailable(reason)) if reason == HOLDS_A_TEST_KEY => Err(format!(
                "FIREBASE_JWKS_URL {}: {HOLDS_A_TEST_KEY}",
                self.0.url
            )),
            _ => Ok(()),
        }
    }

    /// A refetch because a token names an unknown `kid`: at most once a minute.
    pub async fn keys_after_unknown_kid(&self) -> Result<Arc<KeySet>, KeysUnavailable> {
        self.refresh(|cached| {
            cached.keys.is_some()
                && cached
                    .last_fetch
                    .is_some_and(|at| at.elapsed() < UNKNOWN_KID_INTERVAL)
        })
        .await
    }

    /// Fetches unless `fresh_enough` says another caller just did.
    async fn refresh(
        &self,
        fresh_enough: impl Fn(&Cached) -> bool,
    ) -> Result<Arc<KeySet>, KeysUnavailable> {
        let asked_at = Instant::now();
        let _one_at_a_time = self.0.fetching.lock().await;
        {
            let cached = self.0.cached.read().await;
            // A fetch that finished while this caller waited answers it too.
            let fetched_meanwhile = cached.last_fetch.is_some_and(|at| at >= asked_at);
            if fresh_enough(&cached) || fetched_meanwhile {
                return cached
                    .keys
                    .clone()
                    .ok_or_else(|| KeysUnavailable("never fetched".into()));
            }
        }
        self.0.fetch_and_store().await
    }
}

impl Shared {
    /// A fresh cache for the same URL (tests).
    #[cfg(test)]
    fn clone_for_test(&self) -> Self {
        Self {
            url: self.url.clone(),
            loopback: self.loopback,
            client: self.client.clone(),
            cached: RwLock::new(Cached {
                keys: None,
                refresh_at: Instant::now(),
                last_fetch: None,
            }),
            fetching: Arc::new(Mutex::new(())),
        }
    }

    /// Fetches the set and keeps it, or keeps the last good one. The caller
    /// holds `fetching`.
    async fn fetch_and_store(&self) -> Result<Arc<KeySet>, KeysUnavailable> {
        let fetched = self.fetch().await;
        let mut cached = self.cached.write().await;
        let now = Instant::now();
        cached.last_fetch = Some(now);
        match fetched {
            Ok((keys, max_age)) => {
                tracing::info!(
                    keys = keys.len(),
                    max_age_secs = max_age.as_secs(),
                    "Firebase keys refreshed"
                );
                let keys = Arc::new(keys);
                cached.keys = Some(keys.clone());
                cached.refresh_at = now + max_age;
                Ok(keys)
            }
            Err(reason) => {
                tracing::warn!(%reason, "Firebase key refresh failed; keeping the last good keys");
                cached.refresh_at = now + FAILED_REFRESH_BACKOFF;
                cached.keys.clone().ok_or(KeysUnavailable(reason))
            }
        }
    }

    async fn fetch(&self) -> Result<(KeySet, Duration), String> {
        let request = hyper::Request::get(self.url.clone())
            .body(Empty::new())
            .map_err(|err| err.to_string())?;
        let response = tokio::time::timeout(FETCH_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|err| err.to_string())?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        let max_age = response
            .headers()
            .get(hyper::header::CACHE_CONTROL)
            .and_then(|value| value.to_str().ok())
            .and_then(max_age)
            .unwrap_or(DEFAULT_MAX_AGE);
        let body = tokio::time::timeout(
            FETCH_TIMEOUT,
            Limited::new(response.into_body(), MAX_KEY_SET_BYTES).collect(),
        )
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|err| err.to_string())?
        .to_bytes();
        let keys = KeySet::parse(&body).map_err(|err| err.to_string())?;
        if !self.loopback && keys.holds_a_test_key() {
            return Err(HOLDS_A_TEST_KEY.to_owned());
        }
        Ok((keys, max_age))
    }
}

/// Why a set holding the repository's test key is refused.
const HOLDS_A_TEST_KEY: &str = "the key set holds this repository's public test key, with which anyone can sign tokens; refused outside loopback";

/// Whether `url`'s host is this machine.
fn is_loopback(url: &hyper::Uri) -> bool {
    match url.host() {
        Some(host) if host.eq_ignore_ascii_case("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// `max-age` of a Cache-Control value.
pub fn max_age(cache_control: &str) -> Option<Duration> {
    cache_control.split(',').find_map(|directive| {
        let (name, value) = directive.trim().split_once('=')?;
        name.eq_ignore_ascii_case("max-age")
            .then(|| value.trim().trim_matches('"').parse().ok())
            .flatten()
            .map(Duration::from_secs)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_urls_are_https_unless_their_host_is_loopback() {
        for url in [
            GOOGLE_X509_URL,
            "http://127.0.0.1:9000/jwks",
            "http://127.8.9.10/jwks",
            "http://localhost:9000/jwks",
            "http://[::1]:9000/jwks",
        ] {
            assert!(KeyCache::new(url).is_ok(), "{url}");
        }
        for url in [
            "http://www.googleapis.com/robot/v1/metadata/x509/securetoken@system.gserviceaccount.com",
            "http://10.0.0.1/jwks",
            "http://localhost.example.com/jwks",
            "ftp://127.0.0.1/jwks",
            "/jwks",
        ] {
            let refused = KeyCache::new(url).err().unwrap_or_default();
            assert!(
                refused.starts_with("FIREBASE_JWKS_URL must be https://"),
                "{url}: {refused}"
            );
        }
    }

    /// Serves `body` to every request on a loopback port, as a key URL would.
    async fn serve(body: &'static str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/keys", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        });
        url
    }

    #[tokio::test]
    async fn a_set_holding_the_test_key_is_refused_away_from_loopback() {
        let url = serve(include_str!("../tests/fixtures/jwks.json")).await;
        // On loopback (tests, the demo) it is used.
        let local = KeyCache::new(&url).unwrap();
        local.check_at_start().await.unwrap();
        assert_eq!(local.keys().await.map(|keys| keys.len()).ok(), Some(1));
        // Anywhere else, start stops with one line and no token verifies.
        let mut shared = Shared::clone_for_test(&local.0);
        shared.loopback = false;
        let remote = KeyCache(Arc::new(shared));
        let refused = remote.check_at_start().await.unwrap_err();
        assert!(
            refused.contains("holds this repository's public test key"),
            "{refused}"
        );
        assert!(!refused.contains('\n'));
        assert!(remote.keys().await.is_err());
    }

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(
            max_age("public, max-age=19204, must-revalidate, no-transform"),
            Some(Duration::from_secs(19204))
        );
        assert_eq!(max_age("max-age=60"), Some(Duration::from_secs(60)));
        assert_eq!(max_age("no-cache"), None);
        assert_eq!(max_age("max-age=soon"), None);
    }
}
