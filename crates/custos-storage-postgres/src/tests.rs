//! Unit tests of the pure parts: transaction plans.

use super::*;

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
