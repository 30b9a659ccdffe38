//! Tests of KV v2 against a real barrier over an in-memory store: Vault's fields and messages,
//! version bookkeeping, what is left in raw storage, expiry, and check-and-set under concurrency.

use std::collections::BTreeSet;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value, json};

use super::{KvV2, PostureReason, merge_patch, posture};
use crate::EngineError;
use crate::kv::tests::{Harness, data_of, invalid, query, request};
use crate::logical::{LogicalBackend, LogicalRequest, LogicalResponse, Operation};

type Answer = Result<Option<LogicalResponse>, EngineError>;

async fn send(harness: &Harness, request: LogicalRequest) -> Answer {
    KvV2.handle(&harness.ctx(), request).await
}

async fn call(harness: &Harness, operation: Operation, path: &str, body: Value) -> Answer {
    send(harness, request(operation, path, body)).await
}

/// Writes `data` to `data/<path>` and returns the answer's data (the new version's metadata).
async fn put(harness: &Harness, path: &str, data: Value) -> Map<String, Value> {
    data_of(
        call(
            harness,
            Operation::Update,
            &format!("data/{path}"),
            json!({ "data": data }),
        )
        .await
        .unwrap(),
    )
}

async fn read(harness: &Harness, path: &str) -> Answer {
    call(
        harness,
        Operation::Read,
        &format!("data/{path}"),
        Value::Null,
    )
    .await
}

async fn read_version(harness: &Harness, path: &str, version: u64) -> Answer {
    send(
        harness,
        query(
            Operation::Read,
            &format!("data/{path}"),
            &[("version", &version.to_string())],
        ),
    )
    .await
}

async fn metadata(harness: &Harness, path: &str) -> Map<String, Value> {
    data_of(
        call(
            harness,
            Operation::Read,
            &format!("metadata/{path}"),
            Value::Null,
        )
        .await
        .unwrap(),
    )
}

/// A 404-with-body answer: its data.
fn missing_body(answer: Answer) -> Map<String, Value> {
    let answer = answer.unwrap().expect("an answer with a body");
    assert!(answer.missing, "expected a 404 with body, got {answer:?}");
    answer.data.unwrap()
}

fn no_content(answer: Answer) {
    let answer = answer.unwrap().expect("an answer");
    assert_eq!(answer.data, None, "expected 204, got {answer:?}");
}

/// The version keys the mount holds for `path`, as numbers.
async fn stored_versions(harness: &Harness, path: &str) -> Vec<u64> {
    let prefix = format!("ver/{path}/");
    let mut versions: Vec<u64> = harness
        .mount_keys()
        .await
        .iter()
        .filter_map(|key| key.strip_prefix(&prefix))
        .filter(|rest| !rest.contains('/'))
        .map(|rest| rest.parse().unwrap())
        .collect();
    versions.sort_unstable();
    versions
}

fn version_numbers(meta: &Map<String, Value>) -> Vec<u64> {
    let mut numbers: Vec<u64> = meta["versions"]
        .as_object()
        .unwrap()
        .keys()
        .map(|key| key.parse().unwrap())
        .collect();
    numbers.sort_unstable();
    numbers
}

#[tokio::test]
async fn write_then_read_answers_vaults_fields() {
    let harness = Harness::new();
    let written = put(&harness, "app/db", json!({"user": "admin", "port": 5432})).await;
    assert_eq!(
        Value::Object(written.clone()),
        json!({
            "created_time": "2026-03-22T02:24:06.945319214Z",
            "custom_metadata": null,
            "deletion_time": "",
            "destroyed": false,
            "version": 1,
        })
    );
    let answer = data_of(read(&harness, "app/db").await.unwrap());
    assert_eq!(
        Value::Object(answer),
        json!({
            "data": {"user": "admin", "port": 5432},
            "metadata": written,
        })
    );
}

#[tokio::test]
async fn each_write_makes_a_version_and_old_ones_stay_readable() {
    let mut harness = Harness::new();
    put(&harness, "k", json!({"v": 1})).await;
    harness.advance(SignedDuration::from_secs(5));
    let second = put(&harness, "k", json!({"v": 2})).await;
    assert_eq!(second["version"], json!(2));

    let latest = data_of(read(&harness, "k").await.unwrap());
    assert_eq!(latest["data"], json!({"v": 2}));
    let first = data_of(read_version(&harness, "k", 1).await.unwrap());
    assert_eq!(first["data"], json!({"v": 1}));
    assert_eq!(first["metadata"]["version"], json!(1));
    // version=0 means the latest, as in Vault.
    let zero = data_of(read_version(&harness, "k", 0).await.unwrap());
    assert_eq!(zero["data"], json!({"v": 2}));
    // A version that never existed is a plain 404.
    assert_eq!(read_version(&harness, "k", 3).await.unwrap(), None);
    assert_eq!(read(&harness, "other").await.unwrap(), None);

    let meta = metadata(&harness, "k").await;
    assert_eq!(
        Value::Object(meta),
        json!({
            "cas_required": false,
            "created_time": "2026-03-22T02:24:06.945319214Z",
            "current_version": 2,
            "custom_metadata": null,
            "delete_version_after": "0s",
            "max_versions": 0,
            "oldest_version": 0,
            "updated_time": "2026-03-22T02:24:11.945319214Z",
            "versions": {
                "1": {"created_time": "2026-03-22T02:24:06.945319214Z", "deletion_time": "", "destroyed": false},
                "2": {"created_time": "2026-03-22T02:24:11.945319214Z", "deletion_time": "", "destroyed": false},
            },
        })
    );
}

#[tokio::test]
async fn a_bad_version_parameter_is_rejected() {
    let harness = Harness::new();
    put(&harness, "k", json!({"v": 1})).await;
    let message = invalid(
        send(
            &harness,
            query(Operation::Read, "data/k", &[("version", "latest")]),
        )
        .await,
    );
    assert!(message.contains("version"), "{message}");
}

#[tokio::test]
async fn cas_zero_only_writes_a_new_secret() {
    let harness = Harness::new();
    let body = json!({"data": {"a": "1"}, "options": {"cas": 0}});
    let first = data_of(
        call(&harness, Operation::Create, "data/k", body.clone())
            .await
            .unwrap(),
    );
    assert_eq!(first["version"], json!(1));
    let message = invalid(call(&harness, Operation::Update, "data/k", body).await);
    assert_eq!(
        message,
        "check-and-set parameter did not match the current version"
    );
}

#[tokio::test]
async fn cas_must_name_the_current_version() {
    let harness = Harness::new();
    put(&harness, "k", json!({"a": "1"})).await;
    put(&harness, "k", json!({"a": "2"})).await;
    for wrong in [json!(1), json!(3), json!(-1), json!("1")] {
        let message = invalid(
            call(
                &harness,
                Operation::Update,
                "data/k",
                json!({"data": {"a": "x"}, "options": {"cas": wrong}}),
            )
            .await,
        );
        assert_eq!(
            message,
            "check-and-set parameter did not match the current version"
        );
    }
    // The right version, also as a string (Vault decodes it weakly).
    let written = data_of(
        call(
            &harness,
            Operation::Update,
            "data/k",
            json!({"data": {"a": "3"}, "options": {"cas": "2"}}),
        )
        .await
        .unwrap(),
    );
    assert_eq!(written["version"], json!(3));
}

