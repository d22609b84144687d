//! One HTTP round trip to Stripe's API: a form-encoded request with the
//! secret key, the pinned `Stripe-Version` and an optional
//! `Idempotency-Key`, over a pooled hyper + rustls client, answered with the
//! status and the body (at most `MAX_RESPONSE_BYTES`). Connections are kept
//! alive; the stale-connection race is covered by the client's retries,
//! which reuse the Idempotency-Key. What the body means is `wire`'s.

use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::StatusCode;
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue, USER_AGENT};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// The Stripe API version every request names, and the one whose objects
/// `wire` reads.
pub const STRIPE_API_VERSION: &str = "2026-09-30.endive";
/// Idle connections are dropped before Stripe's side would close them.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Stripe's answers to our calls are a few KiB; a larger one (a proxy's
/// page, a hostile endpoint) is refused before it is held in memory.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// One request: `GET` with `query`, or `POST` with `form` as its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call<'a> {
    pub method: Method,
    /// After `/v1`, starting with `/`; ids in it are checked by the caller.
    pub path: String,
    /// `application/x-www-form-urlencoded` pairs: the query of a GET, the
    /// body of a POST.
    pub params: Vec<(&'a str, String)>,
    pub idempotency_key: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

/// Nothing came back that could be read as Stripe's: the connection, the
/// timeout, or the size limit. Always worth another attempt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TransportError(pub String);

/// `Debug` shows no key: the authorization header is marked sensitive.
#[derive(Debug, Clone)]
pub struct PooledStripeClient {
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// Ends with `/`.
    api_base: String,
    authorization: HeaderValue,
    timeout: Duration,
}

impl PooledStripeClient {
    pub fn new(secret_key: &str, api_base: &str, timeout: Duration) -> Result<Self, String> {
        let mut authorization = HeaderValue::from_str(&format!("Bearer {secret_key}"))
            .map_err(|_| "STRIPE_SECRET_KEY must be visible ASCII".to_owned())?;
        authorization.set_sensitive(true);
        let mut api_base = api_base.to_owned();
        if !api_base.ends_with('/') {
            api_base.push('/');
        }
        api_base
            .parse::<hyper::Uri>()
            .map_err(|err| format!("STRIPE_API_BASE is not a URL: {err}"))?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .build();
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(connector);
        Ok(Self {
            http,
            api_base,
            authorization,
            timeout,
        })
    }

    /// Sends `call` once, within the attempt timeout.
    pub async fn send(&self, call: &Call<'_>) -> Result<(StatusCode, Bytes), TransportError> {
        let encoded = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            for (name, value) in &call.params {
                form.append_pair(name, value);
            }
            form.finish()
        };
        let mut uri = format!("{}v1{}", self.api_base, call.path);
        let (method, body) = match call.method {
            Method::Get => {
                if !encoded.is_empty() {
                    uri.push('?');
                    uri.push_str(&encoded);
                }
                (hyper::Method::GET, Bytes::new())
            }
            Method::Post => (hyper::Method::POST, Bytes::from(encoded)),
        };
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(uri)
            .header(AUTHORIZATION, self.authorization.clone())
            .header(
                USER_AGENT,
                concat!("credits-topup/", env!("CARGO_PKG_VERSION")),
            )
            .header(
                HeaderName::from_static("stripe-version"),
                STRIPE_API_VERSION,
            );
        if call.method == Method::Post {
            builder = builder.header(CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        if let Some(key) = call.idempotency_key {
            builder = builder.header(HeaderName::from_static("idempotency-key"), key);
        }
        let request = builder
            .body(Full::new(body))
            .map_err(|err| TransportError(format!("the request could not be built: {err}")))?;
        let attempt = async {
            let response = self
                .http
                .request(request)
                .await
                .map_err(|err| TransportError(format!("Stripe could not be reached: {err}")))?;
            let status = response.status();
            let bytes = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|err| {
                    TransportError(format!(
                        "Stripe's answer was not read whole (at most {MAX_RESPONSE_BYTES} bytes): {err}"
                    ))
                })?
                .to_bytes();
            Ok((status, bytes))
        };
        tokio::time::timeout(self.timeout, attempt)
            .await
            .map_err(|_| TransportError("timed out".into()))?
    }
}
