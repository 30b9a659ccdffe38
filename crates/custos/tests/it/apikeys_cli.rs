//! `custos apikey` against a dev server with an `apikeys` mount: a keyring, keys created,
//! verified (exit codes 0, 1 and 2), disabled, rerolled with grace, listed by owner, revoked,
//! counted by analytics and deleted with their keyring; and no key ever in the server's log.

use std::process::Output;

use custos_client::http::Method;
use serde_json::{Value, json};

use crate::kv_cli::{command, custos, ok};
use crate::support::{self, TestServer};

/// Enables the `apikeys` engine at `apikeys/`.
async fn enable_apikeys(server: &TestServer) {
    let root = support::http_client(&server.address, Some("root"));
    let (status, answer) = support::call(
        &root,
        Method::POST,
        "sys/mounts/apikeys",
        json!({"type": "apikeys"}),
        &[],
    )
    .await;
    assert!((200..300).contains(&status), "{status}: {answer}");
}

/// `custos apikey ARGS --format json`, which must succeed; its JSON.
fn apikey_json(server: &TestServer, args: &[&str]) -> Value {
    let mut all = vec!["apikey"];
    all.extend_from_slice(args);
    all.extend(["--format", "json"]);
    serde_json::from_str(&ok(custos(server, &all))).unwrap()
}

