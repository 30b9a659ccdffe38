//! Unit tests of the pure helpers behind listing and row parsing.

use rusqlite::types::ValueRef;

use super::*;

#[test]
fn upper_bound_bumps_the_last_code_point() {
    assert_eq!(prefix_upper_bound(""), None);
    assert_eq!(prefix_upper_bound("a/").as_deref(), Some("a0"));
    assert_eq!(
        prefix_upper_bound("a\u{d7ff}").as_deref(),
        Some("a\u{e000}")
    );
    assert_eq!(prefix_upper_bound("a\u{10ffff}").as_deref(), Some("b"));
    assert_eq!(prefix_upper_bound("\u{10ffff}\u{10ffff}"), None);
}

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
