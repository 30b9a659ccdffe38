//! Tests of argon2id hashing and verification.

use super::*;

#[test]
fn a_hash_verifies_its_password_only() {
    let stored = hash_password(b"correct horse").expect("hash");
    assert!(
        stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{stored}"
    );
    assert!(verify_password(b"correct horse", &stored).expect("verify"));
    assert!(!verify_password(b"correct horsf", &stored).expect("verify"));
    assert!(!verify_password(b"", &stored).expect("verify"));
}

#[test]
fn salts_differ() {
    let first = hash_password(b"same").expect("hash");
    let second = hash_password(b"same").expect("hash");
    assert_ne!(first, second);
}

#[test]
fn a_malformed_stored_hash_is_an_error() {
    assert!(verify_password(b"x", "not a hash").is_err());
    assert!(verify_password(b"x", "$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g").is_err());
}
