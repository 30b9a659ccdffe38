//! AppRole tests on a real barrier over `MemoryStorage`, with a fake clock; and the harness the
//! certificate tests share.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use custos_crypto::{Keyring, RootKey};
use custos_storage::{MemoryStorage, Storage};
use jiff::SignedDuration;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::{AppRole, INVALID_CREDENTIALS};
use crate::logical::{
    LogicalBackend, LogicalRequest, LogicalResponse, MountContext, MountStorage, Operation,
};
use crate::{Barrier, Clock, EngineError, FakeClock, TokenGrant};

const MOUNT_UUID: &str = "auth-test-uuid";

/// One auth mount over a fresh in-memory store, with a clock tests move forward.
pub(crate) struct Harness {
    pub(crate) raw: Arc<MemoryStorage>,
    pub(crate) storage: MountStorage,
    pub(crate) clock: FakeClock,
    pub(crate) mount_path: String,
}

impl Harness {
    pub(crate) fn new() -> Harness {
        let raw = Arc::new(MemoryStorage::new());
        let barrier = Barrier::new(
            raw.clone(),
            RootKey::generate().expect("root key"),
            Keyring::generate(0).expect("keyring"),
        );
        Harness {
            raw,
            storage: MountStorage::new(Arc::new(barrier), MOUNT_UUID),
            clock: FakeClock::new("2026-03-22T02:24:06.945319214Z".parse().expect("time")),
            mount_path: "auth/approle/".into(),
        }
    }

    /// A harness for a mount at `mount_path` (`auth/cert/`).
    pub(crate) fn at(mount_path: &str) -> Harness {
        Harness {
            mount_path: mount_path.into(),
            ..Harness::new()
        }
    }

    pub(crate) fn ctx(&self) -> MountContext {
        MountContext {
            storage: self.storage.clone(),
            mount_path: self.mount_path.clone(),
            options: BTreeMap::new(),
            config: crate::MountConfig::default(),
            now: self.clock.now(),
            max_value_bytes: 1 << 20,
            mount_uuid: "test-mount".into(),
            states: std::sync::Arc::default(),
            feed_lost: false,
        }
    }

    /// The mount's raw keys, relative to it.
    pub(crate) async fn mount_keys(&self) -> Vec<String> {
        let prefix = format!("logical/{MOUNT_UUID}/");
        self.raw
            .list("", None, 0)
            .await
            .expect("list")
            .keys
            .into_iter()
            .filter_map(|key| key.strip_prefix(&prefix).map(str::to_owned))
            .collect()
    }

    /// Every raw value of the store, as bytes (sealed).
    pub(crate) async fn raw_values(&self) -> Vec<Vec<u8>> {
        let mut values = Vec::new();
        for key in self.raw.list("", None, 0).await.expect("list").keys {
            if let Some(entry) = self.raw.get(&key).await.expect("get") {
                values.push(entry.value.to_vec());
            }
        }
        values
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
        merge_patch: false,
        connection: crate::Connection::default(),
    }
}

/// The data of a successful answer.
pub(crate) fn data_of(answer: Option<LogicalResponse>) -> Map<String, Value> {
    answer.expect("an answer").data.expect("data in the answer")
}

/// The message of an `InvalidRequest`.
pub(crate) fn invalid<T: std::fmt::Debug>(result: Result<T, EngineError>) -> String {
    match result {
        Err(EngineError::InvalidRequest(message)) => message,
        other => panic!("expected InvalidRequest, got {other:?}"),
    }
}

/// The grant of a successful login.
pub(crate) fn grant_of(answer: Result<Option<LogicalResponse>, EngineError>) -> TokenGrant {
    let answer = answer.expect("login succeeds").expect("an answer");
    assert!(answer.data.is_none(), "a login answers no data");
    answer.grant.expect("a grant")
}

async fn call(
    harness: &Harness,
    operation: Operation,
    path: &str,
    body: Value,
) -> Result<Option<LogicalResponse>, EngineError> {
    AppRole
        .handle(&harness.ctx(), request(operation, path, body))
        .await
}

async fn login_from(
    harness: &Harness,
    role_id: &str,
    secret_id: &str,
    address: Option<&str>,
) -> Result<Option<LogicalResponse>, EngineError> {
    let mut login = request(
        Operation::Update,
        "login",
        json!({"role_id": role_id, "secret_id": secret_id}),
    );
    login.connection.remote_addr = address.map(|address| address.parse().expect("address"));
    AppRole.handle(&harness.ctx(), login).await
}

