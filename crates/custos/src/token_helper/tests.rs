//! Tests of the token helper file (`~/.custos-token`): mode 0600 and precedence.

use std::collections::HashMap;

use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

#[test]
fn a_stored_token_reads_back_and_replaces_the_old_one() {
    let home = tempfile::tempdir().expect("tempdir");
    assert!(read(home.path()).expect("read").is_none());
    let path = store(home.path(), "custos_token_first\n").expect("store");
    assert_eq!(path, home.path().join(".custos-token"));
    assert_eq!(
        read(home.path()).expect("read").expect("token").as_str(),
        "custos_token_first"
    );
    store(home.path(), "custos_token_second").expect("store");
    assert_eq!(
        read(home.path()).expect("read").expect("token").as_str(),
        "custos_token_second"
    );
    // Nothing else is left behind in the directory.
    let names: Vec<_> = std::fs::read_dir(home.path())
        .expect("dir")
        .map(|entry| entry.expect("entry").file_name())
        .collect();
    assert_eq!(names, [std::ffi::OsString::from(".custos-token")]);
}

#[cfg(unix)]
#[test]
fn the_token_file_is_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let home = tempfile::tempdir().expect("tempdir");
    let path = store(home.path(), "custos_token_x").expect("store");
    let mode = std::fs::metadata(&path)
        .expect("metadata")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
}

#[test]
fn empty_or_multi_line_tokens_are_not_stored() {
    let home = tempfile::tempdir().expect("tempdir");
    assert!(store(home.path(), "  ").is_err());
    assert!(store(home.path(), "a\nb").is_err());
    assert!(read(home.path()).expect("read").is_none());
}

#[test]
fn a_blank_file_is_no_token() {
    let home = tempfile::tempdir().expect("tempdir");
    std::fs::write(home.path().join(".custos-token"), "\n").expect("write");
    assert!(read(home.path()).expect("read").is_none());
}

#[test]
fn the_flag_wins_then_custos_token_then_vault_token_then_the_file() {
    let home = tempfile::tempdir().expect("tempdir");
    store(home.path(), "from-file").expect("store");
    let env: HashMap<&str, &str> = [
        ("CUSTOS_TOKEN", "from-custos"),
        ("VAULT_TOKEN", "from-vault"),
    ]
    .into_iter()
    .collect();
    let lookup = |name: &str| env.get(name).map(|value| (*value).to_owned());
    let pick_with = |flag: Option<&str>, env: &dyn Fn(&str) -> Option<String>| {
        pick(flag.map(str::to_owned), env, Some(home.path())).expect("pick")
    };
    assert_eq!(
        pick_with(Some("from-flag"), &lookup).as_deref(),
        Some("from-flag")
    );
    assert_eq!(pick_with(None, &lookup).as_deref(), Some("from-custos"));
    let vault_only = |name: &str| (name == "VAULT_TOKEN").then(|| "from-vault".to_owned());
    assert_eq!(pick_with(None, &vault_only).as_deref(), Some("from-vault"));
    // An empty variable counts as unset.
    let empty = |name: &str| (name == "CUSTOS_TOKEN").then(String::new);
    assert_eq!(pick_with(None, &empty).as_deref(), Some("from-file"));
    assert_eq!(pick_with(None, &no_env).as_deref(), Some("from-file"));
    assert_eq!(pick(None, &no_env, None).expect("pick"), None);
}
