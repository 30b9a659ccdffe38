//! Unit tests for the sealed blob format: parsing and AES-GCM binding of header and path.

use proptest::prelude::*;

use super::*;

const KEY: [u8; KEY_LEN] = [7u8; KEY_LEN];

fn sealed(term: u32, path: &str, plaintext: &[u8]) -> Vec<u8> {
    seal_with_nonce(&KEY, term, [9u8; NONCE_LEN], path, plaintext).expect("seal")
}

#[test]
fn empty_input_is_truncated() {
    assert_eq!(SealedBlob::parse(&[]), Err(CryptoError::Truncated));
}

#[test]
fn unknown_version_is_rejected_before_length() {
    assert_eq!(
        SealedBlob::parse(&[2]),
        Err(CryptoError::UnsupportedVersion(2))
    );
    assert_eq!(
        SealedBlob::parse(&[0; MIN_BLOB_LEN]),
        Err(CryptoError::UnsupportedVersion(0))
    );
}

#[test]
fn every_prefix_shorter_than_the_minimum_is_truncated() {
    let blob = sealed(3, "a/b", b"");
    assert_eq!(blob.len(), MIN_BLOB_LEN);
    for len in 1..MIN_BLOB_LEN {
        assert_eq!(
            SealedBlob::parse(&blob[..len]),
            Err(CryptoError::Truncated),
            "len {len}"
        );
    }
}

#[test]
fn parse_reads_the_documented_layout() {
    let blob = sealed(0x0102_0304, "a/b", b"hello");
    assert_eq!(&blob[..5], &[1, 1, 2, 3, 4]);
    assert_eq!(&blob[5..17], &[9u8; NONCE_LEN]);
    assert_eq!(blob.len(), MIN_BLOB_LEN + 5);
    let parsed = SealedBlob::parse(&blob).expect("parse");
    assert_eq!(parsed.version(), FORMAT_VERSION);
    assert_eq!(parsed.term(), 0x0102_0304);
    assert_eq!(parsed.nonce(), [9u8; NONCE_LEN]);
    assert_eq!(parsed.plaintext_len(), 5);
    assert_eq!(parsed.ciphertext_and_tag(), &blob[17..]);
}

#[test]
fn empty_plaintext_round_trips() {
    let blob = sealed(1, "p", b"");
    let opened = SealedBlob::parse(&blob)
        .expect("parse")
        .open_with(&KEY, "p")
        .expect("open");
    assert!(opened.is_empty());
}

#[test]
fn relabelled_term_fails_to_authenticate() {
    let mut blob = sealed(1, "p", b"secret");
    blob[4] = 2;
    let parsed = SealedBlob::parse(&blob).expect("parse");
    assert_eq!(parsed.term(), 2);
    assert_eq!(parsed.open_with(&KEY, "p"), Err(CryptoError::Decrypt));
}

#[test]
fn wrong_key_fails_to_authenticate() {
    let blob = sealed(1, "p", b"secret");
    let parsed = SealedBlob::parse(&blob).expect("parse");
    assert_eq!(
        parsed.open_with(&[8u8; KEY_LEN], "p"),
        Err(CryptoError::Decrypt)
    );
}

#[test]
fn path_is_bound_even_when_it_only_gains_a_suffix() {
    let blob = sealed(1, "secret/a", b"secret");
    let parsed = SealedBlob::parse(&blob).expect("parse");
    assert_eq!(
        parsed.open_with(&KEY, "secret/ab"),
        Err(CryptoError::Decrypt)
    );
    assert_eq!(parsed.open_with(&KEY, "secret/"), Err(CryptoError::Decrypt));
    assert_eq!(parsed.open_with(&KEY, ""), Err(CryptoError::Decrypt));
}

#[test]
fn random_nonces_differ_between_seals() {
    let first = seal(&KEY, 1, "p", b"same").expect("seal");
    let second = seal(&KEY, 1, "p", b"same").expect("seal");
    assert_ne!(first[5..17], second[5..17]);
    assert_ne!(first, second);
}

proptest! {
    #[test]
    fn parse_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = SealedBlob::parse(&bytes);
    }

    #[test]
    fn parse_never_panics_on_version_1_input(tail in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut bytes = vec![FORMAT_VERSION];
        bytes.extend_from_slice(&tail);
        match SealedBlob::parse(&bytes) {
            Ok(parsed) => {
                prop_assert!(bytes.len() >= MIN_BLOB_LEN);
                prop_assert_eq!(parsed.open_with(&KEY, "p"), Err(CryptoError::Decrypt));
            }
            Err(error) => {
                prop_assert!(bytes.len() < MIN_BLOB_LEN);
                prop_assert_eq!(error, CryptoError::Truncated);
            }
        }
    }
}
