//! One-time passwords: HOTP (RFC 4226) and TOTP (RFC 6238) with HMAC-SHA1, six digits, and the
//! RFC 4648 base32 encoding authenticator apps read secrets in.
//!
//! HMAC-SHA1 is what every authenticator app implements; its use here (a keyed MAC over a
//! counter) does not rely on SHA-1's collision resistance.

use ring::hmac;

/// Digits of a code.
pub const OTP_DIGITS: u32 = 6;

/// The HOTP value of `counter` under `secret`, as a number below 10^`digits`.
pub fn hotp(secret: &[u8], counter: u64, digits: u32) -> u32 {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let tag = hmac::sign(&key, &counter.to_be_bytes());
    let mac = tag.as_ref();
    // SHA-1 tags are 20 bytes: the offset (at most 15) plus 4 stays inside.
    let offset = usize::from(mac.last().copied().unwrap_or(0) & 0x0f);
    let mut word = [0u8; 4];
    for (index, byte) in word.iter_mut().enumerate() {
        *byte = mac.get(offset + index).copied().unwrap_or(0);
    }
    let binary = u32::from_be_bytes(word) & 0x7fff_ffff;
    binary % 10u32.pow(digits.min(9))
}

/// The TOTP time step of `unix_seconds` for `period` seconds (0 is treated as 1).
pub fn totp_step(unix_seconds: i64, period: u64) -> u64 {
    let seconds = u64::try_from(unix_seconds).unwrap_or(0);
    seconds / period.max(1)
}

/// The time step (within `skew` steps of `step`) whose six-digit code is `code`, if any.
/// Every candidate is computed, so the time taken does not depend on which one matched.
pub fn totp_match(secret: &[u8], code: u32, step: u64, skew: u64) -> Option<u64> {
    let mut found = None;
    for candidate in step.saturating_sub(skew)..=step.saturating_add(skew) {
        let expected = hotp(secret, candidate, OTP_DIGITS);
        let equal = crate::constant_time_eq(&expected.to_be_bytes(), &code.to_be_bytes());
        if equal && found.is_none() {
            found = Some(candidate);
        }
    }
    found
}

/// RFC 4648 base32 (upper case, no padding), as `otpauth://` URLs carry secrets.
pub fn base32_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer: u32 = 0;
    let mut bits = 0u32;
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 rows: the secret is the ASCII string "12345678901234567890"
    /// and the codes have 8 digits.
    #[test]
    fn rfc6238_sha1_vectors() {
        let secret = b"12345678901234567890";
        for (time, code) in [
            (59_i64, 94_287_082_u32),
            (1_111_111_109, 7_081_804),
            (1_111_111_111, 14_050_471),
            (1_234_567_890, 89_005_924),
            (2_000_000_000, 69_279_037),
            (20_000_000_000, 65_353_130),
        ] {
            assert_eq!(hotp(secret, totp_step(time, 30), 8), code, "time {time}");
        }
    }

    /// RFC 4226 appendix D.
    #[test]
    fn rfc4226_vectors() {
        let secret = b"12345678901234567890";
        let expected = [
            755_224, 287_082, 359_152, 969_429, 338_314, 254_676, 287_922, 162_583, 399_871,
            520_489,
        ];
        for (counter, code) in expected.into_iter().enumerate() {
            assert_eq!(hotp(secret, counter as u64, 6), code);
        }
    }

    #[test]
    fn matching_allows_one_step_of_skew() {
        let secret = b"12345678901234567890";
        let step = totp_step(1_111_111_109, 30);
        let code = hotp(secret, step - 1, 6);
        assert_eq!(totp_match(secret, code, step, 1), Some(step - 1));
        assert_eq!(totp_match(secret, code, step + 1, 1), None);
        let later = hotp(secret, step + 1, 6);
        assert_eq!(totp_match(secret, later, step, 1), Some(step + 1));
    }

    #[test]
    fn base32_matches_rfc4648() {
        for (input, output) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32_encode(input.as_bytes()), output);
        }
    }
}
