//! Fuzzes `ApiKey::parse`: it must never panic, and every key it accepts must round-trip.
#![no_main]

use custos_core::ApiKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(key) = ApiKey::parse(text) {
            assert_eq!(key.as_str(), text);
            assert!(text.starts_with(key.prefix()));
            assert_eq!(ApiKey::parse(key.as_str()), Ok(key));
        }
    }
});
