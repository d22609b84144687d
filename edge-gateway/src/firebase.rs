//! Firebase ID token verification, as firebase-admin's verifyIdToken does it
//! plus the `auth_time` check: a pure function of (token, keys, now).

use std::collections::HashMap;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, Validation};
use serde::Deserialize;

/// Google's public keys for Firebase ID tokens, by `kid`.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, DecodingKey>,
}

/// The `kid` of the repository's test key (`tests/fixtures`).
pub const TEST_KEY_ID: &str = "test-key-1";
/// The public halves of the repository's test keys, whose private halves
/// are in the repository too.
const TEST_PUBLIC_KEYS_PEM: [&str; 2] = [
    include_str!("../tests/fixtures/test-key.pub.pem"),
    include_str!("../tests/fixtures/other-key.pub.pem"),
];

/// An RSA key's modulus, without leading zero bytes.
fn rsa_modulus(key: &DecodingKey) -> Option<Vec<u8>> {
    let modulus = match key.kind() {
        DecodingKeyKind::RsaModulusExponent { n, .. } => n.as_slice(),
        // PEM keys and certificates: PKCS#1 `RSAPublicKey ::= SEQUENCE { n, e }`.
        DecodingKeyKind::SecretOrDer(der) => match der_item(der)? {
            (0x30, sequence) => match der_item(sequence)? {
                (0x02, n) => n,
                _ => return None,
            },
            _ => return None,
        },
    };
    let first = modulus.iter().position(|byte| *byte != 0)?;
    Some(modulus[first..].to_vec())
}

/// The tag and contents of the first DER item of `bytes`.
fn der_item(bytes: &[u8]) -> Option<(u8, &[u8])> {
    let (&tag, rest) = bytes.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        0..=0x7f => (usize::from(first), rest),
        0x81..=0x84 => {
            let (len, rest) = rest.split_at_checked(usize::from(first & 0x7f))?;
            let len = len
                .iter()
                .fold(0usize, |len, byte| len << 8 | usize::from(*byte));
            (len, rest)
        }
        _ => return None,
    };
    Some((tag, rest.get(..len)?))
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

    /// Whether the set holds one of this repository's public test keys (by
    /// `kid`, or by modulus under any `kid`), whose private halves are
    /// public too: anyone could sign tokens that such a set accepts.
    pub fn holds_a_test_key(&self) -> bool {
        let test_moduli: Vec<Vec<u8>> = TEST_PUBLIC_KEYS_PEM
            .iter()
            .filter_map(|pem| DecodingKey::from_rsa_pem(pem.as_bytes()).ok())
            .filter_map(|key| rsa_modulus(&key))
            .collect();
        self.keys.contains_key(TEST_KEY_ID)
            || self
                .keys
                .values()
                .filter_map(rsa_modulus)
                .any(|modulus| test_moduli.contains(&modulus))
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

    const JWKS: &str = include_str!("../tests/fixtures/jwks.json");
    const X509_MAP: &str = include_str!("../tests/fixtures/x509-map.json");

    /// `json` with every occurrence of `from` replaced by `to`.
    fn set(json: &str, from: &str, to: &str) -> KeySet {
        KeySet::parse(json.replace(from, to).as_bytes()).unwrap()
    }

    #[test]
    fn the_repositorys_test_keys_are_found_by_kid_and_by_modulus() {
        // As served in tests, under their own kid: found by kid.
        assert!(KeySet::parse(JWKS.as_bytes()).unwrap().holds_a_test_key());
        assert!(
            KeySet::parse(X509_MAP.as_bytes())
                .unwrap()
                .holds_a_test_key()
        );
        // Under a kid of Google's shape: found by modulus, as a JWK and in a certificate.
        assert!(set(JWKS, TEST_KEY_ID, "a1b2c3").holds_a_test_key());
        assert!(set(X509_MAP, TEST_KEY_ID, "a1b2c3").holds_a_test_key());
        // The other test key, as a JWK under another kid.
        let other = DecodingKey::from_rsa_pem(TEST_PUBLIC_KEYS_PEM[1].as_bytes()).unwrap();
        let n = rsa_modulus(&other).unwrap();
        let other = KeySet {
            keys: HashMap::from([(
                "d4e5".to_owned(),
                DecodingKey::from_rsa_raw_components(&n, &[1, 0, 1]),
            )]),
        };
        assert!(other.holds_a_test_key());
        // Another modulus under another kid is not one.
        let n = JWKS
            .split("\"n\": \"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let changed = format!("{}A", &n[..n.len() - 1]);
        assert!(!set(&JWKS.replace(TEST_KEY_ID, "a1b2c3"), n, &changed).holds_a_test_key());
    }

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
