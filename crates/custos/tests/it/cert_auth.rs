//! Certificate auth end to end: a TLS listener that asks for (but does not require) client
//! certificates, a role trusting the test CA, a login over mTLS, and the token bound to the
//! certificate it logged in with; and the real `bao` CLI when `CUSTOS_TEST_BAO` names a `bao`
//! binary (otherwise that test says it was skipped).

use std::path::{Path, PathBuf};
use std::process::Command;

use custos_client::ClientError;
use custos_client::http::Method;
use serde_json::{Value, json};

use crate::support::{self, TestPki, TestServer};

/// Sends `body` (if not null) to `/v1/<path>`; answers the status and the JSON answer.
async fn call(
    client: &custos_client::Client,
    method: Method,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let body = (!body.is_null()).then(|| serde_json::to_vec(&body).unwrap());
    let (status, _, bytes) = client.raw(method, path, body).await.unwrap();
    let json = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (status.as_u16(), json)
}

/// A server whose listener trusts client certificates from `pki`'s CA and from `other`'s, and
/// serves clients without one too.
struct CertServer {
    _dir: tempfile::TempDir,
    server: TestServer,
    root_token: String,
}

async fn start(pki: &TestPki, other: &TestPki) -> CertServer {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("client-cas.pem");
    std::fs::write(
        &bundle,
        format!(
            "{}{}",
            std::fs::read_to_string(pki.path("ca.pem")).unwrap(),
            std::fs::read_to_string(other.path("ca.pem")).unwrap()
        ),
    )
    .unwrap();
    let config = support::write_config(
        dir.path(),
        &format!(
            "{}tls_client_ca_file = {bundle:?}\n{}",
            pki.listener_section(false),
            support::MEMORY_STORAGE
        ),
    );
    let server = TestServer::with_config(&config, &dir.path().join("server.log"));
    let anonymous = pki.client(&server.address, None, false);
    let (keys, root_token) = support::init(&anonymous, 1, 1).await;
    support::unseal(&anonymous, &keys).await;
    CertServer {
        _dir: dir,
        server,
        root_token,
    }
}

