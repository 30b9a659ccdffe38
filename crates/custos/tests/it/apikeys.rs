//! The `apikeys` secrets engine on the real binary: driven by the real `bao` CLI and over plain
//! HTTP, followed between two nodes on one PostgreSQL database, its usage kept across a clean
//! restart (SQLite and PostgreSQL), its keys never stored or logged in clear, leaked keys revoked
//! through `sys/leaks`, and its HTTP errors.
//!
//! PostgreSQL tests run when `CUSTOS_TEST_POSTGRES_URL` is set, `bao` ones when `CUSTOS_TEST_BAO`
//! names a `bao` binary; otherwise they say they were skipped. Changes seen by another node are
//! polled for with a generous bound and the time they took is printed, never asserted.

use std::path::{Path, PathBuf};
use std::time::Duration;

use custos_client::Client;
use custos_client::http::Method;
use serde_json::{Value, json};

use crate::bao_cli::{bao, stdout};
use crate::cluster::{Cluster, eventually};
use crate::support::{self, TestDatabase, TestServer, call, http_client};

/// Enables the engine at `apikeys/` over plain HTTP.
pub(crate) async fn enable(client: &Client) {
    let (status, body) = call(
        client,
        Method::POST,
        "sys/mounts/apikeys",
        json!({"type": "apikeys"}),
        &[],
    )
    .await;
    assert_eq!(status, 204, "{body}");
}

/// Creates the keyring `name` with `prefix`.
pub(crate) async fn keyring(client: &Client, name: &str, prefix: &str) {
    let (status, body) = call(
        client,
        Method::POST,
        &format!("apikeys/keyrings/{name}"),
        json!({"prefix": prefix}),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["prefix"], prefix, "{body}");
}