async fn login(
    harness: &Harness,
    role_id: &str,
    secret_id: &str,
) -> Result<Option<LogicalResponse>, EngineError> {
    login_from(harness, role_id, secret_id, Some("127.0.0.1")).await
}

async fn role_id(harness: &Harness, role: &str) -> String {
    let data = data_of(
        call(
            harness,
            Operation::Read,
            &format!("role/{role}/role-id"),
            Value::Null,
        )
        .await
        .expect("role-id"),
    );
    data["role_id"].as_str().expect("role_id").to_owned()
}

/// Generates a secret id; answers (secret_id, accessor).
async fn secret_id(harness: &Harness, role: &str, body: Value) -> (String, String) {
    let data = data_of(
        call(
            harness,
            Operation::Update,
            &format!("role/{role}/secret-id"),
            body,
        )
        .await
        .expect("secret-id"),
    );
    (
        data["secret_id"].as_str().expect("secret_id").to_owned(),
        data["secret_id_accessor"]
            .as_str()
            .expect("accessor")
            .to_owned(),
    )
}

async fn write_role(harness: &Harness, role: &str, body: Value) {
    let answer = call(harness, Operation::Update, &format!("role/{role}"), body)
        .await
        .expect("role written");
    assert_eq!(answer, Some(LogicalResponse::no_content()));
}

#[tokio::test]
async fn role_crud_answers_vault_shapes() {
    let harness = Harness::new();
    write_role(
        &harness,
        "web",
        json!({"token_policies": "b,a", "secret_id_ttl": "10m", "secret_id_num_uses": 3,
               "token_ttl": "1h", "token_bound_cidrs": ["10.0.0.0/8"]}),
    )
    .await;
    let data = data_of(
        call(&harness, Operation::Read, "role/web", Value::Null)
            .await
            .expect("read"),
    );
    assert_eq!(
        Value::Object(data),
        json!({
            "bind_secret_id": true,
            "local_secret_ids": false,
            "secret_id_bound_cidrs": null,
            "secret_id_num_uses": 3,
            "secret_id_ttl": 600,
            "token_bound_cidrs": ["10.0.0.0/8"],
            "token_explicit_max_ttl": 0,
            "token_max_ttl": 0,
            "token_no_default_policy": false,
            "token_num_uses": 0,
            "token_period": 0,
            "token_policies": ["a", "b"],
            "token_strictly_bind_ip": false,
            "token_ttl": 3600,
            "token_type": "default",
        })
    );
    // An update changes only the fields it names.
    write_role(&harness, "web", json!({"secret_id_num_uses": 5})).await;
    let data = data_of(
        call(&harness, Operation::Read, "role/web", Value::Null)
            .await
            .expect("read"),
    );
    assert_eq!(data["secret_id_num_uses"], json!(5));
    assert_eq!(data["token_ttl"], json!(3600));
    write_role(&harness, "db", json!({})).await;
    let list = data_of(
        call(&harness, Operation::List, "role", Value::Null)
            .await
            .expect("list"),
    );
    assert_eq!(list["keys"], json!(["db", "web"]));
    call(&harness, Operation::Delete, "role/web", Value::Null)
        .await
        .expect("delete");
    assert_eq!(
        call(&harness, Operation::Read, "role/web", Value::Null)
            .await
            .expect("read"),
        None
    );
    // Deleting again is not an error, as in Vault.
    call(&harness, Operation::Delete, "role/web", Value::Null)
        .await
        .expect("delete again");
}

#[tokio::test]
async fn bad_role_input_is_refused_with_400() {
    let harness = Harness::new();
    for (body, expected) in [
        (json!({"token_ttl": "abc"}), "token_ttl"),
        (
            json!({"secret_id_num_uses": -2}),
            "secret_id_num_uses cannot be negative",
        ),
        (json!({"secret_id_num_uses": "many"}), "secret_id_num_uses"),
        (json!({"bind_secret_id": "perhaps"}), "bind_secret_id"),
        (json!({"token_type": "weird"}), "token_type"),
        (
            json!({"token_bound_cidrs": "1.2.3.4/33"}),
            "invalid CIDR block",
        ),
        (
            json!({"secret_id_bound_cidrs": ["nonsense"]}),
            "invalid CIDR block",
        ),
        (
            json!({"token_ttl": "2h", "token_max_ttl": "1h"}),
            "'token_ttl' cannot be greater than 'token_max_ttl'",
        ),
        (
            json!({"bind_secret_id": false}),
            "at least one constraint should be enabled on the role",
        ),
        (json!({"role_id": 17}), "role_id must be a string"),
    ] {
        let message = invalid(call(&harness, Operation::Update, "role/r", body.clone()).await);
        assert!(message.contains(expected), "{body}: {message}");
    }
    assert!(
        harness
            .mount_keys()
            .await
            .iter()
            .all(|key| !key.starts_with("role/"))
    );
    let message = invalid(call(&harness, Operation::Update, "role/bad%name", json!({})).await);
    assert!(message.contains("invalid role name"), "{message}");
    // A role without a secret id is fine once an address binds it.
    write_role(
        &harness,
        "ip-only",
        json!({"bind_secret_id": false, "secret_id_bound_cidrs": "127.0.0.0/8"}),
    )
    .await;
    let message = invalid(
        call(
            &harness,
            Operation::Update,
            "role/ip-only",
            json!({"local_secret_ids": true}),
        )
        .await,
    );
    assert!(
        message.contains("only be modified during role creation"),
        "{message}"
    );
}

