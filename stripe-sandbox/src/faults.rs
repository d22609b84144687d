//! What a test asks of the sandbox's API: answers given instead of the
//! API's (faults), and the requests it received.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

/// An answer given instead of the API's, to a request a test chose.
#[derive(Debug, Clone)]
pub struct Fault {
    pub(crate) status: StatusCode,
    pub(crate) body: Bytes,
    pub(crate) delay: Duration,
}

impl Fault {
    /// Stripe's error object, with the HTTP status Stripe would send it with.
    pub fn error(status: u16, error_type: &str, code: &str, message: &str) -> Self {
        Self::json(
            status,
            &json!({"error": {"type": error_type, "code": code, "message": message}}),
        )
    }

    pub fn json(status: u16, body: &Value) -> Self {
        Self::body(status, body.to_string())
    }

    pub fn body(status: u16, body: impl Into<Bytes>) -> Self {
        Self {
            status: StatusCode::from_u16(status).expect("an HTTP status"),
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    /// Sent only after `delay` (a Stripe that hangs).
    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

pub(crate) struct QueuedFault {
    pub(crate) method: String,
    /// Only requests whose path starts with this.
    pub(crate) path_prefix: String,
    pub(crate) remaining: u64,
    pub(crate) fault: Fault,
}

/// A request as the sandbox received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// The query string, as sent (percent-encoded); empty when none.
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Form fields of a Stripe request body (`a[b]=c` keys kept as written).
pub fn form_fields(request: &RecordedRequest) -> HashMap<String, String> {
    form_urlencoded::parse(&request.body).into_owned().collect()
}