#[tokio::test]
async fn malformed_cas_and_options_are_rejected() {
    let harness = Harness::new();
    for cas in [json!([1]), json!({"n": 1}), json!("two"), json!(1.5)] {
        let message = invalid(
            call(
                &harness,
                Operation::Update,
                "data/k",
                json!({"data": {"a": "x"}, "options": {"cas": cas}}),
            )
            .await,
        );
        assert_eq!(message, "error parsing check-and-set parameter");
    }
    let message = invalid(
        call(
            &harness,
            Operation::Update,
            "data/k",
            json!({"data": {"a": "x"}, "options": "cas=1"}),
        )
        .await,
    );
    assert!(
        message.contains("\"options\" must be a JSON object"),
        "{message}"
    );
    assert!(harness.mount_keys().await.is_empty());
}

#[tokio::test]
async fn cas_required_on_the_key_demands_cas() {
    let harness = Harness::new();
    put(&harness, "k", json!({"a": "1"})).await;
    no_content(
        call(
            &harness,
            Operation::Update,
            "metadata/k",
            json!({"cas_required": true}),
        )
        .await,
    );
    let message = invalid(
        call(
            &harness,
            Operation::Update,
            "data/k",
            json!({"data": {"a": "2"}}),
        )
        .await,
    );
    assert_eq!(message, "check-and-set parameter required for this call");
    let message = invalid(
        call(
            &harness,
            Operation::Patch,
            "data/k",
            json!({"data": {"a": "2"}}),
        )
        .await,
    );
    assert_eq!(message, "check-and-set parameter required for this call");
    let written = data_of(
        call(
            &harness,
            Operation::Update,
            "data/k",
            json!({"data": {"a": "2"}, "options": {"cas": 1}}),
        )
        .await
        .unwrap(),
    );
    assert_eq!(written["version"], json!(2));
    // Other keys are not affected.
    put(&harness, "other", json!({"a": "1"})).await;
}

#[tokio::test]
async fn cas_required_on_the_mount_demands_cas_everywhere() {
    let harness = Harness::new();
    no_content(
        call(
            &harness,
            Operation::Update,
            "config",
            json!({"cas_required": true}),
        )
        .await,
    );
    let message = invalid(
        call(
            &harness,
            Operation::Update,
            "data/new",
            json!({"data": {"a": "1"}}),
        )
        .await,
    );
    assert_eq!(message, "check-and-set parameter required for this call");
    let written = data_of(
        call(
            &harness,
            Operation::Update,
            "data/new",
            json!({"data": {"a": "1"}, "options": {"cas": 0}}),
        )
        .await
        .unwrap(),
    );
    assert_eq!(written["version"], json!(1));

    // Turning it off on a key does not override the mount, and Vault warns about it.
    let answer = call(
        &harness,
        Operation::Update,
        "metadata/new",
        json!({"cas_required": false}),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        answer.warnings,
        vec![
            "\"cas_required\" set to false, but is mandated by backend config. This value will be ignored."
                .to_owned()
        ]
    );
    let message = invalid(
        call(
            &harness,
            Operation::Update,
            "data/new",
            json!({"data": {"a": "2"}}),
        )
        .await,
    );
    assert_eq!(message, "check-and-set parameter required for this call");
}

#[tokio::test]
async fn data_must_be_present_and_an_object() {
    let harness = Harness::new();
    for (body, expected) in [
        (Value::Null, "no data provided"),
        (json!({}), "no data provided"),
        (json!({"data": null}), "no data provided"),
        (
            json!({"data": "text"}),
            "\"data\" must be a JSON object, got a string",
        ),
        (
            json!({"data": [1, 2]}),
            "\"data\" must be a JSON object, got an array",
        ),
        (
            json!({"data": 5}),
            "\"data\" must be a JSON object, got a number",
        ),
    ] {
        let message = invalid(call(&harness, Operation::Update, "data/k", body.clone()).await);
        assert_eq!(message, expected, "{body}");
    }
    assert!(harness.mount_keys().await.is_empty());
}

#[tokio::test]
async fn oversized_values_are_rejected_before_anything_is_written() {
    let mut harness = Harness::new();
    harness.max_value_bytes = 1024;
    put(&harness, "k", json!({"small": "x"})).await;
    let message = invalid(
        call(
            &harness,
            Operation::Update,
            "data/k",
            json!({"data": {"big": "x".repeat(2000)}}),
        )
        .await,
    );
    assert!(message.contains("too large"), "{message}");
    assert!(message.contains("1024"), "{message}");
    // A patch that makes the value too large is refused too.
    let message = invalid(
        call(
            &harness,
            Operation::Patch,
            "data/k",
            json!({"data": {"big": "x".repeat(2000)}}),
        )
        .await,
    );
    assert!(message.contains("too large"), "{message}");
    assert_eq!(metadata(&harness, "k").await["current_version"], json!(1));
    assert_eq!(stored_versions(&harness, "k").await, vec![1]);
}

#[test]
fn merge_patch_follows_rfc_7396() {
    let check = |target: Value, patch: Value, expected: Value| {
        let mut merged = target.clone();
        merge_patch(&mut merged, &patch);
        assert_eq!(merged, expected, "{target} + {patch}");
    };
    // The examples of RFC 7396, appendix A.
    check(json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"}));
    check(
        json!({"a": "b"}),
        json!({"b": "c"}),
        json!({"a": "b", "b": "c"}),
    );
    check(json!({"a": "b"}), json!({"a": null}), json!({}));
    check(
        json!({"a": "b", "b": "c"}),
        json!({"a": null}),
        json!({"b": "c"}),
    );
    check(json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"}));
    check(json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]}));
    check(
        json!({"a": {"b": "c"}}),
        json!({"a": {"b": "d", "c": null}}),
        json!({"a": {"b": "d"}}),
    );
    check(
        json!({"a": [{"b": "c"}]}),
        json!({"a": [1]}),
        json!({"a": [1]}),
    );
    check(json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"]));
    check(json!({"a": "b"}), json!(["c"]), json!(["c"]));
    check(json!({"a": "foo"}), json!(null), json!(null));
    check(json!({"a": "foo"}), json!("bar"), json!("bar"));
    check(
        json!({"e": null}),
        json!({"a": 1}),
        json!({"e": null, "a": 1}),
    );
    check(
        json!([1, 2]),
        json!({"a": "b", "c": null}),
        json!({"a": "b"}),
    );
    check(
        json!({}),
        json!({"a": {"bb": {"ccc": null}}}),
        json!({"a": {"bb": {}}}),
    );
}

#[tokio::test]
async fn patch_merges_into_the_latest_version() {
    let harness = Harness::new();
    put(
        &harness,
        "k",
        json!({"keep": "1", "drop": "2", "nested": {"a": 1, "b": 2}, "list": [1, 2]}),
    )
    .await;
    let patched = data_of(
        call(
            &harness,
            Operation::Patch,
            "data/k",
            json!({"data": {"drop": null, "nested": {"b": 3, "c": 4}, "list": [9], "new": true}, "options": {"cas": 1}}),
        )
        .await
        .unwrap(),
    );
    assert_eq!(patched["version"], json!(2));
    assert_eq!(patched["deletion_time"], json!(""));
    let latest = data_of(read(&harness, "k").await.unwrap());
    assert_eq!(
        latest["data"],
        json!({"keep": "1", "nested": {"a": 1, "b": 3, "c": 4}, "list": [9], "new": true})
    );
    // Version 1 is untouched.
    let first = data_of(read_version(&harness, "k", 1).await.unwrap());
    assert_eq!(first["data"]["drop"], json!("2"));

    let message = invalid(
        call(
            &harness,
            Operation::Patch,
            "data/k",
            json!({"data": {"x": 1}, "options": {"cas": 1}}),
        )
        .await,
    );
    assert_eq!(
        message,
        "check-and-set parameter did not match the current version"
    );
    let message = invalid(call(&harness, Operation::Patch, "data/k", json!({})).await);
    assert_eq!(message, "no data provided");
}

