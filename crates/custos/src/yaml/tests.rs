//! Unit tests of the YAML writer: exact output for each kind of value.

use serde_json::json;

use super::to_yaml;

fn check(value: serde_json::Value, expect: &str) {
    assert_eq!(to_yaml(&value), expect);
}

#[test]
fn flat_map_of_scalars() {
    check(
        json!({"name": "app", "port": 5432, "debug": false, "extra": null}),
        "debug: false\nextra: null\nname: app\nport: 5432\n",
    );
}

#[test]
fn ambiguous_strings_are_quoted() {
    check(
        json!({"a": "yes", "b": "123", "c": "", "d": "- x", "e": "a: b", "f": "line\nbreak", "g": "say \"hi\"", "h": "ok value"}),
        "a: \"yes\"\nb: \"123\"\nc: \"\"\nd: \"- x\"\ne: \"a: b\"\nf: \"line\\nbreak\"\ng: \"say \\\"hi\\\"\"\nh: ok value\n",
    );
}

#[test]
fn nested_maps_and_lists() {
    check(
        json!({"data": {"keys": ["a", "b/"], "inner": {"x": 1}}, "empty": {}, "none": []}),
        "data:\n  inner:\n    x: 1\n  keys:\n    - a\n    - b/\nempty: {}\nnone: []\n",
    );
}

#[test]
fn maps_inside_lists() {
    check(
        json!([{"a": 1, "b": 2}, [1, 2], "x"]),
        "- a: 1\n  b: 2\n- - 1\n  - 2\n- x\n",
    );
}

#[test]
fn top_level_scalars() {
    check(json!("true"), "\"true\"\n");
    check(json!(3), "3\n");
    check(json!({}), "{}\n");
}
