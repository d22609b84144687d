//! Firebase ID token verification as a pure function of (token, keys, now):
//! every rule of DESIGN.md, and the known attacks.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use edge_gateway::firebase::{KeySet, TokenError, TokenVerifier};
use edge_gateway::testing::{
    JWKS_JSON, KID, OTHER_PRIVATE_KEY_PEM, PRIVATE_KEY_PEM, PUBLIC_KEY_PEM, X509_MAP_JSON, claims,
    sign,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const PROJECT: &str = "demo-project";
const NOW: i64 = 1_764_000_000;

fn verifier() -> TokenVerifier {
    TokenVerifier::new(PROJECT, 60)
}

fn jwks() -> KeySet {
    KeySet::parse(JWKS_JSON.as_bytes()).unwrap()
}

fn valid_claims() -> Value {
    claims(PROJECT, "user-123", NOW)
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn check(token: &str) -> Result<String, TokenError> {
    verifier()
        .verify(token, &jwks(), NOW)
        .map(|verified| verified.user_id)
}

#[test]
fn a_valid_token_yields_its_sub_with_either_key_set_format() {
    let token = sign(&valid_claims(), KID, PRIVATE_KEY_PEM);
    assert_eq!(check(&token), Ok("user-123".to_owned()));
    let x509 = KeySet::parse(X509_MAP_JSON.as_bytes()).unwrap();
    let verified = verifier().verify(&token, &x509, NOW).unwrap();
    assert_eq!(
        (verified.user_id.as_str(), verified.expires_at),
        ("user-123", NOW + 3600)
    );
}

#[test]
fn alg_none_is_refused() {
    let header =
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "kid": KID, "typ": "JWT"}).to_string());
    let payload = URL_SAFE_NO_PAD.encode(valid_claims().to_string());
    for token in [
        format!("{header}.{payload}."),
        format!("{header}.{payload}"),
    ] {
        assert!(
            matches!(
                check(&token),
                Err(TokenError::WrongAlgorithm | TokenError::Malformed)
            ),
            "{token}"
        );
    }
}

#[test]
fn hs256_signed_with_the_public_key_is_refused() {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(KID.into());
    let token = jsonwebtoken::encode(
        &header,
        &valid_claims(),
        &EncodingKey::from_secret(PUBLIC_KEY_PEM.as_bytes()),
    )
    .unwrap();
    assert_eq!(check(&token), Err(TokenError::WrongAlgorithm));
}

#[test]
fn other_rsa_algorithms_are_refused() {
    for alg in [Algorithm::RS512, Algorithm::PS256] {
        let mut header = Header::new(alg);
        header.kid = Some(KID.into());
        let key = EncodingKey::from_rsa_pem(PRIVATE_KEY_PEM.as_bytes()).unwrap();
        let token = jsonwebtoken::encode(&header, &valid_claims(), &key).unwrap();
        assert_eq!(check(&token), Err(TokenError::WrongAlgorithm), "{alg:?}");
    }
}

#[test]
fn expired_tokens_are_refused_past_the_leeway() {
    let claims = with(valid_claims(), "exp", json!(NOW - 61));
    assert_eq!(
        check(&sign(&claims, KID, PRIVATE_KEY_PEM)),
        Err(TokenError::Expired)
    );
    let claims = with(valid_claims(), "exp", json!(NOW - 59));
    assert!(
        check(&sign(&claims, KID, PRIVATE_KEY_PEM)).is_ok(),
        "within the leeway"
    );
}

#[test]
fn iat_and_auth_time_in_the_future_are_refused() {
    for claim in ["iat", "auth_time"] {
        let claims = with(valid_claims(), claim, json!(NOW + 61));
        assert!(
            matches!(
                check(&sign(&claims, KID, PRIVATE_KEY_PEM)),
                Err(TokenError::BadClaims(_))
            ),
            "{claim}"
        );
        let claims = with(valid_claims(), claim, json!(NOW + 59));
        assert!(
            check(&sign(&claims, KID, PRIVATE_KEY_PEM)).is_ok(),
            "{claim} within the leeway"
        );
    }
}

