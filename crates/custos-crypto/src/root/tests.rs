//! Unit tests for the root key: sealing the keyring and recovering it from shares.

use super::*;
use crate::shamir;
use crate::test_support::to_hex;

const NOW: i64 = 1_764_000_000;

#[test]
fn sealed_keyring_opens_with_the_same_root_key() {
    let root_key = RootKey::generate().expect("root key");
    let keyring = Keyring::generate(NOW)
        .expect("keyring")
        .rotate(NOW + 1)
        .expect("rotate");
    let sealed = root_key.seal_keyring(&keyring).expect("seal");
    let parsed = SealedBlob::parse(&sealed).expect("parse");
    assert_eq!(parsed.term(), ROOT_KEY_TERM);
    let opened = root_key.open_keyring(&sealed).expect("open");
    assert_eq!(opened.encode(), keyring.encode());
}

#[test]
fn wrong_root_key_is_decrypt() {
    let keyring = Keyring::generate(NOW).expect("keyring");
    let sealed = RootKey::generate()
        .expect("root key")
        .seal_keyring(&keyring)
        .expect("seal");
    let other = RootKey::generate().expect("root key");
    assert_eq!(
        other.open_keyring(&sealed).map(|_| ()),
        Err(CryptoError::Decrypt)
    );
}

#[test]
fn a_data_blob_is_not_a_keyring() {
    let root_key = RootKey::generate().expect("root key");
    let keyring = Keyring::generate(NOW).expect("keyring");
    let data_blob = keyring.seal(KEYRING_PATH, b"x").expect("seal");
    assert_eq!(
        root_key.open_keyring(&data_blob).map(|_| ()),
        Err(CryptoError::UnknownTerm(1))
    );
    // And the keyring refuses blobs labelled with the root key's term.
    let sealed = root_key.seal_keyring(&keyring).expect("seal");
    assert_eq!(
        keyring.open(KEYRING_PATH, &sealed).map(|_| ()),
        Err(CryptoError::UnknownTerm(0))
    );
}

#[test]
fn sealed_keyring_truncations_and_flips_are_errors() {
    let root_key = RootKey::generate().expect("root key");
    let sealed = root_key
        .seal_keyring(&Keyring::generate(NOW).expect("keyring"))
        .expect("seal");
    for len in 0..sealed.len() {
        assert!(root_key.open_keyring(&sealed[..len]).is_err(), "len {len}");
    }
    for index in 0..sealed.len() {
        let mut corrupted = sealed.clone();
        corrupted[index] ^= 0x01;
        assert!(root_key.open_keyring(&corrupted).is_err(), "index {index}");
    }
}

#[test]
fn from_bytes_requires_32_bytes() {
    for len in [0usize, 16, 31, 33, 64] {
        assert_eq!(
            RootKey::from_bytes(&vec![1u8; len]).map(|_| ()),
            Err(CryptoError::InvalidKeyLength {
                expected: 32,
                actual: len
            })
        );
    }
    let root_key = RootKey::from_bytes(&[3u8; 32]).expect("32 bytes");
    assert_eq!(root_key.as_bytes(), &[3u8; 32]);
}

#[test]
fn generated_root_keys_differ() {
    let first = RootKey::generate().expect("root key");
    let second = RootKey::generate().expect("root key");
    assert_ne!(first.as_bytes(), second.as_bytes());
}

#[test]
fn debug_shows_no_key_bytes() {
    let root_key = RootKey::generate().expect("root key");
    let debug = format!("{root_key:?} {root_key:#?}");
    assert!(!debug.contains(&to_hex(root_key.as_bytes())));
    assert!(!debug.contains(&format!("{:?}", root_key.as_bytes())));
    assert!(debug.contains("<redacted>"));
}

#[test]
fn root_key_recombined_from_shares_opens_the_keyring() {
    let root_key = RootKey::generate().expect("root key");
    let sealed = root_key
        .seal_keyring(&Keyring::generate(NOW).expect("keyring"))
        .expect("seal");
    let shares = shamir::split(root_key.as_bytes(), 5, 3).expect("split");

    let recombined = shamir::combine(&shares[1..4]).expect("combine");
    let recovered = RootKey::from_bytes(&recombined).expect("32 bytes");
    assert!(recovered.open_keyring(&sealed).is_ok());

    // Too few shares give a wrong key, which the sealed keyring detects.
    let too_few = shamir::combine(&shares[..2]).expect("combine");
    let wrong = RootKey::from_bytes(&too_few).expect("32 bytes");
    assert_eq!(
        wrong.open_keyring(&sealed).map(|_| ()),
        Err(CryptoError::Decrypt)
    );
}
