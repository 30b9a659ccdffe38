//! The root key: the key that seals the keyring, itself split into unseal shares.

#[cfg(test)]
mod tests;

use std::fmt;

use zeroize::Zeroizing;

use crate::blob::{self, KEY_LEN, SealedBlob};
use crate::random::random_key;
use crate::{CryptoError, Keyring};

/// The term recorded in a keyring sealed by the root key; data-key terms start at 1.
pub const ROOT_KEY_TERM: u32 = 0;
/// The storage path bound into the sealed keyring as additional authenticated data.
pub const KEYRING_PATH: &str = "core/keyring";

/// The 256-bit key that seals the keyring.
///
/// It only exists in memory between unsealing and sealing; at rest it is held as Shamir
/// shares (see [`crate::shamir`]).
pub struct RootKey {
    key: Zeroizing<[u8; KEY_LEN]>,
}

impl RootKey {
    /// A new random root key from the OS generator.
    pub fn generate() -> Result<RootKey, CryptoError> {
        Ok(RootKey { key: random_key()? })
    }

    /// Loads a root key, for example one recombined from shares; it must be exactly 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<RootKey, CryptoError> {
        let key: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| CryptoError::InvalidKeyLength {
                expected: KEY_LEN,
                actual: bytes.len(),
            })?;
        Ok(RootKey {
            key: Zeroizing::new(key),
        })
    }

    /// The key bytes, for splitting into shares.
    pub fn as_bytes(&self) -> &[u8] {
        self.key.as_slice()
    }

    /// Seals the keyring's encoding in the blob format, with term 0 and path `core/keyring`.
    pub fn seal_keyring(&self, keyring: &Keyring) -> Result<Vec<u8>, CryptoError> {
        blob::seal(&self.key, ROOT_KEY_TERM, KEYRING_PATH, &keyring.encode())
    }

    /// Opens a keyring sealed by [`RootKey::seal_keyring`].
    ///
    /// A wrong root key (for example one combined from too few shares) gives
    /// [`CryptoError::Decrypt`]; a blob with a term other than 0 gives
    /// [`CryptoError::UnknownTerm`].
    pub fn open_keyring(&self, blob: &[u8]) -> Result<Keyring, CryptoError> {
        let blob = SealedBlob::parse(blob)?;
        if blob.term() != ROOT_KEY_TERM {
            return Err(CryptoError::UnknownTerm(blob.term()));
        }
        let encoded = blob.open_with(&self.key, KEYRING_PATH)?;
        Keyring::decode(&encoded)
    }
}

impl fmt::Debug for RootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RootKey")
            .field("key", &"<redacted>")
            .finish()
    }
}
