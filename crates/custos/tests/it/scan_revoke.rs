//! `custos scan --revoke-with`: custos credentials found in files are revoked on a live server.

use std::process::{Command, Output};

use custos_client::http::Method;
use serde_json::{Value, json};

use crate::kv_cli::dev_server;

fn root_client(address: &str, token: Option<&str>) -> custos_client::Client {
    custos_client::Client::new(custos_client::ClientConfig {
        address: address.to_owned(),
        token: token.map(str::to_owned),
        ..custos_client::ClientConfig::default()
    })
    .unwrap()
}

/// A wrapping token (a live `custos_token_…` credential) from the dev server. The client has
/// no way to set `X-Vault-Wrap-TTL`, so this speaks HTTP/1.1 itself.
fn wrapping_token(address: &str) -> String {
    use std::io::{Read, Write};
    let host = address.trim_start_matches("http://");
    let body = r#"{"password":"hunter2"}"#;
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    write!(
        stream,
        "POST /v1/sys/wrapping/wrap HTTP/1.1\r\nHost: {host}\r\nX-Vault-Token: root\r\nX-Vault-Wrap-TTL: 300\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let json = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
    let body: Value = serde_json::from_str(json).unwrap();
    body["wrap_info"]["token"].as_str().unwrap().to_owned()
}

/// `sys/wrapping/lookup` (unauthenticated): 200 while the wrapping token is live.
async fn lookup_status(address: &str, token: &str) -> u16 {
    let client = root_client(address, None);
    let (status, _, _) = client
        .raw(
            Method::POST,
            "sys/wrapping/lookup",
            Some(serde_json::to_vec(&json!({ "token": token })).unwrap()),
        )
        .await
        .unwrap();
    status.as_u16()
}

fn scan(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_custos"))
        .current_dir(dir)
        .args(["scan", "--no-progress", "--format", "json"])
        .args(args)
        .env_remove("CUSTOS_CACERT")
        .env_remove("VAULT_CACERT")
        .output()
        .unwrap()
}

#[tokio::test]
async fn found_custos_credentials_are_revoked_on_the_server() {
    let (dir, server) = dev_server();
    let live = wrapping_token(&server.address);
    let stranger = custos_core::ApiKey::from_random(custos_core::CUSTOS_TOKEN_PREFIX, &[5; 30])
        .unwrap()
        .as_str()
        .to_owned();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    std::fs::write(
        repo.join("deploy.env"),
        format!("WRAPPED={live}\nOTHER_TOKEN={stranger}\nAGAIN={live}\n"),
    )
    .unwrap();
    assert_eq!(lookup_status(&server.address, &live).await, 200);

    let output = scan(&repo, &["--revoke-with", &server.address, "."]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Findings remain findings: exit 1, and all three lines are reported.
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 3);
    assert!(
        stderr.contains("custos_token at deploy.env:1: revoked (wrapping_token)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("custos_token at deploy.env:2: not live on that server"),
        "{stderr}"
    );
    assert!(
        stderr.contains("revoked 1 of 2 custos credential(s) found"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(&live),
        "stderr must not show the credential: {stderr}"
    );
    assert_eq!(lookup_status(&server.address, &live).await, 400);
    // The root token was not among the findings and still works.
    let (status, _, _) = root_client(&server.address, Some("root"))
        .raw(Method::GET, "auth/token/lookup-self", None)
        .await
        .unwrap();
    assert_eq!(status.as_u16(), 200);

    // A second run finds the same credentials and revokes nothing more.
    let output = scan(&repo, &["--revoke-with", &server.address, "."]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("revoked 0 of 2 custos credential(s) found"),
        "{stderr}"
    );
}

#[test]
fn an_unreachable_server_is_an_error_after_the_findings_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let token = custos_core::ApiKey::from_random(custos_core::CUSTOS_TOKEN_PREFIX, &[6; 30])
        .unwrap()
        .as_str()
        .to_owned();
    std::fs::write(dir.path().join("a.env"), format!("TOKEN={token}\n")).unwrap();
    // A port nothing listens on: bind, note the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = scan(
        dir.path(),
        &["--revoke-with", &format!("http://127.0.0.1:{port}"), "."],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 1);
    assert!(
        stderr.contains("reporting leaked credentials to"),
        "{stderr}"
    );
}

#[test]
fn nothing_to_revoke_needs_no_server() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), "nothing here\n").unwrap();
    let output = scan(dir.path(), &["--revoke-with", "http://127.0.0.1:9", "."]);
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stderr).contains("nothing to revoke"));
}

