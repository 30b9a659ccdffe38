//! Unit tests for the keyring: sealing, opening, rotation, encoding, and the pinned vector.

use proptest::prelude::*;

use super::*;
use crate::MIN_BLOB_LEN;
use crate::test_support::{fixed_keyring, from_hex, to_hex};

const PATH: &str = "secret/data/app/db";
const NOW: i64 = 1_764_000_000;

fn keyring() -> Keyring {
    Keyring::generate(NOW).expect("generate")
}

#[test]
fn generate_starts_at_term_1() {
    let keyring = keyring();
    assert_eq!(keyring.active_term(), 1);
    assert_eq!(keyring.terms(), 1);
    assert_eq!(keyring.installed_at(1), Some(NOW));
    assert_eq!(keyring.installed_at(0), None);
    assert_eq!(keyring.installed_at(2), None);
}

#[test]
fn seal_then_open_round_trips() {
    let keyring = keyring();
    let blob = keyring.seal(PATH, b"hunter2").expect("seal");
    assert_eq!(SealedBlob::parse(&blob).expect("parse").term(), 1);
    let opened = keyring.open(PATH, &blob).expect("open");
    assert_eq!(opened.as_slice(), b"hunter2");
}

#[test]
fn blob_opened_under_another_path_is_decrypt() {
    let keyring = keyring();
    let blob = keyring.seal(PATH, b"hunter2").expect("seal");
    assert_eq!(
        keyring.open("secret/data/app/other", &blob),
        Err(CryptoError::Decrypt)
    );
}

#[test]
fn another_keyring_cannot_open() {
    let blob = keyring().seal(PATH, b"hunter2").expect("seal");
    assert_eq!(keyring().open(PATH, &blob), Err(CryptoError::Decrypt));
}

#[test]
fn flipping_any_single_byte_fails_to_open() {
    let keyring = keyring().rotate(NOW + 1).expect("rotate");
    let blob = keyring.seal(PATH, b"some secret value").expect("seal");
    for index in 0..blob.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut corrupted = blob.clone();
            corrupted[index] ^= mask;
            let result = keyring.open(PATH, &corrupted);
            assert!(result.is_err(), "index {index} mask {mask:#x} still opened");
        }
    }
}

#[test]
fn relabelling_a_blob_with_another_held_term_is_decrypt() {
    let keyring = keyring().rotate(NOW + 1).expect("rotate");
    let mut blob = keyring.seal(PATH, b"value").expect("seal");
    assert_eq!(blob[4], 2);
    blob[4] = 1;
    assert_eq!(keyring.open(PATH, &blob), Err(CryptoError::Decrypt));
}

#[test]
fn every_truncation_is_an_error() {
    let keyring = keyring();
    let blob = keyring.seal(PATH, b"some secret value").expect("seal");
    for len in 0..blob.len() {
        let result = keyring.open(PATH, &blob[..len]);
        assert!(result.is_err(), "prefix of {len} bytes opened");
        if len < MIN_BLOB_LEN {
            assert_eq!(result, Err(CryptoError::Truncated), "len {len}");
        } else {
            assert_eq!(result, Err(CryptoError::Decrypt), "len {len}");
        }
    }
}

#[test]
fn extra_trailing_bytes_fail_to_open() {
    let keyring = keyring();
    let mut blob = keyring.seal(PATH, b"value").expect("seal");
    blob.push(0);
    assert_eq!(keyring.open(PATH, &blob), Err(CryptoError::Decrypt));
}

#[test]
fn rotation_keeps_old_terms_and_seals_with_the_new_one() {
    let first = keyring();
    let old_blob = first.seal(PATH, b"old").expect("seal");
    let second = first.rotate(NOW + 60).expect("rotate");
    let third = second.rotate(NOW + 120).expect("rotate");

    // The original keyring is unchanged.
    assert_eq!(first.active_term(), 1);
    assert_eq!(first.terms(), 1);

    assert_eq!(third.active_term(), 3);
    assert_eq!(third.terms(), 3);
    assert_eq!(third.installed_at(1), Some(NOW));
    assert_eq!(third.installed_at(2), Some(NOW + 60));
    assert_eq!(third.installed_at(3), Some(NOW + 120));

    assert_eq!(
        third.open(PATH, &old_blob).expect("open old").as_slice(),
        b"old"
    );
    let new_blob = third.seal(PATH, b"new").expect("seal");
    assert_eq!(SealedBlob::parse(&new_blob).expect("parse").term(), 3);
    assert_eq!(
        third.open(PATH, &new_blob).expect("open new").as_slice(),
        b"new"
    );
    // The older keyring does not hold term 3.
    assert_eq!(
        first.open(PATH, &new_blob),
        Err(CryptoError::UnknownTerm(3))
    );
}

#[test]
fn rotated_keys_are_distinct() {
    let rotated = keyring().rotate(NOW).expect("rotate");
    assert_ne!(
        rotated.keys[0].key.as_slice(),
        rotated.keys[1].key.as_slice()
    );
}

