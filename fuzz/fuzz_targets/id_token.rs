//! Firebase ID token parsing and verification: never a panic, and nothing the
//! fuzzer makes without the private key is ever accepted.
#![no_main]

use std::sync::OnceLock;

use edge_gateway::firebase::{KeySet, TokenVerifier};
use libfuzzer_sys::fuzz_target;

const NOW: i64 = 1_764_000_000;

fn keys() -> &'static (KeySet, KeySet) {
    static KEYS: OnceLock<(KeySet, KeySet)> = OnceLock::new();
    KEYS.get_or_init(|| {
        (
            KeySet::parse(edge_gateway::testing::JWKS_JSON.as_bytes()).unwrap(),
            KeySet::parse(edge_gateway::testing::X509_MAP_JSON.as_bytes()).unwrap(),
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let token = String::from_utf8_lossy(data);
    let verifier = TokenVerifier::new("demo-project", 60);
    let _ = TokenVerifier::key_id(&token);
    let (jwks, x509) = keys();
    for keys in [jwks, x509] {
        // The fuzzer has no private key: anything accepted is a forgery.
        assert!(verifier.verify(&token, keys, NOW).is_err(), "accepted {token:?}");
    }
    // Key sets from the network are parsed too.
    let _ = KeySet::parse(data);
});
