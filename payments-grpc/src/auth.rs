//! The bearer tokens: the internal one every PaymentsService call must
//! carry, and the admin one (its own) every AdminService call must carry.

use secrecy::{ExposeSecret, SecretString};
use tonic::metadata::MetadataMap;
use tonic::{Request, Status};

/// `PAYMENTS_INTERNAL_TOKEN` or `PAYMENTS_ADMIN_TOKEN`. Never printed.
#[derive(Debug, Clone)]
pub struct BearerToken(SecretString);

impl BearerToken {
    pub fn new(token: String) -> Option<Self> {
        (!token.is_empty()).then(|| Self(token.into()))
    }
}

/// A tonic interceptor refusing calls without `authorization: Bearer <token>`.
pub fn check_bearer(
    token: BearerToken,
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

/// The AdminService's interceptor: with no admin token configured every
/// call is refused (`PERMISSION_DENIED`, `ADMIN_DISABLED`), whatever it
/// carries; otherwise as [`check_bearer`] with the admin token, so the
/// internal token is refused here like any other wrong one.
pub fn check_admin_bearer(
    token: Option<BearerToken>,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |request: Request<()>| match &token {
        None => Err(crate::proto::error_reason::status(
            tonic::Code::PermissionDenied,
            "AdminService is off: PAYMENTS_ADMIN_TOKEN is not set",
            crate::proto::error_reason::ADMIN_DISABLED,
            Default::default(),
        )),
        Some(token) if bearer_matches(request.metadata(), token) => Ok(request),
        Some(_) => Err(crate::proto::error_reason::status(
            tonic::Code::Unauthenticated,
            "missing or wrong `authorization: Bearer <admin token>` metadata",
            crate::proto::error_reason::UNAUTHENTICATED,
            Default::default(),
        )),
    }
}

fn bearer_matches(metadata: &MetadataMap, token: &BearerToken) -> bool {
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
        let token = BearerToken::new("s3cret".into()).unwrap();
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
    fn the_admin_interceptor_refuses_everything_without_an_admin_token() {
        let request = |value: &str| {
            let mut request = Request::new(());
            *request.metadata_mut() = metadata(value);
            request
        };
        let mut off = check_admin_bearer(None);
        let refused = off(request("Bearer anything")).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
        let mut on = check_admin_bearer(BearerToken::new("adm1n".into()));
        assert!(on(request("Bearer adm1n")).is_ok());
        assert_eq!(
            on(request("Bearer internal")).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
    }

    #[test]
    fn empty_tokens_are_refused_and_never_printed() {
        assert!(BearerToken::new(String::new()).is_none());
        let token = BearerToken::new("s3cret".into()).unwrap();
        assert!(!format!("{token:?}").contains("s3cret"));
    }
}
