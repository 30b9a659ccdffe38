//! Shamir secret sharing of the root key, byte-wise over GF(2^8), in HashiCorp Vault's layout.
//!
//! Each secret byte is the constant term of its own random polynomial of degree
//! `threshold - 1` over GF(2^8) with the AES reduction polynomial `x^8 + x^4 + x^3 + x + 1`
//! (`0x11b`). A share holds the value of every polynomial at the share's x-coordinate,
//! followed by one trailing byte holding that x-coordinate: a 32-byte secret gives 33-byte
//! shares. X-coordinates are distinct, non-zero and chosen at random, as in Vault's
//! `shamir` package, so shares are interchangeable with Vault's.
//!
//! Field arithmetic is constant time: multiplication is a fixed eight-step shift-and-add
//! loop with masks, and inversion a fixed chain of multiplications, so no lookup table is
//! indexed by secret bytes.
//!
//! # Too few shares
//!
//! [`combine`] cannot know the threshold: given fewer shares than it, the interpolation
//! returns *some* bytes, unrelated to the secret, and no error. Callers must check the result,
//! as the engine does when the recombined root key fails to open the sealed keyring
//! ([`crate::CryptoError::Decrypt`]). For the same reason a single share combines to its own
//! y bytes, which is the secret exactly when it was split into one share with threshold 1.

#[cfg(test)]
mod tests;

use std::fmt;

use zeroize::Zeroizing;

use crate::random::{fill_random, random_index};

/// Errors from splitting or combining shares.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShamirError {
    /// The split parameters break a rule (the text says which).
    #[error("invalid parameters: {0}")]
    InvalidParameters(String),
    /// No shares were given.
    #[error("not enough shares")]
    NotEnoughShares,
    /// Two shares have the same x-coordinate.
    #[error("duplicate share")]
    DuplicateShare,
    /// The shares do not all have the same length.
    #[error("shares have different lengths")]
    InconsistentShareLength,
    /// A share is structurally invalid (the text says why).
    #[error("invalid share: {0}")]
    InvalidShare(String),
    /// The OS random generator failed while splitting.
    #[error("the OS random generator failed")]
    Random,
}

/// One share: a y byte per secret byte, then the x-coordinate.
#[derive(Clone)]
pub struct Share {
    bytes: Zeroizing<Vec<u8>>,
}

impl Share {
    /// Loads a share; it needs at least one y byte and a non-zero x-coordinate.
    pub fn from_bytes(bytes: &[u8]) -> Result<Share, ShamirError> {
        match bytes.split_last() {
            None | Some((_, [])) => Err(ShamirError::InvalidShare(format!(
                "a share has at least 2 bytes, got {}",
                bytes.len()
            ))),
            Some((0, _)) => Err(ShamirError::InvalidShare("x-coordinate is 0".to_string())),
            Some(_) => Ok(Share {
                bytes: Zeroizing::new(bytes.to_vec()),
            }),
        }
    }

    /// The share in Vault's layout: y bytes, then the x-coordinate.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The x-coordinate (the trailing byte); not secret.
    pub fn x(&self) -> u8 {
        self.bytes.last().copied().unwrap_or(0)
    }

    /// The y bytes, one per secret byte.
    fn y(&self) -> &[u8] {
        self.bytes.split_last().map_or(&[], |(_, y)| y)
    }
}

impl fmt::Debug for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Share")
            .field("x", &self.x())
            .field("len", &self.bytes.len())
            .field("y", &"<redacted>")
            .finish()
    }
}

/// Splits `secret` into `shares` shares, any `threshold` of which recombine it.
///
/// Rules, as in Vault: the secret is non-empty; `1 <= threshold <= shares`; threshold 1 only
/// with a single share (whose y bytes are then the secret itself).
pub fn split(secret: &[u8], shares: u8, threshold: u8) -> Result<Vec<Share>, ShamirError> {
    if secret.is_empty() {
        return Err(invalid("the secret is empty"));
    }
    if shares == 0 {
        return Err(invalid("at least one share is needed"));
    }
    if threshold == 0 {
        return Err(invalid("the threshold must be at least 1"));
    }
    if threshold > shares {
        return Err(ShamirError::InvalidParameters(format!(
            "threshold {threshold} exceeds the number of shares {shares}"
        )));
    }
    if threshold == 1 && shares > 1 {
        return Err(invalid(
            "threshold 1 is only allowed with a single share; use at least 2",
        ));
    }

    let x_coordinates = random_x_coordinates(shares)?;
    let mut outputs: Vec<Zeroizing<Vec<u8>>> = x_coordinates
        .iter()
        .map(|_| Zeroizing::new(Vec::with_capacity(secret.len() + 1)))
        .collect();
    // coefficients[0] is the secret byte; the others are random, fresh for every byte.
    let mut coefficients = Zeroizing::new(vec![0u8; usize::from(threshold)]);
    for &secret_byte in secret {
        let Some((constant, random)) = coefficients.split_first_mut() else {
            return Err(invalid("the threshold must be at least 1"));
        };
        *constant = secret_byte;
        fill_random(random).map_err(|_| ShamirError::Random)?;
        for (output, &x) in outputs.iter_mut().zip(&x_coordinates) {
            output.push(evaluate(&coefficients, x));
        }
    }
    Ok(outputs
        .into_iter()
        .zip(x_coordinates)
        .map(|(mut bytes, x)| {
            bytes.push(x);
            Share { bytes }
        })
        .collect())
}

