//! AppRole end to end: logins and tokens bound to source addresses (clients bound to 127.0.0.2
//! and 127.0.0.3, which Linux routes to a server on 127.0.0.1), secret ids whose uses run out,
//! a wrapped secret id unwrapped and used to log in; and the real `bao` CLI when
//! `CUSTOS_TEST_BAO` names a `bao` binary (otherwise that test says it was skipped).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;

use custos_client::http::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support;

fn client(address: &str, token: Option<&str>) -> custos_client::Client {
    custos_client::Client::new(custos_client::ClientConfig {
        address: address.to_owned(),
        token: token.map(str::to_owned),
        ..custos_client::ClientConfig::default()
    })
    .unwrap()
}

/// Sends `body` (if not null) to `/v1/<path>` with extra headers; answers the status and the
/// JSON answer (`null` for an empty one).
async fn call_with_headers(
    client: &custos_client::Client,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> (u16, Value) {
    let body = (!body.is_null()).then(|| serde_json::to_vec(&body).unwrap());
    let (status, _, bytes) = client
        .raw_with_headers(method, path, headers, body)
        .await
        .unwrap();
    (status.as_u16(), json_or_null(&bytes))
}

async fn call(
    client: &custos_client::Client,
    method: Method,
    path: &str,
    body: Value,
) -> (u16, Value) {
    call_with_headers(client, method, path, &[], body).await
}

fn json_or_null(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(bytes)
            .unwrap_or_else(|error| panic!("{error}: {}", String::from_utf8_lossy(bytes)))
    }
}

