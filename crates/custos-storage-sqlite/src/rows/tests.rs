//! Unit tests of the pure helpers behind listing and row parsing.

use rusqlite::types::ValueRef;

use super::*;

#[test]
fn revisions_must_be_positive_integers() {
    assert_eq!(parse_revision(ValueRef::Integer(7)).ok(), Some(Revision(7)));
    for bad in [
        ValueRef::Integer(0),
        ValueRef::Integer(-1),
        ValueRef::Real(1.0),
        ValueRef::Text(b"1"),
        ValueRef::Null,
    ] {
        assert!(matches!(parse_revision(bad), Err(StorageError::Corrupt(_))));
    }
}

#[test]
fn values_must_be_blobs_and_keys_utf8_text() {
    assert_eq!(parse_value(ValueRef::Blob(b"")).ok(), Some(Vec::new()));
    assert!(matches!(
        parse_value(ValueRef::Text(b"x")),
        Err(StorageError::Corrupt(_))
    ));
    assert_eq!(parse_key(ValueRef::Text(b"k")).ok().as_deref(), Some("k"));
    assert!(matches!(
        parse_key(ValueRef::Text(b"\xff")),
        Err(StorageError::Corrupt(_))
    ));
    assert!(matches!(
        parse_key(ValueRef::Blob(b"k")),
        Err(StorageError::Corrupt(_))
    ));
}
