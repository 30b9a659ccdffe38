//! userpass end to end: enable the method, create a user, log in over HTTP and use the token;
//! the login lockout's 429 with `Retry-After`; the real `bao` CLI when `CUSTOS_TEST_BAO` is set.

use std::process::Command;

use custos_client::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support;

async fn call(
    client: &custos_client::Client,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Option<String>, Value) {
    let (status, code, bytes) = client
        .raw(method, path, body.map(|body| body.to_string().into_bytes()))
        .await
        .unwrap();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, code, json)
}

fn client(address: &str, token: Option<&str>) -> custos_client::Client {
    custos_client::Client::new(custos_client::ClientConfig {
        address: address.to_owned(),
        token: token.map(str::to_owned),
        ca_cert: None,
        client_cert: None,
        client_key: None,
        timeout: None,
    })
    .unwrap()
}

#[tokio::test]
async fn a_userpass_login_over_http_issues_a_working_token() {
    let (_dir, server) = support::dev_server();
    let root = client(&server.address, Some("root"));
    let anonymous = client(&server.address, None);

    let (status, _, body) = call(
        &root,
        Method::POST,
        "sys/auth/userpass",
        Some(json!({"type": "userpass", "description": "people"})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, _, list) = call(&root, Method::GET, "sys/auth", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["data"]["userpass/"]["type"], "userpass");
    assert_eq!(
        list["userpass/"]["description"], "people",
        "sys/auth repeats its data at the top"
    );
    assert_eq!(list["data"]["token/"]["type"], "token");

    let (status, _, body) = call(
        &root,
        Method::POST,
        "auth/userpass/users/alice",
        Some(json!({"password": "correct horse", "token_policies": ["dev"], "token_ttl": "1h"})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    // Managing users needs a token.
    let (status, _, _) = call(&anonymous, Method::GET, "auth/userpass/users/alice", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, _, login) = call(
        &anonymous,
        Method::POST,
        "auth/userpass/login/alice",
        Some(json!({"password": "correct horse"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{login}");
    let auth = &login["auth"];
    assert_eq!(auth["policies"], json!(["default", "dev"]));
    assert_eq!(auth["metadata"], json!({"username": "alice"}));
    assert_eq!(auth["lease_duration"], 3600);
    assert_eq!(auth["renewable"], true);
    assert_eq!(auth["token_type"], "service");
    let token = auth["client_token"].as_str().unwrap();
    assert!(token.starts_with("custos_token_"), "{token}");

    // The token is real: it looks itself up (every token may, as under Vault's default policy).
    let (status, _, lookup) = call(
        &client(&server.address, Some(token)),
        Method::GET,
        "auth/token/lookup-self",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{lookup}");
    assert_eq!(lookup["data"]["display_name"], "userpass-alice", "{lookup}");
    assert_eq!(
        lookup["data"]["path"], "auth/userpass/login/alice",
        "{lookup}"
    );
    assert_eq!(
        lookup["data"]["policies"],
        json!(["default", "dev"]),
        "{lookup}"
    );
    assert_eq!(
        lookup["data"]["meta"],
        json!({"username": "alice"}),
        "{lookup}"
    );

    // Wrong password and unknown user: the same 400.
    for name in ["alice", "nobody"] {
        let (status, _, body) = call(
            &anonymous,
            Method::POST,
            &format!("auth/userpass/login/{name}"),
            Some(json!({"password": "wrong"})),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["errors"], json!(["invalid username or password"]));
    }
    // A login body is small: 16 KiB is the limit, before any token is asked for.
    let (status, _, _) = call(
        &anonymous,
        Method::POST,
        "auth/userpass/login/alice",
        Some(json!({"password": "x".repeat(20_000)})),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn too_many_failed_logins_answer_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let config = support::write_config(
        dir.path(),
        "[listener]\naddress = \"127.0.0.1:0\"\ntls_disable = true\n[storage]\nbackend = \"memory\"\n[auth]\nlockout_threshold = 2\nlockout_duration = \"90s\"\n",
    );
    let server = support::TestServer::with_config(&config, &dir.path().join("server.log"));
    let anonymous = client(&server.address, None);
    let (_keys, token) = {
        let (keys, token) = support::init(&anonymous, 1, 1).await;
        support::unseal(&anonymous, &keys).await;
        (keys, token)
    };
    let root = client(&server.address, Some(&token));
    let (status, _, body) = call(
        &root,
        Method::POST,
        "sys/auth/userpass",
        Some(json!({"type": "userpass"})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    for _ in 0..2 {
        let (status, _, _) = call(
            &anonymous,
            Method::POST,
            "auth/userpass/login/ghost",
            Some(json!({"password": "guess"})),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }
    let (status, headers, bytes) = anonymous
        .raw_with_headers(
            Method::POST,
            "auth/userpass/login/ghost",
            &[],
            Some(json!({"password": "guess"}).to_string().into_bytes()),
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = headers
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .unwrap();
    assert!((1..=90).contains(&retry_after), "{retry_after}");
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        body["errors"],
        json!(["too many failed login attempts; try again later"])
    );
    assert_eq!(headers["x-custos-error-code"], "rate_limited");
}

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

#[test]
fn the_bao_cli_enables_userpass_creates_a_user_and_logs_in() {
    let Ok(binary) = std::env::var("CUSTOS_TEST_BAO") else {
        eprintln!(
            "skipped the_bao_cli_enables_userpass_creates_a_user_and_logs_in: CUSTOS_TEST_BAO not set"
        );
        return;
    };
    let (_dir, server) = support::dev_server();
    let address = server.address.as_str();
    let output = bao(
        &binary,
        address,
        Some("root"),
        &["auth", "enable", "userpass"],
    );
    assert!(output.status.success(), "{output:?}");
    let output = bao(
        &binary,
        address,
        Some("root"),
        &["auth", "list", "-format=json"],
    );
    assert!(output.status.success(), "{output:?}");
    let list: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(list["userpass/"]["type"], "userpass", "{list}");
    assert_eq!(list["token/"]["type"], "token", "{list}");
    let output = bao(
        &binary,
        address,
        Some("root"),
        &[
            "write",
            "auth/userpass/users/alice",
            "password=s3cret",
            "token_policies=dev",
        ],
    );
    assert!(output.status.success(), "{output:?}");
    let output = bao(
        &binary,
        address,
        None,
        &[
            "login",
            "-method=userpass",
            "-no-store",
            "-format=json",
            "username=alice",
            "password=s3cret",
        ],
    );
    assert!(output.status.success(), "{output:?}");
    let login: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        login["auth"]["policies"],
        json!(["default", "dev"]),
        "{login}"
    );
    assert_eq!(login["auth"]["metadata"]["username"], "alice", "{login}");
    let output = bao(
        &binary,
        address,
        None,
        &[
            "login",
            "-method=userpass",
            "-no-store",
            "username=alice",
            "password=wrong",
        ],
    );
    assert!(!output.status.success(), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("invalid username or password"),
        "{output:?}"
    );
    // A wrapped login, unwrapped by the CLI.
    let output = bao(
        &binary,
        address,
        None,
        &[
            "write",
            "-wrap-ttl=60s",
            "-format=json",
            "auth/userpass/login/alice",
            "password=s3cret",
        ],
    );
    assert!(output.status.success(), "{output:?}");
    let wrapped: Value = serde_json::from_slice(&output.stdout).unwrap();
    let wrapping_token = wrapped["wrap_info"]["token"].as_str().unwrap().to_owned();
    let output = bao(
        &binary,
        address,
        None,
        &["unwrap", "-format=json", &wrapping_token],
    );
    assert!(output.status.success(), "{output:?}");
    let unwrapped: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        unwrapped["auth"]["metadata"]["username"], "alice",
        "{unwrapped}"
    );
    let output = bao(
        &binary,
        address,
        Some("root"),
        &["auth", "disable", "userpass"],
    );
    assert!(output.status.success(), "{output:?}");
}

#[test]
fn the_custos_auth_commands_enable_list_tune_and_disable() {
    use crate::kv_cli::{custos, dev_server, ok};
    let (_dir, server) = dev_server();
    let enabled = ok(custos(
        &server,
        &[
            "auth",
            "enable",
            "userpass",
            "--path",
            "people",
            "--description",
            "staff",
            "--default-lease-ttl",
            "1h",
        ],
    ));
    assert_eq!(
        enabled.trim(),
        "Success! Enabled userpass auth method at: people/"
    );
    let table = ok(custos(&server, &["auth", "list"]));
    let row = table
        .lines()
        .find(|line| line.starts_with("people/"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        row.contains("userpass") && row.contains("auth_userpass_") && row.ends_with("staff"),
        "{row}"
    );
    assert!(
        table.lines().any(|line| line.starts_with("token/")),
        "{table}"
    );

    ok(custos(
        &server,
        &[
            "auth",
            "tune",
            "people/",
            "--max-lease-ttl",
            "2h",
            "--description",
            "people",
        ],
    ));
    let json: Value =
        serde_json::from_str(&ok(custos(&server, &["auth", "list", "--format", "json"]))).unwrap();
    assert_eq!(
        json["people/"]["config"]["default_lease_ttl"], 3600,
        "{json}"
    );
    assert_eq!(json["people/"]["config"]["max_lease_ttl"], 7200, "{json}");
    assert_eq!(json["people/"]["description"], "people", "{json}");

    // Errors from the server reach the user with a failing exit code.
    let output = custos(&server, &["auth", "enable", "nosuchtype"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("plugin not found in the catalog: nosuchtype"),
        "{output:?}"
    );
    let output = custos(&server, &["auth", "disable", "token/"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");

    ok(custos(&server, &["auth", "disable", "people/"]));
    let json: Value =
        serde_json::from_str(&ok(custos(&server, &["auth", "list", "--format", "json"]))).unwrap();
    assert!(json.get("people/").is_none(), "{json}");
}

/// The current TOTP code of a base32 secret, as an authenticator app computes it.
fn totp_now(secret_base32: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut secret = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for byte in secret_base32.bytes() {
        let value = ALPHABET.iter().position(|&c| c == byte).unwrap() as u32;
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            secret.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    let now = jiff::Timestamp::now().as_second();
    let step = custos_crypto::otp::totp_step(now, 30);
    format!("{:06}", custos_crypto::otp::hotp(&secret, step, 6))
}

#[tokio::test]
async fn totp_enrolment_and_a_second_factor_login_over_http() {
    let (_dir, server) = support::dev_server();
    let root = client(&server.address, Some("root"));
    let anonymous = client(&server.address, None);
    let (status, _, _) = call(
        &root,
        Method::POST,
        "sys/auth/userpass",
        Some(json!({"type": "userpass"})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = call(
        &root,
        Method::POST,
        "auth/userpass/users/erin",
        Some(json!({"password": "pw"})),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, enrolment) = call(
        &root,
        Method::POST,
        "auth/userpass/users/erin/totp",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{enrolment}");
    let secret = enrolment["data"]["secret"].as_str().unwrap().to_owned();
    assert!(
        enrolment["data"]["url"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/custos:erin?secret=")
    );
    let (status, _, state) = call(&root, Method::GET, "auth/userpass/users/erin/totp", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(state["data"]["enrolled"], true);
    assert!(state["data"].get("secret").is_none(), "{state}");

    let (status, _, body) = call(
        &anonymous,
        Method::POST,
        "auth/userpass/login/erin",
        Some(json!({"password": "pw"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let code = totp_now(&secret);
    let (status, _, login) = call(
        &anonymous,
        Method::POST,
        "auth/userpass/login/erin",
        Some(json!({"password": "pw", "totp": code})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{login}");
    assert!(login["auth"]["client_token"].is_string());
    let (status, _, body) = call(
        &anonymous,
        Method::POST,
        "auth/userpass/login/erin",
        Some(json!({"password": "pw", "totp": code})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a replayed code: {body}");
    let (status, _, body) = call(
        &anonymous,
        Method::POST,
        "auth/userpass/login/erin",
        Some(json!({"password": "pw", "totp": "12345"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["errors"], json!(["totp must be a code of 6 digits"]));
}
