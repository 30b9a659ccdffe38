//! Randomness from the OS generator (via ring's `SystemRandom`): bytes, tokens and UUIDs.
//!
//! This is the only ambient input of the crate; there is deliberately no seedable generator.

#[cfg(test)]
mod tests;

use ring::rand::{SecureRandom, SystemRandom};

use zeroize::Zeroizing;

use crate::CryptoError;

/// The alphabet of [`random_base62`]: digits, upper case, lower case.
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The largest multiple of 62 that fits in a byte; bytes at or above it are rejected so every
/// character is equally likely.
const BASE62_LIMIT: u8 = 62 * 4;

/// Fills `buf` from the OS random generator.
pub fn fill_random(buf: &mut [u8]) -> Result<(), CryptoError> {
    SystemRandom::new()
        .fill(buf)
        .map_err(|_| CryptoError::Random)
}

/// Returns `N` random bytes; callers wrap them in `Zeroizing` when they are key material.
pub(crate) fn random_array<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut out = [0u8; N];
    fill_random(&mut out)?;
    Ok(out)
}

/// Returns `len` characters drawn uniformly from `[0-9A-Za-z]`, for tokens and API keys.
///
/// Uses rejection sampling, so there is no modulo bias.
pub fn random_base62(len: usize) -> Result<String, CryptoError> {
    let mut out = String::with_capacity(len);
    let mut pool = [0u8; 64];
    while out.len() < len {
        fill_random(&mut pool)?;
        for &byte in pool.iter().filter(|&&byte| byte < BASE62_LIMIT) {
            if out.len() == len {
                break;
            }
            out.push(char::from(BASE62[usize::from(byte % 62)]));
        }
    }
    Ok(out)
}

/// Returns a random RFC 4122 version 4 UUID in its lower-case hyphenated form.
pub fn random_uuid() -> Result<String, CryptoError> {
    let mut bytes: [u8; 16] = random_array()?;
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
    let hex = crate::hash::to_hex(&bytes);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

/// `N` random bytes for key material, filled in place so the bytes start life zeroizable.
pub(crate) fn random_key<const N: usize>() -> Result<Zeroizing<[u8; N]>, CryptoError> {
    let mut key = Zeroizing::new([0u8; N]);
    fill_random(key.as_mut_slice())?;
    Ok(key)
}

/// Index of a uniformly random element of `0..bound` (`bound` in `1..=256`), by rejection.
pub(crate) fn random_index(bound: usize) -> Result<usize, CryptoError> {
    debug_assert!((1..=256).contains(&bound));
    // Accept bytes below the largest multiple of `bound` that fits in 256 values.
    let limit = 256 - (256 % bound);
    loop {
        let [byte]: [u8; 1] = random_array()?;
        if usize::from(byte) < limit {
            return Ok(usize::from(byte) % bound);
        }
    }
}
