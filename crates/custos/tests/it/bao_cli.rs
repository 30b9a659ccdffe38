//! The real OpenBao CLI (`bao`, Vault's CLI fork) operating a custos server.
//!
//! Runs when `CUSTOS_TEST_BAO` names a `bao` binary (`.ci/run` fetches OpenBao 2.7.2's from PyPI);
//! otherwise it says it was skipped.

use std::process::Command;

use crate::support::{self, TestServer};

pub(crate) fn bao(
    binary: &str,
    address: &str,
    token: Option<&str>,
    args: &[&str],
) -> std::process::Output {
    let mut command = Command::new(binary);
    command
        .args(args)
        .env("VAULT_ADDR", address)
        .env("BAO_ADDR", address)
        .env_remove("VAULT_TOKEN")
        .env_remove("BAO_TOKEN")
        .env("HOME", std::env::temp_dir());
    if let Some(token) = token {
        command.env("VAULT_TOKEN", token).env("BAO_TOKEN", token);
    }
    command.output().unwrap()
}

pub(crate) fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn bao_cli_inits_unseals_rotates_and_seals_custos() {
    let Ok(binary) = std::env::var("CUSTOS_TEST_BAO") else {
        eprintln!(
            "skipped bao_cli_inits_unseals_rotates_and_seals_custos: CUSTOS_TEST_BAO not set"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = support::write_config(
        dir.path(),
        "[listener]\naddress = \"127.0.0.1:0\"\ntls_disable = true\n[storage]\nbackend = \"memory\"\n",
    );
    let server = TestServer::with_config(&config, &dir.path().join("server.log"));
    let address = server.address.as_str();

    let output = bao(&binary, address, None, &["status", "-format=json"]);
    assert_eq!(output.status.code(), Some(2), "sealed → exit 2: {output:?}");
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(status["initialized"], false);

    let output = bao(
        &binary,
        address,
        None,
        &[
            "operator",
            "init",
            "-key-shares=3",
            "-key-threshold=2",
            "-format=json",
        ],
    );
    assert!(output.status.success(), "{output:?}");
    let init: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let keys = init["unseal_keys_b64"].as_array().unwrap();
    let token = init["root_token"].as_str().unwrap().to_owned();
    assert_eq!(keys.len(), 3);

    let output = bao(
        &binary,
        address,
        None,
        &[
            "operator",
            "unseal",
            "-format=json",
            keys[0].as_str().unwrap(),
        ],
    );
    assert!(output.status.success(), "{output:?}");
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        (status["sealed"].as_bool(), status["progress"].as_u64()),
        (Some(true), Some(1))
    );
    let output = bao(
        &binary,
        address,
        None,
        &["operator", "unseal", keys[2].as_str().unwrap()],
    );
    assert!(output.status.success(), "{output:?}");

    let output = bao(&binary, address, None, &["status"]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(
        stdout(&output).contains("Sealed          false"),
        "{}",
        stdout(&output)
    );

    let output = bao(&binary, address, Some(&token), &["operator", "rotate"]);
    assert!(output.status.success(), "{output:?}");
    let output = bao(
        &binary,
        address,
        Some(&token),
        &["operator", "key-status", "-format=json"],
    );
    assert!(output.status.success(), "{output:?}");
    let key: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(key["term"], 2, "{key}");

    let output = bao(&binary, address, Some("wrong"), &["operator", "rotate"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("permission denied"));

    let output = bao(&binary, address, Some(&token), &["operator", "seal"]);
    assert!(output.status.success(), "{output:?}");
    let output = bao(&binary, address, None, &["status"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
}

#[test]
fn bao_cli_kv_and_wrapping_against_a_dev_server() {
    let Ok(binary) = std::env::var("CUSTOS_TEST_BAO") else {
        eprintln!("skipped bao_cli_kv_and_wrapping_against_a_dev_server: CUSTOS_TEST_BAO not set");
        return;
    };
    let (_dir, server) = support::dev_server();
    let address = server.address.as_str();
    let run = |args: &[&str]| bao(&binary, address, Some("root"), args);
    let json = |args: &[&str]| -> serde_json::Value {
        let output = run(args);
        assert!(output.status.success(), "{args:?}: {output:?}");
        serde_json::from_slice(&output.stdout).unwrap()
    };

    // KV v2 at secret/, as in Vault's dev mode.
    assert!(
        run(&["kv", "put", "secret/app", "db=pg", "pw=hunter2"])
            .status
            .success()
    );
    assert!(
        run(&["kv", "put", "secret/app", "db=pg", "pw=rotated"])
            .status
            .success()
    );
    let latest = json(&["kv", "get", "-format=json", "secret/app"]);
    assert_eq!(latest["data"]["data"]["pw"], "rotated");
    assert_eq!(latest["data"]["metadata"]["version"], 2);
    let field = run(&["kv", "get", "-version=1", "-field=pw", "secret/app"]);
    assert_eq!(stdout(&field), "hunter2");
    assert!(
        run(&["kv", "patch", "secret/app", "extra=1"])
            .status
            .success()
    );
    let patched = json(&["kv", "get", "-format=json", "secret/app"]);
    assert_eq!(patched["data"]["data"]["extra"], "1");
    assert_eq!(patched["data"]["data"]["db"], "pg");
    let listed = json(&["kv", "list", "-format=json", "secret/"]);
    assert_eq!(listed, serde_json::json!(["app"]));
    let metadata = json(&["kv", "metadata", "get", "-format=json", "secret/app"]);
    assert_eq!(metadata["data"]["current_version"], 3);

    // Soft delete, undelete, destroy.
    assert!(run(&["kv", "delete", "secret/app"]).status.success());
    // As against Vault: the CLI shows the metadata of the deleted version and no data.
    let deleted = stdout(&run(&["kv", "get", "secret/app"]));
    assert!(!deleted.contains("=== Data ==="), "{deleted}");
    assert!(!deleted.contains("deletion_time      n/a"), "{deleted}");
    assert!(
        run(&["kv", "undelete", "-versions=3", "secret/app"])
            .status
            .success()
    );
    assert!(run(&["kv", "get", "secret/app"]).status.success());
    assert!(
        run(&["kv", "destroy", "-versions=1", "secret/app"])
            .status
            .success()
    );
    let destroyed = json(&["kv", "metadata", "get", "-format=json", "secret/app"]);
    assert_eq!(destroyed["data"]["versions"]["1"]["destroyed"], true);

    // Response wrapping: a wrapped read unwraps exactly once.
    let wrapped = json(&["kv", "get", "-wrap-ttl=5m", "-format=json", "secret/app"]);
    let token = wrapped["wrap_info"]["token"].as_str().unwrap().to_owned();
    assert_eq!(wrapped["wrap_info"]["ttl"], 300);
    let unwrapped = json(&["unwrap", "-format=json", &token]);
    assert_eq!(unwrapped["data"]["data"]["extra"], "1");
    assert!(
        !run(&["unwrap", &token]).status.success(),
        "second unwrap must fail"
    );

    // Mounts: a KV v1 engine.
    assert!(
        run(&["secrets", "enable", "-path=kv1", "kv"])
            .status
            .success()
    );
    assert!(run(&["kv", "put", "kv1/x", "a=1"]).status.success());
    let v1 = json(&["kv", "get", "-format=json", "kv1/x"]);
    assert_eq!(v1["data"]["a"], "1");
    let mounts = json(&["secrets", "list", "-format=json"]);
    assert_eq!(mounts["kv1/"]["type"], "kv");
    assert_eq!(mounts["secret/"]["options"]["version"], "2");
    assert!(run(&["secrets", "disable", "kv1"]).status.success());
    assert!(!run(&["kv", "get", "kv1/x"]).status.success());
}

#[test]
fn bao_cli_tunes_moves_and_upgrades_mounts_and_refuses_namespaces() {
    let Ok(binary) = std::env::var("CUSTOS_TEST_BAO") else {
        eprintln!(
            "skipped bao_cli_tunes_moves_and_upgrades_mounts_and_refuses_namespaces: CUSTOS_TEST_BAO not set"
        );
        return;
    };
    let (_dir, server) = support::dev_server();
    let address = server.address.as_str();
    let run = |args: &[&str]| bao(&binary, address, Some("root"), args);
    let json = |args: &[&str]| -> serde_json::Value {
        let output = run(args);
        assert!(output.status.success(), "{args:?}: {output:?}");
        serde_json::from_slice(&output.stdout).unwrap()
    };

    // `secrets tune -description` sends "" for the TTLs it was not given: they are kept.
    assert!(
        run(&["secrets", "enable", "-path=kv1", "-version=1", "kv"])
            .status
            .success()
    );
    let output = run(&[
        "secrets",
        "tune",
        "-default-lease-ttl=1h",
        "-max-lease-ttl=2h",
        "kv1",
    ]);
    assert!(output.status.success(), "{output:?}");
    let output = run(&["secrets", "tune", "-description=tuned", "kv1"]);
    assert!(output.status.success(), "{output:?}");
    let tune = json(&["read", "-format=json", "sys/mounts/kv1/tune"]);
    assert_eq!(tune["data"]["default_lease_ttl"], 3600, "{tune}");
    assert_eq!(tune["data"]["max_lease_ttl"], 7200, "{tune}");
    assert_eq!(tune["data"]["description"], "tuned", "{tune}");

    // `kv enable-versioning` upgrades in place and keeps the data.
    assert!(
        run(&["kv", "put", "kv1/app", "pw=hunter2"])
            .status
            .success()
    );
    let output = run(&["kv", "enable-versioning", "kv1"]);
    assert!(output.status.success(), "{output:?}");
    let read = json(&["kv", "get", "-format=json", "kv1/app"]);
    assert_eq!(read["data"]["data"]["pw"], "hunter2", "{read}");
    assert_eq!(read["data"]["metadata"]["version"], 1, "{read}");

    // `secrets move` polls sys/remount/status until the move succeeded.
    let output = run(&["secrets", "move", "kv1", "moved"]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let read = json(&["kv", "get", "-format=json", "moved/app"]);
    assert_eq!(read["data"]["data"]["pw"], "hunter2", "{read}");

    // A namespace is refused, not ignored.
    let output = run(&["kv", "put", "-namespace=team1", "moved/other", "a=1"]);
    assert!(!output.status.success(), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("namespace not found"),
        "{output:?}"
    );
    assert!(!run(&["kv", "get", "moved/other"]).status.success());
}

#[test]
fn bao_cli_path_help_day_wrap_ttls_and_kv_v1_leases() {
    let Ok(binary) = std::env::var("CUSTOS_TEST_BAO") else {
        eprintln!(
            "skipped bao_cli_path_help_day_wrap_ttls_and_kv_v1_leases: CUSTOS_TEST_BAO not set"
        );
        return;
    };
    let (_dir, server) = support::dev_server();
    let address = server.address.as_str();
    let run = |args: &[&str]| bao(&binary, address, Some("root"), args);
    let json = |args: &[&str]| -> serde_json::Value {
        let output = run(args);
        assert!(output.status.success(), "{args:?}: {output:?}");
        serde_json::from_slice(&output.stdout).unwrap()
    };

    // `path-help` reads `?help=1`.
    let help = run(&["path-help", "secret/data/app"]);
    assert!(help.status.success(), "{help:?}");
    let text = stdout(&help);
    assert!(text.contains("Key-Value Store"), "{text}");
    let help = run(&["path-help", "sys/mounts"]);
    assert!(help.status.success(), "{help:?}");

    // A wrapped read with a TTL in days, as Vault takes it.
    assert!(run(&["kv", "put", "secret/app", "a=1"]).status.success());
    let wrapped = json(&["kv", "get", "-wrap-ttl=1d", "-format=json", "secret/app"]);
    assert_eq!(wrapped["wrap_info"]["ttl"], 86_400);
    let token = wrapped["wrap_info"]["token"].as_str().unwrap().to_owned();
    let unwrapped = json(&["unwrap", "-format=json", &token]);
    assert_eq!(unwrapped["data"]["data"]["a"], "1");

    // KV v1 reads carry the secret's ttl, else the mount's default lease TTL.
    assert!(
        run(&[
            "secrets",
            "enable",
            "-path=kv1",
            "-default-lease-ttl=1h",
            "kv"
        ])
        .status
        .success()
    );
    assert!(run(&["kv", "put", "kv1/plain", "a=1"]).status.success());
    assert!(
        run(&["kv", "put", "kv1/short", "a=1", "ttl=30m"])
            .status
            .success()
    );
    let plain = json(&["kv", "get", "-format=json", "kv1/plain"]);
    assert_eq!(plain["lease_duration"], 3600);
    let short = json(&["kv", "get", "-format=json", "kv1/short"]);
    assert_eq!(short["lease_duration"], 1800);
    let text = stdout(&run(&["kv", "get", "kv1/short"]));
    assert!(text.contains("30m"), "{text}");
}

#[test]
fn bao_cli_manages_custos_policies() {
    let Ok(binary) = std::env::var("CUSTOS_TEST_BAO") else {
        eprintln!("skipped bao_cli_manages_custos_policies: CUSTOS_TEST_BAO not set");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::dev("root", &dir.path().join("server.log"));
    let address = server.address.as_str();
    let file = dir.path().join("team.hcl");
    let text = "path \"secret/*\" {\n  capabilities = [\"read\", \"list\"]\n}\n";
    std::fs::write(&file, text).unwrap();
    let run = |args: &[&str]| bao(&binary, address, Some("root"), args);

    let output = run(&["policy", "write", "team", file.to_str().unwrap()]);
    assert!(output.status.success(), "{output:?}");
    let output = run(&["policy", "read", "team"]);
    assert_eq!(stdout(&output), text, "{output:?}");
    let output = run(&["policy", "list"]);
    assert_eq!(stdout(&output), "default\nteam\nroot\n", "{output:?}");
    let output = run(&["token", "capabilities", "secret/foo"]);
    assert_eq!(stdout(&output).trim(), "root", "{output:?}");
    std::fs::write(&file, "path \"a\" {\n  capabilities = [\"reed\"]\n}\n").unwrap();
    let output = run(&["policy", "write", "bad", file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("line 2: unknown capability \"reed\""),
        "{output:?}"
    );
    let output = run(&["policy", "delete", "team"]);
    assert!(output.status.success(), "{output:?}");
    let output = run(&["policy", "read", "team"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
}
