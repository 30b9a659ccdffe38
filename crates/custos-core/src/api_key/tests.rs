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

/// Whether some `value` in `low..high` satisfies `value ^ flip == value + add` (as integers,
/// `add` possibly negative, no wrapping), found bit by bit from the least significant: at
/// each bit the carry of the addition must make the sum bit equal the flipped bit, and the
/// value's bit is free only where it decides the next carry.
fn xor_equals_sum_somewhere(flip: u32, add: i64, low: u64, high: u64) -> bool {
    // Adding a negative number is adding its two's complement with a final carry out.
    let addend = add.rem_euclid(1 << 32) as u64;
    let final_carry = u64::from(add < 0);
    // States: (carry, low bits compared with `low`, low bits compared with `high - 1`).
    let mut states = vec![(0u64, std::cmp::Ordering::Equal, std::cmp::Ordering::Equal)];
    for bit in 0..32 {
        let (add_bit, flip_bit) = ((addend >> bit) & 1, u64::from((flip >> bit) & 1));
        let (low_bit, high_bit) = ((low >> bit) & 1, ((high - 1) >> bit) & 1);
        let mut next = Vec::new();
        for &(carry, versus_low, versus_high) in &states {
            if add_bit ^ carry != flip_bit {
                continue;
            }
            for value_bit in 0..2u64 {
                let carry_out = (value_bit & add_bit) | (value_bit & carry) | (add_bit & carry);
                let state = (
                    carry_out,
                    value_bit.cmp(&low_bit).then(versus_low),
                    value_bit.cmp(&high_bit).then(versus_high),
                );
                if !next.contains(&state) {
                    next.push(state);
                }
            }
        }
        states = next;
    }
    states.iter().any(|&(carry, versus_low, versus_high)| {
        carry == final_carry && versus_low.is_ge() && versus_high.is_le()
    })
}

#[test]
fn the_swap_search_finds_solutions_that_exist() {
    // 1 ^ 5 == 1 + 3 but 0 ^ 5 != 0 + 3, and 6 ^ 4 == 6 - 4.
    assert!(xor_equals_sum_somewhere(5, 3, 0, 2));
    assert!(!xor_equals_sum_somewhere(5, 3, 0, 1));
    assert!(xor_equals_sum_somewhere(4, -4, 6, 7));
    for value in 0..64u64 {
        for flip in 0..64u32 {
            for add in -64i64..64 {
                let exists = (value..value + 3).any(|v| {
                    i64::try_from(v ^ u64::from(flip)).unwrap() == i64::try_from(v).unwrap() + add
                });
                assert_eq!(
                    xor_equals_sum_somewhere(flip, add, value, value + 3),
                    exists
                );
            }
        }
    }
}

/// Swapping the last random character `b` with the first checksum character `a` keeps a key
/// valid only if the new data's CRC is written as the new checksum. The data changed in its
/// last byte by `a ^ b`, so its CRC changed by `CRC32_TABLE[a ^ b]` (CRC is linear); the
/// checksum's first base62 digit went from `a` to `b`, so its value changed by
/// `(b - a) × 62^5`. No CRC value whose first digit is `a` satisfies both, for any pair.
#[test]
fn no_checksum_survives_a_swap_across_the_boundary() {
    let digit_weight = 62u64.pow(5);
    for (a, &first) in BASE62.iter().enumerate() {
        let low = a as u64 * digit_weight;
        let high = ((a as u64 + 1) * digit_weight).min(1 << 32);
        if low >= high {
            continue;
        }
        for (b, &last) in BASE62.iter().enumerate() {
            if a == b {
                continue;
            }
            let flip = CRC32_TABLE[usize::from(first ^ last)];
            let add = (b as i64 - a as i64) * digit_weight as i64;
            assert!(
                !xor_equals_sum_somewhere(flip, add, low, high),
                "{} and {} swapped",
                char::from(first),
                char::from(last)
            );
        }
    }
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

proptest! {
    #[test]
    fn swapping_adjacent_characters_of_the_body_is_detected(
        prefix in prefix_strategy(),
        random in any::<[u8; 30]>(),
        position in 0usize..35,
    ) {
        let key = ApiKey::from_random(&prefix, &random).unwrap();
        let mut bytes = key.as_str().as_bytes().to_vec();
        let index = prefix.len() + 1 + position;
        prop_assume!(bytes[index] != bytes[index + 1]);
        bytes.swap(index, index + 1);
        let swapped = String::from_utf8(bytes).unwrap();
        // Within the random part, the change is a burst of at most 16 bits, which CRC-32
        // always detects; within the checksum, the data is unchanged and the checksum is not.
        // Across the boundary (position 29) the data and the checksum both change;
        // `no_checksum_survives_a_swap_across_the_boundary` shows that is always detected too.
        prop_assert_eq!(ApiKey::parse(&swapped), Err(ApiKeyError::BadChecksum));
    }

    #[test]
    fn swapping_across_the_checksum_boundary_is_detected(
        prefix in prefix_strategy(),
        random in any::<[u8; 30]>(),
    ) {
        let key = ApiKey::from_random(&prefix, &random).unwrap();
        let mut bytes = key.as_str().as_bytes().to_vec();
        let index = prefix.len() + 1 + RANDOM_LEN - 1;
        prop_assume!(bytes[index] != bytes[index + 1]);
        bytes.swap(index, index + 1);
        let swapped = String::from_utf8(bytes).unwrap();
        prop_assert_eq!(ApiKey::parse(&swapped), Err(ApiKeyError::BadChecksum));
    }
}