/// Creates a key in `ring`; answers (key, key_id).
pub(crate) async fn create_key(client: &Client, ring: &str, request: Value) -> (String, String) {
    let (status, body) = call(
        client,
        Method::POST,
        &format!("apikeys/keyrings/{ring}/keys"),
        request,
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    (
        body["data"]["key"].as_str().unwrap().to_owned(),
        body["data"]["key_id"].as_str().unwrap().to_owned(),
    )
}

/// The answer of `POST apikeys/verify`, or `None` when the status is not 200.
async fn try_verify(client: &Client, key: &str) -> Option<Value> {
    let (status, body) = call(
        client,
        Method::POST,
        "apikeys/verify",
        json!({"key": key}),
        &[],
    )
    .await;
    (status == 200).then(|| body["data"].clone())
}

/// The answer of `POST apikeys/verify`, which must be 200.
async fn verify(client: &Client, key: &str) -> Value {
    try_verify(client, key)
        .await
        .unwrap_or_else(|| panic!("verify did not answer 200"))
}

/// The verification code of `key`, or `None` when the status is not 200.
pub(crate) async fn code(client: &Client, key: &str) -> Option<String> {
    try_verify(client, key)
        .await
        .and_then(|data| data["code"].as_str().map(str::to_owned))
}

/// `GET apikeys/keyrings/<ring>/keys/<id>`: status and data.
async fn read_key(client: &Client, ring: &str, id: &str) -> (u16, Value) {
    let (status, body) = call(
        client,
        Method::GET,
        &format!("apikeys/keyrings/{ring}/keys/{id}"),
        Value::Null,
        &[],
    )
    .await;
    (status, body["data"].clone())
}

/// The analytics totals of `ring` over the default window (the last 24 hours).
async fn analytics_totals(client: &Client, ring: &str) -> Value {
    let (status, body) = call(
        client,
        Method::GET,
        &format!("apikeys/keyrings/{ring}/analytics"),
        Value::Null,
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["data"]["totals"].clone()
}

/// A config file in `dir`: a plain-HTTP listener and `storage`.
fn plain_config(dir: &Path, storage: &str) -> PathBuf {
    support::write_config(
        dir,
        &format!("[listener]\naddress = \"127.0.0.1:0\"\ntls_disable = true\n{storage}"),
    )
}

/// Like [`plain_config`], allowing audit devices to be enabled through `sys/audit`.
fn audited_config(dir: &Path, storage: &str) -> PathBuf {
    support::write_config(
        dir,
        &format!(
            "unsafe_allow_api_audit_creation = true\n[listener]\naddress = \"127.0.0.1:0\"\ntls_disable = true\n{storage}"
        ),
    )
}

/// Initialises (one share) and unseals a fresh server; answers the share and the root token.
async fn init_and_unseal(server: &TestServer) -> (Vec<String>, String) {
    let anonymous = http_client(&server.address, None);
    let (keys, root) = support::init(&anonymous, 1, 1).await;
    support::unseal(&anonymous, &keys).await;
    (keys, root)
}

/// The 36-character body of a key (after its last `_`).
fn key_body(key: &str) -> &str {
    let (_, body) = key.rsplit_once('_').unwrap();
    assert_eq!(body.len(), 36, "{key}");
    body
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Whether `haystack` holds `needle`, byte for byte.
fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

/// Panics when `text` (named `what`) holds any key of `keys`, its body, or their hex encoding
/// (PostgreSQL shows `bytea` values as hex).
fn assert_no_key_in(what: &str, text: &[u8], keys: &[String]) {
    for key in keys {
        let body = key_body(key);
        for needle in [key.as_str(), body, &hex(body.as_bytes())] {
            assert!(
                !holds(text, needle),
                "{what} holds a key in clear (…{})",
                &body[32..]
            );
        }
    }
}

#[test]
fn bao_cli_enables_the_engine_creates_lists_and_verifies_keys() {
    let Ok(binary) = std::env::var("CUSTOS_TEST_BAO") else {
        eprintln!(
            "skipped bao_cli_enables_the_engine_creates_lists_and_verifies_keys: CUSTOS_TEST_BAO not set"
        );
        return;
    };
    let (_dir, server) = support::dev_server();
    let run = |args: &[&str]| {
        let output = bao(&binary, &server.address, Some("root"), args);
        assert!(output.status.success(), "{args:?}: {output:?}");
        stdout(&output)
    };
    run(&["secrets", "enable", "apikeys"]);
    let mounts: Value = serde_json::from_str(&run(&["secrets", "list", "-format=json"])).unwrap();
    assert_eq!(mounts["apikeys/"]["type"], "apikeys", "{mounts}");
    run(&["write", "apikeys/keyrings/acme", "prefix=acme_live"]);
    let created: Value = serde_json::from_str(&run(&[
        "write",
        "-format=json",
        "apikeys/keyrings/acme/keys",
        "name=ci",
    ]))
    .unwrap();
    let key = created["data"]["key"].as_str().unwrap();
    let key_id = created["data"]["key_id"].as_str().unwrap();
    assert!(key.starts_with("acme_live_"), "{created}");
    assert!(key_id.starts_with("key_"), "{created}");

    let verified = run(&["write", "apikeys/verify", &format!("key={key}")]);
    let code_line = verified
        .lines()
        .find(|line| line.starts_with("code "))
        .unwrap_or_else(|| panic!("no code in {verified}"));
    assert_eq!(
        code_line.split_whitespace().nth(1),
        Some("VALID"),
        "{verified}"
    );
    let verified: Value = serde_json::from_str(&run(&[
        "write",
        "-format=json",
        "apikeys/verify",
        &format!("key={key}"),
    ]))
    .unwrap();
    assert_eq!(verified["data"]["valid"], true, "{verified}");
    assert_eq!(verified["data"]["key_id"], key_id, "{verified}");
    assert_eq!(verified["data"]["name"], "ci", "{verified}");

    let listed: Value =
        serde_json::from_str(&run(&["list", "-format=json", "apikeys/keyrings"])).unwrap();
    assert_eq!(listed, json!(["acme"]));
    let listed: Value = serde_json::from_str(&run(&[
        "list",
        "-format=json",
        "apikeys/keyrings/acme/keys",
    ]))
    .unwrap();
    assert_eq!(listed, json!([key_id]));
    let read: Value = serde_json::from_str(&run(&[
        "read",
        "-format=json",
        &format!("apikeys/keyrings/acme/keys/{key_id}"),
    ]))
    .unwrap();
    assert_eq!(read["data"]["name"], "ci", "{read}");
    assert!(read["data"].get("key").is_none(), "{read}");

    run(&["delete", &format!("apikeys/keyrings/acme/keys/{key_id}")]);
    let verified = run(&["write", "apikeys/verify", &format!("key={key}")]);
    assert!(verified.contains("NOT_FOUND"), "{verified}");
}

#[tokio::test]
async fn the_engine_works_over_plain_http() {
    let (_dir, server) = support::dev_server();
    let root = http_client(&server.address, Some("root"));
    enable(&root).await;
    keyring(&root, "acme", "acme_live").await;
    let (status, body) = call(
        &root,
        Method::GET,
        "apikeys/keyrings?list=true",
        Value::Null,
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["keys"], json!(["acme"]));

    let (key, key_id) = create_key(
        &root,
        "acme",
        json!({"name": "ci", "owner_id": "team-1", "permissions": ["docs.read"], "remaining": 5}),
    )
    .await;
    assert!(key.starts_with("acme_live_"), "{key_id}");
    let answer = verify(&root, &key).await;
    assert_eq!(answer["valid"], true, "{answer}");
    assert_eq!(answer["code"], "VALID", "{answer}");
    assert_eq!(answer["key_id"], key_id.as_str());
    assert_eq!(answer["keyring"], "acme");
    assert_eq!(answer["owner_id"], "team-1");
    assert_eq!(answer["remaining"], 4);

    let (status, body) = call(
        &root,
        Method::POST,
        "apikeys/verify",
        json!({"key": key, "permissions": "docs.read AND billing.read"}),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["code"], "INSUFFICIENT_PERMISSIONS", "{body}");

    // One character changed: the checksum fails, and nothing is found.
    let mut forged = key.clone().into_bytes();
    let last = forged.len() - 10;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    assert_eq!(
        verify(&root, &forged).await,
        json!({"valid": false, "code": "NOT_FOUND"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_changed_on_one_node_are_applied_on_the_other() {
    let Some(cluster) =
        Cluster::start("keys_changed_on_one_node_are_applied_on_the_other", 2).await
    else {
        return;
    };
    let (one, two) = (cluster.root(0), cluster.root(1));
    enable(&one).await;
    keyring(&one, "acme", "acme_live").await;
    let (key, key_id) = create_key(&one, "acme", json!({"name": "ci"})).await;
    let (other, other_id) = create_key(&one, "acme", json!({"name": "other"})).await;
    assert_eq!(code(&one, &key).await.as_deref(), Some("VALID"));

    eventually("a key created on node 1 verifies on node 2", || async {
        code(&two, &key).await.as_deref() == Some("VALID")
    })
    .await;
    assert_eq!(verify(&two, &key).await["key_id"], key_id.as_str());
    eventually("a second key verifies on node 2", || async {
        code(&two, &other).await.as_deref() == Some("VALID")
    })
    .await;

    let (status, body) = call(
        &one,
        Method::POST,
        &format!("apikeys/keyrings/acme/keys/{key_id}"),
        json!({"enabled": false}),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(code(&one, &key).await.as_deref(), Some("DISABLED"));
    let took = eventually("disabling on node 1 reached node 2", || async {
        code(&two, &key).await.as_deref() == Some("DISABLED")
    })
    .await;
    eprintln!("disabling reached node 2 in {} ms", took.as_millis());

    let (status, body) = call(
        &one,
        Method::DELETE,
        &format!("apikeys/keyrings/acme/keys/{key_id}"),
        Value::Null,
        &[],
    )
    .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(code(&one, &key).await.as_deref(), Some("NOT_FOUND"));
    let took = eventually("revocation on node 1 reached node 2", || async {
        code(&two, &key).await.as_deref() == Some("NOT_FOUND")
    })
    .await;
    eprintln!("revocation reached node 2 in {} ms", took.as_millis());
    assert_eq!(read_key(&two, "acme", &key_id).await.0, 404);
    // The other key of the keyring is untouched.
    assert_eq!(code(&two, &other).await.as_deref(), Some("VALID"));

    let (status, body) = call(
        &one,
        Method::DELETE,
        "apikeys/keyrings/acme",
        Value::Null,
        &[],
    )
    .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(code(&one, &other).await.as_deref(), Some("NOT_FOUND"));
    let took = eventually("keyring deletion on node 1 reached node 2", || async {
        code(&two, &other).await.as_deref() == Some("NOT_FOUND")
    })
    .await;
    eprintln!("keyring deletion reached node 2 in {} ms", took.as_millis());
    assert_eq!(read_key(&two, "acme", &other_id).await.0, 404);
    let (status, body) = call(
        &two,
        Method::GET,
        "apikeys/keyrings?list=true",
        Value::Null,
        &[],
    )
    .await;
    assert!(
        status == 404 || body["data"]["keys"] == json!([]),
        "{status} {body}"
    );
    cluster.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_notifications_are_cut_reads_keys_from_storage() {
    // Node 2's LISTEN connection goes through a relay the test cuts; its queries go directly.
    let Some((cluster, switch)) = Cluster::start_with_cuttable_feed(
        "a_node_whose_notifications_are_cut_reads_keys_from_storage",
    )
    .await
    else {
        return;
    };
    let (one, two) = (cluster.root(0), cluster.root(1));
    enable(&one).await;
    keyring(&one, "acme", "acme_live").await;
    keyring(&one, "other", "other_live").await;
    let (disabled, disabled_id) = create_key(&one, "acme", json!({"name": "disabled"})).await;
    let (revoked, revoked_id) = create_key(&one, "acme", json!({"name": "revoked"})).await;
    let (spent, _) = create_key(&one, "acme", json!({"name": "spent", "remaining": 2})).await;
    let (in_deleted_ring, _) = create_key(&one, "other", json!({"name": "gone"})).await;
    for key in [&disabled, &revoked, &in_deleted_ring] {
        eventually("a key created on node 1 verifies on node 2", || async {
            code(&two, key).await.as_deref() == Some("VALID")
        })
        .await;
    }

    // Cut node 2's notifications: it must not trust its index any more.
    switch.send_replace(false);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, body) = call(
        &one,
        Method::POST,
        &format!("apikeys/keyrings/acme/keys/{disabled_id}"),
        json!({"enabled": false}),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(
        &one,
        Method::DELETE,
        &format!("apikeys/keyrings/acme/keys/{revoked_id}"),
        Value::Null,
        &[],
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = call(
        &one,
        Method::DELETE,
        "apikeys/keyrings/other",
        Value::Null,
        &[],
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let (created, _) = create_key(&one, "acme", json!({"name": "new"})).await;
    for _ in 0..2 {
        assert_eq!(code(&one, &spent).await.as_deref(), Some("VALID"));
    }
    // The analytics flush node 1's usage first: the uses spent are in storage.
    analytics_totals(&one, "acme").await;

    // Not eventually: at once.
    assert_eq!(code(&two, &disabled).await.as_deref(), Some("DISABLED"));
    assert_eq!(code(&two, &revoked).await.as_deref(), Some("NOT_FOUND"));
    assert_eq!(
        code(&two, &in_deleted_ring).await.as_deref(),
        Some("NOT_FOUND")
    );
    assert_eq!(code(&two, &created).await.as_deref(), Some("VALID"));
    assert_eq!(code(&two, &spent).await.as_deref(), Some("USAGE_EXCEEDED"));

    // Notifications back: node 2 follows again.
    switch.send_replace(true);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, body) = call(
        &one,
        Method::POST,
        &format!("apikeys/keyrings/acme/keys/{disabled_id}"),
        json!({"enabled": true}),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    eventually(
        "a key enabled after the feed came back, on node 2",
        || async { code(&two, &disabled).await.as_deref() == Some("VALID") },
    )
    .await;
    drop(switch);
    cluster.finish().await;
}

/// The uses left of `id` as node `client` knows them (`None` until it knows the key).
async fn remaining_on(client: &Client, id: &str) -> Option<i64> {
    let (status, data) = read_key(client, "acme", id).await;
    (status == 200)
        .then(|| data["remaining"].as_i64())
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uses_spent_on_two_nodes_add_up() {
    let Some(cluster) = Cluster::start("uses_spent_on_two_nodes_add_up", 2).await else {
        return;
    };
    let (one, two) = (cluster.root(0), cluster.root(1));
    enable(&one).await;
    keyring(&one, "acme", "acme_live").await;
    let (key, key_id) = create_key(&one, "acme", json!({"name": "ci", "remaining": 10})).await;
    // Waiting reads the key: a verification would spend a use.
    eventually("a key created on node 1 is known on node 2", || async {
        remaining_on(&two, &key_id).await == Some(10)
    })
    .await;
    for expected in [9, 8, 7] {
        assert_eq!(verify(&one, &key).await["remaining"], expected);
    }
    // Node 2 has not seen node 1's uses yet, or has seen some of them.
    let answer = verify(&two, &key).await;
    assert_eq!(answer["code"], "VALID", "{answer}");
    verify(&two, &key).await;
    let took = eventually("uses spent on both nodes add up on node 1", || async {
        remaining_on(&one, &key_id).await == Some(5)
    })
    .await;
    eprintln!(
        "uses spent on node 2 reached node 1 in {} ms",
        took.as_millis()
    );
    eventually("uses spent on both nodes add up on node 2", || async {
        remaining_on(&two, &key_id).await == Some(5)
    })
    .await;
    assert_eq!(verify(&one, &key).await["remaining"], 4);
    // Both nodes' counts reach the analytics: each flushes its own before answering, so once
    // node 1 has answered, node 2 counts everything.
    let totals = analytics_totals(&one, "acme").await;
    assert!(totals["VALID"].as_u64().unwrap() >= 4, "{totals}");
    assert_eq!(analytics_totals(&two, "acme").await["VALID"], 6);
    assert_eq!(analytics_totals(&one, "acme").await["VALID"], 6);
    cluster.finish().await;
}

#[tokio::test]
async fn sealing_keeps_usage() {
    let dir = tempfile::tempdir().unwrap();
    let config = plain_config(dir.path(), &support::sqlite_storage(dir.path()));
    let server = TestServer::with_config(&config, &dir.path().join("server.log"));
    let (keys, token) = init_and_unseal(&server).await;
    let root = http_client(&server.address, Some(&token));
    enable(&root).await;
    keyring(&root, "acme", "acme_live").await;
    let (key, key_id) = create_key(&root, "acme", json!({"name": "ci", "remaining": 3})).await;
    for expected in [2, 1, 0] {
        assert_eq!(verify(&root, &key).await["remaining"], expected);
    }
    assert_eq!(code(&root, &key).await.as_deref(), Some("USAGE_EXCEEDED"));
    root.seal().await.unwrap();
    support::unseal(&http_client(&server.address, None), &keys).await;
    assert_eq!(remaining_on(&root, &key_id).await, Some(0));
    assert_eq!(code(&root, &key).await.as_deref(), Some("USAGE_EXCEEDED"));
    let totals = analytics_totals(&root, "acme").await;
    assert_eq!(totals["VALID"], 3, "{totals}");
    assert_eq!(totals["USAGE_EXCEEDED"], 2, "{totals}");
}

/// A key with 10 uses verified 3 times, the server stopped cleanly and started again on the
/// same storage: the uses left, the last use and the analytics survive.
async fn a_clean_restart_keeps_usage(storage: &str) {
    let dir = tempfile::tempdir().unwrap();
    let config = plain_config(dir.path(), storage);
    let log = dir.path().join("server.log");
    let mut server = TestServer::with_config(&config, &log);
    let (keys, token) = init_and_unseal(&server).await;
    let root = http_client(&server.address, Some(&token));
    enable(&root).await;
    keyring(&root, "acme", "acme_live").await;
    let (key, key_id) = create_key(&root, "acme", json!({"name": "ci", "remaining": 10})).await;
    for expected in [9, 8, 7] {
        let answer = verify(&root, &key).await;
        assert_eq!(answer["code"], "VALID", "{answer}");
        assert_eq!(answer["remaining"], expected, "{answer}");
    }

    assert!(server.terminate().success());
    let server = TestServer::with_config(&config, &log);
    support::unseal(&http_client(&server.address, None), &keys).await;
    let root = http_client(&server.address, Some(&token));
    // Read before any verification of the new process: what the first one flushed.
    let (status, read) = read_key(&root, "acme", &key_id).await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["remaining"], 7, "{read}");
    assert!(read["last_used_at"].is_string(), "{read}");
    let totals = analytics_totals(&root, "acme").await;
    assert_eq!(totals["VALID"], 3, "{totals}");

    let answer = verify(&root, &key).await;
    assert_eq!(answer["code"], "VALID", "{answer}");
    assert_eq!(answer["remaining"], 6, "{answer}");
    let totals = analytics_totals(&root, "acme").await;
    assert_eq!(totals["VALID"], 4, "{totals}");
    assert_eq!(totals["total"], 4, "{totals}");
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(!log.contains(&key), "the server log holds the key");
}

#[tokio::test]
async fn a_clean_restart_keeps_usage_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    a_clean_restart_keeps_usage(&support::sqlite_storage(dir.path())).await;
}

#[tokio::test]
async fn a_clean_restart_keeps_usage_on_postgres() {
    let Some(database) = TestDatabase::create("a_clean_restart_keeps_usage_on_postgres").await
    else {
        return;
    };
    a_clean_restart_keeps_usage(&support::postgres_storage(&database.url)).await;
    database.drop_database().await;
}

/// Every row of every table of the database at `url`, as text.
async fn dump_database(url: &str) -> String {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let tables = client
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
            &[],
        )
        .await
        .unwrap();
    assert!(!tables.is_empty(), "no tables in the test database");
    let mut dump = String::new();
    for table in tables {
        let name: String = table.get(0);
        let rows = client
            .query(&format!("SELECT t::text FROM \"{name}\" t"), &[])
            .await
            .unwrap();
        for row in rows {
            dump.push_str(&row.get::<_, String>(0));
            dump.push('\n');
        }
    }
    dump
}

/// Creates keys (one rerolled) and verifies them with a `file` audit device enabled through
/// `sys/audit`; answers the keys and the audit file's path.
async fn issue_and_verify_audited(root: &Client, dir: &Path) -> (Vec<String>, PathBuf) {
    let audit_path = dir.join("audit.log");
    let (status, body) = call(
        root,
        Method::PUT,
        "sys/audit/file",
        json!({"type": "file", "options": {"file_path": audit_path}}),
        &[],
    )
    .await;
    assert_eq!(status, 204, "{body}");
    enable(root).await;
    keyring(root, "acme", "acme_live").await;
    let (first, _) = create_key(root, "acme", json!({"name": "one", "remaining": 100})).await;
    let (second, second_id) = create_key(root, "acme", json!({"name": "two"})).await;
    let (status, body) = call(
        root,
        Method::POST,
        &format!("apikeys/keyrings/acme/keys/{second_id}/reroll"),
        json!({"grace": "1h"}),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let rerolled = body["data"]["key"].as_str().unwrap().to_owned();
    let keys = vec![first, second, rerolled];
    for key in &keys {
        for _ in 0..3 {
            assert_eq!(code(root, key).await.as_deref(), Some("VALID"));
        }
    }
    // The analytics flush first: usage and counts are in storage now.
    let totals = analytics_totals(root, "acme").await;
    assert_eq!(totals["VALID"], 9, "{totals}");
    (keys, audit_path)
}

/// Checks the audit file: no key, and an HMAC'd request for `apikeys/verify`.
fn check_audit_file(path: &Path, keys: &[String]) {
    let text = std::fs::read(path).unwrap();
    assert_no_key_in("the audit file", &text, keys);
    let records: Vec<Value> = String::from_utf8(text)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let verify_request = records
        .iter()
        .find(|record| record["type"] == "request" && record["request"]["path"] == "apikeys/verify")
        .expect("a request record for apikeys/verify");
    let hashed = verify_request["request"]["data"]["key"].as_str().unwrap();
    assert!(hashed.starts_with("hmac-sha256:"), "{verify_request}");
    // The answer of a key's creation carries the key, HMAC'd too.
    let created = records
        .iter()
        .find(|record| {
            record["type"] == "response"
                && record["request"]["path"] == "apikeys/keyrings/acme/keys"
        })
        .expect("a response record for a key's creation");
    let hashed = created["response"]["data"]["key"].as_str().unwrap();
    assert!(hashed.starts_with("hmac-sha256:"), "{created}");
}

/// Reads a file if it exists (SQLite's `-wal` and `-shm` come and go).
fn read_if_present(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}

#[tokio::test]
async fn keys_are_never_in_clear_in_sqlite_logs_or_audit() {
    let dir = tempfile::tempdir().unwrap();
    let config = audited_config(dir.path(), &support::sqlite_storage(dir.path()));
    let log = dir.path().join("server.log");
    let mut server = TestServer::with_config_logging(&config, &log, "debug");
    let (_, token) = init_and_unseal(&server).await;
    let root = http_client(&server.address, Some(&token));
    let (keys, audit_path) = issue_and_verify_audited(&root, dir.path()).await;

    let database = dir.path().join("custos.db");
    let files = |suffix: &str| PathBuf::from(format!("{}{suffix}", database.display()));
    // While running (the WAL holds the latest writes), and after a clean stop.
    for suffix in ["", "-wal", "-shm"] {
        let path = files(suffix);
        assert_no_key_in(&path.display().to_string(), &read_if_present(&path), &keys);
    }
    assert!(!read_if_present(&files("-wal")).is_empty() || !read_if_present(&database).is_empty());
    assert!(server.terminate().success());
    for suffix in ["", "-wal", "-shm"] {
        let path = files(suffix);
        assert_no_key_in(&path.display().to_string(), &read_if_present(&path), &keys);
    }
    assert_no_key_in("the server's stderr", &std::fs::read(&log).unwrap(), &keys);
    let stdout = server.stdout();
    assert!(stdout.contains("listening on"), "{stdout}");
    assert_no_key_in("the server's stdout", stdout.as_bytes(), &keys);
    check_audit_file(&audit_path, &keys);
}

#[tokio::test]
async fn keys_are_never_in_clear_in_postgres_logs_or_audit() {
    let Some(database) =
        TestDatabase::create("keys_are_never_in_clear_in_postgres_logs_or_audit").await
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = audited_config(dir.path(), &support::postgres_storage(&database.url));
    let log = dir.path().join("server.log");
    let mut server = TestServer::with_config_logging(&config, &log, "debug");
    let (_, token) = init_and_unseal(&server).await;
    let root = http_client(&server.address, Some(&token));
    let (keys, audit_path) = issue_and_verify_audited(&root, dir.path()).await;
    assert!(server.terminate().success());

    let dump = dump_database(&database.url).await;
    assert!(dump.contains("logical/"), "the dump lists the stored keys");
    assert_no_key_in("the PostgreSQL tables", dump.as_bytes(), &keys);
    assert_no_key_in("the server's stderr", &std::fs::read(&log).unwrap(), &keys);
    assert_no_key_in("the server's stdout", server.stdout().as_bytes(), &keys);
    check_audit_file(&audit_path, &keys);
    database.drop_database().await;
}

#[tokio::test]
async fn a_leaked_key_reported_to_sys_leaks_is_revoked() {
    let (_dir, server) = support::dev_server();
    let root = http_client(&server.address, Some("root"));
    enable(&root).await;
    keyring(&root, "acme", "acme_live").await;
    let (key, key_id) = create_key(&root, "acme", json!({"name": "ci"})).await;
    let (kept, _) = create_key(&root, "acme", json!({"name": "kept"})).await;
    assert_eq!(code(&root, &key).await.as_deref(), Some("VALID"));

    // Anyone holding the key may report it: no token.
    let anonymous = http_client(&server.address, None);
    let report = json!({"leaks": [{"token": key, "type": "acme_api_key", "url": "https://example.com/leak"}]});
    let (status, body) = call(&anonymous, Method::POST, "sys/leaks", report.clone(), &[]).await;
    assert_eq!(status, 200, "{body}");
    let result = &body["data"]["results"][0];
    assert_eq!(result["label"], "true_positive", "{body}");
    assert_eq!(result["kind"], "api_key", "{body}");
    assert_eq!(result["status"], "revoked", "{body}");
    assert_eq!(body["data"]["revoked"], 1, "{body}");
    assert!(
        !body.to_string().contains(&key),
        "the answer echoes the key"
    );

    assert_eq!(
        verify(&root, &key).await,
        json!({"valid": false, "code": "NOT_FOUND"})
    );
    assert_eq!(read_key(&root, "acme", &key_id).await.0, 404);
    assert_eq!(code(&root, &kept).await.as_deref(), Some("VALID"));
    // Reported again: nothing of ours any more.
    let (status, body) = call(&anonymous, Method::POST, "sys/leaks", report, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["results"][0]["status"], "unknown", "{body}");
    assert_eq!(body["data"]["revoked"], 0, "{body}");
}

#[tokio::test]
async fn http_errors_of_the_engine() {
    let (_dir, server) = support::dev_server();
    let root = http_client(&server.address, Some("root"));
    enable(&root).await;
    keyring(&root, "acme", "acme_live").await;
    let (key, _) = create_key(&root, "acme", json!({"name": "ci"})).await;

    // A body that is not JSON.
    let (status, _, body) = root
        .raw_with_headers(
            Method::POST,
            "apikeys/verify",
            &[],
            Some(b"{\"key\": ".to_vec()),
        )
        .await
        .unwrap();
    assert_eq!(status.as_u16(), 400, "{}", String::from_utf8_lossy(&body));
    // JSON, but not a verification.
    for bad in [
        json!({}),
        json!({"key": 5}),
        json!({"key": key, "cost": -1}),
        json!({"key": key, "permissions": "docs.read AND ("}),
        json!({"key": key, "unknown": true}),
    ] {
        let (status, body) = call(&root, Method::POST, "apikeys/verify", bad.clone(), &[]).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(!body.to_string().contains(&key), "the error echoes the key");
    }
    // A token that does not exist.
    let stranger = http_client(&server.address, Some("custos_token_not-a-real-token"));
    let (status, body) = call(
        &stranger,
        Method::POST,
        "apikeys/verify",
        json!({"key": key}),
        &[],
    )
    .await;
    assert_eq!(status, 403, "{body}");
    // Verification is a write.
    let (status, body) = call(&root, Method::GET, "apikeys/verify", Value::Null, &[]).await;
    assert_eq!(status, 405, "{body}");

    // A token that may only verify.
    let policy = r#"path "apikeys/verify" { capabilities = ["update"] }"#;
    let (status, body) = call(
        &root,
        Method::PUT,
        "sys/policies/acl/verifier",
        json!({"policy": policy}),
        &[],
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = call(
        &root,
        Method::POST,
        "auth/token/create",
        json!({"policies": ["verifier"]}),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let verifier = http_client(
        &server.address,
        Some(body["auth"]["client_token"].as_str().unwrap()),
    );
    assert_eq!(code(&verifier, &key).await.as_deref(), Some("VALID"));
    let (status, body) = call(
        &verifier,
        Method::POST,
        "apikeys/keyrings/acme/keys",
        json!({"name": "sneaky"}),
        &[],
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = call(
        &verifier,
        Method::GET,
        "apikeys/keyrings/acme",
        Value::Null,
        &[],
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = call(
        &root,
        Method::GET,
        "apikeys/keyrings/acme/keys?list=true",
        Value::Null,
        &[],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["keys"].as_array().unwrap().len(), 1, "{body}");
}