#[tokio::test]
async fn a_credential_deleted_from_git_long_ago_is_still_revoked() {
    let (dir, server) = dev_server();
    let live = wrapping_token(&server.address);
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    crate::scan::git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("ci.env"), format!("TOKEN={live}\n")).unwrap();
    crate::scan::git(&repo, &["add", "ci.env"]);
    crate::scan::git(&repo, &["commit", "-q", "-m", "add ci token"]);
    std::fs::remove_file(repo.join("ci.env")).unwrap();
    crate::scan::git(&repo, &["commit", "-q", "-a", "-m", "oops, remove it"]);

    // The working tree is clean; only the history holds the credential.
    let output = scan(&repo, &["--revoke-with", &server.address, "."]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(lookup_status(&server.address, &live).await, 200);

    let output = scan(&repo, &["--git", "--revoke-with", &server.address, "."]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("custos_token at ci.env:1 (commit ")
            && stderr.contains("revoked (wrapping_token)"),
        "{stderr}"
    );
    assert_eq!(lookup_status(&server.address, &live).await, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaked_root_token_is_reported_over_tls_but_not_revoked() {
    let pki = crate::support::TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let config = pki.write_config(dir.path(), false, crate::support::MEMORY_STORAGE);
    let log = dir.path().join("server.log");
    let server = crate::support::TestServer::with_config(&config, &log);
    let (keys, root) = crate::support::init(&pki.client(&server.address, None, false), 1, 1).await;
    let client = pki.unsealed_client(&server.address, &keys, &root).await;
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    std::fs::write(repo.join("notes.md"), format!("root token: {root}\n")).unwrap();

    // Without the CA the server's certificate is not trusted: an error, and nothing reported.
    let output = scan(&repo, &["--revoke-with", &server.address, "."]);
    assert_eq!(output.status.code(), Some(2));

    let ca = pki.path("ca.pem");
    let output = scan(
        &repo,
        &[
            "--revoke-with",
            &server.address,
            "--ca-cert",
            ca.to_str().unwrap(),
            ".",
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "custos_token at notes.md:1: live on that server and NOT revoked (token): root token: revoke it with a token"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("revoked 0 of 1 custos credential(s) found"),
        "{stderr}"
    );

    // An anonymous report straight to the endpoint says the same, and the root token still
    // works everywhere, `sys/seal` included; lookup-self shows it marked leaked.
    let anonymous = pki.client(&server.address, None, false);
    let (status, _, body) = anonymous
        .raw(
            Method::POST,
            "sys/leaks",
            Some(serde_json::to_vec(&json!({"leaks": [{"token": root, "url": "x\ny"}]})).unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(status.as_u16(), 200);
    let answer: Value = serde_json::from_slice(&body).unwrap();
    let result = &answer["data"]["results"][0];
    assert_eq!(result["status"], "not_revoked", "{answer}");
    assert_eq!(result["reason"], "root token: revoke it with a token");
    assert_eq!(answer["data"]["revoked"], 0);
    let (status, _, body) = client
        .raw(Method::GET, "auth/token/lookup-self", None)
        .await
        .unwrap();
    assert_eq!(status.as_u16(), 200);
    let lookup: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(lookup["data"]["leaked"], true, "{lookup}");
    assert!(lookup["data"]["leaked_at"].is_string(), "{lookup}");
    client.seal().await.unwrap();
    assert!(anonymous.seal_status().await.unwrap().sealed);

    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        log.contains("root token reported as leaked: NOT revoked"),
        "{log}"
    );
    assert!(!log.contains(&root), "the log must not hold the token");
    assert!(
        !log.contains("x\ny"),
        "untrusted fields are escaped in the log"
    );
}

#[tokio::test]
async fn a_found_api_key_is_revoked_on_the_server() {
    let (dir, server) = dev_server();
    let client = root_client(&server.address, Some("root"));
    crate::apikeys::enable(&client).await;
    crate::apikeys::keyring(&client, "acme", "acme_live").await;
    let (key, _) = crate::apikeys::create_key(&client, "acme", json!({"name": "ci"})).await;
    assert_eq!(
        crate::apikeys::code(&client, &key).await.as_deref(),
        Some("VALID")
    );
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    std::fs::write(repo.join("service.env"), format!("ACME_API_KEY={key}\n")).unwrap();

    let output = scan(&repo, &["--revoke-with", &server.address, "."]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("at service.env:1: revoked (api_key)"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(&key),
        "stderr must not show the key: {stderr}"
    );
    assert_eq!(
        crate::apikeys::code(&client, &key).await.as_deref(),
        Some("NOT_FOUND")
    );
}
