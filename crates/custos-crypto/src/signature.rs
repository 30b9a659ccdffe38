//! ECDSA P-256 signature verification against a public key given as PEM, as GitHub signs the
//! reports of its secret-scanning partner programme (`Github-Public-Key-Signature`: base64 of an
//! ASN.1 DER ECDSA P-256 SHA-256 signature over the raw request body).
//!
//! The key is read from a PEM `PUBLIC KEY` block (a DER `SubjectPublicKeyInfo` for
//! `id-ecPublicKey` on `prime256v1`) by the small PEM, base64 and DER readers below rather than
//! new dependencies (the crate stays pure: `custos/tests/it/tidy.rs`): the format is fixed, and
//! the readers check every length against the bytes they have, so they return an error on any
//! input and never panic. `ring` (`ECDSA_P256_SHA256_ASN1`) checks that the
//! point is on the curve and verifies.

#[cfg(test)]
mod tests;

use ring::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};

use crate::CryptoError;

/// Length of an uncompressed P-256 point: `0x04`, then X and Y of 32 bytes each.
pub const P256_POINT_LEN: usize = 65;

/// The longest PEM text read: a P-256 key is about 180 bytes, so anything far longer is not one.
const MAX_PEM_LEN: usize = 4096;

/// The longest base64 signature read: a DER ECDSA P-256 signature is at most 72 bytes.
const MAX_SIGNATURE_BASE64_LEN: usize = 128;

/// DER tags used by a `SubjectPublicKeyInfo`.
const SEQUENCE: u8 = 0x30;
const OBJECT_IDENTIFIER: u8 = 0x06;
const BIT_STRING: u8 = 0x03;

/// `id-ecPublicKey`, 1.2.840.10045.2.1.
const ID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// `prime256v1` (`secp256r1`, NIST P-256), 1.2.840.10045.3.1.7.
const PRIME256V1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

const PEM_BEGIN: &str = "-----BEGIN PUBLIC KEY-----";
const PEM_END: &str = "-----END PUBLIC KEY-----";

/// An ECDSA P-256 public key (not secret, so its `Debug` shows a fingerprint of it).
#[derive(Clone, PartialEq, Eq)]
pub struct EcdsaP256PublicKey {
    /// The uncompressed point, `0x04 || X || Y`.
    point: [u8; P256_POINT_LEN],
}

impl std::fmt::Debug for EcdsaP256PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EcdsaP256PublicKey")
            .field("sha256", &crate::sha256_hex(&self.point))
            .finish()
    }
}

impl EcdsaP256PublicKey {
    /// Reads a PEM `PUBLIC KEY` block (text around the block is refused, whitespace allowed).
    pub fn from_pem(text: &str) -> Result<EcdsaP256PublicKey, CryptoError> {
        if text.len() > MAX_PEM_LEN {
            return Err(CryptoError::Malformed(
                "PEM text is too long for a P-256 key",
            ));
        }
        let text = text.trim();
        let body = text
            .strip_prefix(PEM_BEGIN)
            .ok_or(CryptoError::Malformed(
                "not a PEM public key: expected it to start with -----BEGIN PUBLIC KEY-----",
            ))?
            .strip_suffix(PEM_END)
            .ok_or(CryptoError::Malformed(
                "not a PEM public key: expected it to end with -----END PUBLIC KEY-----",
            ))?;
        let base64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let der = decode_base64(base64.as_bytes())
            .ok_or(CryptoError::Malformed("the PEM body is not valid base64"))?;
        EcdsaP256PublicKey::from_spki_der(&der)
    }

    /// Reads a DER `SubjectPublicKeyInfo` for `id-ecPublicKey` on `prime256v1` with an
    /// uncompressed point; nothing may follow it.
    pub fn from_spki_der(der: &[u8]) -> Result<EcdsaP256PublicKey, CryptoError> {
        let (spki, rest) = read_tlv(der, SEQUENCE)?;
        if !rest.is_empty() {
            return Err(CryptoError::Malformed(
                "bytes after the SubjectPublicKeyInfo",
            ));
        }
        let (algorithm, rest) = read_tlv(spki, SEQUENCE)?;
        let (bits, rest) = read_tlv(rest, BIT_STRING)?;
        if !rest.is_empty() {
            return Err(CryptoError::Malformed(
                "bytes after the public key bit string",
            ));
        }
        let (kind, rest) = read_tlv(algorithm, OBJECT_IDENTIFIER)?;
        if kind != ID_EC_PUBLIC_KEY {
            return Err(CryptoError::Malformed(
                "not an elliptic-curve public key (id-ecPublicKey)",
            ));
        }
        let (curve, rest) = read_tlv(rest, OBJECT_IDENTIFIER)?;
        if curve != PRIME256V1 || !rest.is_empty() {
            return Err(CryptoError::Malformed(
                "not a P-256 key: the curve must be prime256v1",
            ));
        }
        // A bit string starts with its count of unused bits, 0 for a whole number of bytes.
        let point = match bits.split_first() {
            Some((0, point)) => point,
            _ => return Err(CryptoError::Malformed("malformed public key bit string")),
        };
        let point: [u8; P256_POINT_LEN] = point
            .try_into()
            .ok()
            .filter(|point: &[u8; P256_POINT_LEN]| point[0] == 0x04)
            .ok_or(CryptoError::Malformed(
                "the P-256 point must be uncompressed (65 bytes starting with 0x04)",
            ))?;
        Ok(EcdsaP256PublicKey { point })
    }