/// One plain-HTTP/1.1 request to the (`http://`) server from a socket bound to `source`, so the
/// server sees that source address. Answers the status and the JSON answer.
async fn call_from(
    source: Ipv4Addr,
    server: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let authority = server.strip_prefix("http://").unwrap();
    let target: SocketAddr = authority.parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0)).unwrap();
    let mut stream = socket.connect(target).await.unwrap();
    let body = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(&body).unwrap()
    };
    let mut head = format!(
        "{method} /v1/{path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    if let Some(token) = token {
        head.push_str(&format!("X-Vault-Token: {token}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();

    let split = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .unwrap();
    let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
    let mut payload = response[split + 4..].to_vec();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap();
    if head.contains("transfer-encoding: chunked") {
        payload = dechunk(&payload);
    }
    (status, json_or_null(&payload))
}

/// Decodes an HTTP/1.1 chunked body.
fn dechunk(mut input: &[u8]) -> Vec<u8> {
    let mut output = Vec::new();
    loop {
        let line_end = input.windows(2).position(|w| w == b"\r\n").unwrap();
        let size_text = String::from_utf8_lossy(&input[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        input = &input[line_end + 2..];
        if size == 0 {
            return output;
        }
        output.extend_from_slice(&input[..size]);
        input = &input[size + 2..];
    }
}

const ALLOWED: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const REFUSED: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

async fn enable_approle(root: &custos_client::Client) {
    let (status, body) = call(
        root,
        Method::POST,
        "sys/auth/approle",
        json!({"type": "approle"}),
    )
    .await;
    assert_eq!(status, 204, "{body}");
}

async fn role_id(root: &custos_client::Client, role: &str) -> String {
    let (status, body) = call(
        root,
        Method::GET,
        &format!("auth/approle/role/{role}/role-id"),
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["data"]["role_id"].as_str().unwrap().to_owned()
}

async fn new_secret_id(root: &custos_client::Client, role: &str) -> String {
    let (status, body) = call(
        root,
        Method::POST,
        &format!("auth/approle/role/{role}/secret-id"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["data"]["secret_id_accessor"].is_string(), "{body}");
    body["data"]["secret_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn approle_logins_and_their_tokens_are_bound_to_source_addresses() {
    let (_dir, server) = support::dev_server();
    let address = server.address.as_str();
    let root = client(address, Some("root"));
    enable_approle(&root).await;
    let (status, body) = call(
        &root,
        Method::POST,
        "auth/approle/role/web",
        json!({
            "secret_id_bound_cidrs": ["127.0.0.2/32"],
            "token_bound_cidrs": ["127.0.0.2/32"],
            "token_policies": ["web"],
            "token_ttl": "1h",
        }),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let (status, role) = call(&root, Method::GET, "auth/approle/role/web", Value::Null).await;
    assert_eq!(status, 200, "{role}");
    assert_eq!(
        role["data"]["secret_id_bound_cidrs"],
        json!(["127.0.0.2/32"])
    );
    assert_eq!(role["data"]["token_bound_cidrs"], json!(["127.0.0.2/32"]));
    let role_id = role_id(&root, "web").await;
    let secret_id = new_secret_id(&root, "web").await;
    let credentials = json!({"role_id": role_id, "secret_id": secret_id});

    // From an address outside the role's secret_id_bound_cidrs: Vault's refusal.
    for source in [REFUSED, Ipv4Addr::LOCALHOST] {
        let (status, body) = call_from(
            source,
            address,
            "POST",
            "auth/approle/login",
            None,
            credentials.clone(),
        )
        .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(
            body["errors"],
            json!([format!(
                "source address \"{source}\" unauthorized by CIDR restrictions on the role"
            )]),
        );
    }

    // From an allowed address: a token, bound to the role's token_bound_cidrs.
    let (status, login) = call_from(
        ALLOWED,
        address,
        "POST",
        "auth/approle/login",
        None,
        credentials.clone(),
    )
    .await;
    assert_eq!(status, 200, "{login}");
    let auth = &login["auth"];
    assert_eq!(auth["policies"], json!(["default", "web"]), "{login}");
    assert_eq!(auth["metadata"], json!({"role_name": "web"}), "{login}");
    assert_eq!(auth["lease_duration"], 3600, "{login}");
    let token = auth["client_token"].as_str().unwrap().to_owned();

    let (status, lookup) = call_from(
        ALLOWED,
        address,
        "GET",
        "auth/token/lookup-self",
        Some(&token),
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{lookup}");
    assert_eq!(lookup["data"]["bound_cidrs"], json!(["127.0.0.2/32"]));
    assert_eq!(lookup["data"]["display_name"], "approle", "{lookup}");
    assert_eq!(lookup["data"]["path"], "auth/approle/login", "{lookup}");

    // The same token from elsewhere is refused, as an unknown token is.
    for source in [REFUSED, Ipv4Addr::LOCALHOST] {
        let (status, body) = call_from(
            source,
            address,
            "GET",
            "auth/token/lookup-self",
            Some(&token),
            Value::Null,
        )
        .await;
        assert_eq!(status, 403, "{source}: {body}");
        assert_eq!(body["errors"], json!(["permission denied"]), "{body}");
    }
    // Wrong credentials from the allowed address: the generic answer.
    let (status, body) = call_from(
        ALLOWED,
        address,
        "POST",
        "auth/approle/login",
        None,
        json!({"role_id": role_id, "secret_id": "not-the-secret"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"], json!(["invalid role or secret ID"]));
}

#[tokio::test]
async fn secret_ids_run_out_of_uses_and_a_wrapped_one_logs_in_once_unwrapped() {
    let (_dir, server) = support::dev_server();
    let address = server.address.as_str();
    let root = client(address, Some("root"));
    let anonymous = client(address, None);
    enable_approle(&root).await;
    let (status, body) = call(
        &root,
        Method::POST,
        "auth/approle/role/batch",
        json!({"secret_id_num_uses": 2, "secret_id_ttl": "10m", "token_policies": "jobs"}),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let role_id = role_id(&root, "batch").await;
    let secret_id = new_secret_id(&root, "batch").await;
    let credentials = json!({"role_id": role_id, "secret_id": secret_id});

    let (status, lookup) = call(
        &root,
        Method::POST,
        "auth/approle/role/batch/secret-id/lookup",
        json!({"secret_id": secret_id}),
    )
    .await;
    assert_eq!(status, 200, "{lookup}");
    assert_eq!(lookup["data"]["secret_id_num_uses"], 2, "{lookup}");
    assert_eq!(lookup["data"]["secret_id_ttl"], 600, "{lookup}");

    for remaining in [1, 0] {
        let (status, login) = call(
            &anonymous,
            Method::POST,
            "auth/approle/login",
            credentials.clone(),
        )
        .await;
        assert_eq!(status, 200, "{login}");
        assert_eq!(login["auth"]["policies"], json!(["default", "jobs"]));
        let (status, lookup) = call(
            &root,
            Method::POST,
            "auth/approle/role/batch/secret-id/lookup",
            json!({"secret_id": secret_id}),
        )
        .await;
        if remaining == 0 {
            // The last use deleted it: Vault answers an unknown secret id with 204.
            assert_eq!(status, 204, "{lookup}");
        } else {
            assert_eq!(status, 200, "{lookup}");
            assert_eq!(lookup["data"]["secret_id_num_uses"], remaining, "{lookup}");
        }
    }
    let (status, body) = call(
        &anonymous,
        Method::POST,
        "auth/approle/login",
        credentials.clone(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"], json!(["invalid role or secret ID"]));

    // A wrapped secret id: the pipeline hands the machine a single-use wrapping token.
    let (status, wrapped) = call_with_headers(
        &root,
        Method::POST,
        "auth/approle/role/batch/secret-id",
        &[("X-Vault-Wrap-TTL", "60s")],
        json!({"metadata": {"host": "worker-1"}}),
    )
    .await;
    assert_eq!(status, 200, "{wrapped}");
    assert_eq!(wrapped["data"], Value::Null, "{wrapped}");
    assert_eq!(wrapped["wrap_info"]["ttl"], 60, "{wrapped}");
    assert_eq!(
        wrapped["wrap_info"]["creation_path"], "auth/approle/role/batch/secret-id",
        "{wrapped}"
    );
    let wrapping_token = wrapped["wrap_info"]["token"].as_str().unwrap().to_owned();
    let machine = client(address, Some(&wrapping_token));
    let (status, unwrapped) =
        call(&machine, Method::POST, "sys/wrapping/unwrap", Value::Null).await;
    assert_eq!(status, 200, "{unwrapped}");
    let wrapped_secret_id = unwrapped["data"]["secret_id"].as_str().unwrap().to_owned();
    let (status, login) = call(
        &anonymous,
        Method::POST,
        "auth/approle/login",
        json!({"role_id": role_id, "secret_id": wrapped_secret_id}),
    )
    .await;
    assert_eq!(status, 200, "{login}");
    assert_eq!(
        login["auth"]["metadata"],
        json!({"role_name": "batch", "host": "worker-1"}),
        "{login}"
    );
    // The login's token renews while its role exists, as in Vault; not once it is deleted.
    let machine_token = login["auth"]["client_token"].as_str().unwrap().to_owned();
    let renewer = client(address, Some(&machine_token));
    let (status, renewed) = call(&renewer, Method::POST, "auth/token/renew-self", json!({})).await;
    assert_eq!(status, 200, "{renewed}");
    let (status, body) = call(
        &root,
        Method::DELETE,
        "auth/approle/role/batch",
        Value::Null,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = call(&renewer, Method::POST, "auth/token/renew-self", json!({})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["errors"],
        json!(["role \"batch\" does not exist during renewal"])
    );

    // The wrapping token was spent by the unwrap: Vault's 400 and message.
    let (status, body) = call(&machine, Method::POST, "sys/wrapping/unwrap", Value::Null).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["errors"],
        json!(["wrapping token is not valid or does not exist"])
    );
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

fn json_output(output: &std::process::Output) -> Value {
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn the_bao_cli_creates_an_approle_and_logs_in_with_it() {
    let Ok(binary) = std::env::var("CUSTOS_TEST_BAO") else {
        eprintln!(
            "skipped the_bao_cli_creates_an_approle_and_logs_in_with_it: CUSTOS_TEST_BAO not set"
        );
        return;
    };
    let (_dir, server) = support::dev_server();
    let address = server.address.as_str();
    let root = Some("root");
    let output = bao(&binary, address, root, &["auth", "enable", "approle"]);
    assert!(output.status.success(), "{output:?}");
    let output = bao(
        &binary,
        address,
        root,
        &["write", "auth/approle/role/web", "token_policies=default"],
    );
    assert!(output.status.success(), "{output:?}");
    let role = json_output(&bao(
        &binary,
        address,
        root,
        &["read", "-format=json", "auth/approle/role/web/role-id"],
    ));
    let role_id = role["data"]["role_id"].as_str().unwrap().to_owned();
    let secret = json_output(&bao(
        &binary,
        address,
        root,
        &[
            "write",
            "-f",
            "-format=json",
            "auth/approle/role/web/secret-id",
        ],
    ));
    let secret_id = secret["data"]["secret_id"].as_str().unwrap().to_owned();
    let login = json_output(&bao(
        &binary,
        address,
        None,
        &[
            "write",
            "-format=json",
            "auth/approle/login",
            &format!("role_id={role_id}"),
            &format!("secret_id={secret_id}"),
        ],
    ));
    assert_eq!(login["auth"]["policies"], json!(["default"]), "{login}");
    assert_eq!(login["auth"]["metadata"]["role_name"], "web", "{login}");
    let token = login["auth"]["client_token"].as_str().unwrap().to_owned();
    let lookup = json_output(&bao(
        &binary,
        address,
        Some(&token),
        &["token", "lookup", "-format=json"],
    ));
    assert_eq!(lookup["data"]["path"], "auth/approle/login", "{lookup}");

    // A wrong secret id: the CLI fails with the server's message.
    let output = bao(
        &binary,
        address,
        None,
        &[
            "write",
            "auth/approle/login",
            &format!("role_id={role_id}"),
            "secret_id=wrong",
        ],
    );
    assert!(!output.status.success(), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("invalid role or secret ID"),
        "{output:?}"
    );
}
