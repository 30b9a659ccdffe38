//! Unit tests of the pure parts: prefix bounds and transaction plans.

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
}

#[test]
fn plan_keeps_the_last_op_per_key_and_sorted_locks() {
    let txn = Transaction::new()
        .require_absent("c")
        .put("b", b"1".to_vec())
        .delete("b")
        .delete("a")
        .put("a", b"2".to_vec());
    let plan = Plan::new(&txn);
    assert_eq!(plan.put_keys, ["a"]);
    assert_eq!(plan.put_values, [b"2".as_slice()]);
    assert_eq!(plan.delete_keys, ["b"]);
    assert_eq!(plan.condition_keys, ["c"]);
    assert_eq!(plan.lock_ids.len(), 3);
    assert!(plan.lock_ids.is_sorted());
}
