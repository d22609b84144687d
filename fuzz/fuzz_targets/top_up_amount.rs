//! The top-up body and its dollars → cents reading: never a panic; an
//! accepted amount is positive, and printed back as dollars it reads the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use payments_domain::Cents;
use payments_domain::top_up::amount_from_json;

fuzz_target!(|data: &[u8]| {
    if let Ok(cents) = amount_from_json(data) {
        assert!(cents.get() > 0);
        let again = Cents::from_usd_number(&cents.to_string());
        assert_eq!(again, Ok(cents));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(cents) = Cents::from_usd_number(text) {
            assert!(cents.get() > 0);
        }
    }
});
