//! The internal bearer token every PaymentsService call must carry.

use secrecy::{ExposeSecret, SecretString};
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

/// `PAYMENTS_INTERNAL_TOKEN`. Never printed.
#[derive(Debug, Clone)]
pub struct InternalToken(SecretString);

impl InternalToken {
    pub fn new(token: String) -> Option<Self> {
        (!token.is_empty()).then(|| Self(token.into()))
    }
}

/// A tonic interceptor refusing calls without `authorization: Bearer <token>`.
pub fn check_bearer(
    token: InternalToken,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |request: Request<()>| {
        if bearer_matches(request.metadata(), &token) {
            Ok(request)
        } else {
            Err(crate::proto::error_reason::status(
                tonic::Code::Unauthenticated,
                "missing or wrong `authorization: Bearer <internal token>` metadata",
                crate::proto::error_reason::UNAUTHENTICATED,
                Default::default(),
            ))
        }
    }
}

fn bearer_matches(metadata: &MetadataMap, token: &InternalToken) -> bool {
    let Some(presented) = metadata
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
    else {
        return false;
    };
    constant_time_eq(presented.as_bytes(), token.0.expose_secret().as_bytes())
}

/// Compares without an early exit (`subtle`), so timing does not reveal a
/// prefix; only the length may show.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(value: &str) -> MetadataMap {
        let mut map = MetadataMap::new();
        map.insert("authorization", value.parse().unwrap());
        map
    }

    #[test]
    fn only_the_exact_bearer_token_passes() {
        let token = InternalToken::new("s3cret".into()).unwrap();
        assert!(bearer_matches(&metadata("Bearer s3cret"), &token));
        for wrong in [
            "Bearer s3cre",
            "Bearer s3cret ",
            "bearer s3cret",
            "s3cret",
            "Bearer ",
            "Basic s3cret",
        ] {
            assert!(!bearer_matches(&metadata(wrong), &token), "{wrong:?}");
        }
        assert!(!bearer_matches(&MetadataMap::new(), &token));
    }

    #[test]
    fn empty_tokens_are_refused_and_never_printed() {
        assert!(InternalToken::new(String::new()).is_none());
        let token = InternalToken::new("s3cret".into()).unwrap();
        assert!(!format!("{token:?}").contains("s3cret"));
    }
}
