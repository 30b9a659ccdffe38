//! Fuzz target for every parser of the barrier that takes stored (untrusted) bytes:
//! `SealedBlob::parse`, `Keyring::decode`, `Keyring::open`, `RootKey::open_keyring` and
//! Shamir share parsing and combining. None of them may panic on any input.

#![no_main]

use std::sync::OnceLock;

use custos_crypto::shamir::{self, Share};
use custos_crypto::{Keyring, RootKey, SealedBlob};
use libfuzzer_sys::fuzz_target;

/// A keyring with two fixed keys (terms 1 and 2), so blobs with either term reach AES-GCM.
fn keyring() -> &'static Keyring {
    static KEYRING: OnceLock<Keyring> = OnceLock::new();
    KEYRING.get_or_init(|| {
        let mut encoded = vec![1u8];
        encoded.extend_from_slice(&2u32.to_be_bytes()); // active term
        encoded.extend_from_slice(&2u32.to_be_bytes()); // key count
        for term in 1u32..=2 {
            encoded.extend_from_slice(&term.to_be_bytes());
            encoded.extend_from_slice(&0i64.to_be_bytes());
            encoded.extend_from_slice(&[u8::try_from(term).unwrap_or(0); 32]);
        }
        Keyring::decode(&encoded).expect("the fixed keyring encoding is valid")
    })
}

fn root_key() -> &'static RootKey {
    static ROOT_KEY: OnceLock<RootKey> = OnceLock::new();
    ROOT_KEY.get_or_init(|| RootKey::from_bytes(&[0x42; 32]).expect("32 bytes"))
}

fuzz_target!(|data: &[u8]| {
    if let Ok(blob) = SealedBlob::parse(data) {
        assert!(data.len() >= custos_crypto::MIN_BLOB_LEN);
        assert_eq!(
            blob.plaintext_len() + custos_crypto::MIN_BLOB_LEN,
            data.len()
        );
    }
    if let Ok(keyring) = Keyring::decode(data) {
        // Whatever decodes must encode back to the same bytes.
        assert_eq!(keyring.encode().as_slice(), data);
    }
    // Random bytes must never authenticate.
    assert!(keyring().open("secret/data/fuzz", data).is_err());
    assert!(root_key().open_keyring(data).is_err());

    // Treat the input as two shares of equal length.
    let (first, second) = data.split_at(data.len() / 2);
    if let (Ok(first), Ok(second)) = (Share::from_bytes(first), Share::from_bytes(second)) {
        let _ = shamir::combine(&[first, second]);
    }
});
