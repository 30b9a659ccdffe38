//! Tests of the PEM/DER public key reader and ECDSA P-256 verification, with key pairs made by
//! ring in the test and wrapped in a `SubjectPublicKeyInfo` by hand.

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};

use super::*;

/// The DER of a P-256 `SubjectPublicKeyInfo`, up to the point.
const SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, // SEQUENCE, 89 bytes
    0x30, 0x13, // SEQUENCE, 19 bytes: the algorithm
    0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, // id-ecPublicKey
    0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, // prime256v1
    0x03, 0x42, 0x00, // BIT STRING, 66 bytes, no unused bits
];

struct Signer {
    pair: EcdsaKeyPair,
    rng: SystemRandom,
}

impl Signer {
    fn new() -> Signer {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        Signer { pair, rng }
    }

    fn spki(&self) -> Vec<u8> {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(self.pair.public_key().as_ref());
        der
    }

    fn pem(&self) -> String {
        pem_of(&self.spki())
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair
            .sign(&self.rng, message)
            .unwrap()
            .as_ref()
            .to_vec()
    }

    fn sign_base64(&self, message: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.sign(message))
    }
}

/// PEM with 64-character lines, as OpenSSL writes it.
fn pem_of(der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|chunk| std::str::from_utf8(chunk).unwrap())
        .collect();
    format!("{PEM_BEGIN}\n{}\n{PEM_END}\n", lines.join("\n"))
}

#[test]
fn a_signature_made_with_the_key_verifies() {
    let signer = Signer::new();
    let key = EcdsaP256PublicKey::from_pem(&signer.pem()).unwrap();
    assert_eq!(key.point().as_slice(), signer.pair.public_key().as_ref());
    let body = br#"[{"token":"x","type":"custos_token","url":"https://github.com/a/b"}]"#;
    key.verify(body, &signer.sign(body)).unwrap();
    key.verify_base64(body, &signer.sign_base64(body)).unwrap();
    // Header values may carry surrounding blanks.
    key.verify_base64(body, &format!(" {} ", signer.sign_base64(body)))
        .unwrap();
}

#[test]
fn a_changed_message_or_another_key_does_not_verify() {
    let signer = Signer::new();
    let key = EcdsaP256PublicKey::from_pem(&signer.pem()).unwrap();
    let body = b"[{\"token\":\"a\"}]";
    let signature = signer.sign(body);
    assert_eq!(
        key.verify(b"[{\"token\":\"b\"}]", &signature),
        Err(CryptoError::BadSignature)
    );
    let other = EcdsaP256PublicKey::from_pem(&Signer::new().pem()).unwrap();
    assert_eq!(
        other.verify(body, &signature),
        Err(CryptoError::BadSignature)
    );
    let mut flipped = signature.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert_eq!(key.verify(body, &flipped), Err(CryptoError::BadSignature));
    assert_eq!(key.verify(body, b""), Err(CryptoError::BadSignature));
}

#[test]
fn a_signature_that_is_not_base64_is_malformed() {
    let signer = Signer::new();
    let key = EcdsaP256PublicKey::from_pem(&signer.pem()).unwrap();
    for bad in ["not base64!", "MEQCIA6C6L8", &"A".repeat(200)] {
        assert!(
            matches!(key.verify_base64(b"x", bad), Err(CryptoError::Malformed(_))),
            "{bad}"
        );
    }
}

#[test]
fn pem_accepts_crlf_and_one_line_bodies() {
    let signer = Signer::new();
    let crlf = signer.pem().replace('\n', "\r\n");
    assert!(EcdsaP256PublicKey::from_pem(&crlf).is_ok());
    let one_line = format!(
        "  {PEM_BEGIN}{}{PEM_END}  ",
        base64::engine::general_purpose::STANDARD.encode(signer.spki())
    );
    assert!(EcdsaP256PublicKey::from_pem(&one_line).is_ok());
}

