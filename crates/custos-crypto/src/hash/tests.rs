//! Unit tests for keyed hashing, constant-time comparison and hex encoding.

use super::*;

const KEY: [u8; 32] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
    26, 27, 28, 29, 30, 31,
];

#[test]
fn hash_matches_an_independent_hmac_sha256() {
    // Computed with Python's `hmac.new(bytes(range(32)), data, hashlib.sha256)`.
    let hasher = KeyedHasher::from_bytes(&KEY).expect("key");
    assert_eq!(
        hasher.hash_hex(b"custos token"),
        "18c81f638b59122dac48ae0b25df8393622f9bd8577a1ada78dbfbeb3ab0b770"
    );
    assert_eq!(
        hasher.hash_hex(b""),
        "d38b42096d80f45f826b44a9d5607de72496a415d3f4a1a8c88e3bb9da8dc1cb"
    );
    assert_eq!(
        to_hex(&hasher.hash(b"custos token")),
        hasher.hash_hex(b"custos token")
    );
}

#[test]
fn verify_accepts_only_the_matching_hash() {
    let hasher = KeyedHasher::generate().expect("key");
    let hash = hasher.hash(b"token");
    assert!(hasher.verify(b"token", &hash));
    assert!(!hasher.verify(b"token2", &hash));
    assert!(!hasher.verify(b"token", &hash[..31]));
    assert!(!hasher.verify(b"token", &[]));
    let mut altered = hash;
    altered[31] ^= 1;
    assert!(!hasher.verify(b"token", &altered));
    let other = KeyedHasher::generate().expect("key");
    assert!(!other.verify(b"token", &hash));
}

#[test]
fn from_bytes_requires_32_bytes_and_round_trips() {
    for len in [0usize, 31, 33] {
        assert_eq!(
            KeyedHasher::from_bytes(&vec![0u8; len]).map(|_| ()),
            Err(CryptoError::InvalidKeyLength {
                expected: 32,
                actual: len
            })
        );
    }
    let hasher = KeyedHasher::generate().expect("key");
    let restored = KeyedHasher::from_bytes(&hasher.to_bytes()).expect("key");
    assert_eq!(restored.hash(b"x"), hasher.hash(b"x"));
}

#[test]
fn debug_shows_no_key_bytes() {
    let hasher = KeyedHasher::generate().expect("key");
    let debug = format!("{hasher:?} {hasher:#?}");
    assert!(!debug.contains(&to_hex(&hasher.to_bytes())));
    assert!(!debug.contains(&format!("{:?}", hasher.to_bytes().as_slice())));
    assert!(debug.contains("<redacted>"));
}

#[test]
fn constant_time_eq_compares_contents_and_lengths() {
    assert!(constant_time_eq(b"", b""));
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abx"));
    assert!(!constant_time_eq(b"abc", b"ab"));
    assert!(!constant_time_eq(b"", b"a"));
}

#[test]
fn to_hex_is_lower_case() {
    assert_eq!(to_hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
    assert_eq!(to_hex(&[]), "");
}

#[test]
fn sha256_matches_an_independent_implementation() {
    // Computed with Python's `hashlib.sha256`.
    assert_eq!(
        sha256_hex(b"custos token"),
        "05ff056ed64cf665ff9ecb239a7d86d1de435f235cf90cfbeebfe49dececbee1"
    );
    assert_eq!(
        sha256_hex(b""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn prepared_hmac_matches_the_keyed_hasher_and_verifies() {
    let hasher = KeyedHasher::from_bytes(&KEY).expect("key");
    let prepared = PreparedHmac::new(&KEY);
    assert_eq!(
        prepared.sign_hex(b"custos token"),
        hasher.hash_hex(b"custos token")
    );
    let tag = prepared.sign(b"payload");
    assert!(prepared.verify(b"payload", &tag));
    assert!(!prepared.verify(b"payload!", &tag));
    assert!(!format!("{prepared:?}").contains('0'));
}
