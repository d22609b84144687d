//! The event JSON parser (the edge's and payments-grpc's): never a panic;
//! what it accepts is well-formed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use payments_domain::stripe_event::StripeEvent;

fuzz_target!(|data: &[u8]| {
    let json = String::from_utf8_lossy(data);
    if let Ok(event) = StripeEvent::parse(&json) {
        assert!(!event.id.is_empty() && event.id.len() <= 255);
        assert!(!event.event_type.is_empty() && event.event_type.len() <= 255);
        let _ = event.kind();
        if let Some(id) = event.object_id() {
            let _ = payments_core::stripe::is_intent_id(id);
        }
    }
});