#[tokio::test]
async fn patch_needs_a_live_latest_version() {
    let harness = Harness::new();
    let patch = json!({"data": {"a": "1"}});
    assert_empty_404(call(&harness, Operation::Patch, "data/none", patch.clone()).await);
    put(&harness, "k", json!({"a": "0"})).await;
    no_content(call(&harness, Operation::Delete, "data/k", Value::Null).await);
    let body = missing_body(call(&harness, Operation::Patch, "data/k", patch.clone()).await);
    assert_eq!(body["version"], json!(1));
    assert_eq!(
        body["deletion_time"],
        json!("2026-03-22T02:24:06.945319214Z")
    );

    // Metadata without any version: nothing to patch.
    no_content(
        call(
            &harness,
            Operation::Update,
            "metadata/empty",
            json!({"max_versions": 3}),
        )
        .await,
    );
    assert_empty_404(call(&harness, Operation::Patch, "data/empty", patch).await);
}

/// A PATCH of a secret that does not exist is Vault's 404 with an empty body: no data, no
/// warnings.
fn assert_empty_404(answer: Answer) {
    let answer = answer.unwrap().expect("an answer");
    assert!(answer.missing, "expected a 404, got {answer:?}");
    assert_eq!(answer.data, None, "expected no body, got {answer:?}");
    assert!(
        answer.warnings.is_empty(),
        "expected no body, got {answer:?}"
    );
}

#[tokio::test]
async fn deleting_the_latest_version_is_soft_and_undoable() {
    let mut harness = Harness::new();
    put(&harness, "k", json!({"a": "1"})).await;
    harness.advance(SignedDuration::from_secs(60));
    no_content(call(&harness, Operation::Delete, "data/k", Value::Null).await);

    let body = missing_body(read(&harness, "k").await);
    assert_eq!(
        Value::Object(body),
        json!({
            "data": null,
            "metadata": {
                "created_time": "2026-03-22T02:24:06.945319214Z",
                "custom_metadata": null,
                "deletion_time": "2026-03-22T02:25:06.945319214Z",
                "destroyed": false,
                "version": 1,
            },
        })
    );
    // The data is still stored: this is a soft delete.
    assert_eq!(stored_versions(&harness, "k").await, vec![1]);
    // Deleting again changes nothing.
    harness.advance(SignedDuration::from_secs(60));
    no_content(call(&harness, Operation::Delete, "data/k", Value::Null).await);
    let meta = metadata(&harness, "k").await;
    assert_eq!(
        meta["versions"]["1"]["deletion_time"],
        json!("2026-03-22T02:25:06.945319214Z")
    );

    no_content(
        call(
            &harness,
            Operation::Update,
            "undelete/k",
            json!({"versions": [1]}),
        )
        .await,
    );
    let answer = data_of(read(&harness, "k").await.unwrap());
    assert_eq!(answer["data"], json!({"a": "1"}));
    assert_eq!(answer["metadata"]["deletion_time"], json!(""));
    // A delete of a missing secret is a no-op 204, as in Vault.
    no_content(call(&harness, Operation::Delete, "data/none", Value::Null).await);
}

#[tokio::test]
async fn delete_endpoint_soft_deletes_the_listed_versions() {
    let harness = Harness::new();
    for value in 1..=3 {
        put(&harness, "k", json!({ "v": value })).await;
    }
    no_content(
        call(
            &harness,
            Operation::Update,
            "delete/k",
            json!({"versions": [1, 3, 42]}),
        )
        .await,
    );
    missing_body(read_version(&harness, "k", 1).await);
    missing_body(read(&harness, "k").await);
    let second = data_of(read_version(&harness, "k", 2).await.unwrap());
    assert_eq!(second["data"], json!({"v": 2}));

    // Vault also takes a comma-separated string.
    no_content(
        call(
            &harness,
            Operation::Update,
            "undelete/k",
            json!({"versions": "1,3"}),
        )
        .await,
    );
    data_of(read_version(&harness, "k", 1).await.unwrap());
    data_of(read(&harness, "k").await.unwrap());

    for body in [json!({}), json!({"versions": []}), json!({"versions": ""})] {
        let message = invalid(call(&harness, Operation::Update, "delete/k", body).await);
        assert_eq!(message, "no version number provided");
    }
    let message = invalid(
        call(
            &harness,
            Operation::Update,
            "destroy/k",
            json!({"versions": ["one"]}),
        )
        .await,
    );
    assert!(message.contains("versions"), "{message}");
    let message = invalid(
        call(
            &harness,
            Operation::Update,
            "undelete/k",
            json!({"versions": {"1": true}}),
        )
        .await,
    );
    assert!(message.contains("versions"), "{message}");
}

#[tokio::test]
async fn destroy_removes_the_data_from_raw_storage() {
    let harness = Harness::new();
    put(&harness, "app/k", json!({"password": "first-secret"})).await;
    put(&harness, "app/k", json!({"password": "second-secret"})).await;
    assert_eq!(stored_versions(&harness, "app/k").await, vec![1, 2]);
    no_content(
        call(
            &harness,
            Operation::Update,
            "destroy/app/k",
            json!({"versions": [1]}),
        )
        .await,
    );

    // No key for version 1 is left anywhere in the raw store.
    let raw_keys = harness.raw_keys().await;
    assert!(
        raw_keys.iter().all(|key| !key.ends_with("ver/app/k/1")),
        "{raw_keys:?}"
    );
    assert_eq!(stored_versions(&harness, "app/k").await, vec![2]);

    let body = missing_body(read_version(&harness, "app/k", 1).await);
    assert_eq!(body["data"], Value::Null);
    assert_eq!(body["metadata"]["destroyed"], json!(true));
    assert_eq!(body["metadata"]["deletion_time"], json!(""));
    let meta = metadata(&harness, "app/k").await;
    assert_eq!(meta["versions"]["1"]["destroyed"], json!(true));
    assert_eq!(meta["versions"]["2"]["destroyed"], json!(false));

    // A destroyed version cannot come back.
    no_content(
        call(
            &harness,
            Operation::Update,
            "undelete/app/k",
            json!({"versions": [1]}),
        )
        .await,
    );
    missing_body(read_version(&harness, "app/k", 1).await);
    // Destroying a deleted version works and also removes its data.
    no_content(call(&harness, Operation::Delete, "data/app/k", Value::Null).await);
    no_content(
        call(
            &harness,
            Operation::Update,
            "destroy/app/k",
            json!({"versions": "2"}),
        )
        .await,
    );
    assert!(stored_versions(&harness, "app/k").await.is_empty());
    let body = missing_body(read(&harness, "app/k").await);
    assert_eq!(body["metadata"]["destroyed"], json!(true));
    // Destroying a missing secret is a no-op.
    no_content(
        call(
            &harness,
            Operation::Update,
            "destroy/none",
            json!({"versions": [1]}),
        )
        .await,
    );
}

