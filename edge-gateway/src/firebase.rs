//! Firebase ID token verification, as firebase-admin's verifyIdToken does it
//! plus the `auth_time` check: a pure function of (token, keys, now).

use std::collections::HashMap;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// Google's public keys for Firebase ID tokens, by `kid`.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, DecodingKey>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unusable key set: {0}")]
pub struct KeySetError(pub String);

impl KeySet {
    /// Accepts Google's map of `kid` → X.509 PEM certificate, or a JWK Set.
    pub fn parse(json: &[u8]) -> Result<Self, KeySetError> {
        let value: serde_json::Value =
            serde_json::from_slice(json).map_err(|err| KeySetError(format!("not JSON: {err}")))?;
        let mut keys = HashMap::new();
        if value.get("keys").is_some() {
            let set: JwkSet = serde_json::from_value(value)
                .map_err(|err| KeySetError(format!("bad JWK Set: {err}")))?;
            for jwk in set.keys {
                let Some(kid) = jwk.common.key_id.clone() else {
                    continue;
                };
                // Only RSA keys can verify RS256; others are skipped.
                if let Ok(key) = DecodingKey::from_jwk(&jwk)
                    && matches!(
                        jwk.algorithm,
                        jsonwebtoken::jwk::AlgorithmParameters::RSA(_)
                    )
                {
                    keys.insert(kid, key);
                }
            }
        } else {
            let map: HashMap<String, String> = serde_json::from_value(value)
                .map_err(|err| KeySetError(format!("bad certificate map: {err}")))?;
            for (kid, pem) in map {
                let key = DecodingKey::from_rsa_pem(pem.as_bytes())
                    .map_err(|err| KeySetError(format!("certificate {kid}: {err}")))?;
                keys.insert(kid, key);
            }
        }
        if keys.is_empty() {
            return Err(KeySetError("no RSA keys".into()));
        }
        Ok(Self { keys })
    }

    pub fn get(&self, kid: &str) -> Option<&DecodingKey> {
        self.keys.get(kid)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a JWT")]
    Malformed,
    #[error("the token must be signed with RS256")]
    WrongAlgorithm,
    #[error("the token names no key")]
    MissingKid,
    #[error("the token's key is unknown")]
    UnknownKid,
    #[error("the token's signature is invalid")]
    BadSignature,
    #[error("the token's claims are invalid: {0}")]
    BadClaims(&'static str),
    #[error("the token has expired")]
    Expired,
}

#[derive(Deserialize)]
struct Claims {
    aud: String,
    iss: String,
    #[serde(default)]
    sub: String,
    exp: i64,
    iat: i64,
    auth_time: i64,
}

/// What a valid token proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// `sub`: the user id.
    pub user_id: String,
    /// `exp`, in Unix seconds.
    pub expires_at: i64,
}

/// Checks Firebase ID tokens for one project.
#[derive(Debug, Clone)]
pub struct TokenVerifier {
    project_id: String,
    issuer: String,
    leeway_secs: i64,
}

impl TokenVerifier {
    pub fn new(project_id: &str, leeway_secs: u32) -> Self {
        Self {
            project_id: project_id.to_owned(),
            issuer: format!("https://securetoken.google.com/{project_id}"),
            leeway_secs: i64::from(leeway_secs),
        }
    }

    /// The `kid` the token's header names, once the header is acceptable.
    pub fn key_id(token: &str) -> Result<String, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != Algorithm::RS256 {
            return Err(TokenError::WrongAlgorithm);
        }
        header
            .kid
            .filter(|kid| !kid.is_empty())
            .ok_or(TokenError::MissingKid)
    }

    pub fn leeway_secs(&self) -> i64 {
        self.leeway_secs
    }

    /// The user id (`sub`) and expiry of a valid token.
    pub fn verify(
        &self,
        token: &str,
        keys: &KeySet,
        now_unix: i64,
    ) -> Result<VerifiedToken, TokenError> {
        let kid = Self::key_id(token)?;
        let key = keys.get(&kid).ok_or(TokenError::UnknownKid)?;

        // Signature and algorithm here; time and audience below, against `now`.
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map_err(|err| match err.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => TokenError::BadSignature,
                jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => TokenError::WrongAlgorithm,
                jsonwebtoken::errors::ErrorKind::Json(_) => {
                    TokenError::BadClaims("missing or mistyped claims")
                }
                _ => TokenError::Malformed,
            })?
            .claims;