#[test]
fn wrong_audience_or_issuer_is_refused() {
    let cases = [
        with(valid_claims(), "aud", json!("another-project")),
        with(valid_claims(), "aud", json!([PROJECT])),
        with(
            valid_claims(),
            "iss",
            json!("https://securetoken.google.com/another-project"),
        ),
        with(valid_claims(), "iss", json!("https://accounts.google.com")),
    ];
    for claims in cases {
        assert!(
            matches!(
                check(&sign(&claims, KID, PRIVATE_KEY_PEM)),
                Err(TokenError::BadClaims(_))
            ),
            "{claims}"
        );
    }
}

#[test]
fn missing_claims_are_refused() {
    for claim in ["exp", "iat", "auth_time", "aud", "iss"] {
        let mut claims = valid_claims();
        claims.as_object_mut().unwrap().remove(claim);
        assert!(
            matches!(
                check(&sign(&claims, KID, PRIVATE_KEY_PEM)),
                Err(TokenError::BadClaims(_))
            ),
            "{claim}"
        );
    }
}

#[test]
fn sub_must_be_one_to_128_chars() {
    let mut missing = valid_claims();
    missing.as_object_mut().unwrap().remove("sub");
    for claims in [
        missing,
        with(valid_claims(), "sub", json!("")),
        with(valid_claims(), "sub", json!("x".repeat(129))),
    ] {
        assert!(
            matches!(
                check(&sign(&claims, KID, PRIVATE_KEY_PEM)),
                Err(TokenError::BadClaims(_))
            ),
            "{claims}"
        );
    }
    let longest = with(valid_claims(), "sub", json!("x".repeat(128)));
    assert_eq!(
        check(&sign(&longest, KID, PRIVATE_KEY_PEM)),
        Ok("x".repeat(128))
    );
}

#[test]
fn an_unknown_or_missing_kid_is_refused() {
    assert_eq!(
        check(&sign(&valid_claims(), "rotated-away", PRIVATE_KEY_PEM)),
        Err(TokenError::UnknownKid)
    );
    let key = EncodingKey::from_rsa_pem(PRIVATE_KEY_PEM.as_bytes()).unwrap();
    let no_kid =
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &valid_claims(), &key).unwrap();
    assert_eq!(check(&no_kid), Err(TokenError::MissingKid));
}

#[test]
fn another_key_under_a_known_kid_is_refused() {
    let token = sign(&valid_claims(), KID, OTHER_PRIVATE_KEY_PEM);
    assert_eq!(check(&token), Err(TokenError::BadSignature));
}

#[test]
fn a_payload_altered_after_signing_is_refused() {
    let token = sign(&valid_claims(), KID, PRIVATE_KEY_PEM);
    let parts: Vec<&str> = token.split('.').collect();
    let forged = URL_SAFE_NO_PAD.encode(with(valid_claims(), "sub", json!("admin")).to_string());
    let tampered = format!("{}.{forged}.{}", parts[0], parts[2]);
    assert_eq!(check(&tampered), Err(TokenError::BadSignature));
}

#[test]
fn garbage_is_malformed() {
    for token in [
        "",
        "abc",
        "a.b.c",
        "a.b",
        "....",
        "eyJhbGciOiJSUzI1NiJ9.e30",
    ] {
        assert!(check(token).is_err(), "{token:?}");
    }
}

#[test]
fn key_sets_must_hold_rsa_keys() {
    for bad in [
        "",
        "[]",
        "{}",
        r#"{"keys": []}"#,
        r#"{"kid": "not a pem"}"#,
        r#"{"keys": [{"kty": "oct", "kid": "k", "k": "c2VjcmV0"}]}"#,
    ] {
        assert!(KeySet::parse(bad.as_bytes()).is_err(), "{bad:?}");
    }
    assert_eq!(jwks().len(), 1);
}
