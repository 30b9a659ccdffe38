//! TLS and mTLS on the real listener.

use std::process::Command;

use custos_client::ClientError;

use crate::support::{self, TestPki, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_rejects_clients_without_a_valid_certificate() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let config = pki.write_config(dir.path(), true, support::MEMORY_STORAGE);
    let server = TestServer::with_config(&config, &dir.path().join("server.log"));

    // With the client certificate from the trusted CA: served.
    let trusted = pki.client(&server.address, None, true);
    assert!(trusted.seal_status().await.unwrap().sealed);

    // Without a certificate: the handshake fails.
    let anonymous = pki.client(&server.address, None, false);
    assert!(matches!(
        anonymous.seal_status().await.unwrap_err(),
        ClientError::Transport { .. }
    ));

    // With a certificate from another CA: the handshake fails.
    let rogue = custos_client::Client::new(custos_client::ClientConfig {
        address: server.address.clone(),
        ca_cert: Some(pki.path("ca.pem")),
        client_cert: Some(pki.path("rogue.pem")),
        client_key: Some(pki.path("rogue-key.pem")),
        ..Default::default()
    })
    .unwrap();
    assert!(matches!(
        rogue.seal_status().await.unwrap_err(),
        ClientError::Transport { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_do_not_trust_the_server_certificate_refuse_it() {
    let pki = TestPki::new();
    let other = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let config = pki.write_config(dir.path(), false, support::MEMORY_STORAGE);
    let server = TestServer::with_config(&config, &dir.path().join("server.log"));
    let client = other.client(&server.address, None, false);
    assert!(matches!(
        client.seal_status().await.unwrap_err(),
        ClientError::Transport { .. }
    ));
    // Plain HTTP to a TLS port gets nowhere either.
    let plain = custos_client::Client::new(custos_client::ClientConfig {
        address: server.address.replace("https://", "http://"),
        ..Default::default()
    })
    .unwrap();
    assert!(plain.seal_status().await.is_err());
}

#[test]
fn plain_http_needs_an_explicit_opt_in() {
    let dir = tempfile::tempdir().unwrap();
    let config = support::write_config(
        dir.path(),
        "[listener]\naddress = \"127.0.0.1:0\"\n[storage]\nbackend = \"memory\"\n",
    );
    let output = std::process::Command::new(support::binary())
        .args(["server", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("tls_disable"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_disable_serves_plain_http_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let config = support::write_config(
        dir.path(),
        "[listener]\naddress = \"127.0.0.1:0\"\ntls_disable = true\n[storage]\nbackend = \"memory\"\n",
    );
    let log = dir.path().join("server.log");
    let server = TestServer::with_config(&config, &log);
    assert!(server.address.starts_with("http://"));
    let client = custos_client::Client::new(custos_client::ClientConfig {
        address: server.address.clone(),
        ..Default::default()
    })
    .unwrap();
    assert!(client.seal_status().await.unwrap().sealed);
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(log_text.contains("TLS is disabled"), "{log_text}");
}

#[test]
fn tls_negotiates_http2_and_still_serves_http1() {
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("skipped tls_negotiates_http2_and_still_serves_http1: curl not installed");
        return;
    }
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let config = pki.write_config(dir.path(), false, support::MEMORY_STORAGE);
    let server = TestServer::with_config(&config, &dir.path().join("server.log"));
    let url = format!("{}/v1/sys/seal-status", server.address);
    for (flag, expected) in [("--http2", "2 200"), ("--http1.1", "1.1 200")] {
        let output = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_version} %{http_code}",
                flag,
            ])
            .arg("--cacert")
            .arg(pki.path("ca.pem"))
            .arg(&url)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&output.stdout), expected, "{flag}");
    }
}
