//! The barrier of custos: every cryptographic operation of the project, and nothing else.
//!
//! - [`Keyring`]: the data keys, by term, that seal every stored value with AES-256-GCM in
//!   the [`SealedBlob`] format, bound to the value's storage path.
//! - [`RootKey`]: the key that seals the keyring (as a [`SealedBlob`] with term 0 at path
//!   `core/keyring`).
//! - [`shamir`]: splitting the root key into unseal shares and recombining them, in
//!   HashiCorp Vault's share layout.
//! - [`KeyedHasher`]: HMAC-SHA256, so tokens and API keys are stored only as keyed hashes.
//! - [`hash_password`], [`verify_password`]: argon2id password hashes (the one crypto crate
//!   besides `ring`, RustCrypto's `argon2`, since ring has no memory-hard hash).
//! - [`otp`]: HOTP/TOTP codes (HMAC-SHA1 from ring) and base32 for authenticator apps.
//! - [`EcdsaP256PublicKey`]: ECDSA P-256 signature verification against a PEM public key
//!   (GitHub's secret-scanning reports), with its own small PEM and DER reader.
//! - [`fill_random`], [`random_base62`], [`random_uuid`]: the OS random generator.
//!
//! The crate is pure: no I/O besides the OS random generator, no clock (time comes in as unix
//! seconds), no logging. The only crypto provider is `ring` (and `argon2` for password hashing). Parsers return errors on any
//! input and never panic; they are fuzzed (`fuzz/fuzz_targets/sealed_blob.rs`,
//! `fuzz/fuzz_targets/github_leak_signature.rs`).
//!
//! Key material lives in `Zeroizing` buffers, so it is wiped on drop, and every type holding
//! it has a redacting `Debug` and no `Display`. `ring`'s own key objects do not zeroize, so
//! they are built per operation from the zeroized bytes and dropped right after.
//!
//! # The sealed blob format, version 1
//!
//! | bytes      | content                                                 |
//! |------------|---------------------------------------------------------|
//! | `0`        | format version, `1`                                     |
//! | `1..5`     | key term, `u32` big-endian (`0` = the root key)         |
//! | `5..17`    | 96-bit random nonce                                     |
//! | `17..`     | AES-256-GCM ciphertext followed by the 16-byte tag      |
//!
//! The minimum length is `1 + 4 + 12 + 16 = 33` bytes. The additional authenticated data is
//! the 5-byte header (version and term) followed by the storage path bytes, so a blob copied
//! to another path, or relabelled with another term, fails to open.
//!
//! The keyring's own encoding is documented on [`Keyring::encode`]. Both formats are
//! pinned by the vector in `testdata/barrier/v1_blob.txt`: a blob written by an old release
//! must still open.

mod blob;
mod error;
mod hash;
mod keyring;
pub mod otp;
mod password;
mod random;
mod root;
pub mod shamir;
mod signature;
#[cfg(test)]
mod test_support;

pub use blob::{FORMAT_VERSION, HEADER_LEN, MIN_BLOB_LEN, NONCE_LEN, SealedBlob, TAG_LEN};
pub use error::CryptoError;
pub use hash::{HASH_LEN, KeyedHasher, PreparedHmac, constant_time_eq, sha256, sha256_hex};
pub use keyring::Keyring;
pub use password::{PASSWORD_PARAMS, hash_password, verify_password};
pub use random::{fill_random, random_base62, random_uuid};
pub use root::{KEYRING_PATH, ROOT_KEY_TERM, RootKey};
pub use shamir::ShamirError;
pub use signature::{EcdsaP256PublicKey, P256_POINT_LEN};
