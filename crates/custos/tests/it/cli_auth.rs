//! `custos login`, the token helper (`~/.custos-token`), `custos token ...`, the generic
//! `read`/`write`/`list`/`delete`, and `custos operator generate-root` (and `bao operator
//! generate-root`, when `CUSTOS_TEST_BAO` names a `bao` binary) against the real binary.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::support::{self, TestPki, TestServer};

/// `custos ARGS` against `server` with `home` as HOME and no token in the environment.
fn custos_at(address: &str, home: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(support::binary());
    command
        .args(args)
        .env("CUSTOS_ADDR", address)
        .env("HOME", home)
        .env_remove("CUSTOS_TOKEN")
        .env_remove("VAULT_TOKEN")
        .env_remove("VAULT_ADDR")
        .stdin(Stdio::null());
    command
}

fn run(server: &TestServer, home: &Path, args: &[&str]) -> Output {
    custos_at(&server.address, home, args).output().unwrap()
}

fn run_with_input(server: &TestServer, home: &Path, args: &[&str], input: &str) -> Output {
    let mut child = custos_at(&server.address, home, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[track_caller]
fn ok(output: Output) -> String {
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    String::from_utf8(output.stdout).unwrap()
}

#[track_caller]
fn json(output: Output) -> Value {
    let text = ok(output);
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{error}: {text}"))
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn login_stores_the_token_and_later_commands_use_it() {
    let (_dir, server) = support::dev_server();
    let home = tempfile::tempdir().unwrap();
    let token_file = home.path().join(".custos-token");

    // Without a token, nothing works.
    let denied = run(&server, home.path(), &["read", "secret/data/app"]);
    assert_eq!(denied.status.code(), Some(1), "{denied:?}");
    assert!(
        stderr(&denied).contains("permission denied"),
        "{}",
        stderr(&denied)
    );

    // A wrong token is refused and nothing is stored.
    let refused = run(&server, home.path(), &["login", "custos_token_wrong"]);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(!token_file.exists());

    let out = ok(run(&server, home.path(), &["login", "root"]));
    assert!(out.contains("Success! You are now authenticated"), "{out}");
    assert!(out.contains("token_policies       [\"root\"]"), "{out}");
    assert_eq!(std::fs::read_to_string(&token_file).unwrap(), "root");
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }

    // Generic commands on a KV v2 path, with the stored token.
    let written = run_with_input(
        &server,
        home.path(),
        &["write", "-format=json", "secret/data/app", "-"],
        r#"{"data": {"password": "hunter2", "port": 5432}}"#,
    );
    assert_eq!(json(written)["data"]["version"], 1);
    let read = json(run(
        &server,
        home.path(),
        &["read", "-format=json", "secret/data/app"],
    ));
    assert_eq!(read["data"]["data"]["password"], "hunter2");
    assert_eq!(read["data"]["data"]["port"], 5432);
    let table = ok(run(&server, home.path(), &["read", "secret/data/app"]));
    assert!(table.contains("data"), "{table}");
    let field = ok(run(
        &server,
        home.path(),
        &["read", "secret/data/app", "-field=metadata"],
    ));
    assert!(field.contains("\"version\":1"), "{field}");
    // Query parameters: an older version.
    let second = ok(run_with_input(
        &server,
        home.path(),
        &["write", "secret/data/app", "-"],
        r#"{"data": {"password": "second"}}"#,
    ));
    assert!(second.contains("version"), "{second}");
    let old = json(run(
        &server,
        home.path(),
        &["read", "--format", "json", "secret/data/app", "version=1"],
    ));
    assert_eq!(old["data"]["metadata"]["version"], 1);

    let listed = ok(run(&server, home.path(), &["list", "secret/metadata"]));
    assert_eq!(listed, "Keys\n----\napp\n");
    let listed = json(run(
        &server,
        home.path(),
        &["list", "-format=json", "secret/metadata/"],
    ));
    assert_eq!(listed, serde_json::json!(["app"]));

    let deleted = ok(run(
        &server,
        home.path(),
        &["delete", "secret/metadata/app"],
    ));
    assert!(deleted.contains("Success! Data deleted"), "{deleted}");
    let missing = run(&server, home.path(), &["read", "secret/data/app"]);
    assert_eq!(missing.status.code(), Some(2), "{missing:?}");
    assert_eq!(stderr(&missing).trim(), "No value found at secret/data/app");
    let missing = run(&server, home.path(), &["list", "secret/metadata/"]);
    assert_eq!(missing.status.code(), Some(2), "{missing:?}");
    // `key=@FILE` and `key=value` on a KV v1 mount, then a generic read of it.
    ok(run(
        &server,
        home.path(),
        &["write", "sys/mounts/kv1", "type=kv"],
    ));
    let file = home.path().join("cert.pem");
    std::fs::write(&file, "line1\nline2\n").unwrap();
    let written = ok(run(
        &server,
        home.path(),
        &[
            "write",
            "kv1/app",
            &format!("cert=@{}", file.display()),
            "user=app",
        ],
    ));
    assert_eq!(written, "Success! Data written to: kv1/app\n");
    let read = json(run(
        &server,
        home.path(),
        &["read", "-format=json", "kv1/app"],
    ));
    assert_eq!(read["data"]["cert"], "line1\nline2\n");
    assert_eq!(read["data"]["user"], "app");
    // A path no mount serves is an error with the server's message, not "No value found".
    let unrouted = run(&server, home.path(), &["read", "nowhere/x"]);
    assert_eq!(unrouted.status.code(), Some(1), "{unrouted:?}");
    assert!(
        stderr(&unrouted).contains("no handler for route"),
        "{}",
        stderr(&unrouted)
    );
    let unrouted = run(&server, home.path(), &["delete", "nowhere/x"]);
    assert_eq!(unrouted.status.code(), Some(1), "{unrouted:?}");

    // A token in the environment or on the command line wins over the stored one.
    let overridden = custos_at(&server.address, home.path(), &["token", "lookup"])
        .env("CUSTOS_TOKEN", "custos_token_wrong")
        .output()
        .unwrap();
    assert_eq!(overridden.status.code(), Some(1), "{overridden:?}");
    let overridden = run(
        &server,
        home.path(),
        &["token", "lookup", "--token", "custos_token_wrong"],
    );
    assert_eq!(overridden.status.code(), Some(1), "{overridden:?}");
    let lookup = json(run(
        &server,
        home.path(),
        &["token", "lookup", "-format=json"],
    ));
    assert_eq!(lookup["data"]["policies"], serde_json::json!(["root"]));

    // `-no-store` prints but keeps the file as it was; the token can come from stdin.
    std::fs::write(&token_file, "custos_token_other").unwrap();
    let out = json(run_with_input(
        &server,
        home.path(),
        &["login", "-no-store", "-format=json", "-"],
        "root\n",
    ));
    assert_eq!(out["auth"]["client_token"], "root");
    assert_eq!(
        std::fs::read_to_string(&token_file).unwrap(),
        "custos_token_other"
    );
    let only = ok(run(
        &server,
        home.path(),
        &["login", "--token-only", "--no-store", "root"],
    ));
    assert_eq!(only, "root\n");
}

#[test]
fn login_without_home_needs_no_store() {
    let (_dir, server) = support::dev_server();
    let output = Command::new(support::binary())
        .args(["login", "root"])
        .env("CUSTOS_ADDR", &server.address)
        .env_remove("HOME")
        .env_remove("CUSTOS_TOKEN")
        .env_remove("VAULT_TOKEN")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        stderr(&output).contains("--no-store"),
        "{}",
        stderr(&output)
    );
}

/// A memory-backed server over plain HTTP, initialised with 3 shares (threshold 2) and
/// unsealed with the CLI: (server, its directory, hex shares, root token).
fn initialised_server() -> (TestServer, tempfile::TempDir, Vec<String>, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = support::write_config(
        dir.path(),
        &format!(
            "[listener]\naddress = \"127.0.0.1:0\"\ntls_disable = true\n{}",
            support::MEMORY_STORAGE
        ),
    );
    let server = TestServer::with_config(&config, &dir.path().join("server.log"));
    let init = json(run(
        &server,
        dir.path(),
        &[
            "operator",
            "init",
            "--key-shares",
            "3",
            "--key-threshold",
            "2",
            "--format",
            "json",
        ],
    ));
    let keys: Vec<String> = init["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key.as_str().unwrap().to_owned())
        .collect();
    let root = init["root_token"].as_str().unwrap().to_owned();
    for key in &keys[..2] {
        ok(run(&server, dir.path(), &["operator", "unseal", key]));
    }
    (server, dir, keys, root)
}

#[test]
fn generate_root_with_the_custos_cli() {
    let (server, dir, keys, root) = initialised_server();
    let home = dir.path();
    let status = json(run(
        &server,
        home,
        &["operator", "generate-root", "-status", "-format=json"],
    ));
    assert_eq!(status["started"], false);
    assert_eq!(status["required"], 2);

    // Submitting before starting says how to start.
    let early = run(&server, home, &["operator", "generate-root", &keys[0]]);
    assert_eq!(early.status.code(), Some(1), "{early:?}");
    assert!(stderr(&early).contains("--init"), "{}", stderr(&early));

    // The CLI can generate the OTP itself, with the length the server asks for.
    let otp = ok(run(
        &server,
        home,
        &["operator", "generate-root", "-generate-otp"],
    ));
    let otp = otp.trim().to_owned();
    assert_eq!(otp.len(), status["otp_length"].as_u64().unwrap() as usize);
    let started = json(run(
        &server,
        home,
        &[
            "operator",
            "generate-root",
            "-init",
            &format!("-otp={otp}"),
            "-format=json",
        ],
    ));
    assert_eq!(started["started"], true);
    assert_eq!(started["otp"], "", "an OTP given is not echoed");
    let nonce = started["nonce"].as_str().unwrap().to_owned();

    let table = ok(run(
        &server,
        home,
        &["operator", "generate-root", "-nonce", &nonce, &keys[2]],
    ));
    assert!(
        table.contains("Progress") && table.contains("1/2"),
        "{table}"
    );
    // The share can come from standard input.
    let done = json(run_with_input(
        &server,
        home,
        &["operator", "generate-root", "-format=json", "-"],
        &format!("{}\n", keys[1]),
    ));
    assert_eq!(done["complete"], true);
    let encoded = done["encoded_token"].as_str().unwrap().to_owned();

    let token = ok(run(
        &server,
        home,
        &[
            "operator",
            "generate-root",
            "-decode",
            &encoded,
            "-otp",
            &otp,
        ],
    ));
    let token = token.trim().to_owned();
    assert!(token.starts_with("custos_token_"), "{token}");
    assert_ne!(token, root);
    let lookup = json(run(
        &server,
        home,
        &["token", "lookup", "--format", "json", "--token", &token],
    ));
    assert_eq!(lookup["data"]["policies"], serde_json::json!(["root"]));

    // Start, cancel, and the status is idle again; without an OTP the server makes one.
    let started = json(run(
        &server,
        home,
        &["operator", "generate-root", "-init", "-format=json"],
    ));
    assert_eq!(
        started["otp"].as_str().unwrap().len(),
        status["otp_length"].as_u64().unwrap() as usize
    );
    let cancelled = ok(run(
        &server,
        home,
        &["operator", "generate-root", "-cancel"],
    ));
    assert!(cancelled.contains("canceled"), "{cancelled}");
    let status = json(run(
        &server,
        home,
        &["operator", "generate-root", "-status", "-format=json"],
    ));
    assert_eq!(status["started"], false);
}

fn bao(binary: &str, address: &str, token: Option<&str>, args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    let mut command = Command::new(binary);
    command
        .args(args)
        .env("VAULT_ADDR", address)
        .env("BAO_ADDR", address)
        .env_remove("VAULT_TOKEN")
        .env_remove("BAO_TOKEN")
        .env("HOME", home.path())
        .stdin(Stdio::null());
    if let Some(token) = token {
        command.env("VAULT_TOKEN", token).env("BAO_TOKEN", token);
    }
    command.output().unwrap()
}

#[test]
fn bao_operator_generate_root_works_against_custos() {
    let Ok(binary) = std::env::var("CUSTOS_TEST_BAO") else {
        eprintln!(
            "skipped bao_operator_generate_root_works_against_custos: CUSTOS_TEST_BAO not set"
        );
        return;
    };
    let (server, _dir, keys, root) = initialised_server();
    let address = server.address.as_str();
    // OpenBao 2's CLI uses the authenticated `sys/generate-root-token/*`, so it needs a token
    // (here the initial root token; any token whose policies allow those paths will do).
    let with_root = Some(root.as_str());
    // bao's own OTP, of the length custos asks for.
    let otp = ok(bao(
        &binary,
        address,
        with_root,
        &["operator", "generate-root", "-generate-otp"],
    ));
    let otp = otp.trim().to_owned();
    let started = json(bao(
        &binary,
        address,
        with_root,
        &[
            "operator",
            "generate-root",
            "-init",
            &format!("-otp={otp}"),
            "-format=json",
        ],
    ));
    let nonce = started["nonce"].as_str().unwrap().to_owned();
    let mut last = Value::Null;
    for key in &keys[..2] {
        last = json(bao(
            &binary,
            address,
            with_root,
            &[
                "operator",
                "generate-root",
                &format!("-nonce={nonce}"),
                "-format=json",
                key,
            ],
        ));
    }
    assert_eq!(last["complete"], true, "{last}");
    let encoded = last["encoded_token"].as_str().unwrap().to_owned();
    let token = ok(bao(
        &binary,
        address,
        with_root,
        &[
            "operator",
            "generate-root",
            &format!("-decode={encoded}"),
            &format!("-otp={otp}"),
        ],
    ));
    let token = token.trim().to_owned();
    assert_ne!(token, root);
    let lookup = json(bao(
        &binary,
        address,
        Some(&token),
        &["token", "lookup", "-format=json"],
    ));
    assert_eq!(lookup["data"]["policies"], serde_json::json!(["root"]));

    // `-init` without an OTP: OpenBao 2.x has the server generate one.
    let started = json(bao(
        &binary,
        address,
        with_root,
        &["operator", "generate-root", "-init", "-format=json"],
    ));
    assert_eq!(started["otp"].as_str().unwrap().len(), otp.len());
    ok(bao(
        &binary,
        address,
        with_root,
        &["operator", "generate-root", "-cancel"],
    ));
    // Without a token OpenBao's CLI is refused (its endpoints are authenticated); Vault's
    // unauthenticated `sys/generate-root/*` stay open for custos's own CLI.
    let refused = bao(
        &binary,
        address,
        None,
        &["operator", "generate-root", "-status"],
    );
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
}

#[test]
fn token_create_lookup_renew_and_revoke() {
    let (_dir, server) = support::dev_server();
    let home = tempfile::tempdir().unwrap();
    ok(run(&server, home.path(), &["login", "root"]));
    let created = json(run(
        &server,
        home.path(),
        &[
            "token",
            "create",
            "-policy=default",
            "-ttl=1h",
            "-display-name=ci",
            "-use-limit=10",
            "-metadata=team=platform",
            "-format=json",
        ],
    ));
    let token = created["auth"]["client_token"].as_str().unwrap().to_owned();
    let accessor = created["auth"]["accessor"].as_str().unwrap().to_owned();
    assert_eq!(created["auth"]["lease_duration"], 3600);
    assert_eq!(created["auth"]["orphan"], false);
    let table = ok(run(
        &server,
        home.path(),
        &["token", "create", "-policy=default", "-ttl=2h"],
    ));
    assert!(table.contains("token_duration       2h"), "{table}");
    let only = ok(run(
        &server,
        home.path(),
        &["token", "create", "-field=token", "-policy=default"],
    ));
    assert!(
        only.starts_with("custos_token_") && !only.contains('\n'),
        "{only:?}"
    );

    let looked = json(run(
        &server,
        home.path(),
        &["token", "lookup", "-format=json", &token],
    ));
    assert_eq!(looked["data"]["display_name"], "token-ci");
    assert_eq!(looked["data"]["num_uses"], 10);
    assert_eq!(looked["data"]["meta"]["team"], "platform");
    let by_accessor = json(run(
        &server,
        home.path(),
        &["token", "lookup", "-format=json", "-accessor", &accessor],
    ));
    assert_eq!(by_accessor["data"]["accessor"], accessor.as_str());
    let own = ok(run(
        &server,
        home.path(),
        &["token", "lookup", "-field=display_name", "--token", &token],
    ));
    assert_eq!(own, "token-ci");

    let renewed = json(run(
        &server,
        home.path(),
        &["token", "renew", "-increment=30m", "-format=json", &token],
    ));
    assert_eq!(renewed["auth"]["lease_duration"], 1800);
    let renewed = json(run(
        &server,
        home.path(),
        &["token", "renew", "-format=json", "--token", &token],
    ));
    assert_eq!(renewed["auth"]["client_token"], token.as_str());

    let orphan = json(run(
        &server,
        home.path(),
        &["token", "create", "-orphan", "-format=json"],
    ));
    assert_eq!(orphan["auth"]["orphan"], true);

    let revoked = ok(run(&server, home.path(), &["token", "revoke", &token]));
    assert!(revoked.contains("Success! Revoked token"), "{revoked}");
    let gone = run(&server, home.path(), &["token", "lookup", &token]);
    assert_eq!(gone.status.code(), Some(1), "{gone:?}");
    ok(run(
        &server,
        home.path(),
        &[
            "token",
            "revoke",
            "-accessor",
            orphan["auth"]["accessor"].as_str().unwrap(),
        ],
    ));
    let gone = run(
        &server,
        home.path(),
        &[
            "token",
            "lookup",
            orphan["auth"]["client_token"].as_str().unwrap(),
        ],
    );
    assert_eq!(gone.status.code(), Some(1), "{gone:?}");
    // `-mode=orphan` revokes the parent alone: its child lives on.
    let parent = json(run(
        &server,
        home.path(),
        &["token", "create", "-format=json"],
    ));
    let parent = parent["auth"]["client_token"].as_str().unwrap().to_owned();
    let child = json(run(
        &server,
        home.path(),
        &["token", "create", "-format=json", "--token", &parent],
    ));
    let child = child["auth"]["client_token"].as_str().unwrap().to_owned();
    ok(run(
        &server,
        home.path(),
        &["token", "revoke", "-mode=orphan", &parent],
    ));
    ok(run(&server, home.path(), &["token", "lookup", &child]));
    // Revoking the calling token.
    ok(run(
        &server,
        home.path(),
        &["token", "revoke", "-self", "--token", &child],
    ));
    let gone = run(&server, home.path(), &["token", "lookup", &child]);
    assert_eq!(gone.status.code(), Some(1), "{gone:?}");
}

#[test]
fn token_capabilities() {
    let (_dir, server) = support::dev_server();
    let home = tempfile::tempdir().unwrap();
    ok(run(&server, home.path(), &["login", "root"]));
    let token = ok(run(
        &server,
        home.path(),
        &["token", "create", "-field=token", "-policy=default"],
    ));
    let caps = ok(run(
        &server,
        home.path(),
        &["token", "capabilities", &token, "sys/mounts"],
    ));
    assert_eq!(caps.trim(), "deny");
    let caps = ok(run(
        &server,
        home.path(),
        &["token", "capabilities", "secret/data/app"],
    ));
    assert_eq!(caps.trim(), "root");
    let caps = json(run(
        &server,
        home.path(),
        &["token", "capabilities", "-format=json", "secret/data/app"],
    ));
    assert_eq!(caps, serde_json::json!(["root"]));
}

#[test]
fn userpass_login_prompts_for_nothing_when_given_a_password_and_stores_the_token() {
    let (_dir, server) = support::dev_server();
    let home = tempfile::tempdir().unwrap();
    ok(run(&server, home.path(), &["login", "root"]));
    ok(run(
        &server,
        home.path(),
        &["write", "sys/auth/userpass", "type=userpass"],
    ));
    ok(run(
        &server,
        home.path(),
        &[
            "write",
            "auth/userpass/users/alice",
            "password=correct horse",
            "token_policies=default",
        ],
    ));
    let login = ok(run(
        &server,
        home.path(),
        &[
            "login",
            "-method=userpass",
            "username=alice",
            "password=correct horse",
        ],
    ));
    assert!(login.contains("token_meta_username    alice"), "{login}");
    let stored = std::fs::read_to_string(home.path().join(".custos-token")).unwrap();
    assert_ne!(stored, "root");
    let lookup = json(run(
        &server,
        home.path(),
        &["token", "lookup", "-format=json"],
    ));
    assert_eq!(lookup["data"]["display_name"], "userpass-alice");
    // The password from standard input (not a terminal), and a wrong one.
    let login = run_with_input(
        &server,
        home.path(),
        &["login", "-method=userpass", "username=alice", "-no-store"],
        "wrong\n",
    );
    assert_eq!(login.status.code(), Some(1), "{login:?}");
}

#[test]
fn approle_login_at_a_custom_path() {
    let (_dir, server) = support::dev_server();
    let home = tempfile::tempdir().unwrap();
    ok(run(&server, home.path(), &["login", "root"]));
    ok(run(
        &server,
        home.path(),
        &["write", "sys/auth/machines", "type=approle"],
    ));
    ok(run(
        &server,
        home.path(),
        &["write", "auth/machines/role/ci", "token_policies=default"],
    ));
    let role_id = ok(run(
        &server,
        home.path(),
        &["read", "-field=role_id", "auth/machines/role/ci/role-id"],
    ));
    let secret_id = ok(run(
        &server,
        home.path(),
        &[
            "write",
            "-field=secret_id",
            "auth/machines/role/ci/secret-id",
        ],
    ));
    let login = json(run(
        &server,
        home.path(),
        &[
            "login",
            "-method=approle",
            "-path=machines",
            "-format=json",
            &format!("role_id={role_id}"),
            &format!("secret_id={secret_id}"),
        ],
    ));
    assert_eq!(login["auth"]["policies"], serde_json::json!(["default"]));
}

#[test]
fn cert_login_with_the_client_certificate_flags() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let config = support::write_config(
        dir.path(),
        &format!(
            "{}tls_client_ca_file = {:?}\n{}",
            pki.listener_section(false),
            pki.path("ca.pem"),
            support::MEMORY_STORAGE
        ),
    );
    let server = TestServer::with_config(&config, &dir.path().join("server.log"));
    let home = tempfile::tempdir().unwrap();
    let ca = pki.path("ca.pem");
    let ca = ca.to_str().unwrap();
    let with_tls = |args: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
        all.extend(["--ca-cert".to_owned(), ca.to_owned()]);
        all
    };
    let run_tls = |args: &[&str]| {
        let args = with_tls(args);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&server, home.path(), &args)
    };
    let init = json(run_tls(&[
        "operator",
        "init",
        "--key-shares",
        "1",
        "--key-threshold",
        "1",
        "--format",
        "json",
    ]));
    ok(run_tls(&[
        "operator",
        "unseal",
        init["keys"][0].as_str().unwrap(),
    ]));
    let root = init["root_token"].as_str().unwrap();
    ok(run_tls(&["login", root]));
    ok(run_tls(&["write", "sys/auth/cert", "type=cert"]));
    let certificate = format!("certificate=@{}", pki.path("ca.pem").display());
    ok(run_tls(&[
        "write",
        "auth/cert/certs/web",
        &certificate,
        "token_policies=default",
    ]));
    let client_cert = pki.path("client.pem");
    let client_key = pki.path("client-key.pem");
    let login = json(run_tls(&[
        "login",
        "-method=cert",
        "name=web",
        "-format=json",
        "--client-cert",
        client_cert.to_str().unwrap(),
        "--client-key",
        client_key.to_str().unwrap(),
    ]));
    assert_eq!(login["auth"]["policies"], serde_json::json!(["default"]));
    // The stored token is bound to the certificate: later commands must present it too.
    ok(run_tls(&[
        "token",
        "lookup",
        "--client-cert",
        client_cert.to_str().unwrap(),
        "--client-key",
        client_key.to_str().unwrap(),
    ]));
    let unbound = run_tls(&["token", "lookup"]);
    assert_eq!(unbound.status.code(), Some(1), "{unbound:?}");
}