    /// The uncompressed point, `0x04 || X || Y`.
    pub fn point(&self) -> &[u8; P256_POINT_LEN] {
        &self.point
    }

    /// Verifies an ASN.1 DER ECDSA P-256 SHA-256 `signature` over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &self.point)
            .verify(message, signature)
            .map_err(|_| CryptoError::BadSignature)
    }

    /// Verifies a signature given as standard base64 (GitHub's `Github-Public-Key-Signature`).
    pub fn verify_base64(&self, message: &[u8], signature: &str) -> Result<(), CryptoError> {
        let signature = signature.trim();
        if signature.len() > MAX_SIGNATURE_BASE64_LEN {
            return Err(CryptoError::Malformed(
                "the signature is too long for ECDSA P-256",
            ));
        }
        let signature = decode_base64(signature.as_bytes())
            .ok_or(CryptoError::Malformed("the signature is not valid base64"))?;
        self.verify(message, &signature)
    }
}

/// Decodes standard base64 with padding (RFC 4648, section 4), as PEM bodies and GitHub's
/// header use it. Strict: the length is a multiple of 4, `=` only ends the last group, and the
/// bits padding leaves over are zero (so every byte string has one encoding).
fn decode_base64(text: &[u8]) -> Option<Vec<u8>> {
    fn value(byte: u8) -> Option<u32> {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        Some(u32::from(value))
    }
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let groups = text.len() / 4;
    let mut out = Vec::with_capacity(groups * 3);
    for (index, group) in text.chunks_exact(4).enumerate() {
        let padding = group.iter().rev().take_while(|&&byte| byte == b'=').count();
        if padding > 2 || (padding > 0 && index + 1 != groups) {
            return None;
        }
        let mut bits = 0u32;
        for &byte in group.iter().take(4 - padding) {
            bits = (bits << 6) | value(byte)?;
        }
        bits <<= 6 * padding;
        let [_, bytes @ ..] = bits.to_be_bytes();
        let (kept, left_over) = bytes.split_at(3 - padding);
        if left_over.iter().any(|&byte| byte != 0) {
            return None;
        }
        out.extend_from_slice(kept);
    }
    Some(out)
}

/// Reads one DER element with tag `tag` from the front of `input`: its content and what
/// follows. Lengths are DER's: short form below 128, else one or two length bytes.
fn read_tlv(input: &[u8], tag: u8) -> Result<(&[u8], &[u8]), CryptoError> {
    let (&found, rest) = input.split_first().ok_or(CryptoError::Truncated)?;
    if found != tag {
        return Err(CryptoError::Malformed("unexpected DER tag"));
    }
    let (&first, rest) = rest.split_first().ok_or(CryptoError::Truncated)?;
    let (length, rest) = match first {
        short @ 0..=0x7f => (usize::from(short), rest),
        0x81 => {
            let (&byte, rest) = rest.split_first().ok_or(CryptoError::Truncated)?;
            if byte < 0x80 {
                return Err(CryptoError::Malformed("DER length is not minimal"));
            }
            (usize::from(byte), rest)
        }
        0x82 => {
            let (bytes, rest) = rest.split_at_checked(2).ok_or(CryptoError::Truncated)?;
            let length = bytes
                .iter()
                .fold(0usize, |length, &byte| (length << 8) | usize::from(byte));
            if length < 0x100 {
                return Err(CryptoError::Malformed("DER length is not minimal"));
            }
            (length, rest)
        }
        _ => return Err(CryptoError::Malformed("unsupported DER length")),
    };
    rest.split_at_checked(length).ok_or(CryptoError::Truncated)
}