/// A client trusting `pki`'s server certificate that presents `cert`/`key` (from `dir`).
fn client_with(
    pki: &TestPki,
    address: &str,
    token: Option<&str>,
    dir: &Path,
    cert: &str,
    key: &str,
) -> custos_client::Client {
    custos_client::Client::new(custos_client::ClientConfig {
        address: address.to_owned(),
        token: token.map(str::to_owned),
        ca_cert: Some(pki.path("ca.pem")),
        client_cert: Some(dir.join(cert)),
        client_key: Some(dir.join(key)),
        ..custos_client::ClientConfig::default()
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_login_issues_a_token_bound_to_that_certificate() {
    let pki = TestPki::new();
    let other = TestPki::new();
    let CertServer {
        _dir,
        server,
        root_token,
    } = start(&pki, &other).await;
    let address = server.address.as_str();
    let root = pki.client(address, Some(&root_token), false);

    let (status, body) = call(
        &root,
        Method::POST,
        "sys/auth/cert",
        json!({"type": "cert"}),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let ca = std::fs::read_to_string(pki.path("ca.pem")).unwrap();
    let (status, body) = call(
        &root,
        Method::POST,
        "auth/cert/certs/web",
        json!({
            "certificate": ca,
            "allowed_common_names": ["custos client"],
            "token_policies": ["web"],
            "token_ttl": "1h",
        }),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = call(
        &root,
        Method::POST,
        "auth/cert/certs/strict",
        json!({"certificate": ca, "allowed_common_names": ["someone else"]}),
    )
    .await;
    assert_eq!(status, 204, "{body}");

    // Without a certificate the connection is served, but there is nothing to log in with.
    let anonymous = pki.client(address, None, false);
    let (status, body) = call(&anonymous, Method::POST, "auth/cert/login", json!({})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"], json!(["no client certificate found"]));

    // The trusted CA's certificate, against a role whose names it does not match.
    let holder = pki.client(address, None, true);
    let (status, body) = call(
        &holder,
        Method::POST,
        "auth/cert/login",
        json!({"name": "strict"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["errors"],
        json!(["no chain matching all constraints could be found for this login certificate"])
    );

    // ...and against every role: `web` admits it.
    let (status, login) = call(&holder, Method::POST, "auth/cert/login", json!({})).await;
    assert_eq!(status, 200, "{login}");
    let auth = &login["auth"];
    assert_eq!(auth["policies"], json!(["default", "web"]), "{login}");
    assert_eq!(auth["metadata"]["cert_name"], "web", "{login}");
    assert_eq!(auth["metadata"]["common_name"], "custos client", "{login}");
    assert_eq!(auth["lease_duration"], 3600, "{login}");
    let token = auth["client_token"].as_str().unwrap().to_owned();

    // The token works on a connection presenting the same certificate...
    let bound = pki.client(address, Some(&token), true);
    let (status, lookup) = call(&bound, Method::GET, "auth/token/lookup-self", Value::Null).await;
    assert_eq!(status, 200, "{lookup}");
    assert_eq!(lookup["data"]["display_name"], "cert-web", "{lookup}");
    assert_eq!(lookup["data"]["path"], "auth/cert/login", "{lookup}");
    // It renews there while the role keeps its policies, as in Vault.
    let (status, renewed) = call(&bound, Method::POST, "auth/token/renew-self", json!({})).await;
    assert_eq!(status, 200, "{renewed}");
    assert_eq!(renewed["auth"]["lease_duration"], 3600, "{renewed}");
    // ...and on no other: without a certificate, or with another CA's (which the listener
    // accepts, since its bundle holds that CA too).
    let bare = pki.client(address, Some(&token), false);
    let stranger = client_with(
        &pki,
        address,
        Some(&token),
        other.dir.path(),
        "client.pem",
        "client-key.pem",
    );
    for (what, client) in [
        ("no certificate", &bare),
        ("another certificate", &stranger),
    ] {
        let (status, body) = call(client, Method::GET, "auth/token/lookup-self", Value::Null).await;
        assert_eq!(status, 403, "{what}: {body}");
        assert_eq!(body["errors"], json!(["permission denied"]), "{what}");
    }

    for (what, client) in [
        ("no certificate", &bare),
        ("another certificate", &stranger),
    ] {
        let (status, body) = call(client, Method::POST, "auth/token/renew-self", json!({})).await;
        assert_eq!(status, 403, "{what}: {body}");
    }
    // Once the role's policies change, the token is no longer renewed.
    let (status, body) = call(
        &root,
        Method::POST,
        "auth/cert/certs/web",
        json!({"token_policies": ["web", "admin"]}),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = call(&bound, Method::POST, "auth/token/renew-self", json!({})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["errors"],
        json!(["policies have changed, not renewing"])
    );

    // A certificate from a CA the listener trusts but no role does cannot log in.
    let stranger = client_with(
        &pki,
        address,
        None,
        other.dir.path(),
        "client.pem",
        "client-key.pem",
    );
    let (status, body) = call(&stranger, Method::POST, "auth/cert/login", json!({})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["errors"],
        json!(["invalid certificate or no client certificate supplied"])
    );
    // One from a CA the listener does not trust does not even get a connection.
    let rogue = client_with(
        &pki,
        address,
        None,
        pki.dir.path(),
        "rogue.pem",
        "rogue-key.pem",
    );
    let error = rogue
        .raw(Method::POST, "auth/cert/login", Some(b"{}".to_vec()))
        .await
        .unwrap_err();
    assert!(matches!(error, ClientError::Transport { .. }), "{error}");
}

fn bao(binary: &str, address: &str, token: Option<&str>, args: &[String]) -> std::process::Output {
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

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|arg| (*arg).to_owned()).collect()
}

fn flag(name: &str, path: PathBuf) -> String {
    format!("-{name}={}", path.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bao_cli_logs_in_with_a_client_certificate() {
    let Ok(binary) = std::env::var("CUSTOS_TEST_BAO") else {
        eprintln!("skipped the_bao_cli_logs_in_with_a_client_certificate: CUSTOS_TEST_BAO not set");
        return;
    };
    let pki = TestPki::new();
    let other = TestPki::new();
    let CertServer {
        _dir,
        server,
        root_token,
    } = start(&pki, &other).await;
    let address = server.address.clone();
    let ca_flag = flag("ca-cert", pki.path("ca.pem"));
    let root = Some(root_token.as_str());
    // The CLI blocks this runtime's thread; the server is another process, so nothing waits.
    let run = |token: Option<&str>, list: Vec<String>| bao(&binary, &address, token, &list);

    let output = run(root, args(&["auth", "enable", &ca_flag, "cert"]));
    assert!(output.status.success(), "{output:?}");
    let output = run(
        root,
        args(&[
            "write",
            &ca_flag,
            "auth/cert/certs/web",
            &format!("certificate=@{}", pki.path("ca.pem").display()),
            "allowed_common_names=custos client",
            "token_policies=web",
        ]),
    );
    assert!(output.status.success(), "{output:?}");

    let client_cert = flag("client-cert", pki.path("client.pem"));
    let client_key = flag("client-key", pki.path("client-key.pem"));
    let output = run(
        None,
        args(&[
            "login",
            "-method=cert",
            "-no-store",
            "-format=json",
            &ca_flag,
            &client_cert,
            &client_key,
            "name=web",
        ]),
    );
    assert!(output.status.success(), "{output:?}");
    let login: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        login["auth"]["policies"],
        json!(["default", "web"]),
        "{login}"
    );
    assert_eq!(login["auth"]["metadata"]["cert_name"], "web", "{login}");
    let token = login["auth"]["client_token"].as_str().unwrap().to_owned();

    // The CLI with the same certificate may use the token; without it, it may not.
    let output = run(
        Some(&token),
        args(&[
            "token",
            "lookup",
            "-format=json",
            &ca_flag,
            &client_cert,
            &client_key,
        ]),
    );
    assert!(output.status.success(), "{output:?}");
    let lookup: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(lookup["data"]["path"], "auth/cert/login", "{lookup}");
    let output = run(Some(&token), args(&["token", "lookup", &ca_flag]));
    assert!(!output.status.success(), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("permission denied"),
        "{output:?}"
    );

    // Another CA's certificate cannot log in.
    let output = run(
        None,
        args(&[
            "login",
            "-method=cert",
            "-no-store",
            &ca_flag,
            &flag("client-cert", other.path("client.pem")),
            &flag("client-key", other.path("client-key.pem")),
        ]),
    );
    assert!(!output.status.success(), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("invalid certificate or no client certificate supplied"),
        "{output:?}"
    );
}