#[test]
fn blob_with_a_term_not_held_is_unknown_term() {
    let keyring = keyring();
    let mut blob = keyring.seal(PATH, b"value").expect("seal");
    blob[1..5].copy_from_slice(&7u32.to_be_bytes());
    assert_eq!(keyring.open(PATH, &blob), Err(CryptoError::UnknownTerm(7)));
    blob[1..5].copy_from_slice(&0u32.to_be_bytes());
    assert_eq!(keyring.open(PATH, &blob), Err(CryptoError::UnknownTerm(0)));
}

#[test]
fn rotation_stops_at_the_last_term() {
    let mut encoded = fixed_keyring().encode();
    encoded[1..5].copy_from_slice(&u32::MAX.to_be_bytes());
    encoded[9..13].copy_from_slice(&u32::MAX.to_be_bytes());
    let keyring = Keyring::decode(&encoded).expect("decode");
    assert_eq!(keyring.active_term(), u32::MAX);
    assert_eq!(
        keyring.rotate(NOW).map(|_| ()),
        Err(CryptoError::TermsExhausted)
    );
}

#[test]
fn encode_then_decode_round_trips() {
    let keyring = keyring()
        .rotate(NOW + 1)
        .expect("rotate")
        .rotate(-5)
        .expect("rotate");
    let blob = keyring.seal(PATH, b"value").expect("seal");
    let encoded = keyring.encode();
    assert_eq!(encoded.len(), ENCODING_HEADER_LEN + 3 * ENCODED_KEY_LEN);
    let decoded = Keyring::decode(&encoded).expect("decode");
    assert_eq!(decoded.encode(), encoded);
    assert_eq!(decoded.active_term(), 3);
    assert_eq!(decoded.terms(), 3);
    assert_eq!(decoded.installed_at(3), Some(-5));
    assert_eq!(
        decoded.open(PATH, &blob).expect("open").as_slice(),
        b"value"
    );
}

#[test]
fn decode_of_every_truncation_is_an_error() {
    let encoded = keyring().rotate(NOW).expect("rotate").encode();
    for len in 0..encoded.len() {
        let result = Keyring::decode(&encoded[..len]);
        assert!(result.is_err(), "prefix of {len} bytes decoded");
    }
}

#[test]
fn decode_rejects_broken_invariants() {
    let valid = keyring().rotate(NOW).expect("rotate").encode();
    let check = |edit: &dyn Fn(&mut Vec<u8>), expected: CryptoError| {
        let mut bytes = valid.to_vec();
        edit(&mut bytes);
        assert_eq!(Keyring::decode(&bytes).map(|_| ()), Err(expected));
    };
    check(&|b| b[0] = 2, CryptoError::UnsupportedVersion(2));
    check(
        &|b| b.push(0),
        CryptoError::Malformed("trailing bytes after keyring"),
    );
    check(
        &|b| b[5..9].copy_from_slice(&0u32.to_be_bytes()),
        CryptoError::Malformed("keyring holds no keys"),
    );
    check(
        &|b| b[5..9].copy_from_slice(&u32::MAX.to_be_bytes()),
        CryptoError::Truncated,
    );
    check(
        &|b| b[5..9].copy_from_slice(&1u32.to_be_bytes()),
        CryptoError::Malformed("trailing bytes after keyring"),
    );
    check(
        &|b| b[9..13].copy_from_slice(&0u32.to_be_bytes()),
        CryptoError::Malformed("keyring holds term 0"),
    );
    check(
        &|b| b[53..57].copy_from_slice(&1u32.to_be_bytes()),
        CryptoError::Malformed("keyring terms not increasing"),
    );
    check(
        &|b| b[1..5].copy_from_slice(&1u32.to_be_bytes()),
        CryptoError::Malformed("active term is not the newest key"),
    );
    check(&|b| b.truncate(1), CryptoError::Truncated);
    check(&|b| b.clear(), CryptoError::Truncated);
}

#[test]
fn decode_of_random_bytes_is_an_error() {
    for len in [0usize, 1, 9, 53, 97, 200] {
        for _ in 0..64 {
            let mut bytes = vec![0u8; len];
            crate::fill_random(&mut bytes).expect("random");
            // A random first byte is almost never the version, so also try with it set.
            assert!(Keyring::decode(&bytes).is_err());
            if let Some(first) = bytes.first_mut() {
                *first = ENCODING_VERSION;
            }
            assert!(Keyring::decode(&bytes).is_err());
        }
    }
}

#[test]
fn debug_shows_no_key_bytes() {
    let keyring = keyring().rotate(NOW + 1).expect("rotate");
    let debug = format!("{keyring:?}");
    let pretty = format!("{keyring:#?}");
    for key in &keyring.keys {
        let hex = to_hex(key.key.as_slice());
        assert!(!debug.contains(&hex));
        assert!(!pretty.contains(&hex));
        assert!(!debug.contains(&format!("{:?}", key.key.as_slice())));
    }
    assert!(debug.contains("active_term: 2"), "{debug}");
    assert!(debug.contains("<redacted>"));
}

