//! One-time passwords: HOTP (RFC 4226) and TOTP (RFC 6238) with HMAC-SHA1, six digits, and the
//! RFC 4648 base32 encoding authenticator apps read secrets in.
//!
//! HMAC-SHA1 is what every authenticator app implements; its use here (a keyed MAC over a
//! counter) does not rely on SHA-1's collision resistance.

#[cfg(test)]
mod tests;

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
