//! Checks applied to a candidate secret after its regex matched: entropy, checksums and
//! the shape tests that tell a generic secret from an identifier or a placeholder.

use std::ops::Range;

use custos_core::{ApiKey, crc32};

use crate::rules::Validation;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Shannon entropy of `bytes` in bits per byte (0 for an empty slice).
pub(crate) fn shannon_entropy(bytes: &[u8]) -> f64 {
    if bytes.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &byte in bytes {
        counts[usize::from(byte)] += 1;
    }
    #[expect(clippy::cast_precision_loss, reason = "lengths are far below 2^52")]
    let total = bytes.len() as f64;
    counts
        .iter()
        .filter(|&&count| count > 0)
        .map(|&count| {
            let p = f64::from(count) / total;
            -p * p.log2()
        })
        .sum()
}

/// Runs a checksum validation on `secret`. Returns the range of the valid key inside
/// `secret` (it can be shorter for custos keys whose regex match started early), or `None`.
pub(crate) fn validate(kind: Validation, secret: &[u8]) -> Option<Range<usize>> {
    match kind {
        Validation::Github => github_checksum_ok(secret).then_some(0..secret.len()),
        Validation::Custos => custos_key(secret),
    }
}

/// GitHub tokens: `<prefix>_<30 base62><6 base62 of CRC-32 of the 30>`.
fn github_checksum_ok(secret: &[u8]) -> bool {
    let Some(underscore) = memchr::memrchr(b'_', secret) else {
        return false;
    };
    let body = &secret[underscore + 1..];
    if body.len() != 36 {
        return false;
    }
    let (random, checksum) = body.split_at(30);
    base62_u32_padded6(crc32(random)) == checksum
}

fn base62_u32_padded6(mut value: u32) -> [u8; 6] {
    let mut out = [b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(value % 62) as usize];
        value /= 62;
    }
    out
}

/// A custos key whose match may have swallowed a few leading identifier segments
/// (`my_acme_live_...`): try each `_`-separated suffix until one parses.
fn custos_key(secret: &[u8]) -> Option<Range<usize>> {
    let text = std::str::from_utf8(secret).ok()?;
    let mut start = 0;
    loop {
        if ApiKey::parse(&text[start..]).is_ok() {
            return Some(start..text.len());
        }
        let next = text[start..].find('_')?;
        start += next + 1;
        // The body alone (36 chars) has no prefix left to strip.
        if text.len() - start <= 36 {
            return None;
        }
    }
}

/// Whether a value caught by a generic rule looks like a secret rather than an
/// identifier, a path, a version or a templating expression.
pub(crate) fn generic_value_plausible(secret: &[u8]) -> bool {
    let has_letter = secret.iter().any(u8::is_ascii_alphabetic);
    let has_digit = secret.iter().any(u8::is_ascii_digit);
    let has_symbol = secret.iter().any(|b| b"+/=!@#$%^&*~?".contains(b));
    if !has_letter || !(has_digit || has_symbol) {
        return false;
    }
    if secret.starts_with(b"/") || secret.starts_with(b"./") || secret.starts_with(b"$") {
        return false;
    }
    // Dotted paths and calls: `settings.SECRET_KEY`, `process.env.TOKEN2`, `os.environ`.
    let is_ident = |part: &[u8]| {
        part.first()
            .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
            && part.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
    };
    if secret.contains(&b'.') && secret.split(|&b| b == b'.').all(is_ident) {
        return false;
    }
    // SCREAMING_CASE or snake_case names such as `DB_PASSWORD_2` are references, not values.
    let identifier_like = secret
        .iter()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_')
        || secret
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_');
    if identifier_like && secret.contains(&b'_') {
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

    use super::*;

    #[test]
    fn entropy_of_uniform_and_constant_input() {
        assert!(shannon_entropy(b"aaaaaaaa").abs() < f64::EPSILON);
        assert!((shannon_entropy(b"abcdefgh") - 3.0).abs() < 1e-9);
        assert!(shannon_entropy(b"").abs() < f64::EPSILON);
    }

    #[test]
    fn github_checksum_accepts_valid_and_rejects_tampered_tokens() {
        let random = b"abcdefghijklmnopqrstuvwxyzABCD";
        let checksum = base62_u32_padded6(crc32(random));
        let mut token = b"ghp_".to_vec();
        token.extend_from_slice(random);
        token.extend_from_slice(&checksum);
        assert!(github_checksum_ok(&token));
        token[5] = b'Z';
        assert!(!github_checksum_ok(&token));
        assert!(!github_checksum_ok(b"ghp_short"));
    }

    #[test]
    fn custos_validation_strips_leading_identifier_segments() {
        let key = ApiKey::from_random("acme_live", &[7u8; 30]).unwrap();
        let glued = format!("my_{}", key.as_str());
        let range = custos_key(glued.as_bytes()).unwrap();
        assert_eq!(&glued[range], key.as_str());
        assert_eq!(
            custos_key(b"acme_live_000000000000000000000000000000000000"),
            None
        );
    }

    #[test]
    fn generic_values_that_are_references_are_rejected() {
        for value in [
            "settings.SECRET_KEY",
            "process.env.TOKEN2",
            "DB_PASSWORD_2",
            "get_token_2",
            "/etc/secret/key1",
            "$SECRET_1",
            "abcdefghij",
            "12345678901",
        ] {
            assert!(!generic_value_plausible(value.as_bytes()), "{value}");
        }
        for value in ["Tr0ub4dor&3x", "a8f3kd92mf03la", "xK9#mP2$vL5@"] {
            assert!(generic_value_plausible(value.as_bytes()), "{value}");
        }
    }
}
