//! Test and demo support: Firebase-shaped ID tokens signed by the test key
//! pair in `tests/fixtures` (never Google's), and Stripe-signed webhooks.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

pub const KID: &str = "test-key-1";
pub const PRIVATE_KEY_PEM: &str = include_str!("../tests/fixtures/test-key.pem");
pub const PUBLIC_KEY_PEM: &str = include_str!("../tests/fixtures/test-key.pub.pem");
pub const OTHER_PRIVATE_KEY_PEM: &str = include_str!("../tests/fixtures/other-key.pem");
pub const JWKS_JSON: &str = include_str!("../tests/fixtures/jwks.json");
pub const X509_MAP_JSON: &str = include_str!("../tests/fixtures/x509-map.json");

/// The claims of a valid token for `user_id` issued at `now`.
pub fn claims(project_id: &str, user_id: &str, now: i64) -> Value {
    json!({
        "iss": format!("https://securetoken.google.com/{project_id}"),
        "aud": project_id,
        "auth_time": now - 10,
        "user_id": user_id,
        "sub": user_id,
        "iat": now - 10,
        "exp": now + 3600,
        "firebase": {"identities": {}, "sign_in_provider": "custom"},
    })
}

/// RS256 over `claims` with the test key, under `kid`.
pub fn sign(claims: &Value, kid: &str, private_key_pem: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    let key = EncodingKey::from_rsa_pem(private_key_pem.as_bytes()).expect("test key");
    jsonwebtoken::encode(&header, claims, &key).expect("sign")
}

/// A valid ID token for `user_id`.
pub fn id_token(project_id: &str, user_id: &str, now: i64) -> String {
    sign(&claims(project_id, user_id, now), KID, PRIVATE_KEY_PEM)
}

/// A valid ID token for `user_id` that expires `lifetime_secs` after `now`.
pub fn id_token_lasting(project_id: &str, user_id: &str, now: i64, lifetime_secs: i64) -> String {
    let mut claims = claims(project_id, user_id, now);
    claims["exp"] = json!(now + lifetime_secs);
    sign(&claims, KID, PRIVATE_KEY_PEM)
}

/// `Stripe-Signature` for `body` at `timestamp`.
pub fn stripe_signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let secret = crate::stripe_signature::WebhookSecret::new(secret).expect("secret");
    format!("t={timestamp},v1={}", secret.sign(timestamp, body))
}