proptest! {
    #[test]
    fn seal_then_open_round_trips_any_payload_and_path(
        payload in proptest::collection::vec(any::<u8>(), 0..4096),
        path in ".{0,64}",
    ) {
        let keyring = fixed_keyring();
        let blob = keyring.seal(&path, &payload).expect("seal");
        prop_assert_eq!(blob.len(), MIN_BLOB_LEN + payload.len());
        let opened = keyring.open(&path, &blob).expect("open");
        prop_assert_eq!(opened.as_slice(), payload.as_slice());
        let other_path = format!("{path}/");
        prop_assert_eq!(keyring.open(&other_path, &blob), Err(CryptoError::Decrypt));
    }

    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = Keyring::decode(&bytes);
    }
}

// ---- The pinned format vector ----

/// Where the v1 vector lives, relative to this crate.
const VECTOR_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../testdata/barrier/v1_blob.txt"
);

/// Renders a fresh vector file. Used once, to create `testdata/barrier/v1_blob.txt`; it must
/// never be regenerated, because the point of the file is that old blobs keep opening.
fn render_v1_vector() -> String {
    let root_key = crate::RootKey::generate().expect("root key");
    let keyring = Keyring::generate(NOW).expect("generate");
    let blob_term_1 = keyring.seal(PATH, b"written at term 1").expect("seal");
    let keyring = keyring.rotate(NOW + 3600).expect("rotate");
    let blob_term_2 = keyring.seal(PATH, b"written at term 2").expect("seal");
    let sealed_keyring = root_key.seal_keyring(&keyring).expect("seal keyring");
    format!(
        "# custos barrier format v1 test vector. Generated once; never regenerate it:\n\
         # it proves that blobs written by an old release still open.\n\
         # keyring: Keyring::encode() (terms 1 and 2, active 2); blobs: Keyring::seal at path.\n\
         # sealed_keyring: RootKey::seal_keyring of that keyring with root_key.\n\
         keyring = {}\n\
         path = {PATH}\n\
         plaintext_term_1 = {}\n\
         blob_term_1 = {}\n\
         plaintext_term_2 = {}\n\
         blob_term_2 = {}\n\
         root_key = {}\n\
         sealed_keyring = {}\n",
        to_hex(&keyring.encode()),
        to_hex(b"written at term 1"),
        to_hex(&blob_term_1),
        to_hex(b"written at term 2"),
        to_hex(&blob_term_2),
        to_hex(root_key.as_bytes()),
        to_hex(&sealed_keyring),
    )
}

fn vector_field<'a>(vector: &'a str, name: &str) -> &'a str {
    vector
        .lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (key, value) = line.split_once(" = ")?;
            (key == name).then_some(value.trim())
        })
        .unwrap_or_else(|| panic!("vector file has no `{name}`"))
}

#[test]
fn v1_vector_still_opens() {
    // To create the file the first time (and only then), run the test with
    // CUSTOS_CRYPTO_WRITE_VECTOR=1 set and no file present.
    let write_requested = std::env::var_os("CUSTOS_CRYPTO_WRITE_VECTOR").is_some();
    if write_requested && !std::path::Path::new(VECTOR_FILE).exists() {
        std::fs::write(VECTOR_FILE, render_v1_vector()).expect("write vector");
    }
    let vector = std::fs::read_to_string(VECTOR_FILE).expect("read testdata/barrier/v1_blob.txt");

    let keyring = Keyring::decode(&from_hex(vector_field(&vector, "keyring"))).expect("decode");
    assert_eq!(keyring.active_term(), 2);
    assert_eq!(keyring.terms(), 2);
    assert_eq!(keyring.installed_at(1), Some(NOW));
    assert_eq!(keyring.installed_at(2), Some(NOW + 3600));
    let path = vector_field(&vector, "path");
    assert_eq!(path, PATH);
    for term in ["1", "2"] {
        let blob = from_hex(vector_field(&vector, &format!("blob_term_{term}")));
        let expected = from_hex(vector_field(&vector, &format!("plaintext_term_{term}")));
        let parsed = SealedBlob::parse(&blob).expect("parse");
        assert_eq!(parsed.term().to_string(), term);
        let opened = keyring.open(path, &blob).expect("open pinned blob");
        assert_eq!(opened.as_slice(), expected.as_slice());
    }

    let root_key =
        crate::RootKey::from_bytes(&from_hex(vector_field(&vector, "root_key"))).expect("root key");
    let sealed_keyring = from_hex(vector_field(&vector, "sealed_keyring"));
    let opened_keyring = root_key
        .open_keyring(&sealed_keyring)
        .expect("open keyring");
    assert_eq!(opened_keyring.encode(), keyring.encode());
}
