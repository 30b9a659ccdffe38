//! The token store on the real binary: create, look up, renew and revoke a tree over HTTP; and
//! the real OpenBao CLI's `bao token create/lookup/renew/revoke` when `CUSTOS_TEST_BAO` names a
//! `bao` binary (otherwise that test says it was skipped).

use std::process::Command;

use custos_client::http::Method;
use serde_json::{Value, json};

use crate::support;

fn client(address: &str, token: &str) -> custos_client::Client {
    custos_client::Client::new(custos_client::ClientConfig {
        address: address.to_owned(),
        token: Some(token.to_owned()),
        ..custos_client::ClientConfig::default()
    })
    .unwrap()
}

/// Sends `body` (if not null) to `/v1/<path>` and returns the status and the JSON answer
/// (`null` for an empty one).
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

#[tokio::test]
async fn tokens_are_created_looked_up_renewed_and_revoked_as_a_tree() {
    let (_dir, server) = support::dev_server();
    let root = client(&server.address, "root");

    let (status, body) = call(
        &root,
        Method::POST,
        "auth/token/create",
        json!({"policies": ["app"], "ttl": "1h", "display_name": "web"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let auth = &body["auth"];
    let app_token = auth["client_token"].as_str().unwrap().to_owned();
    assert!(app_token.starts_with("custos_token_"));
    assert_eq!(auth["policies"], json!(["app", "default"]));
    assert_eq!(auth["token_policies"], json!(["app", "default"]));
    assert_eq!(auth["lease_duration"], 3600);
    assert_eq!(auth["renewable"], true);
    assert_eq!(auth["orphan"], false);
    assert_eq!(auth["token_type"], "service");
    assert_eq!(auth["metadata"], Value::Null);
    assert_eq!(body["data"], Value::Null);

    // The token looks itself up (Vault's `default` policy allows it).
    let (status, body) = call(
        &client(&server.address, &app_token),
        Method::GET,
        "auth/token/lookup-self",
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["id"], app_token.as_str());
    assert_eq!(body["data"]["display_name"], "token-web");
    assert_eq!(body["data"]["path"], "auth/token/create");
    assert_eq!(body["data"]["creation_ttl"], 3600);
    // ...but it may not look up others while only root passes the authoriser.
    let (status, _) = call(
        &client(&server.address, &app_token),
        Method::POST,
        "auth/token/lookup",
        json!({"token": "root"}),
    )
    .await;
    assert_eq!(status, 403);

    // A tree: an expiring root-policy token with two children and a grandchild.
    let create = |token: String, body: Value| {
        let address = server.address.clone();
        async move {
            let (status, answer) = call(
                &client(&address, &token),
                Method::POST,
                "auth/token/create",
                body,
            )
            .await;
            assert_eq!(status, 200, "{answer}");
            (
                answer["auth"]["client_token"].as_str().unwrap().to_owned(),
                answer["auth"]["accessor"].as_str().unwrap().to_owned(),
            )
        }
    };
    let (top, top_accessor) = create("root".into(), json!({"ttl": "2h"})).await;
    let (child, _) = create(top.clone(), json!({"ttl": "1h"})).await;
    let (sibling, _) = create(top.clone(), json!({"policies": ["app"]})).await;
    // (An expiring root-policy token must give its children a TTL: Vault refuses otherwise.)
    let (grandchild, _) = create(child.clone(), json!({"ttl": "10m"})).await;

    // Renew: by token, and the child is capped by nothing here (1h < its parent's 2h).
    let (status, body) = call(
        &root,
        Method::POST,
        "auth/token/renew",
        json!({"token": child, "increment": "30m"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["auth"]["lease_duration"], 1800);
    assert_eq!(body["auth"]["client_token"], child.as_str());

    let (status, body) = call(
        &root,
        Method::POST,
        "auth/token/lookup-accessor",
        json!({"accessor": top_accessor}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["id"], "");
    assert_eq!(body["data"]["policies"], json!(["root"]));

    let (status, body) = call(
        &root,
        Method::from_bytes(b"LIST").unwrap(),
        "auth/token/accessors",
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["data"]["keys"]
            .as_array()
            .unwrap()
            .contains(&json!(top_accessor))
    );

    // Revoking the top revokes the subtree, and nothing else.
    let (status, _) = call(
        &root,
        Method::POST,
        "auth/token/revoke",
        json!({"token": top}),
    )
    .await;
    assert_eq!(status, 204);
    for token in [&top, &child, &sibling, &grandchild] {
        let (status, _) = call(
            &client(&server.address, token),
            Method::GET,
            "auth/token/lookup-self",
            Value::Null,
        )
        .await;
        assert_eq!(status, 403);
    }
    let (status, body) = call(
        &root,
        Method::POST,
        "auth/token/lookup",
        json!({"token": app_token}),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Bad input is a 400 with a message.
    let (status, body) = call(
        &root,
        Method::POST,
        "auth/token/create",
        json!({"ttl": "soon"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["errors"][0].as_str().unwrap().contains("ttl"),
        "{body}"
    );

    // A CIDR-bound token works from its address only: this test connects from 127.0.0.1.
    let (bound_here, _) = create(
        "root".into(),
        json!({"policies": ["app"], "bound_cidrs": ["127.0.0.0/8"]}),
    )
    .await;
    let (bound_away, _) = create(
        "root".into(),
        json!({"policies": ["app"], "bound_cidrs": ["10.0.0.0/8"]}),
    )
    .await;
    for (token, expected) in [(bound_here, 200), (bound_away, 403)] {
        let (status, _) = call(
            &client(&server.address, &token),
            Method::GET,
            "auth/token/lookup-self",
            Value::Null,
        )
        .await;
        assert_eq!(status, expected);
    }
}

fn bao(binary: &str, address: &str, token: &str, args: &[&str]) -> std::process::Output {
    Command::new(binary)
        .args(args)
        .env("VAULT_ADDR", address)
        .env("BAO_ADDR", address)
        .env("VAULT_TOKEN", token)
        .env("BAO_TOKEN", token)
        .env("HOME", std::env::temp_dir())
        .output()
        .unwrap()
}

fn json_of(output: &std::process::Output) -> Value {
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn bao_cli_creates_looks_up_renews_and_revokes_tokens() {
    let Ok(binary) = std::env::var("CUSTOS_TEST_BAO") else {
        eprintln!(
            "skipped bao_cli_creates_looks_up_renews_and_revokes_tokens: CUSTOS_TEST_BAO not set"
        );
        return;
    };
    let (_dir, server) = support::dev_server();
    let address = server.address.as_str();

    let created = json_of(&bao(
        &binary,
        address,
        "root",
        &[
            "token",
            "create",
            "-format=json",
            "-policy=app",
            "-ttl=1h",
            "-metadata=team=web",
        ],
    ));
    let token = created["auth"]["client_token"].as_str().unwrap().to_owned();
    let accessor = created["auth"]["accessor"].as_str().unwrap().to_owned();
    assert_eq!(created["auth"]["policies"], json!(["app", "default"]));
    assert_eq!(created["auth"]["metadata"], json!({"team": "web"}));

    let looked_up = json_of(&bao(
        &binary,
        address,
        "root",
        &["token", "lookup", "-format=json", &token],
    ));
    assert_eq!(looked_up["data"]["accessor"], accessor.as_str());
    assert_eq!(looked_up["data"]["meta"], json!({"team": "web"}));
    let by_accessor = json_of(&bao(
        &binary,
        address,
        "root",
        &["token", "lookup", "-format=json", "-accessor", &accessor],
    ));
    assert_eq!(by_accessor["data"]["policies"], json!(["app", "default"]));
    // The token itself, with no argument.
    let own = json_of(&bao(
        &binary,
        address,
        &token,
        &["token", "lookup", "-format=json"],
    ));
    assert_eq!(own["data"]["id"], token.as_str());

    let renewed = json_of(&bao(
        &binary,
        address,
        "root",
        &["token", "renew", "-format=json", "-increment=30m", &token],
    ));
    assert_eq!(renewed["auth"]["lease_duration"], 1800);

    let revoked = bao(&binary, address, "root", &["token", "revoke", &token]);
    assert!(revoked.status.success(), "{revoked:?}");
    let gone = bao(&binary, address, "root", &["token", "lookup", &token]);
    assert!(!gone.status.success(), "{gone:?}");

    // A wrapped token: only the wrapping token comes back, and unwrapping gives the token.
    let wrapped = json_of(&bao(
        &binary,
        address,
        "root",
        &[
            "token",
            "create",
            "-format=json",
            "-policy=app",
            "-wrap-ttl=60s",
        ],
    ));
    assert_eq!(wrapped["auth"], Value::Null);
    let wrapping_token = wrapped["wrap_info"]["token"].as_str().unwrap().to_owned();
    let unwrapped = json_of(&bao(
        &binary,
        address,
        "root",
        &["unwrap", "-format=json", &wrapping_token],
    ));
    let inner = unwrapped["auth"]["client_token"].as_str().unwrap();
    let own = json_of(&bao(
        &binary,
        address,
        inner,
        &["token", "lookup", "-format=json"],
    ));
    assert_eq!(own["data"]["policies"], json!(["app", "default"]));

    // The root token can be revoked too (the dev server's only one: checked last).
    let revoked = bao(&binary, address, "root", &["token", "revoke", "-self"]);
    assert!(revoked.status.success(), "{revoked:?}");
    let gone = bao(&binary, address, "root", &["token", "lookup"]);
    assert!(!gone.status.success(), "{gone:?}");
}

/// The DER of the first certificate in a PEM file.
fn pem_der(path: &std::path::Path) -> Vec<u8> {
    use base64::Engine as _;
    let text = std::fs::read_to_string(path).unwrap();
    let body: String = text
        .lines()
        .skip_while(|line| !line.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|line| !line.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cert_bound_token_works_only_over_a_connection_with_its_certificate() {
    let pki = support::TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    // Client certificates are verified when presented, but not required.
    let config = support::write_config(
        dir.path(),
        &format!(
            "{}tls_client_ca_file = {:?}\n{}",
            pki.listener_section(false),
            pki.path("ca.pem"),
            support::MEMORY_STORAGE
        ),
    );
    let server = support::TestServer::with_config(&config, &dir.path().join("server.log"));
    let (keys, root_token) = support::init(&pki.client(&server.address, None, false), 1, 1).await;
    let root = pki
        .unsealed_client(&server.address, &keys, &root_token)
        .await;

    let fingerprint = custos_engine::ClientCert::from_chain(vec![pem_der(&pki.path("client.pem"))])
        .unwrap()
        .fingerprint;
    let (status, body) = call(
        &root,
        Method::POST,
        "auth/token/create",
        json!({"policies": ["app"], "bound_cert_fingerprint": fingerprint}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let token = body["auth"]["client_token"].as_str().unwrap();

    for (with_cert, expected) in [(true, 200), (false, 403)] {
        let client = pki.client(&server.address, Some(token), with_cert);
        let (status, body) =
            call(&client, Method::GET, "auth/token/lookup-self", Value::Null).await;
        assert_eq!(status, expected, "with certificate: {with_cert}: {body}");
        if with_cert {
            assert_eq!(body["data"]["bound_cert_fingerprint"], fingerprint.as_str());
        }
    }
    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
    assert!(log.contains("token binding check failed"), "{log}");
    assert!(!log.contains(token), "the token must not reach the log");
}