/// Recombines shares into the secret by Lagrange interpolation at x = 0.
///
/// Rejects no shares, shares of different lengths, duplicate x-coordinates and malformed
/// shares. See the module docs for what happens with too few shares.
pub fn combine(shares: &[Share]) -> Result<Zeroizing<Vec<u8>>, ShamirError> {
    let first = shares.first().ok_or(ShamirError::NotEnoughShares)?;
    let share_len = first.bytes.len();
    if shares.iter().any(|share| share.bytes.len() != share_len) {
        return Err(ShamirError::InconsistentShareLength);
    }
    // `Share::from_bytes` already enforces both; re-checked because the math relies on them.
    if share_len < 2 {
        return Err(ShamirError::InvalidShare(
            "a share has at least 2 bytes".to_string(),
        ));
    }
    let mut seen = [false; 256];
    for share in shares {
        let x = share.x();
        if x == 0 {
            return Err(ShamirError::InvalidShare("x-coordinate is 0".to_string()));
        }
        let slot = &mut seen[usize::from(x)];
        if *slot {
            return Err(ShamirError::DuplicateShare);
        }
        *slot = true;
    }

    // Lagrange basis at 0: basis_i = prod_{j != i} x_j / (x_i + x_j). Denominators are
    // non-zero because the x-coordinates are distinct.
    let basis: Zeroizing<Vec<u8>> = Zeroizing::new(
        shares
            .iter()
            .enumerate()
            .map(|(i, share_i)| {
                shares.iter().enumerate().filter(|&(j, _)| j != i).fold(
                    1u8,
                    |basis, (_, share_j)| {
                        let term = gf_mul(share_j.x(), gf_inv(share_i.x() ^ share_j.x()));
                        gf_mul(basis, term)
                    },
                )
            })
            .collect(),
    );

    let mut secret = Zeroizing::new(vec![0u8; share_len - 1]);
    for (share, &basis) in shares.iter().zip(basis.iter()) {
        for (out, &y) in secret.iter_mut().zip(share.y()) {
            *out ^= gf_mul(y, basis);
        }
    }
    Ok(secret)
}

fn invalid(reason: &str) -> ShamirError {
    ShamirError::InvalidParameters(reason.to_string())
}

/// `count` distinct random x-coordinates in `1..=255` (a partial Fisher-Yates shuffle).
fn random_x_coordinates(count: u8) -> Result<Vec<u8>, ShamirError> {
    let mut candidates: Vec<u8> = (1..=255).collect();
    for i in 0..usize::from(count) {
        let j = i + random_index(candidates.len() - i).map_err(|_| ShamirError::Random)?;
        candidates.swap(i, j);
    }
    candidates.truncate(usize::from(count));
    Ok(candidates)
}

/// Evaluates the polynomial with `coefficients` (constant first) at `x`, by Horner's rule.
fn evaluate(coefficients: &[u8], x: u8) -> u8 {
    coefficients
        .iter()
        .rev()
        .fold(0u8, |acc, &coefficient| gf_mul(acc, x) ^ coefficient)
}

/// Multiplication in GF(2^8) modulo `0x11b`, in constant time (no branches, no tables).
fn gf_mul(a: u8, b: u8) -> u8 {
    let mut a = a;
    let mut b = b;
    let mut product = 0u8;
    for _ in 0..8 {
        // All-ones when the low bit of `b` is set, zero otherwise.
        product ^= a & 0u8.wrapping_sub(b & 1);
        // Reduce by 0x1b when the shift carries out of the top bit.
        let carry = 0u8.wrapping_sub(a >> 7);
        a = (a << 1) ^ (0x1b & carry);
        b >>= 1;
    }
    product
}

/// Inverse in GF(2^8) as `a^254` (so `gf_inv(0) == 0`), with a fixed chain of multiplications.
fn gf_inv(a: u8) -> u8 {
    // a^254 = a^2 · a^4 · a^8 · a^16 · a^32 · a^64 · a^128.
    let mut square = gf_mul(a, a);
    let mut result = square;
    for _ in 0..6 {
        square = gf_mul(square, square);
        result = gf_mul(result, square);
    }
    result
}