#[tokio::test]
async fn metadata_delete_removes_every_version_and_the_metadata() {
    let harness = Harness::new();
    for value in 1..=3 {
        put(&harness, "app/k", json!({ "v": value })).await;
    }
    put(&harness, "app/other", json!({"v": 0})).await;
    no_content(call(&harness, Operation::Delete, "metadata/app/k", Value::Null).await);
    let keys = harness.mount_keys().await;
    assert!(
        keys.iter()
            .all(|key| !key.starts_with("ver/app/k/") && key != "meta/app/k"),
        "{keys:?}"
    );
    assert_eq!(read(&harness, "app/k").await.unwrap(), None);
    assert_eq!(read_version(&harness, "app/k", 1).await.unwrap(), None);
    assert_eq!(
        call(&harness, Operation::Read, "metadata/app/k", Value::Null)
            .await
            .unwrap(),
        None
    );
    data_of(read(&harness, "app/other").await.unwrap());
    // Writing again starts over at version 1.
    assert_eq!(
        put(&harness, "app/k", json!({"v": 9})).await["version"],
        json!(1)
    );
    no_content(call(&harness, Operation::Delete, "metadata/none", Value::Null).await);
}

#[tokio::test]
async fn key_max_versions_trims_the_oldest_versions() {
    let harness = Harness::new();
    no_content(
        call(
            &harness,
            Operation::Update,
            "metadata/k",
            json!({"max_versions": 2}),
        )
        .await,
    );
    for value in 1..=4 {
        put(&harness, "k", json!({ "v": value })).await;
    }
    let meta = metadata(&harness, "k").await;
    assert_eq!(version_numbers(&meta), vec![3, 4]);
    assert_eq!(meta["oldest_version"], json!(3));
    assert_eq!(meta["current_version"], json!(4));
    assert_eq!(meta["max_versions"], json!(2));
    assert_eq!(stored_versions(&harness, "k").await, vec![3, 4]);
    assert_eq!(read_version(&harness, "k", 1).await.unwrap(), None);
    assert_eq!(
        data_of(read_version(&harness, "k", 3).await.unwrap())["data"],
        json!({"v": 3})
    );
}

#[tokio::test]
async fn oldest_version_moves_once_the_count_reaches_max_versions() {
    let harness = Harness::new();
    no_content(
        call(
            &harness,
            Operation::Update,
            "metadata/k",
            json!({"max_versions": 3}),
        )
        .await,
    );
    // (current_version, oldest_version, kept versions) after each write, as OpenBao 2.7.2 and
    // Vault's kv plugin answer them.
    let expected: [(u64, u64, Vec<u64>); 5] = [
        (1, 0, vec![1]),
        (2, 0, vec![1, 2]),
        (3, 1, vec![1, 2, 3]),
        (4, 2, vec![2, 3, 4]),
        (5, 3, vec![3, 4, 5]),
    ];
    for (value, (current, oldest, kept)) in (1..).zip(expected) {
        put(&harness, "k", json!({ "v": value })).await;
        let meta = metadata(&harness, "k").await;
        assert_eq!(meta["current_version"], json!(current), "write {value}");
        assert_eq!(meta["oldest_version"], json!(oldest), "write {value}");
        assert_eq!(version_numbers(&meta), kept, "write {value}");
        assert_eq!(stored_versions(&harness, "k").await, kept, "write {value}");
    }

    // With max_versions 1, the first version is already the oldest.
    no_content(
        call(
            &harness,
            Operation::Update,
            "metadata/one",
            json!({"max_versions": 1}),
        )
        .await,
    );
    put(&harness, "one", json!({"v": 1})).await;
    assert_eq!(metadata(&harness, "one").await["oldest_version"], json!(1));
}

#[tokio::test]
async fn mount_max_versions_applies_unless_the_key_sets_its_own() {
    let harness = Harness::new();
    no_content(
        call(
            &harness,
            Operation::Update,
            "config",
            json!({"max_versions": 3}),
        )
        .await,
    );
    for value in 1..=5 {
        put(&harness, "k", json!({ "v": value })).await;
    }
    let meta = metadata(&harness, "k").await;
    assert_eq!(version_numbers(&meta), vec![3, 4, 5]);
    assert_eq!(meta["oldest_version"], json!(3));
    assert_eq!(stored_versions(&harness, "k").await, vec![3, 4, 5]);

    // Lowering the key's limit trims on the next write, several versions at once.
    no_content(
        call(
            &harness,
            Operation::Update,
            "metadata/k",
            json!({"max_versions": 1}),
        )
        .await,
    );
    put(&harness, "k", json!({"v": 6})).await;
    let meta = metadata(&harness, "k").await;
    assert_eq!(version_numbers(&meta), vec![6]);
    assert_eq!(meta["oldest_version"], json!(6));
    assert_eq!(stored_versions(&harness, "k").await, vec![6]);
}

