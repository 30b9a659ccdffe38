//! The CLI against a dev server: `custos status`, `custos operator ...`, exit codes, formats.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::support::{self, TestServer};

fn custos(address: &str, args: &[&str]) -> std::process::Output {
    Command::new(support::binary())
        .args(args)
        .env("CUSTOS_ADDR", address)
        .env_remove("VAULT_ADDR")
        .env_remove("CUSTOS_TOKEN")
        .env_remove("VAULT_TOKEN")
        .output()
        .unwrap()
}

#[test]
fn dev_server_is_unsealed_with_the_chosen_root_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::dev("dev-root", &dir.path().join("server.log"));
    assert!(server.address.starts_with("http://127.0.0.1:"));

    let output = custos(&server.address, &["status", "--format", "json"]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(status["sealed"], false);
    assert_eq!(status["storage_type"], "memory");
    assert_eq!(status["version"], custos_api::VAULT_COMPATIBLE_VERSION);
    assert_eq!(status["custos_version"], custos_api::VERSION);
    let table = custos(&server.address, &["status"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains(&format!("Custos Version    {}", custos_api::VERSION)),
        "{table}"
    );

    let output = custos(
        &server.address,
        &[
            "operator",
            "key-status",
            "--token",
            "dev-root",
            "--format",
            "json",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let key: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(key["term"], 1);

    let output = custos(
        &server.address,
        &["operator", "rotate", "--token", "dev-root"],
    );
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("Key Term        2"));

    let output = custos(
        &server.address,
        &["operator", "key-status", "--token", "wrong"],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("permission denied"));

    // Sealed: `status` exits with 2, as Vault's does.
    let output = custos(
        &server.address,
        &["operator", "seal", "--token", "dev-root"],
    );
    assert!(output.status.success(), "{output:?}");
    let output = custos(&server.address, &["status"]);
    assert_eq!(output.status.code(), Some(2));
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(
        table.contains("Sealed") && table.contains("true"),
        "{table}"
    );
}

#[test]
fn operator_init_and_unseal_from_standard_input() {
    let dir = tempfile::tempdir().unwrap();
    let config = support::write_config(
        dir.path(),
        "[listener]\naddress = \"127.0.0.1:0\"\ntls_disable = true\n[storage]\nbackend = \"memory\"\n",
    );
    let server = TestServer::with_config(&config, &dir.path().join("server.log"));

    let output = custos(
        &server.address,
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
    );
    assert!(output.status.success(), "{output:?}");
    let init: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let keys: Vec<String> = init["keys_base64"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys.len(), 3);

    // The key as an argument.
    let output = custos(&server.address, &["operator", "unseal", &keys[0]]);
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("1/2"));

    // A share naming a round that was reset meanwhile is refused and changes nothing.
    let output = custos(&server.address, &["operator", "status", "--format", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let nonce = status["nonce"].as_str().unwrap().to_owned();
    assert!(!nonce.is_empty(), "{status}");
    let output = custos(&server.address, &["operator", "unseal", "--reset"]);
    assert!(output.status.success(), "{output:?}");
    let output = custos(
        &server.address,
        &["operator", "unseal", "--nonce", &nonce, &keys[1]],
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("unseal nonce does not match the current round"),
        "{output:?}"
    );
    let output = custos(&server.address, &["operator", "unseal", &keys[0]]);
    assert!(String::from_utf8_lossy(&output.stdout).contains("1/2"));

    // The key on standard input (no terminal): never on the command line.
    let mut child = Command::new(support::binary())
        .args(["operator", "unseal", "--format", "json"])
        .env("CUSTOS_ADDR", &server.address)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{}\n", keys[2]).as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(status["sealed"], false);

    let output = custos(&server.address, &["operator", "unseal", "not-a-key"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("hex or base64"));
}

#[test]
fn unreachable_server_is_a_clear_error() {
    let output = custos("https://127.0.0.1:1", &["status"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot reach"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_size_limit_is_configurable() {
    let dir = tempfile::tempdir().unwrap();
    let config = support::write_config(
        dir.path(),
        "[listener]\naddress = \"127.0.0.1:0\"\ntls_disable = true\n[storage]\nbackend = \"memory\"\n[secrets]\nmax_value_bytes = 256\n",
    );
    let server = TestServer::with_config(&config, &dir.path().join("server.log"));
    let anonymous = custos_client::Client::new(custos_client::ClientConfig {
        address: server.address.clone(),
        ..Default::default()
    })
    .unwrap();
    let (keys, token) = support::init(&anonymous, 1, 1).await;
    support::unseal(&anonymous, &keys).await;
    let root = custos_client::Client::new(custos_client::ClientConfig {
        address: server.address.clone(),
        token: Some(token),
        ..Default::default()
    })
    .unwrap();
    let post = custos_client::http::Method::POST;
    root.call::<serde_json::Value>(
        post.clone(),
        "sys/mounts/kv",
        Some(&serde_json::json!({"type": "kv-v2"})),
    )
    .await
    .unwrap();
    let small = serde_json::json!({"data": {"k": "x".repeat(50)}});
    root.call::<serde_json::Value>(post.clone(), "kv/data/small", Some(&small))
        .await
        .unwrap();
    let big = serde_json::json!({"data": {"k": "x".repeat(1000)}});
    match root
        .call::<serde_json::Value>(post, "kv/data/big", Some(&big))
        .await
        .unwrap_err()
    {
        custos_client::ClientError::Api { status, errors, .. } => {
            assert_eq!(status, 400);
            assert!(errors[0].contains("256"), "{errors:?}");
        }
        other => panic!("unexpected {other:?}"),
    }
}
