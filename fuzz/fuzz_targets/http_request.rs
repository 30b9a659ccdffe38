//! Fuzzes the HTTP layer's parsers of what a client sends: the JSON shape pre-scan of bodies,
//! `X-Vault-Index`, `X-Vault-Wrap-TTL`, `X-Forwarded-For`, path decoding and path cleaning. None may panic; an index
//! this node writes must read back; a cleaned path must be clean and never gain a `..` segment.
#![no_main]

use custos_server::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = fuzzing::body_shape_ok(data);
    // The header's last entry names the client; with one hop skipped, the one before it.
    if let Some(client) = fuzzing::forwarded_client(data, 1) {
        assert!(data.contains(&b','), "one hop skipped needs two entries: {client}");
    }
    let _ = fuzzing::forwarded_client(data, 0);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(revision) = fuzzing::decode_index(text) {
        assert_eq!(fuzzing::decode_index(&fuzzing::encode_index("c", revision)), Some(revision));
    }
    let _ = fuzzing::wrap_ttl(text);
    let _ = fuzzing::percent_decode(text);
    if let Some(location) = fuzzing::cleaned_location(text) {
        let cleaned = location.strip_prefix("/v1/").expect("a redirect stays under /v1/");
        let body = cleaned.strip_suffix('/').unwrap_or(cleaned);
        for segment in body.split('/') {
            assert!(!segment.is_empty() || body.is_empty(), "{location:?}");
            let decoded = fuzzing::percent_decode(segment).unwrap_or_default();
            assert!(decoded != "." && decoded != "..", "{location:?}");
        }
    }
});
