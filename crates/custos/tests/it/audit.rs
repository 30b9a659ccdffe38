//! Audit devices on the real binary: every request leaves a request and a response record,
//! planted secrets never appear in clear in the audit file or the server log, the chain verifies
//! with `custos audit verify`, a Vault-log-reading script parses the records, the server fails
//! closed (503, nothing written) while its only device cannot write and recovers after; and the
//! real `bao audit enable/list/disable` and hvac's audit calls against a dev server.

use std::path::Path;
use std::process::Command;

use custos_client::http::Method;
use serde_json::{Value, json};

use crate::support::{self, call, http_client as client};

/// A server on SQLite with one `file` device writing `audit.log` in `logs/` under `dir`,
/// initialised and unsealed; returns it with its root token.
async fn audited_server(dir: &Path, device_options: &str) -> (support::TestServer, String) {
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let config = support::write_config(
        dir,
        &format!(
            "{}[listener]\naddress = \"127.0.0.1:0\"\ntls_disable = true\n[[audit]]\npath = \"file\"\ntype = \"file\"\nfile_path = {:?}\n{device_options}",
            support::sqlite_storage(dir),
            dir.join("logs/audit.log")
        ),
    );
    let server = support::TestServer::with_config(&config, &dir.join("server.log"));
    let anonymous = client(&server.address, None);
    let (keys, root) = support::init(&anonymous, 1, 1).await;
    support::unseal(&anonymous, &keys).await;
    let root_client = client(&server.address, Some(&root));
    let (status, body) = call(
        &root_client,
        Method::POST,
        "sys/mounts/secret",
        json!({"type": "kv", "options": {"version": "2"}}),
        &[],
    )
    .await;
    assert_eq!(status, 204, "{body}");
    (server, root)
}

fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn audit_cli(args: &[&str]) -> std::process::Output {
    Command::new(support::binary())
        .arg("audit")
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test]
async fn every_request_is_recorded_and_secrets_never_appear_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, root) = audited_server(dir.path(), "").await;
    let root_client = client(&server.address, Some(&root));
    let secret_value = "planted-secret-value-7f3a9c";
    let password = "planted-password-51be02";

    let (status, body) = call(
        &root_client,
        Method::POST,
        "secret/data/app",
        json!({"data": {"api_key": secret_value}}),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(
        &root_client,
        Method::GET,
        "secret/data/app",
        Value::Null,
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["data"]["api_key"], secret_value);

    // A login: the password in the request, the new token in the response.
    let (status, _) = call(
        &root_client,
        Method::POST,
        "sys/auth/userpass",
        json!({"type": "userpass"}),
        &[],
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = call(
        &root_client,
        Method::POST,
        "auth/userpass/users/alice",
        json!({"password": password, "token_policies": "default"}),
        &[],
    )
    .await;
    assert_eq!(status, 204);
    let anonymous = client(&server.address, None);
    let (status, body) = call(
        &anonymous,
        Method::POST,
        "auth/userpass/login/alice",
        json!({"password": password}),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let login_token = body["auth"]["client_token"].as_str().unwrap().to_owned();

    // A token created, and a wrapped answer.
    let (status, body) = call(
        &root_client,
        Method::POST,
        "auth/token/create",
        json!({"ttl": "1h"}),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let created_token = body["auth"]["client_token"].as_str().unwrap().to_owned();
    let (status, body) = call(
        &root_client,
        Method::GET,
        "secret/data/app",
        Value::Null,
        &[("X-Vault-Wrap-TTL", "5m")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let wrapping_token = body["wrap_info"]["token"].as_str().unwrap().to_owned();

    // A request with a wrong token is recorded too.
    let stranger = client(&server.address, Some("custos_token_not-a-real-token"));
    let (status, _) = call(&stranger, Method::GET, "secret/data/app", Value::Null, &[]).await;
    assert_eq!(status, 403);

    // The server is stopped so every record is on disk and the file is closed with a checkpoint.
    assert!(server.terminate().success());
    let audit_path = dir.path().join("logs/audit.log");
    let audit_text = std::fs::read_to_string(&audit_path).unwrap();
    let server_log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
    for planted in [
        secret_value,
        password,
        root.as_str(),
        &login_token,
        &created_token,
        &wrapping_token,
    ] {
        assert!(!audit_text.contains(planted), "{planted} in the audit log");
        assert!(!server_log.contains(planted), "{planted} in the server log");
    }

    // Every request has a request and a response record with the same id.
    let records = records(&audit_path);
    let mut requests = std::collections::BTreeMap::<String, (usize, usize)>::new();
    for record in &records {
        let Some(kind) = record["type"].as_str() else {
            continue;
        };
        if kind == "checkpoint" {
            continue;
        }
        let id = record["request"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let counts = requests.entry(id).or_default();
        match kind {
            "request" => counts.0 += 1,
            "response" => counts.1 += 1,
            other => panic!("unexpected record type {other}"),
        }
    }
    assert!(requests.len() >= 9, "{requests:?}");
    for (id, counts) in &requests {
        assert_eq!(*counts, (1, 1), "request {id}");
    }
    let paths: Vec<&str> = records
        .iter()
        .filter(|record| record["type"] == "response")
        .filter_map(|record| record["request"]["path"].as_str())
        .collect();
    for path in [
        "secret/data/app",
        "auth/userpass/login/alice",
        "auth/token/create",
        "sys/mounts/secret",
    ] {
        assert!(paths.contains(&path), "{path} not in {paths:?}");
    }
    // The data written is hashed, not dropped.
    let write = records
        .iter()
        .find(|record| {
            record["type"] == "request"
                && record["request"]["path"] == "secret/data/app"
                && record["request"]["operation"] == "update"
        })
        .unwrap();
    assert_eq!(write["request"]["remote_address"], "127.0.0.1");
    assert!(
        write["request"]["remote_port"].as_u64().is_some(),
        "{write}"
    );
    let hashed = write["request"]["data"]["data"]["api_key"]
        .as_str()
        .unwrap();
    assert!(hashed.starts_with("hmac-sha256:"), "{hashed}");
    // The wrong token's request was answered with an error on the record.
    assert!(
        records.iter().any(|record| record["type"] == "response"
            && record["request"]["path"] == "secret/data/app"
            && record["error"]
                .as_str()
                .is_some_and(|error| !error.is_empty())),
        "no error record for the wrong token"
    );

    // The chain verifies.
    let output = audit_cli(&["verify", audit_path.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    // A few lines of Python that read Vault audit logs read ours.
    let script = r#"
import json, sys
seen = 0
for line in open(sys.argv[1]):
    entry = json.loads(line)
    if entry.get("type") not in ("request", "response"):
        continue
    request = entry["request"]
    assert isinstance(entry["time"], str) and entry["time"].endswith("Z"), entry["time"]
    assert request["operation"] in ("create", "read", "update", "delete", "list", "patch"), request
    assert isinstance(request["path"], str)
    assert isinstance(request.get("remote_port", 0), int), request
    auth = entry.get("auth") or {}
    for key in ("client_token", "accessor"):
        if key in auth:
            assert auth[key].startswith("hmac-sha256:"), auth
    seen += 1
print(seen)
"#;
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&audit_path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: usize = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap();
    assert_eq!(seen, requests.len() * 2);
}

#[tokio::test]
async fn the_server_fails_closed_while_its_only_device_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let (server, root) = audited_server(dir.path(), "fsync = \"every_write\"\n").await;
    let root_client = client(&server.address, Some(&root));
    let (status, body) = call(
        &root_client,
        Method::POST,
        "secret/data/before",
        json!({"data": {"v": "1"}}),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // The log directory is replaced by a file: the device can neither write nor reopen.
    let logs = dir.path().join("logs");
    std::fs::rename(&logs, dir.path().join("logs-moved")).unwrap();
    std::fs::write(&logs, b"not a directory").unwrap();
    // The device looks at its path a few times a second (docs/audit.md).
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (status, body) = call(
        &root_client,
        Method::POST,
        "secret/data/during",
        json!({"data": {"v": "2"}}),
        &[],
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(body.to_string().contains("audit"), "{body}");
    let (status, _) = call(
        &root_client,
        Method::GET,
        "secret/data/before",
        Value::Null,
        &[],
    )
    .await;
    assert_eq!(status, 503);

    // Once the directory is back, requests succeed again, and the refused write did nothing.
    std::fs::remove_file(&logs).unwrap();
    std::fs::create_dir(&logs).unwrap();
    let (status, body) = call(
        &root_client,
        Method::GET,
        "secret/data/before",
        Value::Null,
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(
        &root_client,
        Method::GET,
        "secret/data/during",
        Value::Null,
        &[],
    )
    .await;
    assert_eq!(status, 404, "{body}");

    // The old file and the new one verify as one chain.
    let output = audit_cli(&[
        "verify",
        dir.path().join("logs-moved/audit.log").to_str().unwrap(),
        logs.join("audit.log").to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn api_audit_creation_is_refused_unless_the_config_allows_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_server_guard, root) = audited_server(dir.path(), "").await;
    let root_client = client(&_server_guard.address, Some(&root));
    let (status, body) = call(
        &root_client,
        Method::PUT,
        "sys/audit/other",
        json!({"type": "file", "options": {"file_path": dir.path().join("other.log")}}),
        &[],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.to_string()
            .contains("config-based audit device management"),
        "{body}"
    );
    assert!(!dir.path().join("other.log").exists());
    let (status, body) = call(
        &root_client,
        Method::DELETE,
        "sys/audit/file",
        Value::Null,
        &[],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("configuration-managed"), "{body}");
    let (status, body) = call(&root_client, Method::GET, "sys/audit", Value::Null, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["file/"]["type"], "file");
}

#[test]
fn bao_audit_enable_list_and_disable_work() {
    let Ok(bao) = std::env::var("CUSTOS_TEST_BAO") else {
        eprintln!("skipped bao_audit_enable_list_and_disable_work: CUSTOS_TEST_BAO not set");
        return;
    };
    let (dir, server) = support::dev_server();
    let log = dir.path().join("bao-audit.log");
    let bao_cmd = |args: &[&str]| {
        let output = Command::new(&bao)
            .args(args)
            .env("BAO_ADDR", &server.address)
            .env("BAO_TOKEN", "root")
            .env("VAULT_ADDR", &server.address)
            .env("VAULT_TOKEN", "root")
            .output()
            .unwrap();
        (
            output.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        )
    };
    let file_path = format!("file_path={}", log.display());
    let (ok, out) = bao_cmd(&["audit", "enable", "file", &file_path]);
    assert!(ok, "{out}");
    let (ok, out) = bao_cmd(&["audit", "list", "-detailed"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("file/") && out.contains(&log.display().to_string()),
        "{out}"
    );
    let (ok, out) = bao_cmd(&["kv", "put", "secret/app", "password=planted-bao-secret"]);
    assert!(ok, "{out}");
    let (ok, out) = bao_cmd(&["audit", "disable", "file"]);
    assert!(ok, "{out}");
    let (ok, out) = bao_cmd(&["audit", "list"]);
    assert!(!out.contains("file/"), "{ok} {out}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("secret/data/app"), "{text}");
    assert!(!text.contains("planted-bao-secret"));
}

#[test]
fn hvac_audit_calls_work() {
    let Ok(python) = std::env::var("CUSTOS_TEST_PYTHON") else {
        eprintln!("skipped hvac_audit_calls_work: CUSTOS_TEST_PYTHON not set");
        return;
    };
    let (dir, server) = support::dev_server();
    let log = dir.path().join("hvac-audit.log");
    let script = r#"
import os, sys, hvac
client = hvac.Client(url=os.environ["CUSTOS_ADDR"], token="root")
client.sys.enable_audit_device("file", path="hvac", description="from hvac",
                               options={"file_path": sys.argv[1]})
devices = client.sys.list_enabled_audit_devices()["data"]
assert devices["hvac/"]["type"] == "file", devices
assert devices["hvac/"]["description"] == "from hvac", devices
digest = client.sys.calculate_hash("hvac", "some input")["data"]["hash"]
assert digest.startswith("hmac-sha256:"), digest
assert client.sys.calculate_hash("hvac", "some input")["data"]["hash"] == digest
client.sys.disable_audit_device("hvac")
assert "hvac/" not in client.sys.list_enabled_audit_devices()["data"]
print("ok")
"#;
    let output = Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(&log)
        .env("CUSTOS_ADDR", &server.address)
        .env("PYTHONWARNINGS", "ignore::DeprecationWarning")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(log.exists());
}

/// Rotation by size, a SIGHUP after an outside tool moved the file (logrotate's way), and a
/// clean stop: every file ends with a closing checkpoint and all of them verify as one chain.
#[tokio::test]
async fn rotated_and_reopened_files_verify_as_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, root) = audited_server(dir.path(), "max_file_size = \"8KiB\"\n").await;
    let root_client = client(&server.address, Some(&root));
    for round in 0..20 {
        let (status, body) = call(
            &root_client,
            Method::POST,
            &format!("secret/data/app{round}"),
            json!({"data": {"value": "x".repeat(200)}}),
            &[],
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let logs = dir.path().join("logs");
    let rotated: Vec<_> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.file_name().unwrap() != "audit.log")
        .collect();
    assert!(rotated.len() >= 2, "{rotated:?}");

    // logrotate moves the file, then signals the server, which continues in a new file.
    std::fs::rename(logs.join("audit.log"), logs.join("moved.log")).unwrap();
    let status = Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut reopened = false;
    for _ in 0..100 {
        if logs.join("audit.log").exists() {
            reopened = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(reopened, "no new audit.log after SIGHUP");
    let (status, body) = call(
        &root_client,
        Method::GET,
        "secret/data/app3",
        Value::Null,
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(server.terminate().success());

    let mut files: Vec<String> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|entry| entry.unwrap().path().display().to_string())
        .collect();
    files.sort();
    let mut args = vec!["verify", "--closed", "--format", "json"];
    args.extend(files.iter().map(String::as_str));
    let output = audit_cli(&args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Removing a middle file breaks the chain, and verify says so.
    let mut without: Vec<&str> = vec!["verify"];
    // A rotated file that is neither the first nor the last of the chain.
    let first_seq = |file: &String| records(Path::new(file))[0]["seq"].as_u64().unwrap();
    let mut by_seq: Vec<&String> = files.iter().collect();
    by_seq.sort_by_key(|file| first_seq(file));
    let middle = by_seq[1];
    without.extend(
        files
            .iter()
            .map(String::as_str)
            .filter(|file| file != middle),
    );
    let output = audit_cli(&without);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("removed"), "{stdout}");
}

#[test]
fn custos_audit_enable_list_and_disable_work() {
    let (dir, server) = support::dev_server();
    let log = dir.path().join("cli-audit.log");
    let custos = |args: &[&str]| {
        let output = Command::new(support::binary())
            .arg("audit")
            .args(args)
            .env("CUSTOS_ADDR", &server.address)
            .env("CUSTOS_TOKEN", "root")
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr),
        )
    };
    let (ok, out) = custos(&[
        "enable",
        "file",
        &format!("file_path={}", log.display()),
        "--path",
        "cli",
        "--description",
        "from the CLI",
    ]);
    assert!(ok, "{out}");
    let (ok, out) = custos(&["list", "--detailed"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("cli/") && out.contains("from the CLI") && out.contains("file_path="),
        "{out}"
    );
    let (ok, out) = custos(&["list", "--format", "json"]);
    assert!(ok, "{out}");
    let devices: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(devices["cli/"]["type"], "file");
    let (ok, out) = custos(&["enable", "file", "not-key-value"]);
    assert!(!ok && out.contains("KEY=VALUE"), "{out}");
    let (ok, out) = custos(&["disable", "cli"]);
    assert!(ok, "{out}");
    let (ok, out) = custos(&["list"]);
    assert!(ok && out.contains("No audit devices"), "{out}");
    // What it wrote while enabled verifies.
    let output = audit_cli(&["verify", log.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}
