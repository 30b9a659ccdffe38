//! Tests of the shared kv helpers and of KV v1, and the harness the KV v2 tests share: a real
//! barrier over [`MemoryStorage`], with the raw store kept for inspection.

use std::collections::BTreeMap;
use std::sync::Arc;

use custos_crypto::{Keyring, RootKey};
use custos_storage::{MemoryStorage, Storage};
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::v1::KvV1;
use super::{
    format_go_duration, format_time, parse_bool, parse_duration_seconds, parse_go_duration,
    parse_int,
};
use crate::logical::{
    LogicalBackend, LogicalRequest, LogicalResponse, MountContext, MountStorage, Operation,
};
use crate::{Barrier, EngineError};

pub(crate) const MOUNT_UUID: &str = "test-uuid";

/// One mount over a fresh in-memory store, at a fixed time that tests move forward.
pub(crate) struct Harness {
    pub(crate) raw: Arc<MemoryStorage>,
    pub(crate) storage: MountStorage,
    pub(crate) now: Timestamp,
    pub(crate) max_value_bytes: usize,
    pub(crate) config: crate::MountConfig,
}

impl Harness {
    pub(crate) fn new() -> Harness {
        let raw = Arc::new(MemoryStorage::new());
        let barrier = Barrier::new(
            raw.clone(),
            RootKey::generate().unwrap(),
            Keyring::generate(0).unwrap(),
        );
        Harness {
            raw,
            storage: MountStorage::new(Arc::new(barrier), MOUNT_UUID),
            now: "2026-03-22T02:24:06.945319214Z".parse().unwrap(),
            max_value_bytes: 1 << 20,
            config: crate::MountConfig::default(),
        }
    }

    pub(crate) fn ctx(&self) -> MountContext {
        MountContext {
            storage: self.storage.clone(),
            mount_path: "secret/".into(),
            options: BTreeMap::new(),
            config: self.config.clone(),
            now: self.now,
            max_value_bytes: self.max_value_bytes,
            mount_uuid: "test-mount".into(),
            states: std::sync::Arc::default(),
            feed_lost: false,
        }
    }

    pub(crate) fn advance(&mut self, by: SignedDuration) {
        self.now = self.now.checked_add(by).unwrap();
    }

    /// Every key in the raw store, barrier prefix included.
    pub(crate) async fn raw_keys(&self) -> Vec<String> {
        self.raw.list("", None, 0).await.unwrap().keys
    }

    /// The raw keys of this mount, relative to it.
    pub(crate) async fn mount_keys(&self) -> Vec<String> {
        let prefix = format!("logical/{MOUNT_UUID}/");
        self.raw_keys()
            .await
            .into_iter()
            .filter_map(|key| key.strip_prefix(&prefix).map(str::to_owned))
            .collect()
    }
}

/// A request with a JSON body (`Value::Null` for none).
pub(crate) fn request(operation: Operation, path: &str, body: Value) -> LogicalRequest {
    let data = match body {
        Value::Object(map) => Some(map),
        _ => None,
    };
    LogicalRequest {
        operation,
        path: path.into(),
        data,
        query: BTreeMap::new(),
        merge_patch: operation == Operation::Patch,
        connection: crate::Connection::default(),
    }
}

/// A request with query parameters and no body.
pub(crate) fn query(operation: Operation, path: &str, pairs: &[(&str, &str)]) -> LogicalRequest {
    let mut request = request(operation, path, Value::Null);
    request.query = pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect();
    request
}

/// The data of a successful answer.
pub(crate) fn data_of(answer: Option<LogicalResponse>) -> Map<String, Value> {
    let answer = answer.expect("an answer");
    assert!(!answer.missing, "answer is marked missing: {answer:?}");
    answer.data.expect("data in the answer")
}

/// The message of an `InvalidRequest`.
pub(crate) fn invalid<T: std::fmt::Debug>(result: Result<T, EngineError>) -> String {
    match result {
        Err(EngineError::InvalidRequest(message)) => message,
        other => panic!("expected InvalidRequest, got {other:?}"),
    }
}

async fn v1(
    harness: &Harness,
    operation: Operation,
    path: &str,
    body: Value,
) -> Result<Option<LogicalResponse>, EngineError> {
    KvV1.handle(&harness.ctx(), request(operation, path, body))
        .await
}

#[test]
fn go_durations_format_like_go() {
    assert_eq!(format_go_duration(0), "0s");
    assert_eq!(format_go_duration(45), "45s");
    assert_eq!(format_go_duration(90), "1m30s");
    assert_eq!(format_go_duration(3 * 3600), "3h0m0s");
    assert_eq!(format_go_duration(2_592_000), "720h0m0s");
    assert_eq!(format_go_duration(-1), "-1s");
}

