//! The custos API key format: `<prefix>_<30 base62 random chars><6 base62 chars of CRC-32>`.
//!
//! The checksum is the CRC-32 (IEEE 802.3, as used by zlib and PNG) of everything before it,
//! that is of `<prefix>_<random30>`, written in base62 (alphabet `0-9A-Za-z`) and left-padded
//! with `0` to six characters. It lets anyone, in particular `custos scan`, tell a real key
//! from a random string offline, without a server; it is not a security feature.
//!
//! The prefix is 1 to 32 characters of `[a-z0-9_]`, starts with a letter and does not end in
//! `_`. Because the prefix may itself contain `_`, the *last* `_` separates prefix and body.
//! custos's own tokens use the same format with the prefix [`CUSTOS_TOKEN_PREFIX`].

use std::fmt;

/// The prefix of custos's own tokens.
pub const CUSTOS_TOKEN_PREFIX: &str = "custos_token";

/// Number of random base62 characters in a key body.
const RANDOM_LEN: usize = 30;
/// Number of base62 checksum characters at the end of a key body.
const CHECKSUM_LEN: usize = 6;
/// Length of the body after the last `_`.
const BODY_LEN: usize = RANDOM_LEN + CHECKSUM_LEN;
/// Longest allowed prefix.
const MAX_PREFIX_LEN: usize = 32;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Why a string is not a custos API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiKeyError {
    /// No `_` separator, or characters outside the allowed alphabets.
    Malformed,
    /// The prefix is empty, too long, does not start with a letter, ends in `_`
    /// or contains characters outside `[a-z0-9_]`.
    BadPrefix,
    /// The body after the last `_` is not 36 characters long.
    BadLength,
    /// The last six characters are not the CRC-32 of the rest.
    BadChecksum,
}

impl fmt::Display for ApiKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Malformed => "malformed API key",
            Self::BadPrefix => "invalid API key prefix",
            Self::BadLength => "API key body has the wrong length",
            Self::BadChecksum => "API key checksum does not match",
        })
    }
}

impl std::error::Error for ApiKeyError {}

/// A syntactically valid custos API key whose checksum matches.
///
/// It holds the secret key itself, so `Debug` shows only the prefix and the last four
/// characters, and there is no `Display`: use [`ApiKey::as_str`] where the key must be written.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ApiKey {
    key: String,
    prefix_len: usize,
}

impl ApiKey {
    /// Parses and validates a key, including its checksum.
    ///
    /// # Errors
    /// [`ApiKeyError`] says which part of the format is violated.
    pub fn parse(input: &str) -> Result<Self, ApiKeyError> {
        let prefix_len = Self::check(input)?;
        Ok(Self {
            key: input.to_owned(),
            prefix_len,
        })
    }

    /// Checks a key as [`ApiKey::parse`] does, without copying it: the length of its prefix.
    ///
    /// # Errors
    /// [`ApiKeyError`] says which part of the format is violated.
    pub fn check(input: &str) -> Result<usize, ApiKeyError> {
        let (prefix, body) = input.rsplit_once('_').ok_or(ApiKeyError::Malformed)?;
        if !body.bytes().all(is_base62) {
            return Err(ApiKeyError::Malformed);
        }
        validate_prefix(prefix)?;
        if body.len() != BODY_LEN {
            return Err(ApiKeyError::BadLength);
        }
        // `body` is ASCII (checked above), so byte indices are char boundaries.
        let (random, checksum) = body.split_at(RANDOM_LEN);
        let expected = checksum_chars(prefix, random);
        if checksum.as_bytes() != expected {
            return Err(ApiKeyError::BadChecksum);
        }
        Ok(prefix.len())
    }

