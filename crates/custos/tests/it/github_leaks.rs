//! `POST /v1/sys/leaks/github` on the real binary over TLS, with a GitHub key from the
//! configuration file: a wrongly signed report is refused and revokes nothing; a signed one
//! revokes our live token and labels a foreign string a false positive, in GitHub's format.

use base64::Engine as _;
use custos_api::sys::GithubLeakResult;
use custos_client::http::Method;
use rcgen::SigningKey as _;
use serde_json::{Value, json};

use crate::support::{MEMORY_STORAGE, TestPki, TestServer, init};

const KEY_ID: &str = "90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a";

async fn report(client: &custos_client::Client, signature: &str, body: &[u8]) -> (u16, Value) {
    let (status, _, answer) = client
        .raw_with_headers(
            Method::POST,
            "sys/leaks/github",
            &[
                ("Github-Public-Key-Identifier", KEY_ID),
                ("Github-Public-Key-Signature", signature),
            ],
            Some(body.to_vec()),
        )
        .await
        .unwrap();
    (status.as_u16(), serde_json::from_slice(&answer).unwrap())
}

async fn lookup_self(client: &custos_client::Client) -> u16 {
    let (status, _, _) = client
        .raw(Method::GET, "auth/token/lookup-self", None)
        .await
        .unwrap();
    status.as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_report_revokes_only_when_signed_by_a_configured_key() {
    let github = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let sign =
        |body: &[u8]| base64::engine::general_purpose::STANDARD.encode(github.sign(body).unwrap());
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let config = pki.write_config(
        dir.path(),
        false,
        &format!(
            "{MEMORY_STORAGE}[[leaks.github_keys]]\nkey_identifier = \"{KEY_ID}\"\nkey = \"\"\"\n{}\"\"\"\n",
            github.public_key_pem()
        ),
    );
    let log = dir.path().join("server.log");
    let server = TestServer::with_config(&config, &log);
    let (keys, root) = init(&pki.client(&server.address, None, false), 1, 1).await;
    let admin = pki.unsealed_client(&server.address, &keys, &root).await;
    let (status, _, created) = admin
        .raw(
            Method::POST,
            "auth/token/create",
            Some(serde_json::to_vec(&json!({"policies": ["default"]})).unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(status.as_u16(), 200);
    let created: Value = serde_json::from_slice(&created).unwrap();
    let token = created["auth"]["client_token"].as_str().unwrap().to_owned();
    let holder = pki.client(&server.address, Some(&token), false);
    assert_eq!(lookup_self(&holder).await, 200);

    let anonymous = pki.client(&server.address, None, false);
    let body = serde_json::to_vec(&json!([
        {"token": token, "type": "custos_token", "url": "https://github.com/acme/app/blob/0123abc/.env", "source": "content"},
        {"token": "not_a_custos_credential", "type": "custos_token", "url": "https://github.com/acme/app"},
    ]))
    .unwrap();

    // Signed over other bytes: refused, nothing revoked.
    let (status, answer) = report(&anonymous, &sign(b"[]"), &body).await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(
        answer,
        json!({"errors": ["Github-Public-Key-Signature does not verify for this body and key"]})
    );
    assert_eq!(lookup_self(&holder).await, 200, "still live");

    // Signed by the configured key: our token is revoked, the other string is not ours.
    let (status, answer) = report(&anonymous, &sign(&body), &body).await;
    assert_eq!(status, 200, "{answer}");
    let results: Vec<GithubLeakResult> = serde_json::from_value(answer.clone()).unwrap();
    assert_eq!(
        results,
        [
            GithubLeakResult {
                token_hash: custos_crypto::sha256_hex(token.as_bytes()),
                token_type: "custos_token".into(),
                label: "true_positive".into(),
            },
            GithubLeakResult {
                token_hash: custos_crypto::sha256_hex(b"not_a_custos_credential"),
                token_type: "custos_token".into(),
                label: "false_positive".into(),
            },
        ]
    );
    assert!(!answer.to_string().contains(&token), "never echoed");
    assert_eq!(lookup_self(&holder).await, 403, "revoked");

    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("leaked credential revoked"), "{log}");
    assert!(!log.contains(&token), "{log}");
}

#[test]
fn a_bad_github_key_stops_the_server_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::support::write_config(
        dir.path(),
        &format!(
            "[listener]\naddress = \"127.0.0.1:0\"\ntls_disable = true\n{MEMORY_STORAGE}[[leaks.github_keys]]\nkey_identifier = \"{KEY_ID}\"\nkey = \"\"\"\n-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n\"\"\"\n"
        ),
    );
    let output = std::process::Command::new(crate::support::binary())
        .args(["server", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "[[leaks.github_keys]] table 1: key \"{KEY_ID}\" is not a P-256 public key"
        )),
        "{stderr}"
    );
}