#[test]
fn go_durations_parse_like_go() {
    let second = 1_000_000_000_i128;
    assert_eq!(parse_go_duration("0"), Ok(0));
    assert_eq!(parse_go_duration("3h"), Ok(3 * 3600 * second));
    assert_eq!(parse_go_duration("1h30m"), Ok(5400 * second));
    assert_eq!(parse_go_duration("1.5h"), Ok(5400 * second));
    assert_eq!(parse_go_duration("300ms"), Ok(300_000_000));
    assert_eq!(parse_go_duration("-2s"), Ok(-2 * second));
    assert_eq!(parse_go_duration("2d"), Ok(2 * 86_400 * second));
    for bad in [
        "",
        "h",
        "3",
        "3x",
        "1..5h",
        "-",
        "3h-",
        "99999999999999999999h",
    ] {
        assert!(parse_go_duration(bad).is_err(), "{bad:?} should not parse");
    }
}

#[test]
fn duration_fields_take_seconds_or_strings() {
    assert_eq!(parse_duration_seconds("d", &json!(3600)).unwrap(), 3600);
    assert_eq!(parse_duration_seconds("d", &json!("3600")).unwrap(), 3600);
    assert_eq!(parse_duration_seconds("d", &json!("1h")).unwrap(), 3600);
    assert_eq!(parse_duration_seconds("d", &json!("1500ms")).unwrap(), 1);
    assert_eq!(parse_duration_seconds("d", &json!("")).unwrap(), 0);
    assert!(parse_duration_seconds("d", &json!("soon")).is_err());
    assert!(parse_duration_seconds("d", &json!([1])).is_err());
}

#[test]
fn weak_ints_and_bools_parse_as_vault_does() {
    assert_eq!(parse_int("n", &json!(3)).unwrap(), 3);
    assert_eq!(parse_int("n", &json!("3")).unwrap(), 3);
    assert_eq!(parse_int("n", &json!(3.0)).unwrap(), 3);
    assert!(parse_int("n", &json!(3.5)).is_err());
    assert!(parse_int("n", &json!("three")).is_err());
    assert!(parse_int("n", &json!(true)).is_err());
    assert!(parse_bool("b", &json!(true)).unwrap());
    assert!(parse_bool("b", &json!("true")).unwrap());
    assert!(!parse_bool("b", &json!("0")).unwrap());
    assert!(parse_bool("b", &json!("yes")).is_err());
}

#[test]
fn times_print_like_go_rfc3339nano() {
    let time: Timestamp = "2018-03-22T02:24:06.945319214Z".parse().unwrap();
    assert_eq!(format_time(time), "2018-03-22T02:24:06.945319214Z");
    // Go trims trailing zeros of the fraction, and drops it when it is zero.
    let time: Timestamp = "2018-03-22T02:24:06.945300000Z".parse().unwrap();
    assert_eq!(format_time(time), "2018-03-22T02:24:06.9453Z");
    let time: Timestamp = "2018-03-22T02:24:06Z".parse().unwrap();
    assert_eq!(format_time(time), "2018-03-22T02:24:06Z");
}

proptest! {
    #[test]
    fn go_duration_parsing_never_panics(input in "\\PC{0,24}") {
        let _ = parse_go_duration(&input);
    }

    #[test]
    fn formatted_durations_parse_back(seconds in -10_000_000_i64..10_000_000) {
        let text = format_go_duration(seconds);
        prop_assert_eq!(parse_go_duration(&text), Ok(i128::from(seconds) * 1_000_000_000));
    }
}

#[tokio::test]
async fn v1_writes_reads_and_deletes_a_whole_object() {
    let harness = Harness::new();
    let secret = json!({"user": "admin", "nested": {"port": 5432}, "list": [1, 2]});
    let answer = v1(&harness, Operation::Create, "app/db", secret.clone())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer.data, None, "a v1 write answers 204");
    let read = data_of(
        v1(&harness, Operation::Read, "app/db", Value::Null)
            .await
            .unwrap(),
    );
    assert_eq!(Value::Object(read), secret);

    // An update replaces the whole object.
    v1(
        &harness,
        Operation::Update,
        "app/db",
        json!({"only": "this"}),
    )
    .await
    .unwrap();
    let read = data_of(
        v1(&harness, Operation::Read, "app/db", Value::Null)
            .await
            .unwrap(),
    );
    assert_eq!(Value::Object(read), json!({"only": "this"}));

    v1(&harness, Operation::Delete, "app/db", Value::Null)
        .await
        .unwrap();
    assert_eq!(
        v1(&harness, Operation::Read, "app/db", Value::Null)
            .await
            .unwrap(),
        None
    );
    assert!(harness.mount_keys().await.is_empty());
}

#[tokio::test]
async fn v1_read_of_a_missing_path_is_none() {
    let harness = Harness::new();
    for path in ["nothing", "a/b/c", "", "folder/"] {
        assert_eq!(
            v1(&harness, Operation::Read, path, Value::Null)
                .await
                .unwrap(),
            None,
            "{path:?}"
        );
    }
}