#[tokio::test]
async fn unknown_roles_and_paths() {
    let harness = Harness::new();
    for (operation, path) in [
        (Operation::Read, "role/nope"),
        (Operation::Read, "role/nope/role-id"),
        (Operation::List, "role"),
        (Operation::Read, "nothing/here"),
    ] {
        assert_eq!(
            call(&harness, operation, path, Value::Null)
                .await
                .expect(path),
            None,
            "{path}"
        );
    }
    for path in ["role/nope/secret-id", "role/nope/custom-secret-id"] {
        let result = call(&harness, Operation::Update, path, json!({"secret_id": "x"})).await;
        assert!(
            matches!(result, Err(EngineError::NotFound(_))),
            "{path}: {result:?}"
        );
    }
    let result = call(&harness, Operation::Delete, "login", Value::Null).await;
    assert!(
        matches!(result, Err(EngineError::UnsupportedOperation(_))),
        "{result:?}"
    );
    assert_eq!(AppRole.unauthenticated_paths(), ["login"]);
}

#[tokio::test]
async fn login_issues_a_grant_with_the_role_settings() {
    let harness = Harness::new();
    write_role(
        &harness,
        "web",
        json!({"token_policies": "app", "token_ttl": "20m", "token_max_ttl": "1h",
               "token_num_uses": 4, "token_bound_cidrs": "10.0.0.0/8"}),
    )
    .await;
    let role_id = role_id(&harness, "web").await;
    let (secret_id, _) =
        secret_id(&harness, "web", json!({"metadata": "{\"team\":\"blue\"}"})).await;
    let grant = grant_of(login(&harness, &role_id, &secret_id).await);
    assert_eq!(grant.policies, ["app"]);
    assert_eq!(grant.display_name, "approle");
    assert_eq!((grant.ttl, grant.max_ttl, grant.num_uses), (1200, 3600, 4));
    assert_eq!(
        grant.bound_cidrs,
        vec!["10.0.0.0/8".parse::<custos_core::Cidr>().expect("cidr")]
    );
    assert_eq!(grant.metadata["role_name"], "web");
    assert_eq!(grant.metadata["team"], "blue");
    assert!(grant.renewable);
    assert_eq!(grant.bound_cert_fingerprint, None);
    // Without a use limit the secret id keeps working.
    grant_of(login(&harness, &role_id, &secret_id).await);
}

#[tokio::test]
async fn wrong_ids_get_one_answer() {
    let harness = Harness::new();
    write_role(&harness, "web", json!({})).await;
    write_role(&harness, "other", json!({})).await;
    let role_id = role_id(&harness, "web").await;
    let other_role_id = self::role_id(&harness, "other").await;
    let (secret_id, _) = secret_id(&harness, "web", json!({})).await;
    for (role, secret) in [
        (role_id.as_str(), "not-the-secret"),
        ("not-a-role", secret_id.as_str()),
        ("not-a-role", "not-the-secret"),
        // A secret id of one role does not open another.
        (other_role_id.as_str(), secret_id.as_str()),
    ] {
        assert_eq!(
            invalid(login(&harness, role, secret).await),
            INVALID_CREDENTIALS
        );
    }
    // A missing secret id is reported alike for known and unknown role ids.
    for role_id in [role_id.as_str(), "not-a-role"] {
        let missing = AppRole
            .handle(
                &harness.ctx(),
                request(Operation::Update, "login", json!({"role_id": role_id})),
            )
            .await;
        assert_eq!(invalid(missing), "missing secret_id");
    }
    let missing = AppRole
        .handle(
            &harness.ctx(),
            request(Operation::Update, "login", json!({})),
        )
        .await;
    assert_eq!(invalid(missing), "missing role_id");
    let wrong_type = AppRole
        .handle(
            &harness.ctx(),
            request(
                Operation::Update,
                "login",
                json!({"role_id": ["x"], "secret_id": "y"}),
            ),
        )
        .await;
    assert_eq!(invalid(wrong_type), "role_id must be a string");
}

