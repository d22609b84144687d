//! A small JSON-over-HTTP client for loopback: the demo's walk and the
//! tests' calls.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// A minimal JSON-over-HTTP client (plain HTTP, loopback).
#[derive(Clone)]
pub struct HttpClient(Client<HttpConnector, Full<Bytes>>);

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClient {
    pub fn new() -> Self {
        Self(Client::builder(TokioExecutor::new()).build_http())
    }

    /// Sends a request; answers the status and the JSON body (null if none).
    /// Panics when the server cannot be reached: for tests.
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        bearer: Option<&str>,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (u16, Value) {
        self.try_send(method, url, bearer, headers, body)
            .await
            .unwrap_or_else(|err| panic!("{method} {url}: {err}"))
    }

    pub async fn try_send(
        &self,
        method: &str,
        url: &str,
        bearer: Option<&str>,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<(u16, Value), String> {
        let mut request = hyper::Request::builder().method(method).uri(url);
        if let Some(token) = bearer {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if !body.is_empty()
            && !headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        {
            request = request.header("content-type", "application/json");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|err| err.to_string())?;
        let response = self
            .0
            .request(request)
            .await
            .map_err(|err| err.to_string())?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|err| err.to_string())?
            .to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, json))
    }
}