    /// Builds a key from a prefix and 30 bytes of randomness supplied by the caller.
    ///
    /// The 30 bytes are read as one 240-bit big-endian integer and written in base62, keeping
    /// the 30 least significant digits. 62^30 is about 2^178.6, so reducing a uniform 240-bit
    /// number modulo 62^30 leaves a statistical distance from uniform below 2^-61: the bias
    /// is far too small to matter, and no input is rejected or wasted.
    ///
    /// # Errors
    /// [`ApiKeyError::BadPrefix`] when the prefix does not follow the format.
    pub fn from_random(prefix: &str, random: &[u8; 30]) -> Result<Self, ApiKeyError> {
        validate_prefix(prefix)?;
        let mut number = *random;
        let mut digits = [0u8; RANDOM_LEN];
        for digit in digits.iter_mut().rev() {
            let remainder = div_rem_in_place(&mut number, 62);
            *digit = BASE62[usize::from(remainder)];
        }
        let mut key = String::with_capacity(prefix.len() + 1 + BODY_LEN);
        key.push_str(prefix);
        key.push('_');
        // Every byte of `digits` comes from BASE62, which is ASCII.
        key.extend(digits.iter().map(|&byte| char::from(byte)));
        let checksum = checksum_chars(prefix, &key[prefix.len() + 1..]);
        key.extend(checksum.iter().map(|&byte| char::from(byte)));
        Ok(Self {
            key,
            prefix_len: prefix.len(),
        })
    }

    /// The part before the last `_`, which says whose key it is (`acme_live`, `custos_token`).
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.key[..self.prefix_len]
    }

    /// The whole key. It is a secret: write it only where the user asked for it.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.key
    }

    /// Whether this is one of custos's own tokens rather than an issued API key.
    #[must_use]
    pub fn is_custos_token(&self) -> bool {
        self.prefix() == CUSTOS_TOKEN_PREFIX
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let last4 = &self.key[self.key.len() - 4..];
        f.debug_struct("ApiKey")
            .field("prefix", &self.prefix())
            .field("last4", &last4)
            .finish_non_exhaustive()
    }
}

fn is_base62(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
}

fn validate_prefix(prefix: &str) -> Result<(), ApiKeyError> {
    let bytes = prefix.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return Err(ApiKeyError::BadPrefix);
    };
    let allowed = |byte: &u8| byte.is_ascii_lowercase() || byte.is_ascii_digit() || *byte == b'_';
    if bytes.len() > MAX_PREFIX_LEN
        || !first.is_ascii_lowercase()
        || *last == b'_'
        || !bytes.iter().all(allowed)
    {
        return Err(ApiKeyError::BadPrefix);
    }
    Ok(())
}

/// Divides a big-endian number by `divisor` in place and returns the remainder.
fn div_rem_in_place(number: &mut [u8], divisor: u16) -> u8 {
    let mut remainder: u16 = 0;
    for byte in number.iter_mut() {
        let current = (remainder << 8) | u16::from(*byte);
        // current < divisor * 256, so the quotient fits in a byte.
        *byte = u8::try_from(current / divisor).unwrap_or(u8::MAX);
        remainder = current % divisor;
    }
    u8::try_from(remainder).unwrap_or(0)
}

/// The six base62 checksum characters for `<prefix>_<random>`.
fn checksum_chars(prefix: &str, random: &str) -> [u8; CHECKSUM_LEN] {
    let mut crc = Crc32::new();
    crc.update(prefix.as_bytes());
    crc.update(b"_");
    crc.update(random.as_bytes());
    let mut value = crc.finish();
    let mut out = [b'0'; CHECKSUM_LEN];
    // 62^6 > 2^32, so six digits always suffice.
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(value % 62) as usize];
        value /= 62;
    }
    out
}

/// CRC-32 lookup table for the reflected IEEE polynomial 0xEDB88320.
const CRC32_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut index = 0;
    while index < 256 {
        let mut crc = index as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[index] = crc;
        index += 1;
    }
    table
};

/// Streaming CRC-32 (IEEE).
struct Crc32(u32);

impl Crc32 {
    fn new() -> Self {
        Self(0xFFFF_FFFF)
    }

    fn update(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = CRC32_TABLE[((self.0 ^ u32::from(byte)) & 0xFF) as usize] ^ (self.0 >> 8);
        }
    }

    fn finish(&self) -> u32 {
        !self.0
    }
}

/// CRC-32 (IEEE 802.3) of `bytes`, the checksum used by custos API keys.
#[must_use]
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = Crc32::new();
    crc.update(bytes);
    crc.finish()
}

#[cfg(test)]
mod tests;
