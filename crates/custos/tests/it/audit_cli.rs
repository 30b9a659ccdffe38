//! `custos audit verify|query` end to end: files written by a real file device, then damaged;
//! the server check against a stand-in for `sys/audit-verify`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use custos_audit::{FileDevice, FileOptions, Signer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn custos(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_custos"))
        .args(args)
        .env_remove("CUSTOS_ADDR")
        .env_remove("VAULT_ADDR")
        .env("HOME", "/nonexistent")
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn signer() -> Signer {
    Arc::new(|payload: &[u8]| format!("hmac-sha256:{}", custos_crypto::sha256_hex(payload)))
}

/// Writes 60 records through a device that rotates at 4 KiB; returns every file, newest first.
async fn write_log(directory: &Path) -> Vec<PathBuf> {
    let path = directory.join("audit.log");
    let options = FileOptions::from_options(
        "file/",
        &BTreeMap::from([
            ("file_path".to_owned(), path.display().to_string()),
            ("max_file_size".to_owned(), "4KiB".to_owned()),
            ("checkpoint_records".to_owned(), "10".to_owned()),
        ]),
    )
    .unwrap();
    let device = FileDevice::open("file/", options, Some(signer())).unwrap();
    for n in 0..60 {
        let outcome = if n % 7 == 0 { "permission denied" } else { "" };
        let record = format!(
            r#"{{"time":"2026-11-28T10:{:02}:00Z","type":"response","auth":{{"accessor":"hmac-sha256:{}","display_name":"token-{n}"}},"request":{{"operation":"read","path":"secret/data/{n}","remote_address":"10.0.0.{}"}},"error":"{outcome}"}}"#,
            n % 60,
            n % 2,
            n % 3
        );
        device.append(record.into_bytes()).await.unwrap();
    }
    device.close().await;
    let mut files: Vec<PathBuf> = std::fs::read_dir(directory)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files.reverse();
    files
}

fn arguments<'a>(head: &[&'a str], files: &'a [PathBuf]) -> Vec<&'a str> {
    let mut all = head.to_vec();
    all.extend(files.iter().map(|path| path.to_str().unwrap()));
    all
}

#[tokio::test]
async fn verify_passes_an_intact_log_and_names_damage() {
    let directory = tempfile::tempdir().unwrap();
    let files = write_log(directory.path()).await;
    assert!(files.len() >= 3, "{files:?}");

    let output = custos(&arguments(&["audit", "verify", "--closed"], &files));
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert!(stdout(&output).contains("intact:"), "{}", stdout(&output));

    let output = custos(&arguments(&["audit", "verify", "--format", "json"], &files));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["intact"], true);
    assert_eq!(report["first_seq"], 1);

    // One byte changed in a rotated file.
    let rotated = files
        .iter()
        .find(|path| !path.ends_with("audit.log"))
        .unwrap();
    let mut bytes = std::fs::read(rotated).unwrap();
    let at = bytes
        .windows(4)
        .position(|window| window == b"read")
        .unwrap();
    bytes[at] = b'R';
    std::fs::write(rotated, &bytes).unwrap();
    let output = custos(&arguments(&["audit", "verify"], &files));
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output).contains("TAMPERING: altered:"),
        "{}",
        stdout(&output)
    );
    let output = custos(&arguments(&["audit", "query", "--format", "json"], &files));
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("altered"));

    // A missing file is an error, not tampering.
    let output = custos(&["audit", "verify", "/nonexistent/audit.log"]);
    assert_eq!(output.status.code(), Some(2));
}

#[tokio::test]
async fn query_filters_records() {
    let directory = tempfile::tempdir().unwrap();
    let files = write_log(directory.path()).await;
    let output = custos(&arguments(
        &[
            "audit",
            "query",
            "--outcome",
            "error",
            "--remote-address",
            "10.0.0.0",
            "--format",
            "json",
        ],
        &files,
    ));
    assert_eq!(output.status.code(), Some(0));
    let paths: Vec<String> = stdout(&output)
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).unwrap()["request"]["path"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    // n % 7 == 0 and n % 3 == 0: 0, 21, 42.
    assert_eq!(paths, ["secret/data/0", "secret/data/21", "secret/data/42"]);

    let output = custos(&arguments(
        &[
            "audit",
            "query",
            "--path-prefix",
            "secret/data/5",
            "--accessor",
            "hmac-sha256:1",
        ],
        &files,
    ));
    let table = stdout(&output);
    // The odd records under secret/data/5: 5, 51, 53, 55, 57, 59.
    assert_eq!(table.lines().count(), 6, "{table}");
    assert!(
        table.contains("token-51") && !table.contains("token-50"),
        "{table}"
    );

    let output = custos(&arguments(
        &["audit", "query", "--type", "checkpoint", "--format", "json"],
        &files,
    ));
    assert!(stdout(&output).lines().count() >= 6);
}

