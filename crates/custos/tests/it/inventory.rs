//! The client inventory end to end: a token used from 127.0.0.2 and 127.0.0.3 (client sockets
//! bound to those addresses, which Linux routes to a server on 127.0.0.1) with two user agents
//! shows both on its accessor, in `GET sys/inventory` and in `custos inventory --format json`;
//! a token never used is found by `unused_since`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;

use custos_client::http::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support;

fn client(address: &str, token: &str) -> custos_client::Client {
    support::http_client(address, Some(token))
}

/// The JSON answer of a request that must succeed.
async fn call(client: &custos_client::Client, method: Method, path: &str, body: Value) -> Value {
    let (status, answer) = support::call(client, method, path, body, &[]).await;
    assert!((200..300).contains(&status), "{status}: {answer}");
    answer
}

/// A token with `policies`; answers (token, accessor).
async fn new_token(root: &custos_client::Client, policies: &[&str]) -> (String, String) {
    let answer = call(
        root,
        Method::POST,
        "auth/token/create",
        json!({"policies": policies}),
    )
    .await;
    (
        answer["auth"]["client_token"].as_str().unwrap().to_owned(),
        answer["auth"]["accessor"].as_str().unwrap().to_owned(),
    )
}

/// `GET /v1/auth/token/lookup-self` over plain HTTP/1.1 from a socket bound to `source`, with
/// `agent` as its `User-Agent`. Answers the status.
async fn lookup_self_from(source: Ipv4Addr, server: &str, token: &str, agent: &str) -> u16 {
    let authority = server.strip_prefix("http://").unwrap();
    let target: SocketAddr = authority.parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0)).unwrap();
    let mut stream = socket.connect(target).await.unwrap();
    let head = format!(
        "GET /v1/auth/token/lookup-self HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nUser-Agent: {agent}\r\nX-Vault-Token: {token}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response);
    response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap()
}

fn custos_inventory(address: &str, args: &[&str]) -> Value {
    let output = Command::new(support::binary())
        .arg("inventory")
        .args(args)
        .args(["--format", "json"])
        .env("CUSTOS_ADDR", address)
        .env("CUSTOS_TOKEN", "root")
        .env_remove("VAULT_ADDR")
        .env_remove("VAULT_TOKEN")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn credential<'a>(answer: &'a Value, accessor: &str) -> Option<&'a Value> {
    answer["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|credential| credential["kind"] == "token" && credential["id"] == accessor)
}

fn sorted(credential: &Value, set: &str, field: &str) -> Vec<String> {
    let mut values: Vec<String> = credential[set]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item[field].as_str().unwrap().to_owned())
        .collect();
    values.sort();
    values
}

#[tokio::test]
async fn two_machines_and_two_agents_show_up_on_the_tokens_accessor() {
    let (_dir, server) = support::dev_server();
    let address = server.address.as_str();
    let root = client(address, "root");
    let (token, accessor) = new_token(&root, &["app"]).await;
    let (_, never_used) = new_token(&root, &["app"]).await;

    let first = Ipv4Addr::new(127, 0, 0, 2);
    let second = Ipv4Addr::new(127, 0, 0, 3);
    assert_eq!(
        lookup_self_from(first, address, &token, "deploy-agent/1.0").await,
        200
    );
    assert_eq!(
        lookup_self_from(second, address, &token, "cron-job/2.3").await,
        200
    );
    assert_eq!(
        lookup_self_from(second, address, &token, "cron-job/2.3").await,
        200
    );

    // The API answers at once, flushed or not.
    let answer = call(&root, Method::GET, "sys/inventory", Value::Null).await;
    let data = &answer["data"];
    let entry = credential(data, &accessor).unwrap_or_else(|| panic!("{answer}"));
    assert_eq!(
        sorted(entry, "addresses", "address"),
        ["127.0.0.2", "127.0.0.3"]
    );
    assert_eq!(
        sorted(entry, "user_agents", "user_agent"),
        ["cron-job/2.3", "deploy-agent/1.0"]
    );
    assert_eq!(entry["requests"], 3);
    assert_eq!(entry["policies"], json!(["app", "default"]));
    // The token never appears, only its accessor.
    assert!(!answer.to_string().contains(&token));

    // The CLI shows the same, and answers the three questions.
    let listed = custos_inventory(address, &[]);
    let entry = credential(&listed, &accessor).unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(
        sorted(entry, "addresses", "address"),
        ["127.0.0.2", "127.0.0.3"]
    );
    assert_eq!(
        sorted(entry, "user_agents", "user_agent"),
        ["cron-job/2.3", "deploy-agent/1.0"]
    );

    let several_places = custos_inventory(address, &["--min-addresses", "2"]);
    assert_eq!(
        several_places["credentials"].as_array().unwrap().len(),
        1,
        "{several_places}"
    );
    assert!(credential(&several_places, &accessor).is_some());

    let unused = custos_inventory(address, &["--unused-since", "1h", "--kind", "token"]);
    let never = credential(&unused, &never_used).unwrap_or_else(|| panic!("{unused}"));
    assert_eq!(never["last_seen"], Value::Null);
    assert_eq!(never["requests"], 0);
    assert!(credential(&unused, &accessor).is_none(), "{unused}");

    let by_policy = custos_inventory(address, &["--policy", "app"]);
    assert_eq!(by_policy["credentials"].as_array().unwrap().len(), 2);

    // The table names the accessor with both addresses.
    let output = Command::new(support::binary())
        .args(["inventory", "--kind", "token"])
        .env("CUSTOS_ADDR", address)
        .env("CUSTOS_TOKEN", "root")
        .env_remove("VAULT_ADDR")
        .env_remove("VAULT_TOKEN")
        .output()
        .unwrap();
    assert!(output.status.success());
    let table = String::from_utf8_lossy(&output.stdout);
    let row = table
        .lines()
        .find(|line| line.contains(&accessor))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        row.contains("127.0.0.2") && row.contains("127.0.0.3"),
        "{table}"
    );
}

