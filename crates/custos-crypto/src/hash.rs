//! Keyed hashing (HMAC-SHA256) so tokens and API keys are stored only as hashes, plus
//! constant-time comparison and hex encoding.

#[cfg(test)]
mod tests;

use std::fmt;

use ring::hmac;
use zeroize::Zeroizing;

use crate::CryptoError;
use crate::random::random_key;

/// Length of a [`KeyedHasher`] key and of its output.
pub const HASH_LEN: usize = 32;

/// An HMAC-SHA256 key used to store tokens and API keys only as keyed hashes.
///
/// Without the key, a leaked table of hashes cannot be brute-forced offline.
#[derive(Clone)]
pub struct KeyedHasher {
    key: Zeroizing<[u8; HASH_LEN]>,
}

impl KeyedHasher {
    /// A new random key from the OS generator.
    pub fn generate() -> Result<KeyedHasher, CryptoError> {
        Ok(KeyedHasher { key: random_key()? })
    }

    /// Loads a key; it must be exactly 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<KeyedHasher, CryptoError> {
        let key: [u8; HASH_LEN] = bytes
            .try_into()
            .map_err(|_| CryptoError::InvalidKeyLength {
                expected: HASH_LEN,
                actual: bytes.len(),
            })?;
        Ok(KeyedHasher {
            key: Zeroizing::new(key),
        })
    }

    /// The key bytes, for storing the key inside the barrier.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.key.to_vec())
    }

    /// HMAC-SHA256 of `data`.
    pub fn hash(&self, data: &[u8]) -> [u8; HASH_LEN] {
        let tag = hmac::sign(&self.hmac_key(), data);
        let mut out = [0u8; HASH_LEN];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// HMAC-SHA256 of `data`, as 64 lower-case hex characters.
    pub fn hash_hex(&self, data: &[u8]) -> String {
        to_hex(&self.hash(data))
    }

    /// Whether `expected` is the hash of `data`, compared in constant time.
    pub fn verify(&self, data: &[u8], expected: &[u8]) -> bool {
        hmac::verify(&self.hmac_key(), data, expected).is_ok()
    }

    /// The ring key is rebuilt per call so only the zeroized bytes live long.
    fn hmac_key(&self) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, self.key.as_slice())
    }
}

impl fmt::Debug for KeyedHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedHasher")
            .field("key", &"<redacted>")
            .finish()
    }
}

/// An HMAC-SHA256 key prepared once for many messages: the audit log hashes every string of
/// every record, so rebuilding the key per message (as [`KeyedHasher`] does) would cost two
/// extra SHA-256 blocks each time. ring keeps the key's padded inner and outer states, from
/// which the key cannot be read back; the raw bytes are not kept.
#[derive(Clone)]
pub struct PreparedHmac {
    key: hmac::Key,
}

impl PreparedHmac {
    /// Prepares `key` (any length; HMAC hashes longer keys first).
    pub fn new(key: &[u8]) -> PreparedHmac {
        PreparedHmac {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
        }
    }

    /// HMAC-SHA256 of `data`.
    pub fn sign(&self, data: &[u8]) -> [u8; HASH_LEN] {
        let tag = hmac::sign(&self.key, data);
        let mut out = [0u8; HASH_LEN];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// HMAC-SHA256 of `data`, as 64 lower-case hex characters.
    pub fn sign_hex(&self, data: &[u8]) -> String {
        to_hex(&self.sign(data))
    }

    /// Whether `tag` is the HMAC of `data`, compared in constant time.
    pub fn verify(&self, data: &[u8], tag: &[u8]) -> bool {
        hmac::verify(&self.key, data, tag).is_ok()
    }
}

impl fmt::Debug for PreparedHmac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreparedHmac")
            .field("key", &"<redacted>")
            .finish()
    }
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; HASH_LEN] {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; HASH_LEN];
    out.copy_from_slice(digest.as_ref());
    out
}

/// SHA-256 of `data` as 64 lower-case hex characters: the public fingerprint of a credential
/// (GitHub's secret-scanning programme calls it `token_hash`), safe to log and return.
pub fn sha256_hex(data: &[u8]) -> String {
    to_hex(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
}

/// Whether `a` and `b` are equal, in time that depends only on their lengths.
///
/// Lengths are treated as public. We do not use `ring::constant_time::verify_slices_are_equal`
/// because ring 0.17.14 deprecated it as internal, with no promise about side channels.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // `black_box` keeps the optimiser from turning the fold into an early-exit comparison.
    std::hint::black_box(difference) == 0
}

/// Lower-case hex of `bytes`.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}