/// `custos apikey verify KEY ARGS --format json`: the exit code and the answer.
fn verify(server: &TestServer, key: &str, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["apikey", "verify", key];
    all.extend_from_slice(args);
    all.extend(["--format", "json"]);
    let output = custos(server, &all);
    let answer = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("verify printed no JSON: {output:?}"));
    (output.status.code().unwrap(), answer)
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The `key` and `key_id` of a new key's JSON.
fn key_of(answer: &Value) -> (String, String) {
    (
        answer["key"].as_str().unwrap().to_owned(),
        answer["key_id"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn keys_are_created_verified_disabled_rerolled_listed_revoked_and_counted() {
    let (_dir, server) = support::dev_server();
    enable_apikeys(&server).await;

    let keyring = apikey_json(
        &server,
        &[
            "keyring",
            "create",
            "acme",
            "--prefix",
            "acme_live",
            "--role",
            "admin=docs.read,billing.read",
            "--description",
            "customer keys",
        ],
    );
    assert_eq!(keyring["prefix"], "acme_live", "{keyring}");
    assert_eq!(
        keyring["roles"]["admin"],
        json!(["billing.read", "docs.read"]),
        "permissions are stored sorted"
    );
    let keyrings = apikey_json(&server, &["keyring", "list"]);
    assert_eq!(keyrings, json!(["acme"]));

    // Created as JSON: the whole data object, the key in it, in the custos key format.
    let created = apikey_json(
        &server,
        &[
            "create",
            "acme",
            "--name",
            "ci",
            "--owner-id",
            "team-a",
            "--permission",
            "docs.read",
            "--meta",
            "plan=pro",
        ],
    );
    let (key, key_id) = key_of(&created);
    assert!(key.starts_with("acme_live_"), "{created}");
    assert!(custos_core::ApiKey::parse(&key).is_ok(), "{key}");
    assert!(key_id.starts_with("key_"), "{created}");
    assert_eq!(key_id.len(), 4 + 22, "{key_id}");
    assert_eq!(created["owner_id"], "team-a");
    assert_eq!(created["meta"], json!({"plan": "pro"}));
    assert_eq!(created["enabled"], true);
    let hint = created["hint"].as_str().unwrap();
    assert!(
        hint.starts_with("acme_live_") && !hint.contains(&key[10..]),
        "{hint}"
    );

    // Created as a table: the warning, then the key, once.
    let output = custos(
        &server,
        &["apikey", "create", "acme", "--owner-id", "team-b"],
    );
    let table = ok(output);
    assert!(table.contains("shown only this once"), "{table}");
    let other_key = table
        .lines()
        .find_map(|line| line.strip_prefix("key "))
        .map(|rest| rest.trim().to_owned())
        .unwrap_or_else(|| panic!("no key row: {table}"));
    assert!(other_key.starts_with("acme_live_"), "{table}");

    // Valid: exit 0, in JSON and in the table.
    let (code, answer) = verify(&server, &key, &[]);
    assert_eq!(
        (code, answer["code"].as_str()),
        (0, Some("VALID")),
        "{answer}"
    );
    assert_eq!(answer["valid"], true);
    assert_eq!(answer["key_id"], key_id.as_str());
    assert_eq!(answer["owner_id"], "team-a");
    let output = custos(&server, &["apikey", "verify", &key]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("VALID"));

    // A permission the key lacks: exit 1 and the code.
    let (code, answer) = verify(&server, &key, &["--permissions", "billing.read"]);
    assert_eq!(
        (code, answer["code"].as_str()),
        (1, Some("INSUFFICIENT_PERMISSIONS")),
        "{answer}"
    );
    let (code, answer) = verify(
        &server,
        &key,
        &["--permissions", "docs.read AND (billing.read OR docs.read)"],
    );
    assert_eq!(
        (code, answer["code"].as_str()),
        (0, Some("VALID")),
        "{answer}"
    );

    // Disabled, then enabled again.
    let updated = apikey_json(&server, &["update", "acme", &key_id, "--disabled"]);
    assert_eq!(updated["enabled"], false, "{updated}");
    let (code, answer) = verify(&server, &key, &[]);
    assert_eq!(
        (code, answer["code"].as_str()),
        (1, Some("DISABLED")),
        "{answer}"
    );
    let updated = apikey_json(&server, &["update", "acme", &key_id, "--enabled"]);
    assert_eq!(updated["enabled"], true, "{updated}");
    let fetched = apikey_json(&server, &["get", "acme", &key_id]);
    assert_eq!(fetched["name"], "ci");
    assert!(fetched.get("key").is_none(), "{fetched}");

    // Rerolled with grace: both keys verify, with the same attributes.
    let rerolled = apikey_json(&server, &["reroll", "acme", &key_id, "--grace", "1h"]);
    let (new_key, new_key_id) = key_of(&rerolled);
    assert_ne!(new_key, key);
    assert_ne!(new_key_id, key_id);
    assert_eq!(rerolled["owner_id"], "team-a");
    let (code, answer) = verify(&server, &new_key, &[]);
    assert_eq!(
        (code, answer["code"].as_str()),
        (0, Some("VALID")),
        "{answer}"
    );
    let (code, answer) = verify(&server, &key, &[]);
    assert_eq!(
        (code, answer["code"].as_str()),
        (0, Some("VALID")),
        "{answer}"
    );

    // Listed by owner: team-a's keys only.
    let listed = apikey_json(&server, &["list", "acme", "--owner-id", "team-a"]);
    let ids: Vec<&str> = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap())
        .collect();
    assert!(ids.contains(&new_key_id.as_str()), "{listed}");
    assert!(
        ids.iter()
            .all(|id| listed["key_info"][id]["owner_id"] == "team-a"),
        "{listed}"
    );
    let all = apikey_json(&server, &["list", "acme"]);
    assert!(all["keys"].as_array().unwrap().len() > ids.len(), "{all}");
    let table = ok(custos(
        &server,
        &["apikey", "list", "acme", "--owner-id", "team-a"],
    ));
    assert!(table.starts_with("KEY ID"), "{table}");
    assert!(table.contains(&new_key_id), "{table}");

    // Revoked: NOT_FOUND, exit 1; a key that never existed too.
    let output = custos(&server, &["apikey", "revoke", "acme", &new_key_id]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let (code, answer) = verify(&server, &new_key, &[]);
    assert_eq!(
        (code, answer["code"].as_str()),
        (1, Some("NOT_FOUND")),
        "{answer}"
    );
    let stranger = custos_core::ApiKey::from_random("acme_live", &[7; 30]).unwrap();
    let (code, answer) = verify(&server, stranger.as_str(), &[]);
    assert_eq!(
        (code, answer["code"].as_str()),
        (1, Some("NOT_FOUND")),
        "{answer}"
    );

    // Analytics count what happened above.
    let analytics = apikey_json(&server, &["analytics", "acme"]);
    let totals = &analytics["totals"];
    assert!(totals["VALID"].as_u64().unwrap() >= 5, "{analytics}");
    assert!(totals["DISABLED"].as_u64().unwrap() >= 1, "{analytics}");
    assert!(
        totals["INSUFFICIENT_PERMISSIONS"].as_u64().unwrap() >= 1,
        "{analytics}"
    );
    assert!(
        !analytics["buckets"].as_array().unwrap().is_empty(),
        "{analytics}"
    );
    let table = ok(custos(
        &server,
        &["apikey", "analytics", "acme", "--group-by", "day"],
    ));
    assert!(table.contains("TIME"), "{table}");
    assert!(table.contains("INSUFFICIENT_PERMISSIONS"), "{table}");
    assert!(table.contains("Top keys"), "{table}");

    // The keyring's deletion revokes its keys.
    let output = custos(&server, &["apikey", "keyring", "delete", "acme"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let (code, answer) = verify(&server, &other_key, &[]);
    assert_eq!(
        (code, answer["code"].as_str()),
        (1, Some("NOT_FOUND")),
        "{answer}"
    );
    let output = custos(&server, &["apikey", "keyring", "get", "acme"]);
    assert_ne!(output.status.code(), Some(0), "{}", text(&output));
}

#[tokio::test]
async fn verify_exits_2_on_usage_and_transport_errors() {
    let (_dir, server) = support::dev_server();
    enable_apikeys(&server).await;
    // No key at all: a usage error.
    let output = custos(&server, &["apikey", "verify"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    // A bad flag value.
    let output = custos(&server, &["apikey", "verify", "k", "--cost", "-1"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    // Nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let output = command(&server, "root", &["apikey", "verify", "acme_live_x"])
        .env("CUSTOS_ADDR", &address)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    // A token that may not verify.
    let output = command(&server, "not-a-token", &["apikey", "verify", "acme_live_x"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    // Other subcommands keep the usual 1 for an error.
    let output = command(&server, "not-a-token", &["apikey", "keyring", "list"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
}

#[tokio::test]
async fn keys_never_reach_the_servers_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let server = TestServer::start(
        &[
            "--dev",
            "--dev-listen-address",
            "127.0.0.1:0",
            "--dev-root-token-id",
            "root",
            "--log-level",
            "debug",
        ],
        &log,
    );
    enable_apikeys(&server).await;
    apikey_json(
        &server,
        &["keyring", "create", "acme", "--prefix", "acme_live"],
    );
    let (key, key_id) = key_of(&apikey_json(
        &server,
        &["create", "acme", "--permission", "docs.read"],
    ));
    let (rerolled, _) = key_of(&apikey_json(
        &server,
        &["reroll", "acme", &key_id, "--grace", "60s"],
    ));
    // Verified from standard input, with an argument, with a failing query, and mistyped.
    let output = crate::kv_cli::custos_with_input(&server, &["apikey", "verify", "-"], &key);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(verify(&server, &rerolled, &[]).0, 0);
    assert_eq!(verify(&server, &key, &["--permissions", "admin"]).0, 1);
    let last = if key.ends_with('x') { 'y' } else { 'x' };
    let mistyped = format!("{}{last}", &key[..key.len() - 1]);
    assert_eq!(verify(&server, &mistyped, &[]).0, 1);
    // A bad body carrying a key is refused without echoing it.
    let root = support::http_client(&server.address, Some("root"));
    let (status, answer) = support::call(
        &root,
        Method::POST,
        "apikeys/verify",
        json!({"key": key, "cost": "lots"}),
        &[],
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert!(!answer.to_string().contains(&key), "{answer}");

    let logged = std::fs::read_to_string(&log).unwrap();
    // The log does record the requests (their paths), just never a key.
    assert!(
        logged.contains("/v1/apikeys/verify"),
        "the log shows no verify request:\n{logged}"
    );
    for secret in [&key, &rerolled, &mistyped] {
        // The random part alone, in case a log line cut or re-encoded the prefix.
        let body = &secret["acme_live_".len()..];
        assert!(
            !logged.contains(body),
            "a key is in the server's log:\n{logged}"
        );
    }
}