#[tokio::test]
async fn secret_ids_are_stored_only_as_keyed_hashes() {
    let harness = Harness::new();
    write_role(&harness, "web", json!({})).await;
    call(
        &harness,
        Operation::Update,
        "role/web/custom-secret-id",
        json!({"secret_id": "a-very-recognisable-secret-id"}),
    )
    .await
    .expect("custom secret id");
    let needle = b"a-very-recognisable-secret-id";
    let mut found_record = false;
    for key in harness.mount_keys().await {
        assert!(!key.contains("recognisable"), "{key}");
        found_record |= key.starts_with("secret-id/");
    }
    assert!(found_record);
    // The barrier seals values, and the record inside holds only the hash anyway.
    for value in harness.raw_values().await {
        assert!(!value.windows(needle.len()).any(|window| window == needle));
    }
    let record_key = harness
        .mount_keys()
        .await
        .into_iter()
        .find(|key| key.starts_with("secret-id/"))
        .expect("record");
    let record = harness
        .storage
        .get(&record_key)
        .await
        .expect("get")
        .expect("record");
    assert!(
        !record
            .value
            .windows(needle.len())
            .any(|window| window == needle)
    );
    // Registering the same secret id again is refused.
    let again = call(
        &harness,
        Operation::Update,
        "role/web/custom-secret-id",
        json!({"secret_id": "a-very-recognisable-secret-id"}),
    )
    .await;
    assert_eq!(invalid(again), "SecretID is already registered");
}

#[tokio::test]
async fn role_id_can_be_set_and_old_one_stops_working() {
    let harness = Harness::new();
    write_role(&harness, "web", json!({})).await;
    write_role(&harness, "db", json!({})).await;
    let old = role_id(&harness, "web").await;
    let (secret_id, _) = secret_id(&harness, "web", json!({})).await;
    call(
        &harness,
        Operation::Update,
        "role/web/role-id",
        json!({"role_id": "custom-role-id"}),
    )
    .await
    .expect("set role id");
    assert_eq!(role_id(&harness, "web").await, "custom-role-id");
    assert_eq!(
        invalid(login(&harness, &old, &secret_id).await),
        INVALID_CREDENTIALS
    );
    grant_of(login(&harness, "custom-role-id", &secret_id).await);
    // Another role cannot take it.
    let taken = call(
        &harness,
        Operation::Update,
        "role/db",
        json!({"role_id": "custom-role-id"}),
    )
    .await;
    assert_eq!(invalid(taken), "role_id already in use");
    let taken = call(
        &harness,
        Operation::Update,
        "role/db/role-id",
        json!({"role_id": "custom-role-id"}),
    )
    .await;
    assert_eq!(invalid(taken), "role_id already in use");
    let missing = call(&harness, Operation::Update, "role/web/role-id", json!({})).await;
    assert_eq!(invalid(missing), "missing role_id");
}

