//! Fuzz target for the public key reader and signature check of GitHub's secret-scanning
//! reports (`custos_crypto::EcdsaP256PublicKey`): PEM and DER public keys from the
//! configuration, and signatures and bodies from the network. None may panic, and random bytes
//! never verify.

#![no_main]

use std::sync::OnceLock;

use custos_crypto::EcdsaP256PublicKey;
use libfuzzer_sys::fuzz_target;

/// A fixed valid key (the uncompressed P-256 generator point), so signatures reach ring.
fn key() -> &'static EcdsaP256PublicKey {
    static KEY: OnceLock<EcdsaP256PublicKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut der = vec![
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
        ];
        // The generator G of P-256 (X then Y).
        der.extend_from_slice(&[
            0x6b, 0x17, 0xd1, 0xf2, 0xe1, 0x2c, 0x42, 0x47, 0xf8, 0xbc, 0xe6, 0xe5, 0x63, 0xa4,
            0x40, 0xf2, 0x77, 0x03, 0x7d, 0x81, 0x2d, 0xeb, 0x33, 0xa0, 0xf4, 0xa1, 0x39, 0x45,
            0xd8, 0x98, 0xc2, 0x96, 0x4f, 0xe3, 0x42, 0xe2, 0xfe, 0x1a, 0x7f, 0x9b, 0x8e, 0xe7,
            0xeb, 0x4a, 0x7c, 0x0f, 0x9e, 0x16, 0x2b, 0xce, 0x33, 0x57, 0x6b, 0x31, 0x5e, 0xce,
            0xcb, 0xb6, 0x40, 0x68, 0x37, 0xbf, 0x51, 0xf5,
        ]);
        EcdsaP256PublicKey::from_spki_der(&der).expect("the fixed key is valid")
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(parsed) = EcdsaP256PublicKey::from_spki_der(data) {
        assert_eq!(data.len(), 91, "a P-256 SubjectPublicKeyInfo is 91 bytes");
        assert_eq!(&data[26..], parsed.point().as_slice());
    }
    let text = String::from_utf8_lossy(data);
    let _ = EcdsaP256PublicKey::from_pem(&text);
    let _ = EcdsaP256PublicKey::from_pem(&format!(
        "-----BEGIN PUBLIC KEY-----\n{text}\n-----END PUBLIC KEY-----"
    ));
    // The input as a signature over itself, raw and as a header value: never valid.
    let (signature, body) = data.split_at(data.len().min(72));
    assert!(key().verify(body, signature).is_err());
    assert!(key().verify_base64(body, &String::from_utf8_lossy(signature)).is_err());
});
