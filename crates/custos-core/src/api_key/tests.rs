//! Unit and property tests for the API key format.
#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

use proptest::prelude::*;

use super::*;

fn key(prefix: &str, seed: u8) -> ApiKey {
    let mut random = [0u8; 30];
    for (index, byte) in random.iter_mut().enumerate() {
        *byte = seed.wrapping_mul(31).wrapping_add(index as u8);
    }
    ApiKey::from_random(prefix, &random).unwrap()
}

#[test]
fn crc32_matches_the_standard_check_value() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    assert_eq!(crc32(b""), 0);
}

#[test]
fn generated_key_has_the_documented_shape() {
    let key = key("acme_live", 7);
    let text = key.as_str();
    assert!(text.starts_with("acme_live_"));
    assert_eq!(text.len(), "acme_live_".len() + 36);
    assert_eq!(key.prefix(), "acme_live");
    assert!(!key.is_custos_token());
    assert_eq!(ApiKey::parse(text).unwrap(), key);
}

#[test]
fn checksum_is_crc32_of_the_rest_in_padded_base62() {
    let key = key("k", 1);
    let text = key.as_str();
    let (rest, checksum) = text.split_at(text.len() - 6);
    let mut value = u64::from(crc32(rest.as_bytes()));
    let mut expected = Vec::new();
    for _ in 0..6 {
        expected.push(BASE62[(value % 62) as usize]);
        value /= 62;
    }
    expected.reverse();
    assert_eq!(checksum.as_bytes(), expected.as_slice());
}

#[test]
fn all_zero_randomness_gives_all_zero_digits() {
    let key = ApiKey::from_random("zero", &[0u8; 30]).unwrap();
    assert!(
        key.as_str()
            .starts_with("zero_000000000000000000000000000000")
    );
}

#[test]
fn custos_tokens_are_recognised() {
    let token = key(CUSTOS_TOKEN_PREFIX, 3);
    assert!(token.is_custos_token());
    assert_eq!(token.prefix(), "custos_token");
}

#[test]
fn parse_reports_what_is_wrong() {
    let good = key("acme", 9);
    let text = good.as_str().to_owned();
    assert_eq!(ApiKey::parse("nounderscore"), Err(ApiKeyError::Malformed));
    assert_eq!(ApiKey::parse("acme_abc!"), Err(ApiKeyError::Malformed));
    assert_eq!(ApiKey::parse("acme_é"), Err(ApiKeyError::Malformed));
    assert_eq!(
        ApiKey::parse(&text[..text.len() - 1]),
        Err(ApiKeyError::BadLength)
    );
    assert_eq!(
        ApiKey::parse(&format!("{text}A")),
        Err(ApiKeyError::BadLength)
    );
    let upper = text.replacen("acme", "Acme", 1);
    assert_eq!(ApiKey::parse(&upper), Err(ApiKeyError::BadPrefix));
    let digit_first = text.replacen("acme", "1cme", 1);
    assert_eq!(ApiKey::parse(&digit_first), Err(ApiKeyError::BadPrefix));
    let trailing = text.replacen("acme_", "acme__", 1);
    assert_eq!(ApiKey::parse(&trailing), Err(ApiKeyError::BadPrefix));
    assert_eq!(ApiKey::parse(&text[4..]), Err(ApiKeyError::BadPrefix));
    let long_prefix = format!("{}{}", "a".repeat(33), &text[4..]);
    assert_eq!(ApiKey::parse(&long_prefix), Err(ApiKeyError::BadPrefix));
    let mut tampered = text.into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'a' { b'b' } else { b'a' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert_eq!(ApiKey::parse(&tampered), Err(ApiKeyError::BadChecksum));
}

#[test]
fn from_random_rejects_bad_prefixes() {
    for prefix in ["", "_a", "a_", "A", "9a", "a-b", &"a".repeat(33)] {
        assert_eq!(
            ApiKey::from_random(prefix, &[1u8; 30]),
            Err(ApiKeyError::BadPrefix),
            "{prefix:?}"
        );
    }
    assert!(ApiKey::from_random(&"a".repeat(32), &[1u8; 30]).is_ok());
}

#[test]
fn debug_redacts_the_secret_part() {
    let key = key("acme_live", 5);
    let text = key.as_str();
    let debug = format!("{key:?}");
    assert!(debug.contains("acme_live"));
    assert!(debug.contains(&text[text.len() - 4..]));
    assert!(!debug.contains(&text["acme_live_".len()..text.len() - 4]));
}

#[test]
fn digit_distribution_uses_the_whole_alphabet() {
    let mut seen = [false; 62];
    for seed in 0..=255u8 {
        let key = key("d", seed);
        for byte in key.as_str()[2..32].bytes() {
            let position = BASE62.iter().position(|&b| b == byte).unwrap();
            seen[position] = true;
        }
    }
    assert!(seen.iter().all(|&s| s));
}

fn prefix_strategy() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_]{0,30}[a-z0-9]|[a-z]"
}

proptest! {
    #[test]
    fn generated_keys_round_trip(prefix in prefix_strategy(), random in any::<[u8; 30]>()) {
        let key = ApiKey::from_random(&prefix, &random).unwrap();
        let parsed = ApiKey::parse(key.as_str()).unwrap();
        prop_assert_eq!(parsed.prefix(), prefix.as_str());
        prop_assert_eq!(parsed, key);
    }

    #[test]
    fn any_single_character_change_in_the_body_is_detected(
        prefix in prefix_strategy(),
        random in any::<[u8; 30]>(),
        position in 0usize..36,
        replacement in 0usize..62,
    ) {
        let key = ApiKey::from_random(&prefix, &random).unwrap();
        let mut bytes = key.as_str().as_bytes().to_vec();
        let index = prefix.len() + 1 + position;
        prop_assume!(bytes[index] != BASE62[replacement]);
        bytes[index] = BASE62[replacement];
        let changed = String::from_utf8(bytes).unwrap();
        // CRC-32 detects every single-symbol error.
        prop_assert_eq!(ApiKey::parse(&changed), Err(ApiKeyError::BadChecksum));
    }

    #[test]
    fn parse_never_panics(input in "\\PC{0,80}") {
        let _ = ApiKey::parse(&input);
    }

    #[test]
    fn parse_accepts_only_the_documented_shape(input in "[a-z_]{1,6}_[0-9A-Za-z]{30,40}") {
        if let Ok(key) = ApiKey::parse(&input) {
            prop_assert_eq!(key.as_str().len(), key.prefix().len() + 37);
            prop_assert!(!key.prefix().ends_with('_'));
        }
    }
}