#[tokio::test]
async fn secret_id_lookup_accessors_and_destroy() {
    let harness = Harness::new();
    write_role(&harness, "web", json!({"secret_id_ttl": "10m"})).await;
    let (first, first_accessor) = secret_id(
        &harness,
        "web",
        json!({"metadata": {"a": "b"}, "cidr_list": "127.0.0.0/8", "num_uses": 2}),
    )
    .await;
    let (second, second_accessor) = secret_id(&harness, "web", json!({"ttl": 60})).await;
    let looked_up = data_of(
        call(
            &harness,
            Operation::Update,
            "role/web/secret-id/lookup",
            json!({"secret_id": first}),
        )
        .await
        .expect("lookup"),
    );
    assert_eq!(looked_up["secret_id_accessor"], json!(first_accessor));
    assert_eq!(looked_up["cidr_list"], json!(["127.0.0.0/8"]));
    assert_eq!(looked_up["metadata"], json!({"a": "b"}));
    assert_eq!(looked_up["secret_id_num_uses"], json!(2));
    assert_eq!(looked_up["secret_id_ttl"], json!(600));
    assert_eq!(
        looked_up["creation_time"],
        json!("2026-03-22T02:24:06.945319214Z")
    );
    assert_eq!(
        looked_up["expiration_time"],
        json!("2026-03-22T02:34:06.945319214Z")
    );
    let by_accessor = data_of(
        call(
            &harness,
            Operation::Update,
            "role/web/secret-id-accessor/lookup",
            json!({"secret_id_accessor": first_accessor}),
        )
        .await
        .expect("accessor lookup"),
    );
    assert_eq!(by_accessor, looked_up);
    let mut accessors = vec![first_accessor.clone(), second_accessor.clone()];
    accessors.sort();
    let list = data_of(
        call(&harness, Operation::List, "role/web/secret-id", Value::Null)
            .await
            .expect("list"),
    );
    assert_eq!(list["keys"], json!(accessors));
    // An unknown secret id looks up as nothing (204), an unknown accessor as 404.
    let unknown = call(
        &harness,
        Operation::Update,
        "role/web/secret-id/lookup",
        json!({"secret_id": "unknown"}),
    )
    .await
    .expect("lookup");
    assert_eq!(unknown, Some(LogicalResponse::no_content()));
    let unknown = call(
        &harness,
        Operation::Update,
        "role/web/secret-id-accessor/lookup",
        json!({"secret_id_accessor": "unknown"}),
    )
    .await;
    assert!(
        matches!(unknown, Err(EngineError::NotFound(_))),
        "{unknown:?}"
    );
    // Destroy by secret id, then by accessor: both stop logging in.
    let role_id = role_id(&harness, "web").await;
    call(
        &harness,
        Operation::Update,
        "role/web/secret-id/destroy",
        json!({"secret_id": first}),
    )
    .await
    .expect("destroy");
    assert_eq!(
        invalid(login(&harness, &role_id, &first).await),
        INVALID_CREDENTIALS
    );
    call(
        &harness,
        Operation::Delete,
        "role/web/secret-id-accessor/destroy",
        json!({"secret_id_accessor": second_accessor}),
    )
    .await
    .expect("destroy by accessor");
    assert_eq!(
        invalid(login(&harness, &role_id, &second).await),
        INVALID_CREDENTIALS
    );
    assert_eq!(
        call(&harness, Operation::List, "role/web/secret-id", Value::Null)
            .await
            .expect("list"),
        None
    );
    assert!(
        harness
            .mount_keys()
            .await
            .iter()
            .all(|key| !key.starts_with("secret-id/") && !key.starts_with("accessor/"))
    );
}

#[tokio::test]
async fn secret_id_limits_follow_the_role() {
    let harness = Harness::new();
    write_role(
        &harness,
        "web",
        json!({"secret_id_ttl": "10m", "secret_id_num_uses": 3}),
    )
    .await;
    for (body, expected) in [
        (
            json!({"ttl": "20m"}),
            "ttl cannot be longer than the role's secret_id_ttl",
        ),
        (
            json!({"ttl": 0}),
            "ttl cannot be longer than the role's secret_id_ttl",
        ),
        (
            json!({"num_uses": 5}),
            "num_uses cannot be higher than the role's secret_id_num_uses",
        ),
        (json!({"num_uses": -1}), "num_uses cannot be negative"),
        (json!({"metadata": "notjson"}), "failed to parse metadata"),
        (json!({"metadata": {"a": 1}}), "failed to parse metadata"),
        (json!({"cidr_list": "300.0.0.0/8"}), "invalid CIDR block"),
    ] {
        let message = invalid(
            call(
                &harness,
                Operation::Update,
                "role/web/secret-id",
                body.clone(),
            )
            .await,
        );
        assert!(message.contains(expected), "{body}: {message}");
    }
    write_role(
        &harness,
        "bound",
        json!({"secret_id_bound_cidrs": "10.0.0.0/8"}),
    )
    .await;
    let message = invalid(
        call(
            &harness,
            Operation::Update,
            "role/bound/secret-id",
            json!({"cidr_list": "0.0.0.0/0"}),
        )
        .await,
    );
    assert!(message.contains("subset relationship"), "{message}");
    secret_id(&harness, "bound", json!({"cidr_list": "10.1.0.0/16"})).await;
    write_role(
        &harness,
        "open",
        json!({"bind_secret_id": false, "secret_id_bound_cidrs": "127.0.0.0/8"}),
    )
    .await;
    let message = invalid(
        call(
            &harness,
            Operation::Update,
            "role/open/secret-id",
            json!({}),
        )
        .await,
    );
    assert_eq!(message, "bind_secret_id is not set on the role");
}

