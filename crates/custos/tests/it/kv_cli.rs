//! `custos kv`, `custos export` and `custos import` against a dev server: output formats,
//! versions, metadata, KV v1 mounts, exit codes, and `.env` round trips.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

// `run_cli` and `scan_revoke` take the dev server from here, with the commands that use it.
pub(crate) use crate::support::dev_server;
use crate::support::{self, TestServer};

/// `custos ARGS` with the address and token in the environment, as a user would set them.
pub(crate) fn command(server: &TestServer, token: &str, args: &[&str]) -> Command {
    let mut command = Command::new(support::binary());
    command
        .args(args)
        .env("CUSTOS_ADDR", &server.address)
        .env("CUSTOS_TOKEN", token)
        .env_remove("VAULT_ADDR")
        .env_remove("VAULT_TOKEN");
    command
}

/// Runs `custos ARGS` as root with `stdin` on standard input.
pub(crate) fn custos_with_input(server: &TestServer, args: &[&str], stdin: &str) -> Output {
    let mut child = command(server, "root", args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Runs `custos ARGS` as root with nothing on standard input.
pub(crate) fn custos(server: &TestServer, args: &[&str]) -> Output {
    command(server, "root", args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Asserts success and returns standard output.
pub(crate) fn ok(output: Output) -> String {
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    String::from_utf8(output.stdout).unwrap()
}

fn json_of(output: Output) -> Value {
    serde_json::from_str(&ok(output)).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn put_get_and_version_history() {
    let (_dir, server) = dev_server();
    let first = ok(custos(
        &server,
        &["kv", "put", "secret/app", "password=first", "user=app"],
    ));
    assert!(
        first.contains("== Secret Path ==\nsecret/data/app\n"),
        "{first}"
    );
    assert!(first.contains("version            1"), "{first}");
    let second = json_of(custos(
        &server,
        &[
            "kv",
            "put",
            "--format",
            "json",
            "secret/app",
            "password=second",
            "user=app",
        ],
    ));
    assert_eq!(second["data"]["version"], 2);

    let table = ok(custos(&server, &["kv", "get", "secret/app"]));
    assert!(
        table.starts_with("== Secret Path ==\nsecret/data/app\n\n"),
        "{table}"
    );
    assert!(table.contains("======= Metadata =======\n"), "{table}");
    assert!(table.contains("\n===== Data =====\n"), "{table}");
    assert!(
        table.contains("password    second\nuser        app\n"),
        "{table}"
    );
    assert!(table.contains("deletion_time      n/a"), "{table}");

    let answer = json_of(custos(
        &server,
        &["kv", "get", "--format", "json", "secret/app"],
    ));
    assert_eq!(
        answer["data"]["data"],
        json!({"password": "second", "user": "app"})
    );
    assert_eq!(answer["data"]["metadata"]["version"], 2);

    let old = json_of(custos(
        &server,
        &[
            "kv",
            "get",
            "--version",
            "1",
            "--format",
            "json",
            "secret/app",
        ],
    ));
    assert_eq!(old["data"]["data"]["password"], "first");

    // --field prints the raw value alone, ready for `$(...)`.
    let field = ok(custos(
        &server,
        &["kv", "get", "--field", "password", "secret/app"],
    ));
    assert_eq!(field, "second");
    let output = custos(&server, &["kv", "get", "--field", "nope", "secret/app"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("\"nope\" is not present"),
        "{output:?}"
    );

    let yaml = ok(custos(
        &server,
        &["kv", "get", "--format", "yaml", "secret/app"],
    ));
    assert!(
        yaml.contains("data:\n  data:\n    password: second\n    user: app\n"),
        "{yaml}"
    );
    assert!(yaml.contains("    version: 2\n"), "{yaml}");
}

#[test]
fn patch_list_and_the_mount_flag() {
    let (_dir, server) = dev_server();
    ok(custos(
        &server,
        &["kv", "put", "secret/app/db", "user=app", "password=old"],
    ));
    ok(custos(
        &server,
        &[
            "kv",
            "put",
            "--mount",
            "secret",
            "app/cache",
            "url=redis://x",
        ],
    ));
    let patched = json_of(custos(
        &server,
        &[
            "kv",
            "patch",
            "--format",
            "json",
            "secret/app/db",
            "password=new",
            "port=5432",
        ],
    ));
    assert_eq!(patched["data"]["version"], 2);
    let answer = json_of(custos(
        &server,
        &[
            "kv", "get", "--mount", "secret", "--format", "json", "app/db",
        ],
    ));
    assert_eq!(
        answer["data"]["data"],
        json!({"user": "app", "password": "new", "port": "5432"})
    );

    let table = ok(custos(&server, &["kv", "list", "secret/app"]));
    assert_eq!(table, "Keys\n----\ncache\ndb\n");
    let root = json_of(custos(
        &server,
        &["kv", "list", "--format", "json", "secret/"],
    ));
    assert_eq!(root, json!(["app/"]));
    let same = json_of(custos(
        &server,
        &["kv", "list", "--format", "json", "--mount", "secret", "app"],
    ));
    assert_eq!(same, json!(["cache", "db"]));

    let output = custos(&server, &["kv", "list", "secret/nothing"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let output = custos(&server, &["kv", "patch", "secret/absent", "a=1"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(stderr(&output).contains("No value found at secret/data/absent"));
}

#[test]
fn delete_undelete_destroy_and_rollback() {
    let (_dir, server) = dev_server();
    for value in ["one", "two", "three"] {
        ok(custos(
            &server,
            &["kv", "put", "secret/app", &format!("value={value}")],
        ));
    }
    let field = |version: &str| {
        custos(
            &server,
            &[
                "kv",
                "get",
                "--version",
                version,
                "--field",
                "value",
                "secret/app",
            ],
        )
    };

    // Soft-delete the latest, then bring it back.
    let deleted = ok(custos(&server, &["kv", "delete", "secret/app"]));
    assert!(deleted.contains("Success! Data deleted"), "{deleted}");
    // As Vault's CLI: a deleted version shows its metadata and no data; its fields are missing.
    let shown = ok(custos(&server, &["kv", "get", "secret/app"]));
    assert!(
        shown.contains("Metadata ==") && !shown.contains("Data =="),
        "{shown}"
    );
    assert!(!shown.contains("n/a"), "deletion_time is set: {shown}");
    let output = custos(&server, &["kv", "get", "--field", "value", "secret/app"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert_eq!(stderr(&output).trim(), "No value found at secret/data/app");
    ok(custos(
        &server,
        &["kv", "undelete", "--versions", "3", "secret/app"],
    ));
    assert_eq!(ok(field("3")), "three");

    // Delete listed versions; destroy one for good.
    ok(custos(
        &server,
        &["kv", "delete", "--versions", "1,2", "secret/app"],
    ));
    assert_eq!(field("1").status.code(), Some(2));
    assert_eq!(field("2").status.code(), Some(2));
    ok(custos(
        &server,
        &["kv", "undelete", "--versions", "2", "secret/app"],
    ));
    assert_eq!(ok(field("2")), "two");
    ok(custos(
        &server,
        &["kv", "destroy", "--versions", "1", "secret/app"],
    ));
    let output = custos(
        &server,
        &["kv", "undelete", "--versions", "1", "secret/app"],
    );
    assert!(output.status.success(), "{output:?}");
    assert_eq!(field("1").status.code(), Some(2));
    let destroyed = json_of(custos(
        &server,
        &[
            "kv",
            "get",
            "--version",
            "1",
            "--format",
            "json",
            "secret/app",
        ],
    ));
    assert_eq!(destroyed["data"]["data"], Value::Null);
    assert_eq!(destroyed["data"]["metadata"]["destroyed"], true);

    // Rollback writes version 2's data as version 4, checked against version 3.
    let rolled = json_of(custos(
        &server,
        &[
            "kv",
            "rollback",
            "--version",
            "2",
            "--format",
            "json",
            "secret/app",
        ],
    ));
    assert_eq!(rolled["data"]["version"], 4);
    assert_eq!(
        ok(custos(
            &server,
            &["kv", "get", "--field", "value", "secret/app"]
        )),
        "two"
    );
    let output = custos(&server, &["kv", "rollback", "--version", "1", "secret/app"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("destroyed"), "{output:?}");
    let output = custos(&server, &["kv", "rollback", "--version", "9", "secret/app"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("does not exist"), "{output:?}");
    let output = custos(&server, &["kv", "undelete", "secret/app"]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "clap usage error: {output:?}"
    );
}

#[test]
fn metadata_get_put_and_delete() {
    let (_dir, server) = dev_server();
    ok(custos(&server, &["kv", "put", "secret/app", "a=1"]));
    ok(custos(&server, &["kv", "put", "secret/app", "a=2"]));
    let written = ok(custos(
        &server,
        &[
            "kv",
            "metadata",
            "put",
            "--max-versions",
            "5",
            "--cas-required",
            "true",
            "--delete-version-after",
            "1h",
            "--custom-metadata",
            "owner=team-a",
            "--custom-metadata",
            "tier=gold",
            "secret/app",
        ],
    ));
    assert_eq!(written, "Success! Data written to: secret/metadata/app\n");

    let metadata = json_of(custos(
        &server,
        &["kv", "metadata", "get", "--format", "json", "secret/app"],
    ));
    let data = &metadata["data"];
    assert_eq!(data["max_versions"], 5);
    assert_eq!(data["cas_required"], true);
    assert_eq!(data["delete_version_after"], "1h0m0s");
    assert_eq!(
        data["custom_metadata"],
        json!({"owner": "team-a", "tier": "gold"})
    );
    assert_eq!(data["current_version"], 2);

    let table = ok(custos(&server, &["kv", "metadata", "get", "secret/app"]));
    assert!(
        table.starts_with("== Metadata Path ==\nsecret/metadata/app\n"),
        "{table}"
    );
    assert!(table.contains("cas_required            true"), "{table}");
    assert!(table.contains("== Version 1 =="), "{table}");
    assert!(table.contains("== Version 2 =="), "{table}");

    // cas_required now refuses a write without --cas.
    let output = custos(&server, &["kv", "put", "secret/app", "a=3"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    ok(custos(
        &server,
        &["kv", "put", "--cas", "2", "secret/app", "a=3"],
    ));

    let deleted = ok(custos(&server, &["kv", "metadata", "delete", "secret/app"]));
    assert!(deleted.contains("Success!"), "{deleted}");
    let output = custos(&server, &["kv", "metadata", "get", "secret/app"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(stderr(&output).contains("No value found at secret/metadata/app"));
    assert_eq!(
        custos(&server, &["kv", "get", "secret/app"]).status.code(),
        Some(2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_version_1_mounts_work_without_data_and_metadata() {
    let (_dir, server) = dev_server();
    let client = custos_client::Client::new(custos_client::ClientConfig {
        address: server.address.clone(),
        token: Some("root".into()),
        ..custos_client::ClientConfig::default()
    })
    .unwrap();
    let (status, _, body) = client
        .raw(
            custos_client::http::Method::POST,
            "sys/mounts/kv1",
            Some(br#"{"type":"kv"}"#.to_vec()),
        )
        .await
        .unwrap();
    assert!(status.is_success(), "{status}: {body:?}");

    let written = ok(custos(&server, &["kv", "put", "kv1/app", "a=1", "b=2"]));
    assert_eq!(written, "Success! Data written to: kv1/app\n");
    let table = ok(custos(&server, &["kv", "get", "kv1/app"]));
    assert_eq!(table, "Key    Value\n---    -----\na      1\nb      2\n");
    let answer = json_of(custos(
        &server,
        &["kv", "get", "--format", "json", "kv1/app"],
    ));
    assert_eq!(answer["data"], json!({"a": "1", "b": "2"}));
    assert_eq!(
        ok(custos(
            &server,
            &["kv", "get", "--mount", "kv1", "--field", "b", "app"]
        )),
        "2"
    );
    assert_eq!(
        ok(custos(&server, &["kv", "list", "kv1"])),
        "Keys\n----\napp\n"
    );

    let output = custos(&server, &["kv", "rollback", "--version", "1", "kv1/app"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("KV version 2"), "{output:?}");
    let output = custos(&server, &["kv", "metadata", "get", "kv1/app"]);
    assert_eq!(output.status.code(), Some(1));

    ok(custos(&server, &["kv", "delete", "kv1/app"]));
    let output = custos(&server, &["kv", "get", "kv1/app"]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(stderr(&output).trim(), "No value found at kv1/app");
}

#[test]
fn missing_secrets_and_bad_tokens_have_their_exit_codes() {
    let (_dir, server) = dev_server();
    let output = custos(&server, &["kv", "get", "secret/nope"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert_eq!(stderr(&output), "No value found at secret/data/nope\n");
    assert!(output.stdout.is_empty());

    ok(custos(&server, &["kv", "put", "secret/app", "a=1"]));
    let output = command(&server, "wrong-token", &["kv", "get", "secret/app"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(stderr(&output).contains("permission denied"), "{output:?}");

    let output = custos(&server, &["kv", "get", "nomount/app"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
}

#[test]
fn put_reads_values_from_files_and_standard_input() {
    let (dir, server) = dev_server();
    let pem = dir.path().join("cert.pem");
    std::fs::write(&pem, "-----BEGIN-----\nabc\n-----END-----\n").unwrap();
    let cert_arg = format!("cert=@{}", pem.display());
    ok(custos_with_input(
        &server,
        &[
            "kv",
            "put",
            "secret/files",
            &cert_arg,
            "password=-",
            "user=app",
        ],
        "from stdin",
    ));
    let answer = json_of(custos(
        &server,
        &["kv", "get", "--format", "json", "secret/files"],
    ));
    assert_eq!(
        answer["data"]["data"],
        json!({"cert": "-----BEGIN-----\nabc\n-----END-----\n", "password": "from stdin", "user": "app"})
    );

    // A lone `-`: a JSON object, whose values keep their types.
    ok(custos_with_input(
        &server,
        &["kv", "put", "secret/json", "-"],
        r#"{"port": 5432, "nested": {"a": true}}"#,
    ));
    let answer = json_of(custos(
        &server,
        &["kv", "get", "--format", "json", "secret/json"],
    ));
    assert_eq!(
        answer["data"]["data"],
        json!({"port": 5432, "nested": {"a": true}})
    );
    assert_eq!(
        ok(custos(
            &server,
            &["kv", "get", "--field", "nested", "secret/json"]
        )),
        r#"{"a":true}"#
    );

    let output = custos_with_input(&server, &["kv", "put", "secret/json", "-"], "[1, 2]");
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("JSON object"), "{output:?}");
    let output = custos(&server, &["kv", "put", "secret/x", "novalue"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("expected key=value"), "{output:?}");
}

const TRICKY_ENV: &str = r#"# Secrets that used to live in the repository.
export DB_PASSWORD="p\"a$s\\w#rd"
API_KEY='single $quoted # not a comment'

PLAIN=hello world   # a comment
CERT="-----BEGIN-----\nabc\n-----END-----"
MULTILINE="first
second"
  SPACED = ' padded '
EMPTY=
"#;

fn write_env(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn import_and_export_round_trip_a_tricky_env_file() {
    let (dir, server) = dev_server();
    let file = write_env(dir.path(), "app.env", TRICKY_ENV);
    let written = ok(custos(&server, &["import", &file, "secret/app"]));
    assert_eq!(
        written,
        "Success! Wrote 7 keys to secret/data/app as version 1.\n"
    );
    let answer = json_of(custos(
        &server,
        &["kv", "get", "--format", "json", "secret/app"],
    ));
    assert_eq!(
        answer["data"]["data"],
        json!({
            "DB_PASSWORD": "p\"a$s\\w#rd",
            "API_KEY": "single $quoted # not a comment",
            "PLAIN": "hello world",
            "CERT": "-----BEGIN-----\nabc\n-----END-----",
            "MULTILINE": "first\nsecond",
            "SPACED": " padded ",
            "EMPTY": "",
        })
    );

    let exported = ok(custos(&server, &["export", "secret/app"]));
    assert_eq!(
        exported,
        "API_KEY=\"single \\$quoted # not a comment\"\n\
         CERT=\"-----BEGIN-----\\nabc\\n-----END-----\"\n\
         DB_PASSWORD=\"p\\\"a\\$s\\\\w#rd\"\n\
         EMPTY=\"\"\n\
         MULTILINE=\"first\\nsecond\"\n\
         PLAIN=\"hello world\"\n\
         SPACED=\" padded \"\n"
    );

    // What export writes, import reads back to the same secret (as version 2, checked with --cas).
    let again = write_env(dir.path(), "exported.env", &exported);
    let written = ok(custos(
        &server,
        &["import", "--cas", "1", &again, "secret/app"],
    ));
    assert!(written.contains("as version 2"), "{written}");
    let second = json_of(custos(
        &server,
        &["kv", "get", "--format", "json", "secret/app"],
    ));
    assert_eq!(second["data"]["data"], answer["data"]["data"]);
    let output = custos(&server, &["import", "--cas", "1", &again, "secret/app"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");

    let exported_json = json_of(custos(
        &server,
        &["export", "--format", "json", "secret/app"],
    ));
    assert_eq!(exported_json, answer["data"]["data"]);
    let yaml = ok(custos(
        &server,
        &["export", "--format", "yaml", "secret/app"],
    ));
    assert!(yaml.contains("PLAIN: hello world\n"), "{yaml}");
    assert!(yaml.contains("MULTILINE: \"first\\nsecond\"\n"), "{yaml}");

    // From standard input, too.
    ok(custos_with_input(
        &server,
        &["import", "-", "secret/stdin"],
        "A=1\n",
    ));
    assert_eq!(
        ok(custos(&server, &["export", "secret/stdin"])),
        "A=\"1\"\n"
    );
    assert_eq!(
        custos(&server, &["export", "secret/none"]).status.code(),
        Some(2)
    );
}

#[test]
fn import_refuses_a_malformed_line_with_its_number() {
    let (dir, server) = dev_server();
    let file = write_env(
        dir.path(),
        "bad.env",
        "# fine so far\nGOOD=1\n\nthis line has no equals sign\n",
    );
    let output = custos(&server, &["import", &file, "secret/app"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        stderr(&output).contains("line 4: expected NAME=VALUE"),
        "{output:?}"
    );
    let file = write_env(dir.path(), "quote.env", "A=1\nB=\"never closed\n");
    let output = custos(&server, &["import", &file, "secret/app"]);
    assert!(stderr(&output).contains("line 2:"), "{output:?}");
    // Nothing was written.
    assert_eq!(
        custos(&server, &["kv", "get", "secret/app"]).status.code(),
        Some(2)
    );
}
