//! The versioned on-disk format of everything the barrier writes, and AES-256-GCM seal/open.
//!
//! # Format (version 1)
//!
//! | bytes      | content                                                 |
//! |------------|---------------------------------------------------------|
//! | `0`        | format version, `1`                                     |
//! | `1..5`     | key term, `u32` big-endian (`0` = the root key)         |
//! | `5..17`    | 96-bit nonce, fresh from the OS random generator        |
//! | `17..`     | AES-256-GCM ciphertext followed by the 16-byte tag      |
//!
//! The minimum length is therefore `1 + 4 + 12 + 16 = 33` bytes (an empty plaintext).
//!
//! The additional authenticated data is the 5-byte header (version and term) followed by the
//! storage path bytes. A blob copied to another path, or relabelled with another version or
//! term, therefore fails to open with [`CryptoError::Decrypt`].
//!
//! Nonces are random, so one key should seal well under 2^32 blobs. This crate does not count:
//! the engine's barrier counts encryptions per key term in storage (cluster-wide) and rotates
//! the keyring once a term has sealed `max_encryptions_per_key` blobs (2^30 by default).

#[cfg(test)]
mod tests;

use ring::aead;
use zeroize::Zeroizing;

use crate::CryptoError;
use crate::random::fill_random;

/// The only format version this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;
/// Length of the authenticated header: version byte and big-endian term.
pub const HEADER_LEN: usize = 1 + 4;
/// Length of the AES-GCM nonce.
pub const NONCE_LEN: usize = 12;
/// Length of the AES-GCM tag.
pub const TAG_LEN: usize = 16;
/// The shortest valid blob: header, nonce and tag around an empty plaintext.
pub const MIN_BLOB_LEN: usize = HEADER_LEN + NONCE_LEN + TAG_LEN;
/// Length of an AES-256 key.
pub(crate) const KEY_LEN: usize = 32;

/// A parsed, not yet authenticated, sealed blob borrowing the stored bytes.
///
/// Parsing only checks the structure; nothing is trusted until a key opens it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedBlob<'a> {
    version: u8,
    term: u32,
    nonce: [u8; NONCE_LEN],
    ciphertext_and_tag: &'a [u8],
}

impl<'a> SealedBlob<'a> {
    /// Parses stored bytes into their parts, rejecting empty, truncated or unknown-version input.
    ///
    /// Never panics, whatever the input.
    pub fn parse(bytes: &'a [u8]) -> Result<SealedBlob<'a>, CryptoError> {
        let (&version, rest) = bytes.split_first().ok_or(CryptoError::Truncated)?;
        if version != FORMAT_VERSION {
            return Err(CryptoError::UnsupportedVersion(version));
        }
        let (term_bytes, rest) = rest
            .split_first_chunk::<4>()
            .ok_or(CryptoError::Truncated)?;
        let (nonce, ciphertext_and_tag) = rest
            .split_first_chunk::<NONCE_LEN>()
            .ok_or(CryptoError::Truncated)?;
        if ciphertext_and_tag.len() < TAG_LEN {
            return Err(CryptoError::Truncated);
        }
        Ok(SealedBlob {
            version,
            term: u32::from_be_bytes(*term_bytes),
            nonce: *nonce,
            ciphertext_and_tag,
        })
    }

    /// The format version byte.
    pub fn version(&self) -> u8 {
        self.version
    }

    /// The key term the blob claims to be sealed with (`0` for the root key).
    pub fn term(&self) -> u32 {
        self.term
    }

    /// The nonce used for this blob.
    pub fn nonce(&self) -> [u8; NONCE_LEN] {
        self.nonce
    }

    /// The ciphertext followed by the 16-byte tag.
    pub fn ciphertext_and_tag(&self) -> &'a [u8] {
        self.ciphertext_and_tag
    }

    /// Length of the plaintext this blob opens to.
    pub fn plaintext_len(&self) -> usize {
        self.ciphertext_and_tag.len() - TAG_LEN
    }

    /// Opens the blob with `key`, authenticating the header and `path`.
    pub(crate) fn open_with(
        &self,
        key: &[u8; KEY_LEN],
        path: &str,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let key = aead_key(key)?;
        let aad = aad(self.version, self.term, path);
        let mut in_out = Zeroizing::new(self.ciphertext_and_tag.to_vec());
        let plaintext_len = key
            .open_in_place(
                aead::Nonce::assume_unique_for_key(self.nonce),
                aead::Aad::from(aad.as_slice()),
                in_out.as_mut_slice(),
            )
            .map_err(|_| CryptoError::Decrypt)?
            .len();
        in_out.truncate(plaintext_len);
        Ok(in_out)
    }
}

/// Seals `plaintext` for `path` under `key`, labelled with `term`, with a fresh random nonce.
pub(crate) fn seal(
    key: &[u8; KEY_LEN],
    term: u32,
    path: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce)?;
    seal_with_nonce(key, term, nonce, path, plaintext)
}

/// Seals with a caller-chosen nonce; only [`seal`] and tests call it, so nonces stay random.
pub(crate) fn seal_with_nonce(
    key: &[u8; KEY_LEN],
    term: u32,
    nonce: [u8; NONCE_LEN],
    path: &str,
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let key = aead_key(key)?;
    let aad = aad(FORMAT_VERSION, term, path);
    let body_start = HEADER_LEN + NONCE_LEN;
    let mut out = Vec::with_capacity(body_start + plaintext.len() + TAG_LEN);
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&term.to_be_bytes());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let body = out.get_mut(body_start..).ok_or(CryptoError::Truncated)?;
    let tag = key
        .seal_in_place_separate_tag(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(aad.as_slice()),
            body,
        )
        // Only fails when the plaintext exceeds the AES-GCM limit of about 64 GiB.
        .map_err(|_| CryptoError::Malformed("plaintext too long for AES-GCM"))?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

/// The additional authenticated data: the header followed by the storage path.
fn aad(version: u8, term: u32, path: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(HEADER_LEN + path.len());
    aad.push(version);
    aad.extend_from_slice(&term.to_be_bytes());
    aad.extend_from_slice(path.as_bytes());
    aad
}

/// Builds the ring key for one operation.
///
/// We keep only the raw key bytes (zeroized on drop) and expand the key schedule per call,
/// because ring's key types do not zeroize themselves and would outlive the operation otherwise.
fn aead_key(key: &[u8; KEY_LEN]) -> Result<aead::LessSafeKey, CryptoError> {
    let unbound = aead::UnboundKey::new(&aead::AES_256_GCM, key).map_err(|_| {
        CryptoError::InvalidKeyLength {
            expected: KEY_LEN,
            actual: key.len(),
        }
    })?;
    Ok(aead::LessSafeKey::new(unbound))
}
