//! Password hashing with argon2id, in the PHC string format (`$argon2id$v=19$m=...`).
//!
//! Parameters follow OWASP's first recommendation for argon2id: 19 MiB of memory, 2 passes,
//! 1 lane ([`PASSWORD_PARAMS`]). The stored string carries its own parameters, so hashes made
//! with other parameters (older or stronger ones) still verify. The salt is 16 bytes from the OS
//! generator. Hashing is deliberately slow (tens of milliseconds): callers run it off the async
//! runtime's worker threads.

#[cfg(test)]
mod tests;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::CryptoError;
use crate::random::random_array;

/// argon2id memory cost in KiB (19 MiB), passes and lanes: OWASP's recommendation.
pub const PASSWORD_PARAMS: (u32, u32, u32) = (19 * 1024, 2, 1);

fn hasher() -> Result<Argon2<'static>, CryptoError> {
    let (memory, passes, lanes) = PASSWORD_PARAMS;
    let params = Params::new(memory, passes, lanes, None)
        .map_err(|_| CryptoError::Malformed("argon2 parameters"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes `password` with a fresh random salt; returns the PHC string to store.
pub fn hash_password(password: &[u8]) -> Result<String, CryptoError> {
    let salt_bytes: [u8; 16] = random_array()?;
    let salt =
        SaltString::encode_b64(&salt_bytes).map_err(|_| CryptoError::Malformed("argon2 salt"))?;
    hasher()?
        .hash_password(password, &salt)
        .map(|hash| hash.to_string())
        .map_err(|_| CryptoError::Malformed("argon2 hashing failed"))
}

/// Whether `password` matches the stored PHC string (compared in constant time by argon2).
/// A malformed stored string is an error, not a mismatch: it means corrupt data.
pub fn verify_password(password: &[u8], stored: &str) -> Result<bool, CryptoError> {
    let parsed =
        PasswordHash::new(stored).map_err(|_| CryptoError::Malformed("stored password hash"))?;
    if parsed.algorithm != argon2::ARGON2ID_IDENT {
        return Err(CryptoError::Malformed(
            "stored password hash is not argon2id",
        ));
    }
    match Argon2::default().verify_password(password, &parsed) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::Password) => Ok(false),
        Err(_) => Err(CryptoError::Malformed("stored password hash")),
    }
}