#[tokio::test]
async fn num_uses_are_spent_and_the_last_use_deletes() {
    let harness = Harness::new();
    write_role(&harness, "web", json!({})).await;
    let role_id = role_id(&harness, "web").await;
    let (secret_id, _) = secret_id(&harness, "web", json!({"num_uses": 2})).await;
    grant_of(login(&harness, &role_id, &secret_id).await);
    let looked_up = data_of(
        call(
            &harness,
            Operation::Update,
            "role/web/secret-id/lookup",
            json!({"secret_id": secret_id}),
        )
        .await
        .expect("lookup"),
    );
    assert_eq!(looked_up["secret_id_num_uses"], json!(1));
    grant_of(login(&harness, &role_id, &secret_id).await);
    assert_eq!(
        invalid(login(&harness, &role_id, &secret_id).await),
        INVALID_CREDENTIALS
    );
    assert!(
        harness
            .mount_keys()
            .await
            .iter()
            .all(|key| !key.starts_with("secret-id/") && !key.starts_with("accessor/"))
    );
}

#[tokio::test]
async fn concurrent_logins_never_spend_more_uses_than_there_are() {
    let harness = Arc::new(Harness::new());
    write_role(&harness, "web", json!({})).await;
    let role_id = role_id(&harness, "web").await;
    let (secret_id, _) = secret_id(&harness, "web", json!({"num_uses": 3})).await;
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let harness = harness.clone();
        let role_id = role_id.clone();
        let secret_id = secret_id.clone();
        tasks.push(tokio::spawn(async move {
            login(&harness, &role_id, &secret_id).await
        }));
    }
    let mut successes = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(_) => successes += 1,
            Err(EngineError::InvalidRequest(message)) => assert_eq!(message, INVALID_CREDENTIALS),
            // Losing the compare-and-swap race too often is a retryable conflict, never a use.
            Err(EngineError::Conflict) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(successes, 3);
}

#[tokio::test]
async fn expired_secret_ids_are_refused_at_once() {
    let harness = Harness::new();
    write_role(&harness, "web", json!({"secret_id_ttl": "10m"})).await;
    let role_id = role_id(&harness, "web").await;
    let (secret_id, accessor) = secret_id(&harness, "web", json!({})).await;
    harness.clock.advance(SignedDuration::from_secs(599));
    grant_of(login(&harness, &role_id, &secret_id).await);
    harness.clock.advance(SignedDuration::from_secs(1));
    assert_eq!(
        invalid(login(&harness, &role_id, &secret_id).await),
        INVALID_CREDENTIALS
    );
    // The refusal removed it.
    let gone = call(
        &harness,
        Operation::Update,
        "role/web/secret-id-accessor/lookup",
        json!({"secret_id_accessor": accessor}),
    )
    .await;
    assert!(matches!(gone, Err(EngineError::NotFound(_))), "{gone:?}");
}

#[tokio::test]
async fn tidy_removes_expired_secret_ids_only() {
    let harness = Harness::new();
    write_role(&harness, "web", json!({})).await;
    let role_id = role_id(&harness, "web").await;
    secret_id(&harness, "web", json!({"ttl": 60})).await;
    secret_id(&harness, "web", json!({"ttl": 60})).await;
    harness.clock.advance(SignedDuration::from_secs(120));
    let (live, _) = secret_id(&harness, "web", json!({})).await;
    let tidied = data_of(
        call(&harness, Operation::Update, "tidy/secret-id", Value::Null)
            .await
            .expect("tidy"),
    );
    assert_eq!(tidied["secret_ids_removed"], json!(2));
    assert_eq!(tidied["accessors_removed"], json!(2));
    let list = data_of(
        call(&harness, Operation::List, "role/web/secret-id", Value::Null)
            .await
            .expect("list"),
    );
    assert_eq!(list["keys"].as_array().expect("keys").len(), 1);
    grant_of(login(&harness, &role_id, &live).await);
}

#[tokio::test]
async fn deleting_a_role_removes_its_secret_ids() {
    let harness = Harness::new();
    write_role(&harness, "web", json!({})).await;
    let role_id = role_id(&harness, "web").await;
    let (secret_id, _) = secret_id(&harness, "web", json!({})).await;
    call(&harness, Operation::Delete, "role/web", Value::Null)
        .await
        .expect("delete");
    assert_eq!(
        harness.mount_keys().await,
        ["hmac-key"],
        "only the mount key is left"
    );
    // Created again under the same name, it has a new role id and none of the old secret ids.
    write_role(&harness, "web", json!({})).await;
    assert_ne!(self::role_id(&harness, "web").await, role_id);
    let new_role_id = self::role_id(&harness, "web").await;
    assert_eq!(
        invalid(login(&harness, &new_role_id, &secret_id).await),
        INVALID_CREDENTIALS
    );
}