#[tokio::test]
async fn reading_the_inventory_needs_read_on_sys_inventory() {
    let (_dir, server) = support::dev_server();
    let address = server.address.as_str();
    let root = client(address, "root");
    call(
        &root,
        Method::PUT,
        "sys/policies/acl/inventory-reader",
        json!({"policy": "path \"sys/inventory\" { capabilities = [\"read\"] }"}),
    )
    .await;
    let (reader, _) = new_token(&root, &["inventory-reader"]).await;
    let (other, _) = new_token(&root, &["app"]).await;
    let (status, _, _) = client(address, &reader)
        .raw(Method::GET, "sys/inventory?unused_since=30d", None)
        .await
        .unwrap();
    assert_eq!(status.as_u16(), 200);
    let (status, _, _) = client(address, &other)
        .raw(Method::GET, "sys/inventory", None)
        .await
        .unwrap();
    assert_eq!(status.as_u16(), 403);
    let (status, _, bytes) = client(address, &reader)
        .raw(Method::GET, "sys/inventory?min_addresses=many", None)
        .await
        .unwrap();
    assert_eq!(status.as_u16(), 400, "{}", String::from_utf8_lossy(&bytes));
}

/// A clean stop flushes what the inventory gathered: after a restart (SQLite on disk), the use
/// is still there, read from storage by a process that never saw it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_keeps_the_inventory() {
    let pki = support::TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let config = pki.write_config(dir.path(), false, &support::sqlite_storage(dir.path()));
    let log = dir.path().join("server.log");
    let mut server = support::TestServer::with_config(&config, &log);
    let anonymous = pki.client(&server.address, None, false);
    let (keys, root_token) = support::init(&anonymous, 1, 1).await;
    support::unseal(&anonymous, &keys).await;
    let root = pki.client(&server.address, Some(&root_token), false);
    let (token, accessor) = new_token(&root, &["app"]).await;
    let user = pki.client(&server.address, Some(&token), false);
    call(&user, Method::GET, "auth/token/lookup-self", Value::Null).await;
    call(&user, Method::GET, "auth/token/lookup-self", Value::Null).await;

    assert!(server.terminate().success(), "SIGTERM should exit cleanly");
    drop(server);
    let server = support::TestServer::with_config(&config, &log);
    let anonymous = pki.client(&server.address, None, false);
    support::unseal(&anonymous, &keys).await;
    let root = pki.client(&server.address, Some(&root_token), false);
    let answer = call(&root, Method::GET, "sys/inventory?kind=token", Value::Null).await;
    let entry = credential(&answer["data"], &accessor).unwrap_or_else(|| panic!("{answer}"));
    assert_eq!(entry["requests"], 2, "{entry}");
    assert_eq!(sorted(entry, "addresses", "address"), ["127.0.0.1"]);
}

/// Two nodes on one PostgreSQL database: a token used once on each, with its own user agent,
/// shows both uses on either node once the other has flushed (every 5 seconds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_count_the_same_token_together() {
    let Some(cluster) =
        crate::cluster::Cluster::start("two_nodes_count_the_same_token_together", 2).await
    else {
        return;
    };
    let (token, accessor) = new_token(&cluster.root(0), &["app"]).await;
    for (node, agent) in [(0, "agent-on-a"), (1, "agent-on-b")] {
        let (status, _, _) = cluster
            .client(node, Some(&token))
            .raw_with_headers(
                Method::GET,
                "auth/token/lookup-self",
                &[("User-Agent", agent)],
                None,
            )
            .await
            .unwrap();
        assert_eq!(status.as_u16(), 200);
    }
    for node in [0, 1] {
        let root = cluster.root(node);
        crate::cluster::eventually(&format!("both uses on node {node}"), || async {
            let answer = call(&root, Method::GET, "sys/inventory?kind=token", Value::Null).await;
            credential(&answer["data"], &accessor).is_some_and(|entry| {
                entry["requests"] == 2
                    && sorted(entry, "user_agents", "user_agent") == ["agent-on-a", "agent-on-b"]
            })
        })
        .await;
    }
    cluster.finish().await;
}
