//! Stripe webhook signatures: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=…]`,
//! HMAC-SHA256 over `<t>.<raw body>` keyed by the whole `whsec_…` string.
//! A pure function of (header, body, secrets, now).

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// Stripe's default tolerance, both ways.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// One webhook signing secret (`whsec_…`). Never printed.
#[derive(Debug, Clone)]
pub struct WebhookSecret(SecretString);

impl WebhookSecret {
    pub fn new(secret: &str) -> Option<Self> {
        let secret = secret.trim();
        (!secret.is_empty()).then(|| Self(secret.into()))
    }

    /// Every secret of a comma-separated list (several during rotation).
    pub fn parse_list(list: &str) -> Vec<Self> {
        list.split(',').filter_map(Self::new).collect()
    }

    fn mac(&self, timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.0.expose_secret().as_bytes())
            .expect("HMAC takes any key length");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The `v1` signature Stripe would send for this body at `timestamp`.
    pub fn sign(&self, timestamp: i64, body: &[u8]) -> String {
        hex::encode(
            self.mac(&timestamp.to_string(), body)
                .finalize()
                .into_bytes(),
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing Stripe-Signature header")]
    Missing,
    #[error("malformed Stripe-Signature header: {0}")]
    Malformed(&'static str),
    #[error("Stripe-Signature timestamp is outside the tolerance")]
    OutsideTolerance,
    #[error("no v1 signature matches")]
    NoMatch,
}

/// Stripe's header is `t=…` and one `v1` per active secret (plus a `v0` in
/// test mode): a few hundred bytes. Anything much larger is an attack.
pub const MAX_HEADER_BYTES: usize = 2048;
/// `v1` values accepted in one header (one per secret during rotation).
pub const MAX_SIGNATURES: usize = 8;

/// A `Stripe-Signature` header whose shape and timestamp are acceptable:
/// checked before the body is read, so a malformed or stale delivery costs
/// no body upload and no HMAC.
#[derive(Debug)]
pub struct SignatureHeader<'a> {
    /// As sent: the signed message starts with these exact bytes.
    timestamp: &'a str,
    signatures: Vec<[u8; 32]>,
}

impl<'a> SignatureHeader<'a> {
    pub fn parse(
        header: Option<&'a str>,
        now_unix: i64,
        tolerance_secs: i64,
    ) -> Result<Self, SignatureError> {
        let header = header.ok_or(SignatureError::Missing)?;
        if header.len() > MAX_HEADER_BYTES {
            return Err(SignatureError::Malformed("longer than 2048 bytes"));
        }
        let mut timestamp = None;
        let mut signatures = Vec::new();
        for item in header.split(',') {
            let Some((key, value)) = item.trim().split_once('=') else {
                return Err(SignatureError::Malformed("an item is not key=value"));
            };
            match key {
                "t" if timestamp.is_some() => {
                    return Err(SignatureError::Malformed("several timestamps"));
                }
                "t" => timestamp = Some(value),
                "v1" if signatures.len() == MAX_SIGNATURES => {
                    return Err(SignatureError::Malformed("more than 8 v1 signatures"));
                }
                "v1" => {
                    let mut signature = [0u8; 32];
                    hex::decode_to_slice(value, &mut signature).map_err(|_| {
                        SignatureError::Malformed("a v1 signature is not 64 hex characters")
                    })?;
                    signatures.push(signature);
                }
                // v0 (test-mode legacy) and future schemes are not trusted.
                _ => {}
            }
        }
        let timestamp = timestamp.ok_or(SignatureError::Malformed("no timestamp"))?;
        let signed_at: i64 = timestamp
            .parse()
            .map_err(|_| SignatureError::Malformed("timestamp is not an integer"))?;
        if signatures.is_empty() {
            return Err(SignatureError::Malformed("no v1 signature"));
        }
        if now_unix.abs_diff(signed_at) > tolerance_secs.unsigned_abs() {
            return Err(SignatureError::OutsideTolerance);
        }
        Ok(Self {
            timestamp,
            signatures,
        })
    }

    /// One HMAC over the body per secret, compared in constant time with
    /// every `v1` value.
    pub fn verify(&self, body: &[u8], secrets: &[WebhookSecret]) -> Result<(), SignatureError> {
        let matches = secrets.iter().any(|secret| {
            let expected = secret.mac(self.timestamp, body).finalize();
            self.signatures.iter().any(|signature| {
                // CtOutput's equality is constant-time.
                expected == hmac::digest::CtOutput::new((*signature).into())
            })
        });
        if matches {
            Ok(())
        } else {
            Err(SignatureError::NoMatch)
        }
    }
}

/// Checks the header against the raw body, before anything parses the body.
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secrets: &[WebhookSecret],
    now_unix: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    SignatureHeader::parse(header, now_unix, tolerance_secs)?.verify(body, secrets)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_000_000;
    const BODY: &[u8] = br#"{"id":"evt_1","object":"event","type":"payment_intent.succeeded"}"#;

    fn secrets() -> Vec<WebhookSecret> {
        WebhookSecret::parse_list("whsec_current")
    }

    fn header(secret: &str, t: i64, body: &[u8]) -> String {
        format!(
            "t={t},v1={}",
            WebhookSecret::new(secret).unwrap().sign(t, body)
        )
    }

    fn check(header: &str, body: &[u8]) -> Result<(), SignatureError> {
        verify(Some(header), body, &secrets(), NOW, DEFAULT_TOLERANCE_SECS)
    }

    #[test]
    fn a_good_signature_passes() {
        assert_eq!(check(&header("whsec_current", NOW, BODY), BODY), Ok(()));
    }

    #[test]
    fn matches_an_independent_hmac_sha256() {
        // python3: hmac.new(b"whsec_test", b"1700000000.{}", hashlib.sha256).hexdigest()
        let secret = WebhookSecret::new("whsec_test").unwrap();
        assert_eq!(
            secret.sign(1_700_000_000, b"{}"),
            "35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91"
        );
    }

    #[test]
    fn the_good_v1_may_come_second() {
        let good = WebhookSecret::new("whsec_current").unwrap().sign(NOW, BODY);
        let header = format!("t={NOW},v1={},v1={good}", "ab".repeat(32));
        assert_eq!(check(&header, BODY), Ok(()));
    }

    #[test]
    fn a_body_changed_by_one_byte_fails() {
        let mut changed = BODY.to_vec();
        changed[10] ^= 1;
        assert_eq!(
            check(&header("whsec_current", NOW, BODY), &changed),
            Err(SignatureError::NoMatch)
        );
    }

    #[test]
    fn a_wrong_secret_fails() {
        assert_eq!(
            check(&header("whsec_other", NOW, BODY), BODY),
            Err(SignatureError::NoMatch)
        );
    }

    #[test]
    fn timestamps_just_outside_the_tolerance_fail_both_ways() {
        for t in [NOW - 301, NOW + 301] {
            assert_eq!(
                check(&header("whsec_current", t, BODY), BODY),
                Err(SignatureError::OutsideTolerance)
            );
        }
        for t in [NOW - 300, NOW + 300] {
            assert_eq!(check(&header("whsec_current", t, BODY), BODY), Ok(()));
        }
    }

    #[test]
    fn the_timestamp_is_part_of_the_signed_message() {
        let signature = WebhookSecret::new("whsec_current").unwrap().sign(NOW, BODY);
        let replayed = format!("t={},v1={signature}", NOW - 10);
        assert_eq!(check(&replayed, BODY), Err(SignatureError::NoMatch));
    }

    #[test]
    fn any_configured_secret_passes_during_rotation() {
        let rotating = WebhookSecret::parse_list("whsec_old, whsec_new");
        for secret in ["whsec_old", "whsec_new"] {
            let result = verify(Some(&header(secret, NOW, BODY)), BODY, &rotating, NOW, 300);
            assert_eq!(result, Ok(()), "{secret}");
        }
        let result = verify(
            Some(&header("whsec_current", NOW, BODY)),
            BODY,
            &rotating,
            NOW,
            300,
        );
        assert_eq!(result, Err(SignatureError::NoMatch));
    }

    #[test]
    fn malformed_headers_fail() {
        assert_eq!(
            verify(None, BODY, &secrets(), NOW, 300),
            Err(SignatureError::Missing)
        );
        let good = WebhookSecret::new("whsec_current").unwrap().sign(NOW, BODY);
        for bad in [
            String::new(),
            format!("v1={good}"),
            format!("t=abc,v1={good}"),
            format!("t={NOW}"),
            format!("t={NOW},v0={good}"),
            format!("t={NOW},v1=nothex"),
            format!("t={NOW},t={NOW},v1={good}"),
            format!("t={NOW};v1={good}"),
            // Empty or short v1 values: each would have cost an HMAC over the body.
            format!("t={NOW},v1=,v1={good}"),
            format!("t={NOW},v1={}", &good[..62]),
            format!("t={NOW},v1={good}00"),
        ] {
            assert!(
                matches!(check(&bad, BODY), Err(SignatureError::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn headers_built_to_amplify_the_hmac_are_refused_before_any_hmac() {
        let good = WebhookSecret::new("whsec_current").unwrap().sign(NOW, BODY);
        // Nine v1 values, the good one last: each used to cost an HMAC over the body.
        let nine = format!(
            "t={NOW}{},v1={good}",
            format!(",v1={}", "ab".repeat(32)).repeat(8)
        );
        assert!(nine.len() < MAX_HEADER_BYTES);
        assert_eq!(
            check(&nine, BODY),
            Err(SignatureError::Malformed("more than 8 v1 signatures"))
        );
        let eight = format!(
            "t={NOW}{},v1={good}",
            format!(",v1={}", "ab".repeat(32)).repeat(7)
        );
        assert_eq!(check(&eight, BODY), Ok(()));
        // 400 KB of empty entries, as in the attack.
        let huge = format!("t={NOW},{}v1={good}", "v1=,".repeat(100_000));
        assert_eq!(
            check(&huge, BODY),
            Err(SignatureError::Malformed("longer than 2048 bytes"))
        );
    }

    #[test]
    fn shape_and_time_are_known_before_the_body() {
        let good = WebhookSecret::new("whsec_current").unwrap().sign(NOW, BODY);
        let header = format!("t={NOW},v1={good}");
        let parsed = SignatureHeader::parse(Some(&header), NOW, 300).unwrap();
        assert_eq!(parsed.verify(BODY, &secrets()), Ok(()));
        let stale = format!("t={},v1={good}", NOW - 301);
        assert_eq!(
            SignatureHeader::parse(Some(&stale), NOW, 300).unwrap_err(),
            SignatureError::OutsideTolerance
        );
    }

    #[test]
    fn secrets_are_never_printed() {
        let secret = WebhookSecret::new("whsec_verysecret").unwrap();
        assert!(!format!("{secret:?}").contains("verysecret"));
        assert!(WebhookSecret::parse_list(" , ").is_empty());
    }
}
