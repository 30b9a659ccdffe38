//! Unit tests of the Vault-style tables.

use super::{header, table};

#[test]
fn headers_are_centred_like_vault() {
    assert_eq!(header("Secret Path", 15), "== Secret Path ==");
    assert_eq!(header("Metadata", 24), "======= Metadata =======");
    assert_eq!(header("Data", 12), "=== Data ===");
    assert_eq!(header("Data", 13), "=== Data ===");
    assert_eq!(header("Version 10", 5), "== Version 10 ==");
}

#[test]
fn tables_align_values() {
    let rows = vec![
        ("password".to_owned(), "hunter2".to_owned()),
        ("user".to_owned(), "app".to_owned()),
    ];
    assert_eq!(
        table(Some("Data"), &rows),
        "===== Data =====\nKey         Value\n---         -----\npassword    hunter2\nuser        app\n"
    );
}
