//! The keyring: the data keys of the barrier, by term, and sealing/opening with them.
//!
//! The binary encoding is documented on [`Keyring::encode`].

#[cfg(test)]
mod tests;

use std::fmt;

use zeroize::Zeroizing;

use crate::CryptoError;
use crate::blob::{self, KEY_LEN, SealedBlob};
use crate::random::random_key;

/// Version byte of the keyring encoding.
const ENCODING_VERSION: u8 = 1;
/// Version, active term and key count.
const ENCODING_HEADER_LEN: usize = 1 + 4 + 4;
/// Term, `installed_at` and key.
const ENCODED_KEY_LEN: usize = 4 + 8 + KEY_LEN;
/// The first data-key term; term 0 is reserved for blobs sealed by the root key.
const FIRST_TERM: u32 = 1;

/// One data key and when it was installed.
#[derive(Clone)]
struct DataKey {
    term: u32,
    installed_at: i64,
    key: Zeroizing<[u8; KEY_LEN]>,
}

/// The data keys of the barrier, by term, with one active term used for sealing.
///
/// Immutable: [`Keyring::rotate`] returns a new keyring, so the engine can swap an `Arc`.
///
/// Invariants, upheld by every constructor: at least one key; terms strictly increasing and
/// at least 1; the active term is the last one.
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<DataKey>,
}

impl Keyring {
    /// A keyring with one random 256-bit key at term 1, installed at `now_unix`.
    pub fn generate(now_unix: i64) -> Result<Keyring, CryptoError> {
        Ok(Keyring {
            keys: vec![DataKey {
                term: FIRST_TERM,
                installed_at: now_unix,
                key: random_key()?,
            }],
        })
    }

    /// A new keyring with a fresh random key at term `active_term() + 1`, which becomes
    /// active; all older terms are kept so old blobs still open.
    pub fn rotate(&self, now_unix: i64) -> Result<Keyring, CryptoError> {
        let term = self
            .active_term()
            .checked_add(1)
            .ok_or(CryptoError::TermsExhausted)?;
        let mut keys = self.keys.clone();
        keys.push(DataKey {
            term,
            installed_at: now_unix,
            key: random_key()?,
        });
        Ok(Keyring { keys })
    }

    /// The term new blobs are sealed with.
    pub fn active_term(&self) -> u32 {
        self.active().term
    }

    /// When `term` was installed (unix seconds), if the keyring holds it.
    pub fn installed_at(&self, term: u32) -> Option<i64> {
        self.key(term).map(|key| key.installed_at)
    }

    /// How many terms the keyring holds.
    pub fn terms(&self) -> usize {
        self.keys.len()
    }

    /// Seals `plaintext` for storage at `path` with the active key and a fresh random nonce.
    pub fn seal(&self, path: &str, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let active = self.active();
        blob::seal(&active.key, active.term, path, plaintext)
    }

    /// Opens a blob read from `path`, with whichever held term sealed it.
    ///
    /// Fails with [`CryptoError::UnknownTerm`] if the keyring does not hold the blob's term,
    /// and [`CryptoError::Decrypt`] if the blob was altered or belongs to another path.
    pub fn open(&self, path: &str, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let blob = SealedBlob::parse(blob)?;
        let key = self
            .key(blob.term())
            .ok_or(CryptoError::UnknownTerm(blob.term()))?;
        blob.open_with(&key.key, path)
    }

