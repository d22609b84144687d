//! `Stripe-Signature` header + raw body: never a panic, and never a pass
//! without a `v1` that is the real HMAC of `<t>.<body>`.
#![no_main]

use edge_gateway::stripe_signature::{WebhookSecret, verify};
use libfuzzer_sys::fuzz_target;

const NOW: i64 = 1_764_000_000;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let header = String::from_utf8_lossy(&data[..split]);
    let body = data.get(split + 1..).unwrap_or_default();
    let secrets = WebhookSecret::parse_list("whsec_fuzz_a,whsec_fuzz_b");
    if verify(Some(&header), body, &secrets, NOW, 300).is_ok() {
        let t: i64 = header
            .split(',')
            .find_map(|item| item.trim().strip_prefix("t="))
            .and_then(|t| t.parse().ok())
            .expect("a passing header has a timestamp");
        let genuine = secrets.iter().any(|secret| header.contains(&secret.sign(t, body)));
        assert!(genuine, "a signature passed without the secret's HMAC: {header:?}");
    }
});