        if claims.aud != self.project_id {
            return Err(TokenError::BadClaims("aud is not this project"));
        }
        if claims.iss != self.issuer {
            return Err(TokenError::BadClaims("iss is not this project's issuer"));
        }
        if claims.exp.saturating_add(self.leeway_secs) <= now_unix {
            return Err(TokenError::Expired);
        }
        if claims.iat > now_unix.saturating_add(self.leeway_secs) {
            return Err(TokenError::BadClaims("iat is in the future"));
        }
        if claims.auth_time > now_unix.saturating_add(self.leeway_secs) {
            return Err(TokenError::BadClaims("auth_time is in the future"));
        }
        if claims.sub.is_empty() || claims.sub.chars().count() > 128 {
            return Err(TokenError::BadClaims("sub must be 1 to 128 characters"));
        }
        Ok(VerifiedToken {
            user_id: claims.sub,
            expires_at: claims.exp,
        })
    }
}

/// Tokens already verified, by SHA-256 of the whole token, until they expire:
/// an RS256 check costs far more than a request, and the SPA sends the same
/// token for up to an hour. Bounded; only fully verified tokens enter.
pub struct VerifiedTokens {
    entries: std::sync::Mutex<HashMap<[u8; 32], VerifiedToken>>,
    capacity: usize,
}

impl VerifiedTokens {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: std::sync::Mutex::new(HashMap::new()),
            capacity,
        }
    }

    fn key(token: &str) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(token.as_bytes()).into()
    }

    /// The cached result for `token`, if it is still within its `exp`.
    pub fn get(&self, token: &str, now_unix: i64, leeway_secs: i64) -> Option<VerifiedToken> {
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entries
            .get(&Self::key(token))
            .filter(|verified| verified.expires_at.saturating_add(leeway_secs) > now_unix)
            .cloned()
    }

    pub fn insert(&self, token: &str, verified: VerifiedToken, now_unix: i64) {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() >= self.capacity {
            entries.retain(|_, cached| cached.expires_at > now_unix);
            // Still full: the token closest to its expiry goes (the oldest,
            // as every ID token lives one hour), not every user's at once.
            while entries.len() >= self.capacity {
                let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, cached)| cached.expires_at)
                    .map(|(key, _)| *key)
                else {
                    break;
                };
                entries.remove(&oldest);
            }
        }
        entries.insert(Self::key(token), verified);
    }

    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .map(|entries| entries.len())
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified(user: &str, expires_at: i64) -> VerifiedToken {
        VerifiedToken {
            user_id: user.into(),
            expires_at,
        }
    }

    #[test]
    fn cached_tokens_expire_with_their_exp() {
        let cache = VerifiedTokens::new(10);
        cache.insert("token-a", verified("a", 1_000), 500);
        assert_eq!(cache.get("token-a", 999, 0), Some(verified("a", 1_000)));
        assert_eq!(cache.get("token-a", 1_000, 0), None);
        assert_eq!(cache.get("token-a", 1_050, 60), Some(verified("a", 1_000)));
        assert_eq!(cache.get("token-b", 500, 0), None);
        assert_eq!(cache.get("token-a ", 500, 0), None, "only the exact token");
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = VerifiedTokens::new(3);
        for n in 0..10 {
            cache.insert(&format!("t{n}"), verified("u", 2_000), 1_000);
            assert!(cache.len() <= 3);
        }
        assert_eq!(cache.get("t9", 1_000, 0), Some(verified("u", 2_000)));
        // Full of live tokens: the oldest goes, the others stay.
        let cache = VerifiedTokens::new(3);
        for n in 0..4 {
            cache.insert(&format!("t{n}"), verified("u", 2_000 + n), 1_000);
        }
        assert_eq!(cache.get("t0", 1_000, 0), None);
        for n in 1..4 {
            assert!(cache.get(&format!("t{n}"), 1_000, 0).is_some(), "t{n} kept");
        }
        // Expired entries go first.
        let cache = VerifiedTokens::new(2);
        cache.insert("old", verified("u", 100), 50);
        cache.insert("live", verified("u", 2_000), 50);
        cache.insert("new", verified("u", 2_000), 1_000);
        assert_eq!(cache.len(), 2);
        assert!(cache.get("live", 1_000, 0).is_some());
    }
}