#[tokio::test]
async fn v1_lists_immediate_children_with_folders_marked() {
    let harness = Harness::new();
    for path in ["a", "b/c", "b/d/e", "b/d/f", "z"] {
        v1(&harness, Operation::Update, path, json!({"k": "v"}))
            .await
            .unwrap();
    }
    let list = |path: &'static str| {
        let harness = &harness;
        async move {
            v1(harness, Operation::List, path, Value::Null)
                .await
                .unwrap()
                .map(|answer| answer.data.unwrap()["keys"].clone())
        }
    };
    assert_eq!(list("").await, Some(json!(["a", "b/", "z"])));
    assert_eq!(list("b").await, Some(json!(["c", "d/"])));
    assert_eq!(list("b/").await, Some(json!(["c", "d/"])));
    assert_eq!(list("b/d/").await, Some(json!(["e", "f"])));
    assert_eq!(list("nothing/").await, None, "an empty folder is a 404");
    assert_eq!(list("a/").await, None, "a leaf is not a folder");
}

#[tokio::test]
async fn v1_rejects_empty_bodies_and_oversized_values() {
    let mut harness = Harness::new();
    let message = invalid(v1(&harness, Operation::Update, "x", Value::Null).await);
    assert_eq!(message, "missing data fields");
    let message = invalid(v1(&harness, Operation::Update, "x", json!({})).await);
    assert_eq!(message, "missing data fields");

    harness.max_value_bytes = 64;
    let message = invalid(
        v1(
            &harness,
            Operation::Update,
            "x",
            json!({"blob": "x".repeat(100)}),
        )
        .await,
    );
    assert!(message.contains("too large"), "{message}");
    assert!(harness.mount_keys().await.is_empty());
}

#[tokio::test]
async fn v1_patch_and_folder_writes_are_unsupported() {
    let harness = Harness::new();
    let result = v1(&harness, Operation::Patch, "x", json!({"a": "b"})).await;
    assert!(
        matches!(result, Err(EngineError::UnsupportedOperation(_))),
        "{result:?}"
    );
    let result = v1(&harness, Operation::Update, "folder/", json!({"a": "b"})).await;
    assert!(
        matches!(result, Err(EngineError::UnsupportedOperation(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn v1_values_are_encrypted_at_rest() {
    let harness = Harness::new();
    v1(
        &harness,
        Operation::Update,
        "x",
        json!({"password": "hunter2-plaintext"}),
    )
    .await
    .unwrap();
    for key in harness.raw_keys().await {
        let entry = harness.raw.get(&key).await.unwrap().unwrap();
        let needle = b"hunter2-plaintext";
        assert!(
            !entry
                .value
                .windows(needle.len())
                .any(|window| window == needle),
            "plaintext found under {key}"
        );
    }
}

#[tokio::test]
async fn v1_refuses_paths_storage_cannot_hold() {
    let harness = Harness::new();
    let long = "a".repeat(3000);
    let message = invalid(v1(&harness, Operation::Update, &long, json!({"k": "v"})).await);
    assert!(message.contains("limit is 2048 bytes"), "{message}");
    let message = invalid(v1(&harness, Operation::Read, "a\0b", Value::Null).await);
    assert!(message.contains("NUL"), "{message}");
}

#[tokio::test]
async fn v1_reads_answer_vaults_lease_duration() {
    let mut harness = Harness::new();
    for (path, body) in [
        ("plain", json!({"x": "1"})),
        ("ttl", json!({"x": "1", "ttl": "30m"})),
        ("long", json!({"x": "1", "ttl": "5h"})),
        ("seconds", json!({"x": "1", "ttl": 90})),
        ("lease", json!({"x": "1", "lease": "10m"})),
        ("both", json!({"x": "1", "ttl": "1m", "lease": "10m"})),
        ("bad", json!({"x": "1", "ttl": "abc"})),
    ] {
        v1(&harness, Operation::Update, path, body).await.unwrap();
    }
    let lease = |harness: &Harness, path: &'static str| {
        let harness_ctx = harness.ctx();
        async move {
            KvV1.handle(&harness_ctx, request(Operation::Read, path, Value::Null))
                .await
                .unwrap()
                .unwrap()
                .lease_duration
        }
    };
    // Without a mount default: the secret's own TTL, else the system default of 768h.
    assert_eq!(lease(&harness, "plain").await, 2_764_800);
    assert_eq!(lease(&harness, "ttl").await, 1800);
    assert_eq!(lease(&harness, "long").await, 18_000);
    assert_eq!(lease(&harness, "seconds").await, 90);
    assert_eq!(lease(&harness, "lease").await, 600);
    assert_eq!(lease(&harness, "both").await, 60);
    assert_eq!(lease(&harness, "bad").await, 2_764_800);
    // With a mount default: it replaces the system default, and does not cap the secret's TTL.
    harness.config.default_lease_ttl = 3600;
    harness.config.max_lease_ttl = 7200;
    assert_eq!(lease(&harness, "plain").await, 3600);
    assert_eq!(lease(&harness, "long").await, 18_000);
    assert_eq!(lease(&harness, "bad").await, 3600);
    // Lists carry no lease.
    let list = KvV1
        .handle(&harness.ctx(), request(Operation::List, "", Value::Null))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(list.lease_duration, 0);
}
