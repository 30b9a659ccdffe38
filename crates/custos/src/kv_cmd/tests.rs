//! Unit tests of `custos kv` argument handling.

use std::io::Cursor;

use clap::CommandFactory;
use serde_json::json;

use super::parse_data;

fn data(args: &[&str], stdin: &str) -> anyhow::Result<serde_json::Value> {
    let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    parse_data(&args, &mut Cursor::new(stdin.as_bytes().to_vec())).map(serde_json::Value::Object)
}

#[test]
fn the_command_line_definition_is_consistent() {
    crate::Cli::command().debug_assert();
}

#[test]
fn pairs_files_and_standard_input() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cert.pem");
    std::fs::write(&file, "line1\nline2\n").unwrap();
    let file_arg = format!("cert=@{}", file.display());
    assert_eq!(
        data(&["user=app", "url=a=b", &file_arg, "pw=-"], "s3cret\n").unwrap(),
        json!({"user": "app", "url": "a=b", "cert": "line1\nline2\n", "pw": "s3cret\n"})
    );
}

#[test]
fn a_lone_dash_is_a_json_object() {
    assert_eq!(
        data(&["-"], r#"{"a": 1, "b": {"c": true}}"#).unwrap(),
        json!({"a": 1, "b": {"c": true}})
    );
    assert!(data(&["-"], "[1]").is_err());
    assert!(data(&["-"], "not json").is_err());
}

#[test]
fn bad_data_is_refused() {
    assert!(data(&["novalue"], "").is_err());
    assert!(data(&["=x"], "").is_err());
    assert!(data(&["a=1", "a=2"], "").is_err());
    assert!(data(&["a=-", "b=-"], "x").is_err());
    assert!(data(&["a=@/nonexistent/file"], "").is_err());
}
