//! Unit tests for the OS-random helpers.

use std::collections::HashSet;

use super::*;

#[test]
fn base62_has_the_requested_length_and_alphabet() {
    for len in [0usize, 1, 24, 100, 1000] {
        let token = random_base62(len).expect("random");
        assert_eq!(token.len(), len);
        assert!(token.bytes().all(|byte| BASE62.contains(&byte)), "{token}");
    }
}

#[test]
fn base62_tokens_do_not_repeat() {
    let tokens: HashSet<String> = (0..100)
        .map(|_| random_base62(24).expect("random"))
        .collect();
    assert_eq!(tokens.len(), 100);
}

#[test]
fn base62_uses_the_whole_alphabet() {
    let token = random_base62(20_000).expect("random");
    let seen: HashSet<u8> = token.bytes().collect();
    assert_eq!(seen.len(), 62);
}

#[test]
fn uuid_is_rfc_4122_version_4() {
    let mut seen = HashSet::new();
    for _ in 0..100 {
        let uuid = random_uuid().expect("random");
        assert_eq!(uuid.len(), 36);
        for (index, char) in uuid.char_indices() {
            if [8, 13, 18, 23].contains(&index) {
                assert_eq!(char, '-', "{uuid}");
            } else {
                assert!(matches!(char, '0'..='9' | 'a'..='f'), "{uuid}");
            }
        }
        assert_eq!(&uuid[14..15], "4", "{uuid}");
        assert!(matches!(&uuid[19..20], "8" | "9" | "a" | "b"), "{uuid}");
        assert!(seen.insert(uuid));
    }
}

#[test]
fn fill_random_fills() {
    let mut first = [0u8; 32];
    let mut second = [0u8; 32];
    fill_random(&mut first).expect("random");
    fill_random(&mut second).expect("random");
    assert_ne!(first, [0u8; 32]);
    assert_ne!(first, second);
    fill_random(&mut []).expect("empty buffer is fine");
}

#[test]
fn random_index_stays_in_bounds_and_covers_them() {
    for bound in [1usize, 2, 3, 7, 255, 256] {
        let mut seen = HashSet::new();
        for _ in 0..(bound * 40) {
            let index = random_index(bound).expect("random");
            assert!(index < bound);
            seen.insert(index);
        }
        assert_eq!(seen.len(), bound, "bound {bound}");
    }
}