#[test]
fn other_pem_blocks_and_keys_are_refused() {
    let signer = Signer::new();
    let spki = signer.spki();
    let malformed = |text: &str| {
        assert!(
            matches!(
                EcdsaP256PublicKey::from_pem(text),
                Err(CryptoError::Malformed(_) | CryptoError::Truncated)
            ),
            "{text}"
        );
    };
    malformed("");
    malformed(&signer.pem().replace("PUBLIC KEY", "EC PRIVATE KEY"));
    malformed(&signer.pem().replace("-----END PUBLIC KEY-----", ""));
    malformed(&format!("{}trailing", signer.pem()));
    malformed(&format!("{PEM_BEGIN}\n@@@@\n{PEM_END}"));
    malformed(&"A".repeat(MAX_PEM_LEN + 1));

    let der_error = |der: &[u8]| {
        let error = EcdsaP256PublicKey::from_spki_der(der).unwrap_err();
        assert!(
            matches!(error, CryptoError::Malformed(_) | CryptoError::Truncated),
            "{error:?}"
        );
        error
    };
    // Truncated anywhere.
    for end in 0..spki.len() {
        der_error(&spki[..end]);
    }
    // Bytes after the key.
    der_error(&[spki.as_slice(), &[0]].concat());
    // A P-384 curve OID in place of prime256v1.
    let mut p384 = spki.clone();
    p384[15..23].copy_from_slice(&[0x2b, 0x81, 0x04, 0x00, 0x22, 0x00, 0x00, 0x00]);
    assert_eq!(
        der_error(&p384),
        CryptoError::Malformed("not a P-256 key: the curve must be prime256v1")
    );
    // An RSA key's algorithm OID (1.2.840.113549.1.1.1 has 9 bytes; a 7-byte prefix suffices).
    let mut rsa = spki.clone();
    rsa[6..13].copy_from_slice(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01]);
    assert_eq!(
        der_error(&rsa),
        CryptoError::Malformed("not an elliptic-curve public key (id-ecPublicKey)")
    );
    // A compressed point marker.
    let mut compressed = spki.clone();
    compressed[26] = 0x02;
    der_error(&compressed);
    // Unused bits in the bit string.
    let mut unused = spki.clone();
    unused[25] = 1;
    der_error(&unused);
    // A long-form length where the short form fits.
    der_error(&[0x30, 0x81, 0x01, 0x00]);
    der_error(&[0x30, 0x82, 0x00, 0x01, 0x00]);
    der_error(&[0x30, 0x83, 0x00, 0x00, 0x01, 0x00]);
}

#[test]
fn a_point_off_the_curve_parses_but_never_verifies() {
    let signer = Signer::new();
    let mut spki = signer.spki();
    let last = spki.len() - 1;
    spki[last] ^= 1;
    let key = EcdsaP256PublicKey::from_spki_der(&spki).unwrap();
    let body = b"[]";
    assert_eq!(
        key.verify(body, &signer.sign(body)),
        Err(CryptoError::BadSignature)
    );
}

#[test]
fn debug_shows_a_fingerprint() {
    let key = EcdsaP256PublicKey::from_pem(&Signer::new().pem()).unwrap();
    let shown = format!("{key:?}");
    assert!(
        shown.starts_with("EcdsaP256PublicKey { sha256: \""),
        "{shown}"
    );
}

#[test]
fn base64_decodes_like_the_standard_engine() {
    for (text, expected) in [
        ("", Some(&b""[..])),
        ("Zg==", Some(b"f")),
        ("YWI=", Some(b"ab")),
        ("Zm9v", Some(b"foo")),
        ("Zm9vYg==", Some(b"foob")),
        ("+/+/", Some(&[0xfb, 0xff, 0xbf][..])),
        ("Zg", None),
        ("Zh==", None),
        ("Zg==Zg==", None),
        ("Z===", None),
        ("Zm9v\n", None),
        ("Zm-_", None),
    ] {
        assert_eq!(
            decode_base64(text.as_bytes()).as_deref(),
            expected,
            "{text:?}"
        );
    }
}

proptest::proptest! {
    #[test]
    fn base64_agrees_with_the_base64_crate(text in "[A-Za-z0-9+/=]{0,16}") {
        let theirs = base64::engine::general_purpose::STANDARD.decode(text.as_bytes()).ok();
        proptest::prop_assert_eq!(decode_base64(text.as_bytes()), theirs);
    }

    #[test]
    fn base64_round_trips(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
        let text = base64::engine::general_purpose::STANDARD.encode(&bytes);
        proptest::prop_assert_eq!(decode_base64(text.as_bytes()), Some(bytes));
    }

    #[test]
    fn the_readers_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..128)) {
        let _ = EcdsaP256PublicKey::from_spki_der(&bytes);
        let text = String::from_utf8_lossy(&bytes);
        let _ = EcdsaP256PublicKey::from_pem(&text);
        let _ = EcdsaP256PublicKey::from_pem(&format!("{PEM_BEGIN}{text}{PEM_END}"));
    }

    #[test]
    fn changed_key_bytes_never_panic(index in 0usize..91, byte in proptest::num::u8::ANY) {
        // One valid key for every case: generating one per case would be slow.
        static SPKI: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        let spki = SPKI.get_or_init(|| Signer::new().spki());
        let mut changed = spki.clone();
        changed[index] = byte;
        if let Ok(key) = EcdsaP256PublicKey::from_spki_der(&changed) {
            // Only the point may differ from a valid key's structure.
            proptest::prop_assert!(index >= 26 || changed == *spki);
            let _ = key.verify(b"[]", &changed);
            let _ = key.verify_base64(b"[]", &String::from_utf8_lossy(&changed));
        }
    }
}