#[tokio::test]
async fn secret_id_cidrs_bind_the_login_address() {
    let harness = Harness::new();
    write_role(&harness, "web", json!({})).await;
    let role_id = role_id(&harness, "web").await;
    let (secret_id, _) = secret_id(
        &harness,
        "web",
        json!({"cidr_list": "127.0.0.2/32", "num_uses": 1}),
    )
    .await;
    let refused = invalid(login_from(&harness, &role_id, &secret_id, Some("127.0.0.3")).await);
    assert!(
        refused.contains("unauthorized through CIDR restrictions on the secret ID"),
        "{refused}"
    );
    let refused = invalid(login_from(&harness, &role_id, &secret_id, None).await);
    assert!(refused.contains("unauthorized"), "{refused}");
    // The refused attempts did not spend the single use.
    grant_of(login_from(&harness, &role_id, &secret_id, Some("127.0.0.2")).await);
}

#[tokio::test]
async fn role_cidrs_bind_the_login_address_and_token_cidrs_the_token() {
    let harness = Harness::new();
    write_role(
        &harness,
        "web",
        json!({"secret_id_bound_cidrs": "127.0.0.0/30", "token_bound_cidrs": "10.0.0.0/8"}),
    )
    .await;
    let role_id = role_id(&harness, "web").await;
    let (secret_id, _) =
        secret_id(&harness, "web", json!({"token_bound_cidrs": "10.1.0.0/16"})).await;
    let refused = invalid(login_from(&harness, &role_id, &secret_id, Some("127.0.0.9")).await);
    assert!(
        refused.contains("unauthorized by CIDR restrictions on the role"),
        "{refused}"
    );
    let grant = grant_of(login_from(&harness, &role_id, &secret_id, Some("127.0.0.2")).await);
    // The secret id's token CIDRs replace the role's.
    assert_eq!(
        grant.bound_cidrs,
        vec!["10.1.0.0/16".parse::<custos_core::Cidr>().expect("cidr")]
    );
    // A role without secret ids: the address is the credential.
    write_role(
        &harness,
        "ip",
        json!({"bind_secret_id": false, "secret_id_bound_cidrs": "127.0.0.2"}),
    )
    .await;
    let ip_role_id = self::role_id(&harness, "ip").await;
    let mut open = request(Operation::Update, "login", json!({"role_id": ip_role_id}));
    open.connection.remote_addr = Some(IpAddr::from([127, 0, 0, 2]));
    grant_of(AppRole.handle(&harness.ctx(), open.clone()).await);
    open.connection.remote_addr = Some(IpAddr::from([127, 0, 0, 3]));
    // Without a secret id, the refusal does not tell that the role id was right.
    let refused = invalid(AppRole.handle(&harness.ctx(), open).await);
    assert_eq!(refused, INVALID_CREDENTIALS);
}