    /// The versioned binary encoding of every key, for sealing with [`crate::RootKey`].
    ///
    /// # Encoding (version 1)
    ///
    /// All integers are big-endian. The output holds every key in the clear, so it is only
    /// ever written sealed by the root key.
    ///
    /// | bytes                | content                                         |
    /// |----------------------|-------------------------------------------------|
    /// | `0`                  | encoding version, `1`                           |
    /// | `1..5`               | active term, `u32`                              |
    /// | `5..9`               | number of keys `n`, `u32`, at least 1           |
    /// | then `n` × 44 bytes  | term `u32`, `installed_at` `i64`, key 32 bytes  |
    ///
    /// Terms are strictly increasing, start at 1 or later (0 is the root key's), and the active
    /// term is the last, highest one. [`Keyring::decode`] checks all of this and the exact length.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(
            ENCODING_HEADER_LEN + self.keys.len() * ENCODED_KEY_LEN,
        ));
        out.push(ENCODING_VERSION);
        out.extend_from_slice(&self.active_term().to_be_bytes());
        // The count fits: rotation stops at `u32::MAX` terms and decode checks it is a `u32`.
        let count = u32::try_from(self.keys.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&count.to_be_bytes());
        for key in &self.keys {
            out.extend_from_slice(&key.term.to_be_bytes());
            out.extend_from_slice(&key.installed_at.to_be_bytes());
            out.extend_from_slice(key.key.as_slice());
        }
        out
    }

    /// Decodes [`Keyring::encode`] output, checking the length and every invariant.
    ///
    /// Never panics, whatever the input.
    pub fn decode(bytes: &[u8]) -> Result<Keyring, CryptoError> {
        let (&version, rest) = bytes.split_first().ok_or(CryptoError::Truncated)?;
        if version != ENCODING_VERSION {
            return Err(CryptoError::UnsupportedVersion(version));
        }
        let (active_term, rest) = split_u32(rest)?;
        let (count, body) = split_u32(rest)?;
        if count == 0 {
            return Err(CryptoError::Malformed("keyring holds no keys"));
        }
        let expected_len = usize::try_from(count)
            .ok()
            .and_then(|count| count.checked_mul(ENCODED_KEY_LEN))
            .ok_or(CryptoError::Malformed("keyring key count too large"))?;
        if body.len() < expected_len {
            return Err(CryptoError::Truncated);
        }
        if body.len() > expected_len {
            return Err(CryptoError::Malformed("trailing bytes after keyring"));
        }
        let mut keys: Vec<DataKey> = Vec::with_capacity(body.len() / ENCODED_KEY_LEN);
        for entry in body.chunks_exact(ENCODED_KEY_LEN) {
            let (term, entry) = split_u32(entry)?;
            let (installed_at, entry) = entry
                .split_first_chunk::<8>()
                .ok_or(CryptoError::Truncated)?;
            let key: [u8; KEY_LEN] = entry.try_into().map_err(|_| CryptoError::Truncated)?;
            let key = Zeroizing::new(key);
            if term < FIRST_TERM {
                return Err(CryptoError::Malformed("keyring holds term 0"));
            }
            if keys.last().is_some_and(|previous| previous.term >= term) {
                return Err(CryptoError::Malformed("keyring terms not increasing"));
            }
            keys.push(DataKey {
                term,
                installed_at: i64::from_be_bytes(*installed_at),
                key,
            });
        }
        if keys.last().map(|key| key.term) != Some(active_term) {
            return Err(CryptoError::Malformed("active term is not the newest key"));
        }
        Ok(Keyring { keys })
    }

    #[expect(
        clippy::unwrap_used,
        reason = "generate, rotate and decode all leave at least one key in the keyring"
    )]
    fn active(&self) -> &DataKey {
        self.keys.last().unwrap()
    }

    fn key(&self, term: u32) -> Option<&DataKey> {
        self.keys
            .binary_search_by_key(&term, |key| key.term)
            .ok()
            .and_then(|index| self.keys.get(index))
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let terms: Vec<(u32, i64)> = self
            .keys
            .iter()
            .map(|key| (key.term, key.installed_at))
            .collect();
        f.debug_struct("Keyring")
            .field("active_term", &self.active_term())
            .field("terms_installed_at", &terms)
            .field("keys", &"<redacted>")
            .finish()
    }
}

/// Splits a big-endian `u32` off the front of `bytes`.
fn split_u32(bytes: &[u8]) -> Result<(u32, &[u8]), CryptoError> {
    let (head, rest) = bytes
        .split_first_chunk::<4>()
        .ok_or(CryptoError::Truncated)?;
    Ok((u32::from_be_bytes(*head), rest))
}
