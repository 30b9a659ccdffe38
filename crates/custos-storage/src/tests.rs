//! Unit tests of the helpers backends share.

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
    assert_eq!(prefix_upper_bound("\u{10ffff}"), None);
    assert_eq!(prefix_upper_bound("\u{10ffff}\u{10ffff}"), None);
}
