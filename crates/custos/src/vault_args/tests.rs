//! Tests of the Vault-style single-dash flags the CLI accepts (`-method=userpass`).

use super::*;

fn run(args: &[&str]) -> Vec<String> {
    normalize(args.iter().map(OsString::from).collect())
        .into_iter()
        .map(|arg| arg.into_string().expect("utf-8"))
        .collect()
}

#[test]
fn single_dash_flags_become_long_flags() {
    assert_eq!(
        run(&[
            "custos",
            "login",
            "-method=userpass",
            "username=alice",
            "-no-store"
        ]),
        [
            "custos",
            "login",
            "--method=userpass",
            "username=alice",
            "--no-store"
        ]
    );
    assert_eq!(
        run(&[
            "custos",
            "operator",
            "generate-root",
            "-init",
            "-format",
            "json"
        ]),
        [
            "custos",
            "operator",
            "generate-root",
            "--init",
            "--format",
            "json"
        ]
    );
    assert_eq!(
        run(&["custos", "token", "revoke", "-self"]),
        ["custos", "token", "revoke", "--self"]
    );
}

#[test]
fn values_short_flags_and_other_commands_are_left_alone() {
    let same = |args: &[&str]| assert_eq!(run(args), args, "{args:?}");
    same(&["custos", "write", "secret/x", "-", "k=-", "--format=json"]);
    same(&["custos", "write", "secret/x", "-h"]);
    same(&["custos", "write", "secret/x", "n=-1", "-5"]);
    same(&["custos", "kv", "put", "-method=x"]);
    same(&["custos", "run", "--secret", "s", "--", "env", "-init"]);
    same(&["custos"]);
    assert_eq!(
        run(&["custos", "read", "secret/x", "--", "-field=x"]),
        ["custos", "read", "secret/x", "--", "-field=x"]
    );
}
