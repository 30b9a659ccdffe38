//! The error type of the barrier: what can go wrong when sealing, opening or decoding.

/// Errors from sealing, opening, parsing and key handling.
///
/// No variant carries key material or plaintext, so an error can be logged as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The input ended before the format said it would.
    #[error("input is truncated")]
    Truncated,
    /// The format version byte is one this build does not know.
    #[error("unsupported format version {0}")]
    UnsupportedVersion(u8),
    /// The blob was sealed with a key term the keyring does not hold.
    #[error("unknown key term {0}")]
    UnknownTerm(u32),
    /// Authentication failed: wrong key, wrong storage path, or corrupted bytes.
    #[error("decryption failed: wrong key, wrong path or corrupted data")]
    Decrypt,
    /// A key was given with the wrong number of bytes.
    #[error("invalid key length: expected {expected} bytes, got {actual}")]
    InvalidKeyLength {
        /// The length the key must have.
        expected: usize,
        /// The length that was given.
        actual: usize,
    },
    /// The operating system random generator failed.
    #[error("the OS random generator failed")]
    Random,
    /// The input is structurally invalid (the text says which rule it broke).
    #[error("malformed input: {0}")]
    Malformed(&'static str),
    /// A signature did not verify under the public key: wrong key, altered message, or not a
    /// signature at all.
    #[error("the signature does not verify")]
    BadSignature,
    /// Key rotation would need a term past `u32::MAX`.
    #[error("key terms are exhausted")]
    TermsExhausted,
}
