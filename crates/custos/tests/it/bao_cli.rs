//! The real OpenBao CLI (`bao`, Vault's CLI fork) operating a custos server.
//!
//! Runs when `CUSTOS_TEST_BAO` names a `bao` binary (`.ci/run` fetches OpenBao 2.7.2's from PyPI);
//! otherwise it says it was skipped.

use std::process::Command;

use crate::support::{self, TestServer};

fn bao(binary: &str, address: &str, token: Option<&str>, args: &[&str]) -> std::process::Output {
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

fn stdout(output: &std::process::Output) -> String {
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