#[tokio::test]
async fn login_answers_have_data_for_wrapping_secret_ids() {
    // Response wrapping needs `data` in the answer; secret-id generation has it.
    let harness = Harness::new();
    write_role(&harness, "web", json!({})).await;
    let answer = call(&harness, Operation::Update, "role/web/secret-id", json!({}))
        .await
        .expect("secret-id")
        .expect("answer");
    let data = answer.data.expect("data");
    assert_eq!(data["secret_id_num_uses"], json!(0));
    assert_eq!(data["secret_id_ttl"], json!(0));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever a guesser sends as the secret id, it never logs in.
    #[test]
    fn random_wrong_secret_ids_never_log_in(guesses in proptest::collection::vec(".{0,80}", 1..8)) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        runtime.block_on(async {
            let harness = Harness::new();
            write_role(&harness, "web", json!({})).await;
            let role_id = role_id(&harness, "web").await;
            let (secret_id, _) = secret_id(&harness, "web", json!({})).await;
            for guess in &guesses {
                if *guess == secret_id {
                    continue;
                }
                let result = login(&harness, &role_id, guess).await;
                prop_assert!(result.is_err(), "{guess:?} logged in");
            }
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn one_field_endpoints_read_write_and_reset() {
    let harness = Harness::new();
    write_role(&harness, "web", json!({"token_policies": "a"})).await;
    let read = |path: &'static str| {
        let harness = &harness;
        async move {
            data_of(
                call(
                    harness,
                    Operation::Read,
                    &format!("role/web/{path}"),
                    Value::Null,
                )
                .await
                .expect("read"),
            )
        }
    };
    assert_eq!(
        Value::Object(read("policies").await),
        json!({"token_policies": ["a"]})
    );
    call(
        &harness,
        Operation::Update,
        "role/web/policies",
        json!({"policies": "x,y"}),
    )
    .await
    .expect("write");
    assert_eq!(
        Value::Object(read("policies").await),
        json!({"token_policies": ["x", "y"]})
    );
    call(
        &harness,
        Operation::Update,
        "role/web/token-ttl",
        json!({"token_ttl": "1h"}),
    )
    .await
    .expect("write");
    assert_eq!(
        Value::Object(read("token-ttl").await),
        json!({"token_ttl": 3600})
    );
    call(
        &harness,
        Operation::Delete,
        "role/web/token-ttl",
        Value::Null,
    )
    .await
    .expect("reset");
    assert_eq!(
        Value::Object(read("token-ttl").await),
        json!({"token_ttl": 0})
    );
    call(
        &harness,
        Operation::Update,
        "role/web/secret-id-bound-cidrs",
        json!({"secret_id_bound_cidrs": "10.0.0.0/8"}),
    )
    .await
    .expect("write");
    assert_eq!(
        Value::Object(read("secret-id-bound-cidrs").await),
        json!({"secret_id_bound_cidrs": ["10.0.0.0/8"]})
    );
    assert_eq!(
        Value::Object(read("local-secret-ids").await),
        json!({"local_secret_ids": false})
    );
    let missing = call(&harness, Operation::Update, "role/web/token-ttl", json!({})).await;
    assert_eq!(invalid(missing), "missing token_ttl");
    let bad = call(
        &harness,
        Operation::Update,
        "role/web/token-ttl",
        json!({"token_ttl": "soon"}),
    )
    .await;
    assert!(invalid(bad).contains("token_ttl"));
    let read_only = call(
        &harness,
        Operation::Update,
        "role/web/local-secret-ids",
        json!({"local_secret_ids": true}),
    )
    .await;
    assert!(
        matches!(read_only, Err(EngineError::UnsupportedOperation(_))),
        "{read_only:?}"
    );
    let unknown_role = call(
        &harness,
        Operation::Update,
        "role/nope/token-ttl",
        json!({"token_ttl": 5}),
    )
    .await;
    assert!(
        matches!(unknown_role, Err(EngineError::NotFound(_))),
        "{unknown_role:?}"
    );
    assert_eq!(
        call(
            &harness,
            Operation::Read,
            "role/nope/token-ttl",
            Value::Null
        )
        .await
        .expect("read"),
        None
    );
    assert_eq!(
        call(
            &harness,
            Operation::Read,
            "role/web/no-such-field",
            Value::Null
        )
        .await
        .expect("read"),
        None
    );
}

#[tokio::test]
async fn oversized_roles_and_metadata_are_refused() {
    let harness = Harness::new();
    let policies: Vec<String> = (0..100_000)
        .map(|index| format!("policy-{index}"))
        .collect();
    let message = invalid(
        call(
            &harness,
            Operation::Update,
            "role/web",
            json!({"token_policies": policies}),
        )
        .await,
    );
    assert!(message.contains("the role is too large"), "{message}");
    write_role(&harness, "web", json!({})).await;
    let metadata: Map<String, Value> = (0..100_000)
        .map(|index| (format!("key-{index}"), Value::String("value".into())))
        .collect();
    let message = invalid(
        call(
            &harness,
            Operation::Update,
            "role/web/secret-id",
            json!({"metadata": metadata}),
        )
        .await,
    );
    assert!(message.contains("the secret ID is too large"), "{message}");
}

#[tokio::test]
async fn role_names_are_case_insensitive() {
    let harness = Harness::new();
    write_role(&harness, "Web", json!({"token_policies": "a"})).await;
    let data = data_of(
        call(&harness, Operation::Read, "role/WEB", Value::Null)
            .await
            .expect("read"),
    );
    assert_eq!(data["token_policies"], json!(["a"]));
    let list = data_of(
        call(&harness, Operation::List, "role", Value::Null)
            .await
            .expect("list"),
    );
    assert_eq!(list["keys"], json!(["web"]));
    let role_id = role_id(&harness, "wEb").await;
    let (secret_id, _) = secret_id(&harness, "WEB", json!({})).await;
    let grant = grant_of(login(&harness, &role_id, &secret_id).await);
    assert_eq!(grant.metadata["role_name"], "web");
}