#[tokio::test]
async fn ten_versions_are_kept_by_default() {
    let harness = Harness::new();
    for value in 1..=12 {
        put(&harness, "k", json!({ "v": value })).await;
    }
    let meta = metadata(&harness, "k").await;
    assert_eq!(version_numbers(&meta), (3..=12).collect::<Vec<_>>());
    assert_eq!(meta["oldest_version"], json!(3));
    assert_eq!(
        stored_versions(&harness, "k").await,
        (3..=12).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn config_reads_back_as_vault_prints_it() {
    let harness = Harness::new();
    let config = data_of(
        call(&harness, Operation::Read, "config", Value::Null)
            .await
            .unwrap(),
    );
    assert_eq!(
        Value::Object(config),
        json!({"cas_required": false, "delete_version_after": "0s", "max_versions": 0})
    );
    no_content(
        call(
            &harness,
            Operation::Update,
            "config",
            json!({"max_versions": "7", "cas_required": "true", "delete_version_after": "3h"}),
        )
        .await,
    );
    let config = data_of(
        call(&harness, Operation::Read, "config", Value::Null)
            .await
            .unwrap(),
    );
    assert_eq!(
        Value::Object(config),
        json!({"cas_required": true, "delete_version_after": "3h0m0s", "max_versions": 7})
    );
    // Fields not sent keep their value; "0s" resets.
    no_content(
        call(
            &harness,
            Operation::Update,
            "config",
            json!({"delete_version_after": "0s"}),
        )
        .await,
    );
    let config = data_of(
        call(&harness, Operation::Read, "config", Value::Null)
            .await
            .unwrap(),
    );
    assert_eq!(config["delete_version_after"], json!("0s"));
    assert_eq!(config["max_versions"], json!(7));

    for body in [
        json!({"max_versions": -1}),
        json!({"max_versions": "many"}),
        json!({"cas_required": "sure"}),
        json!({"delete_version_after": "later"}),
    ] {
        invalid(call(&harness, Operation::Update, "config", body).await);
    }
}

#[tokio::test]
async fn delete_version_after_deletes_versions_as_time_passes() {
    let mut harness = Harness::new();
    no_content(
        call(
            &harness,
            Operation::Update,
            "config",
            json!({"delete_version_after": "1h"}),
        )
        .await,
    );
    let written = put(&harness, "k", json!({"a": "1"})).await;
    assert_eq!(
        written["deletion_time"],
        json!("2026-03-22T03:24:06.945319214Z")
    );
    // Before the hour has passed the version reads normally.
    harness.advance(SignedDuration::from_mins(59));
    data_of(read(&harness, "k").await.unwrap());
    harness.advance(SignedDuration::from_mins(2));
    let body = missing_body(read(&harness, "k").await);
    assert_eq!(
        body["metadata"]["deletion_time"],
        json!("2026-03-22T03:24:06.945319214Z")
    );

    // A shorter setting on the key wins over the mount's.
    no_content(
        call(
            &harness,
            Operation::Update,
            "metadata/short",
            json!({"delete_version_after": "10m"}),
        )
        .await,
    );
    assert_eq!(
        metadata(&harness, "short").await["delete_version_after"],
        json!("10m0s")
    );
    put(&harness, "short", json!({"a": "1"})).await;
    harness.advance(SignedDuration::from_mins(11));
    missing_body(read(&harness, "short").await);
    // Undeleting schedules the deletion again, `delete_version_after` from now, as Vault does.
    no_content(
        call(
            &harness,
            Operation::Update,
            "undelete/short",
            json!({"versions": [1]}),
        )
        .await,
    );
    data_of(read(&harness, "short").await.unwrap());
    assert_eq!(
        metadata(&harness, "short").await["versions"]["1"]["deletion_time"],
        json!("2026-03-22T03:46:06.945319214Z")
    );
    harness.advance(SignedDuration::from_mins(11));
    missing_body(read(&harness, "short").await);
}

#[tokio::test]
async fn negative_delete_version_after_is_refused_on_a_key_and_disables_on_the_mount() {
    let harness = Harness::new();
    for value in [json!("-1h"), json!(-5), json!("-1")] {
        let message = invalid(
            call(
                &harness,
                Operation::Update,
                "metadata/k",
                json!({ "delete_version_after": value }),
            )
            .await,
        );
        assert!(
            message.contains("cannot provide negative value"),
            "{message}"
        );
    }
    // The mount's setting takes a negative value as "disabled" (`-1s`), as Vault does.
    no_content(
        call(
            &harness,
            Operation::Update,
            "config",
            json!({"delete_version_after": "-1h"}),
        )
        .await,
    );
    let config = data_of(
        call(&harness, Operation::Read, "config", Value::Null)
            .await
            .unwrap(),
    );
    assert_eq!(config["delete_version_after"], json!("-1s"));
    let written = put(&harness, "k", json!({"a": "1"})).await;
    assert_eq!(written["deletion_time"], json!(""));
    data_of(read(&harness, "k").await.unwrap());
}

#[tokio::test]
async fn empty_custom_metadata_reads_as_null_like_vault() {
    let harness = Harness::new();
    no_content(
        call(
            &harness,
            Operation::Update,
            "metadata/k",
            json!({"custom_metadata": {}}),
        )
        .await,
    );
    assert_eq!(
        metadata(&harness, "k").await["custom_metadata"],
        Value::Null
    );
    no_content(
        call(
            &harness,
            Operation::Patch,
            "metadata/k",
            json!({"custom_metadata": {"a": "1"}}),
        )
        .await,
    );
    assert_eq!(
        metadata(&harness, "k").await["custom_metadata"],
        json!({"a": "1"})
    );
    no_content(
        call(
            &harness,
            Operation::Patch,
            "metadata/k",
            json!({"custom_metadata": {"a": null}}),
        )
        .await,
    );
    assert_eq!(
        metadata(&harness, "k").await["custom_metadata"],
        Value::Null
    );
}

#[tokio::test]
async fn custom_metadata_is_stored_and_shown_on_reads() {
    let harness = Harness::new();
    put(&harness, "k", json!({"a": "1"})).await;
    no_content(
        call(
            &harness,
            Operation::Update,
            "metadata/k",
            json!({"custom_metadata": {"owner": "team-a", "tier": 1}}),
        )
        .await,
    );
    let meta = metadata(&harness, "k").await;
    assert_eq!(
        meta["custom_metadata"],
        json!({"owner": "team-a", "tier": "1"})
    );
    let answer = data_of(read(&harness, "k").await.unwrap());
    assert_eq!(
        answer["metadata"]["custom_metadata"],
        json!({"owner": "team-a", "tier": "1"})
    );
    // A write replaces the whole map.
    no_content(
        call(
            &harness,
            Operation::Update,
            "metadata/k",
            json!({"custom_metadata": {"owner": "team-b"}}),
        )
        .await,
    );
    assert_eq!(
        metadata(&harness, "k").await["custom_metadata"],
        json!({"owner": "team-b"})
    );
    // A write without any known field changes nothing and creates nothing.
    no_content(
        call(
            &harness,
            Operation::Update,
            "metadata/none",
            json!({"unknown": 1}),
        )
        .await,
    );
    assert_eq!(
        call(&harness, Operation::Read, "metadata/none", Value::Null)
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn custom_metadata_limits_are_vaults() {
    let harness = Harness::new();
    let too_many: Map<String, Value> = (0..65)
        .map(|index| (format!("key{index}"), json!("v")))
        .collect();
    let exactly_enough: Map<String, Value> = (0..64)
        .map(|index| (format!("key{index}"), json!("v")))
        .collect();
    let cases = [
        (
            json!(too_many),
            "payload must contain at most 64 keys, provided 65",
        ),
        (
            json!({ "k".repeat(129): "v" }),
            "but must be 0 < len(key) <= 128",
        ),
        (
            json!({"k": "v".repeat(513)}),
            "is 513 but must be 0 < len(value) <= 512",
        ),
        (json!({"k": ""}), "is 0 but must be 0 < len(value) <= 512"),
        (json!({"k\u{7}": "v"}), "contains unprintable characters"),
        (json!({"k": {"nested": "v"}}), "must be a string"),
        (json!("owner=me"), "must be an object"),
    ];
    for (custom, expected) in cases {
        let message = invalid(
            call(
                &harness,
                Operation::Update,
                "metadata/k",
                json!({ "custom_metadata": custom }),
            )
            .await,
        );
        assert!(
            message.contains(expected),
            "{message} should contain {expected}"
        );
        assert!(
            message.contains("custom_metadata validation failed"),
            "{message}"
        );
    }
    assert!(harness.mount_keys().await.is_empty());
    no_content(
        call(
            &harness,
            Operation::Update,
            "metadata/k",
            json!({ "custom_metadata": exactly_enough, "max_versions": 5 }),
        )
        .await,
    );
    let meta = metadata(&harness, "k").await;
    assert_eq!(meta["custom_metadata"].as_object().unwrap().len(), 64);
    assert_eq!(meta["current_version"], json!(0));
    assert_eq!(
        Value::Object(
            meta.iter()
                .filter(|(key, _)| *key != "created_time"
                    && *key != "updated_time"
                    && *key != "custom_metadata")
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect()
        ),
        json!({
            "cas_required": false,
            "current_version": 0,
            "delete_version_after": "0s",
            "max_versions": 5,
            "oldest_version": 0,
            "versions": {},
        })
    );
    for body in [
        json!({"max_versions": -1}),
        json!({"max_versions": [2]}),
        json!({"cas_required": "maybe"}),
        json!({"delete_version_after": "whenever"}),
    ] {
        invalid(call(&harness, Operation::Update, "metadata/k", body).await);
    }
}

#[tokio::test]
async fn metadata_patch_merges_settings_and_custom_metadata() {
    let harness = Harness::new();
    assert_eq!(
        call(
            &harness,
            Operation::Patch,
            "metadata/k",
            json!({"max_versions": 2}),
        )
        .await
        .unwrap(),
        None,
        "patching missing metadata is a 404"
    );
    put(&harness, "k", json!({"a": "1"})).await;
    no_content(
        call(
            &harness,
            Operation::Update,
            "metadata/k",
            json!({"custom_metadata": {"a": "1", "b": "2"}, "max_versions": 4}),
        )
        .await,
    );
    no_content(
        call(
            &harness,
            Operation::Patch,
            "metadata/k",
            json!({"custom_metadata": {"b": null, "c": "3"}, "cas_required": true}),
        )
        .await,
    );
    let meta = metadata(&harness, "k").await;
    assert_eq!(meta["custom_metadata"], json!({"a": "1", "c": "3"}));
    assert_eq!(meta["max_versions"], json!(4));
    assert_eq!(meta["cas_required"], json!(true));
    assert_eq!(meta["current_version"], json!(1));
    let message = invalid(
        call(
            &harness,
            Operation::Patch,
            "metadata/k",
            json!({"custom_metadata": {"d": ""}}),
        )
        .await,
    );
    assert!(message.contains("len(value)"), "{message}");
}

#[tokio::test]
async fn metadata_lists_folders_and_secrets() {
    let harness = Harness::new();
    for path in ["a", "b/c", "b/d/e", "b/d/f", "z"] {
        put(&harness, path, json!({"k": "v"})).await;
    }
    // A secret whose data is all destroyed is still listed while its metadata exists.
    no_content(
        call(
            &harness,
            Operation::Update,
            "destroy/z",
            json!({"versions": [1]}),
        )
        .await,
    );
    let list = |path: &'static str| {
        let harness = &harness;
        async move {
            call(harness, Operation::List, path, Value::Null)
                .await
                .unwrap()
                .map(|answer| answer.data.unwrap()["keys"].clone())
        }
    };
    assert_eq!(list("metadata").await, Some(json!(["a", "b/", "z"])));
    assert_eq!(list("metadata/").await, Some(json!(["a", "b/", "z"])));
    assert_eq!(list("metadata/b").await, Some(json!(["c", "d/"])));
    assert_eq!(list("metadata/b/d/").await, Some(json!(["e", "f"])));
    assert_eq!(list("metadata/nothing/").await, None);
    no_content(call(&harness, Operation::Delete, "metadata/b/c", Value::Null).await);
    assert_eq!(list("metadata/b/").await, Some(json!(["d/"])));
    let result = call(&harness, Operation::List, "data/b", Value::Null).await;
    assert!(
        matches!(result, Err(EngineError::UnsupportedOperation(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn subkeys_show_the_structure_without_values() {
    let harness = Harness::new();
    put(
        &harness,
        "k",
        json!({"foo": "abc", "bar": {"baz": "def", "deep": {"x": 1}}, "quux": {}, "list": [1]}),
    )
    .await;
    let subkeys = |depth: Option<&'static str>| {
        let harness = &harness;
        async move {
            let pairs: Vec<(&str, &str)> =
                depth.map(|depth| ("depth", depth)).into_iter().collect();
            send(harness, query(Operation::Read, "subkeys/k", &pairs)).await
        }
    };
    let all = data_of(subkeys(None).await.unwrap());
    assert_eq!(
        all["subkeys"],
        json!({"foo": null, "bar": {"baz": null, "deep": {"x": null}}, "quux": {}, "list": null})
    );
    assert_eq!(all["metadata"]["version"], json!(1));
    assert_eq!(
        data_of(subkeys(Some("1")).await.unwrap())["subkeys"],
        json!({"foo": null, "bar": null, "quux": null, "list": null})
    );
    assert_eq!(
        data_of(subkeys(Some("2")).await.unwrap())["subkeys"],
        json!({"foo": null, "bar": {"baz": null, "deep": null}, "quux": {}, "list": null})
    );
    let message = invalid(subkeys(Some("-1")).await);
    assert!(message.contains("depth"), "{message}");

    no_content(call(&harness, Operation::Delete, "data/k", Value::Null).await);
    let body = missing_body(subkeys(None).await);
    assert_eq!(body["subkeys"], Value::Null);
    assert_eq!(body["metadata"]["version"], json!(1));
    assert_eq!(
        send(&harness, query(Operation::Read, "subkeys/none", &[]))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn unknown_paths_and_operations_are_refused() {
    let harness = Harness::new();
    for path in ["data", "data/"] {
        assert_eq!(
            call(&harness, Operation::Read, path, Value::Null)
                .await
                .unwrap(),
            None,
            "{path}"
        );
    }
    for (operation, path) in [
        (Operation::Delete, "subkeys/k"),
        (Operation::Patch, "delete/k"),
        (Operation::Read, "destroy/k"),
        (Operation::Delete, "config"),
        (Operation::Update, "data/folder/"),
    ] {
        let result = call(&harness, operation, path, json!({"data": {}})).await;
        assert!(
            matches!(result, Err(EngineError::UnsupportedOperation(_))),
            "{operation:?} {path}: {result:?}"
        );
    }
}

#[tokio::test]
async fn v1_style_paths_answer_vaults_invalid_path_warning() {
    let harness = Harness::new();
    put(&harness, "foo", json!({"a": "1"})).await;
    for (operation, path, subcommand) in [
        (Operation::Read, "foo", "get"),
        (Operation::Read, "nothing/here", "get"),
        (Operation::Read, "config/extra", "get"),
        (Operation::Update, "foo", "put"),
        (Operation::Create, "foo", "put"),
        (Operation::List, "foo", "list"),
        (Operation::List, "", "list"),
        (Operation::Delete, "foo", "delete"),
        (Operation::Patch, "foo", "patch"),
    ] {
        let answer = call(&harness, operation, path, json!({"a": "2"}))
            .await
            .unwrap()
            .expect("an answer");
        assert!(answer.missing, "{operation:?} {path}: {answer:?}");
        assert_eq!(answer.data, None, "{operation:?} {path}");
        assert_eq!(
            answer.warnings,
            vec![format!(
                "Invalid path for a versioned K/V secrets engine. See the API docs for the \
                 appropriate API endpoints to use. If using the Vault CLI, use 'vault kv \
                 {subcommand}' for this operation."
            )],
            "{operation:?} {path}"
        );
    }
    // Nothing was written or deleted through the v1-style path.
    assert_eq!(
        data_of(read(&harness, "foo").await.unwrap())["data"],
        json!({"a": "1"})
    );
}

#[tokio::test]
async fn odd_paths_never_panic() {
    let harness = Harness::new();
    let paths = [
        "data/ünïcødé/🔑",
        "data/a b/c",
        "metadata/%2e%2e",
        "data/x/1",
        "data/x",
        "subkeys/x",
        "destroy/x/1",
    ];
    for path in paths {
        for operation in [
            Operation::Read,
            Operation::List,
            Operation::Create,
            Operation::Update,
            Operation::Patch,
            Operation::Delete,
        ] {
            let _ = call(
                &harness,
                operation,
                path,
                json!({"data": {"k": "v"}, "versions": [1]}),
            )
            .await;
        }
    }
    // `x` and `x/1` are different secrets even though `x/1`'s keys extend `x`'s.
    put(&harness, "p", json!({"who": "p"})).await;
    put(&harness, "p/1", json!({"who": "p/1"})).await;
    assert_eq!(
        data_of(read(&harness, "p").await.unwrap())["data"],
        json!({"who": "p"})
    );
    assert_eq!(
        data_of(read(&harness, "p/1").await.unwrap())["data"],
        json!({"who": "p/1"})
    );
    no_content(call(&harness, Operation::Delete, "metadata/p", Value::Null).await);
    assert_eq!(
        data_of(read(&harness, "p/1").await.unwrap())["data"],
        json!({"who": "p/1"})
    );
}

#[tokio::test]
async fn expired_secrets_are_refused_unless_allowed() {
    let harness = Harness::new();
    put(&harness, "old", json!({"a": "1"})).await;
    no_content(
        call(
            &harness,
            Operation::Update,
            "metadata/old",
            json!({"custom_metadata": {"expires_at": "2026-03-01T00:00:00Z"}}),
        )
        .await,
    );
    match read(&harness, "old").await {
        Err(EngineError::Expired(message)) => {
            assert!(message.contains("expired"), "{message}");
            assert!(message.contains("2026-03-01T00:00:00Z"), "{message}");
        }
        other => panic!("expected Expired, got {other:?}"),
    }
    let allowed = data_of(
        send(
            &harness,
            query(Operation::Read, "data/old", &[("allow_expired", "true")]),
        )
        .await
        .unwrap(),
    );
    assert_eq!(allowed["data"], json!({"a": "1"}));
    // Version reads are refused too; metadata stays readable.
    assert!(matches!(
        read_version(&harness, "old", 1).await,
        Err(EngineError::Expired(_))
    ));
    metadata(&harness, "old").await;

    put(&harness, "fresh", json!({"a": "1"})).await;
    no_content(
        call(
            &harness,
            Operation::Update,
            "metadata/fresh",
            json!({"custom_metadata": {"expires_at": "2027-01-01T00:00:00+01:00"}}),
        )
        .await,
    );
    data_of(read(&harness, "fresh").await.unwrap());
}

#[tokio::test]
async fn invalid_expiry_metadata_is_rejected_at_write_time() {
    let harness = Harness::new();
    for (custom, expected) in [
        (json!({"expires_at": "tomorrow"}), "expires_at"),
        (json!({"expires_at": "2026-13-01T00:00:00Z"}), "expires_at"),
        (json!({"rotation_period": "monthly"}), "rotation_period"),
        (json!({"rotation_period": "0s"}), "rotation_period"),
        (json!({"rotation_period": "-5h"}), "rotation_period"),
    ] {
        let message = invalid(
            call(
                &harness,
                Operation::Update,
                "metadata/k",
                json!({ "custom_metadata": custom }),
            )
            .await,
        );
        assert!(message.contains(expected), "{message}");
    }
    put(&harness, "k", json!({"a": "1"})).await;
    let message = invalid(
        call(
            &harness,
            Operation::Patch,
            "metadata/k",
            json!({"custom_metadata": {"expires_at": "soon"}}),
        )
        .await,
    );
    assert!(message.contains("expires_at"), "{message}");
}

#[tokio::test]
async fn posture_reports_expired_expiring_and_rotation_due_secrets() {
    let mut harness = Harness::new();
    let custom = |harness: &Harness, path: &'static str, custom: Value| {
        let request = request(
            Operation::Update,
            &format!("metadata/{path}"),
            json!({ "custom_metadata": custom }),
        );
        let ctx = harness.ctx();
        async move { KvV2.handle(&ctx, request).await.unwrap() }
    };
    put(&harness, "expired", json!({"a": "1"})).await;
    custom(
        &harness,
        "expired",
        json!({"expires_at": "2026-03-01T00:00:00Z"}),
    )
    .await;
    put(&harness, "expiring", json!({"a": "1"})).await;
    custom(
        &harness,
        "expiring",
        json!({"expires_at": "2026-03-25T00:00:00Z"}),
    )
    .await;
    put(&harness, "later", json!({"a": "1"})).await;
    custom(
        &harness,
        "later",
        json!({"expires_at": "2026-12-25T00:00:00Z"}),
    )
    .await;
    put(&harness, "app/rotate", json!({"a": "1"})).await;
    custom(&harness, "app/rotate", json!({"rotation_period": "720h"})).await;
    put(&harness, "app/rotated", json!({"a": "1"})).await;
    custom(&harness, "app/rotated", json!({"rotation_period": "720h"})).await;
    put(&harness, "plain", json!({"a": "1"})).await;

    harness.advance(SignedDuration::from_hours(24 * 31));
    put(&harness, "app/rotated", json!({"a": "2"})).await;
    let rotated_at = harness.now;
    let created: Timestamp = "2026-03-22T02:24:06.945319214Z".parse().unwrap();

    // Thirty-one days on, "expiring" (2026-03-25) has expired as well.
    let report = posture(
        &harness.storage,
        harness.now,
        SignedDuration::from_hours(24 * 7),
    )
    .await
    .unwrap();
    let found: Vec<(&str, PostureReason)> = report
        .iter()
        .map(|entry| (entry.path.as_str(), entry.reason))
        .collect();
    assert_eq!(
        found,
        vec![
            ("app/rotate", PostureReason::RotationDue),
            ("expired", PostureReason::Expired),
            ("expiring", PostureReason::Expired),
        ]
    );
    assert_eq!(report[0].last_rotated, Some(created));
    assert_eq!(report[0].expires_at, None);
    assert_eq!(
        report[1].expires_at,
        Some("2026-03-01T00:00:00Z".parse().unwrap())
    );

    // At write time, with a week's window.
    let report = posture(
        &harness.storage,
        created,
        SignedDuration::from_hours(24 * 7),
    )
    .await
    .unwrap();
    let found: Vec<(&str, &str)> = report
        .iter()
        .map(|entry| (entry.path.as_str(), entry.reason.as_str()))
        .collect();
    assert_eq!(
        found,
        vec![("expired", "expired"), ("expiring", "expiring")]
    );
    let json = report[1].to_json();
    assert_eq!(
        Value::Object(json),
        json!({
            "path": "expiring",
            "reason": "expiring",
            "expires_at": "2026-03-25T00:00:00Z",
            "last_rotated": "2026-03-22T02:24:06.945319214Z",
        })
    );
    assert!(
        report
            .iter()
            .all(|entry| entry.last_rotated != Some(rotated_at))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_cas_writers_each_win_exactly_one_version() {
    const WRITERS: usize = 32;
    let harness = Arc::new(Harness::new());
    no_content(
        call(
            &harness,
            Operation::Update,
            "metadata/race",
            json!({"max_versions": 100}),
        )
        .await,
    );
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let harness = harness.clone();
        tasks.push(tokio::spawn(async move {
            let mut attempts = 0_u32;
            loop {
                attempts += 1;
                assert!(attempts < 10_000, "writer {writer} never won");
                let current = match call(&harness, Operation::Read, "metadata/race", Value::Null)
                    .await
                    .unwrap()
                {
                    Some(answer) => answer.data.unwrap()["current_version"].as_u64().unwrap(),
                    None => 0,
                };
                let result = call(
                    &harness,
                    Operation::Update,
                    "data/race",
                    json!({"data": {"writer": writer}, "options": {"cas": current}}),
                )
                .await;
                match result {
                    Ok(answer) => {
                        let version = data_of(answer)["version"].as_u64().unwrap();
                        assert_eq!(version, current + 1);
                        return version;
                    }
                    Err(EngineError::InvalidRequest(message))
                        if message
                            == "check-and-set parameter did not match the current version" =>
                    {
                        tokio::task::yield_now().await;
                    }
                    Err(other) => panic!("writer {writer}: {other:?}"),
                }
            }
        }));
    }
    let mut won = BTreeSet::new();
    for task in tasks {
        let version = task.await.unwrap();
        assert!(won.insert(version), "version {version} won twice");
    }
    assert_eq!(won, (1..=WRITERS as u64).collect::<BTreeSet<_>>());
    let meta = metadata(&harness, "race").await;
    assert_eq!(meta["current_version"], json!(WRITERS));
    assert_eq!(
        version_numbers(&meta),
        (1..=WRITERS as u64).collect::<Vec<_>>()
    );
    // Every version holds exactly one writer's data, and every writer appears once.
    let mut writers = BTreeSet::new();
    for version in 1..=WRITERS as u64 {
        let answer = data_of(read_version(&harness, "race", version).await.unwrap());
        let writer = answer["data"]["writer"].as_u64().unwrap();
        assert!(writers.insert(writer), "writer {writer} wrote twice");
    }
    assert_eq!(writers.len(), WRITERS);
    assert_eq!(
        stored_versions(&harness, "race").await,
        (1..=WRITERS as u64).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_without_cas_lose_no_update() {
    const WRITERS: u64 = 16;
    let harness = Arc::new(Harness::new());
    no_content(
        call(
            &harness,
            Operation::Update,
            "config",
            json!({"max_versions": 50}),
        )
        .await,
    );
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let harness = harness.clone();
        tasks.push(tokio::spawn(async move {
            data_of(
                call(
                    &harness,
                    Operation::Update,
                    "data/busy",
                    json!({"data": {"writer": writer}}),
                )
                .await
                .unwrap(),
            )["version"]
                .as_u64()
                .unwrap()
        }));
    }
    let mut versions = BTreeSet::new();
    for task in tasks {
        assert!(versions.insert(task.await.unwrap()));
    }
    assert_eq!(versions, (1..=WRITERS).collect::<BTreeSet<_>>());
    assert_eq!(
        metadata(&harness, "busy").await["current_version"],
        json!(WRITERS)
    );
}

#[tokio::test]
async fn overlong_and_nul_paths_are_client_errors() {
    let harness = Harness::new();
    let long = format!("data/{}", "a".repeat(3000));
    let message = invalid(
        call(
            &harness,
            Operation::Update,
            &long,
            json!({"data": {"k": "v"}}),
        )
        .await,
    );
    assert!(message.contains("limit is 2048 bytes"), "{message}");
    let message = invalid(call(&harness, Operation::Read, "data/a\0b", Value::Null).await);
    assert!(message.contains("NUL"), "{message}");
    assert!(harness.mount_keys().await.is_empty());
}

#[tokio::test]
async fn metadata_created_before_data_keeps_its_created_time() {
    let mut harness = Harness::new();
    no_content(
        call(
            &harness,
            Operation::Update,
            "metadata/k",
            json!({"max_versions": 3}),
        )
        .await,
    );
    let created = harness.now;
    harness.advance(SignedDuration::from_secs(30));
    // cas=0 works on a key that has metadata but no version yet.
    let written = data_of(
        call(
            &harness,
            Operation::Update,
            "data/k",
            json!({"data": {"a": "1"}, "options": {"cas": 0}}),
        )
        .await
        .unwrap(),
    );
    assert_eq!(written["version"], json!(1));
    let meta = metadata(&harness, "k").await;
    assert_eq!(meta["created_time"], json!(created.to_string()));
    assert_eq!(meta["updated_time"], json!(harness.now.to_string()));
    assert_eq!(meta["max_versions"], json!(3));
}

fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
        "[a-c]{0,2}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            proptest::collection::btree_map("[a-d]", inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

proptest::proptest! {
    #[test]
    fn merge_patch_is_idempotent_and_removes_nulled_keys(
        target in json_value(),
        patch in json_value(),
    ) {
        let mut once = target;
        merge_patch(&mut once, &patch);
        let mut twice = once.clone();
        merge_patch(&mut twice, &patch);
        proptest::prop_assert_eq!(&once, &twice);
        if let (Value::Object(patch), Value::Object(merged)) = (&patch, &once) {
            for (key, value) in patch {
                if value.is_null() {
                    proptest::prop_assert!(!merged.contains_key(key));
                }
            }
        }
    }

    #[test]
    fn subkeys_keep_every_key_and_no_value(data in json_value(), depth in 0_u64..4) {
        if let Value::Object(data) = data {
            let keys = super::subkeys(&data, depth, 1);
            proptest::prop_assert_eq!(
                keys.keys().collect::<Vec<_>>(),
                data.keys().collect::<Vec<_>>()
            );
            let text = Value::Object(keys).to_string();
            proptest::prop_assert!(!text.contains("true") && !text.contains('['));
        }
    }
}

async fn put_v1(harness: &Harness, path: &str, data: Value) {
    crate::kv::v1::KvV1
        .handle(&harness.ctx(), request(Operation::Update, path, data))
        .await
        .unwrap();
}

#[tokio::test]
async fn upgrade_from_v1_converts_each_secret_once_and_resumes() {
    let harness = Harness::new();
    put_v1(&harness, "a", json!({"k": "1"})).await;
    put_v1(&harness, "folder/b", json!({"k": "2"})).await;
    // A path written through v2 after the upgrade began keeps both: its v2 data, and the v1
    // key, which is never dropped.
    put_v1(&harness, "raced", json!({"old": "v1"})).await;
    put(&harness, "raced", json!({"new": "v2"})).await;

    let converted = super::upgrade_from_v1(&harness.storage, harness.now)
        .await
        .unwrap();
    assert_eq!(converted, 2);
    let a = data_of(read(&harness, "a").await.unwrap());
    assert_eq!(a["data"], json!({"k": "1"}));
    assert_eq!(a["metadata"]["version"], 1);
    let meta = metadata(&harness, "folder/b").await;
    assert_eq!(meta["current_version"], 1);
    assert_eq!(meta["oldest_version"], 1);
    let raced = data_of(read(&harness, "raced").await.unwrap());
    assert_eq!(raced["data"], json!({"new": "v2"}));
    let left = harness.storage.list("data/", None, 0).await.unwrap().keys;
    assert_eq!(left, ["data/raced"]);

    // A second run (an interrupted upgrade resumed) converts only what is left.
    put_v1(&harness, "late", json!({"k": "3"})).await;
    let converted = super::upgrade_from_v1(&harness.storage, harness.now)
        .await
        .unwrap();
    assert_eq!(converted, 1);
    let late = data_of(read(&harness, "late").await.unwrap());
    assert_eq!(late["data"], json!({"k": "3"}));
    let a = data_of(read(&harness, "a").await.unwrap());
    assert_eq!(a["metadata"]["version"], 1);
}