/// Answers one request to `sys/audit-verify/file` with `answer(body)`.
async fn stand_in(
    answer: impl Fn(serde_json::Value) -> serde_json::Value + Send + 'static,
) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut request = Vec::new();
            let mut buffer = [0u8; 65536];
            let body = loop {
                let read = stream.read(&mut buffer).await.unwrap();
                if read == 0 {
                    return;
                }
                request.extend_from_slice(&buffer[..read]);
                let text = String::from_utf8_lossy(&request).into_owned();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text[..end]
                        .lines()
                        .find_map(|line| {
                            line.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        assert!(
                            text.starts_with("POST /v1/sys/audit-verify/file "),
                            "{text}"
                        );
                        break serde_json::from_slice(&request[end + 4..end + 4 + length]).unwrap();
                    }
                }
            };
            let reply = answer(body).to_string();
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                reply.len()
            );
            stream.write_all(response.as_bytes()).await.unwrap();
        }
    });
    address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_checks_signatures_and_the_head() {
    let directory = tempfile::tempdir().unwrap();
    let files = write_log(directory.path()).await;
    let text = std::fs::read_to_string(&files[0]).unwrap();
    let last = text.lines().last().unwrap();
    let last_seq = serde_json::from_str::<serde_json::Value>(last).unwrap()["seq"]
        .as_u64()
        .unwrap();
    let last_hash = format!("sha256:{}", custos_crypto::sha256_hex(last.as_bytes()));

    let check = |head_seq: u64, head_hash: String, forged: bool| async move {
        stand_in(move |body| {
            let valid: Vec<bool> = body["checkpoints"]
                .as_array()
                .unwrap()
                .iter()
                .enumerate()
                .map(|(index, checkpoint)| {
                    let payload = checkpoint["payload"].as_str().unwrap();
                    let expected = format!("hmac-sha256:{}", custos_crypto::sha256_hex(payload.as_bytes()));
                    checkpoint["signature"] == expected.as_str() && !(forged && index == 2)
                })
                .collect();
            serde_json::json!({"data": {"valid": valid, "head": {"seq": head_seq, "hash": head_hash}}})
        })
        .await
    };
    let run = |address: String, extra: &'static [&'static str]| {
        let files = files.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let mut head = vec![
                    "audit",
                    "verify",
                    "--server",
                    "--token",
                    "t",
                    "--address",
                    address.as_str(),
                ];
                head.extend_from_slice(extra);
                custos(&arguments(&head, &files))
            })
            .await
            .unwrap()
        }
    };

    let output = run(check(last_seq, last_hash.clone(), false).await, &[]).await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        stdout(&output),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout(&output).contains("checkpoint signatures checked"),
        "{}",
        stdout(&output)
    );

    let output = run(check(last_seq, last_hash.clone(), true).await, &[]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output).contains("TAMPERING: bad signature"),
        "{}",
        stdout(&output)
    );

    let output = run(check(last_seq + 5, last_hash.clone(), false).await, &[]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output).contains("TAMPERING: truncated"),
        "{}",
        stdout(&output)
    );
    let output = run(
        check(last_seq + 5, last_hash.clone(), false).await,
        &["--live"],
    )
    .await;
    assert_eq!(output.status.code(), Some(0));
    assert!(
        stdout(&output).contains("5 more records since"),
        "{}",
        stdout(&output)
    );

    let output = run(check(last_seq, "sha256:00".to_owned(), false).await, &[]).await;
    assert!(
        stdout(&output).contains("TAMPERING: altered"),
        "{}",
        stdout(&output)
    );
}
