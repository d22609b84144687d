//! The HTTP client under async-stripe's request types: async-stripe's own
//! hyper client disables connection reuse (`pool_max_idle_per_host(0)`), so
//! every Stripe call would pay a TCP and TLS handshake. This one keeps
//! connections alive; the stale-connection race that made upstream disable
//! pooling is covered by our retries, which reuse the Idempotency-Key.

use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue, USER_AGENT};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use stripe::StripeError;
use stripe_client_core::{CustomizedStripeRequest, StripeClient, StripeMethod};

/// Idle connections are dropped before Stripe's side would close them.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Stripe's answers to our calls are a few KiB; a larger one (a proxy's
/// page, a hostile endpoint) is refused before it is held in memory.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// `Debug` shows no key: the authorization header is marked sensitive.
#[derive(Debug, Clone)]
pub struct PooledStripeClient {
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// Ends with `/`.
    api_base: String,
    authorization: HeaderValue,
    user_agent: HeaderValue,
    stripe_version: HeaderValue,
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
            user_agent: HeaderValue::from_static(concat!(
                "credits-topup/",
                env!("CARGO_PKG_VERSION"),
                " (async-stripe)"
            )),
            stripe_version: HeaderValue::from_static(stripe_shared::version::VERSION.as_str()),
            timeout,
        })
    }
}

impl StripeClient for PooledStripeClient {
    type Err = StripeError;

    async fn execute(&self, request: CustomizedStripeRequest) -> Result<Bytes, StripeError> {
        let (request, config) = request.into_pieces();
        let mut uri = format!("{}v1{}", self.api_base, request.path);
        if let Some(query) = &request.query {
            uri.push('?');
            uri.push_str(query);
        }
        let method = match request.method {
            StripeMethod::Get => hyper::Method::GET,
            StripeMethod::Post => hyper::Method::POST,
            StripeMethod::Delete => hyper::Method::DELETE,
        };
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(uri)
            .header(AUTHORIZATION, self.authorization.clone())
            .header(USER_AGENT, self.user_agent.clone())
            .header(
                HeaderName::from_static("stripe-version"),
                self.stripe_version.clone(),
            );
        if let Some(key) = config
            .request_strategy
            .as_ref()
            .and_then(|strategy| strategy.get_key())
        {
            builder = builder.header(HeaderName::from_static("idempotency-key"), key.as_str());
        }
        let body = match request.body {
            Some(body) => {
                builder = builder.header(CONTENT_TYPE, "application/x-www-form-urlencoded");
                Bytes::from(body)
            }
            None => Bytes::new(),
        };
        let request = builder.body(Full::new(body))?;
        let attempt = async {
            let response = self.http.request(request).await?;
            let status = response.status();
            let bytes = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|err| {
                    StripeError::ClientError(format!(
                        "Stripe's answer was not read whole (at most {MAX_RESPONSE_BYTES} bytes): {err}"
                    ))
                })?
                .to_bytes();
            Ok::<_, StripeError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(config.timeout.unwrap_or(self.timeout), attempt)
            .await
            .map_err(|_| StripeError::Timeout)??;
        if status.is_success() {
            return Ok(bytes);
        }
        let text = std::str::from_utf8(&bytes).unwrap_or_default();
        Err(
            match miniserde::json::from_str::<stripe_shared::Error>(text) {
                Ok(error) => StripeError::Stripe(error.error, status.as_u16()),
                // A proxy's or an outage's page: passing. (JSONDeserialize
                // is kept for a success the service cannot read.)
                Err(_) => StripeError::ClientError(format!(
                    "HTTP {status} with a body that is not a Stripe error"
                )),
            },
        )
    }
}
