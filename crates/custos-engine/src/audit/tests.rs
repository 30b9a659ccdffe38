//! Tests of the audit broker: records as devices receive them (an in-memory device that can be
//! made to fail), hashing, fail-closed behaviour, the device table and the `sys/audit*`
//! endpoints, on an engine over `MemoryStorage` with a `FakeClock`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use custos_storage::{MemoryStorage, Storage};
use serde_json::{Value, json};

use super::{AuditConfig, AuditDevice, AuditDeviceFactory, CheckpointSigner, DeviceSpec};
use crate::logical::{LogicalResponse, Operation};
use crate::{Engine, EngineError, FakeClock, Request, TokenGrant, UnsealInput};

/// A device that keeps its records in memory, and fails while `failing` is set.
#[derive(Default)]
struct MemoryDevice {
    records: Mutex<Vec<Value>>,
    failing: AtomicBool,
    closes: AtomicUsize,
    reopens: AtomicUsize,
    signer: Mutex<Option<CheckpointSigner>>,
}

#[async_trait::async_trait]
impl AuditDevice for MemoryDevice {
    async fn append(&self, record: Vec<u8>) -> Result<(), String> {
        if self.failing.load(Ordering::SeqCst) {
            return Err("disk full".into());
        }
        let value: Value = serde_json::from_slice(&record).map_err(|error| error.to_string())?;
        self.records.lock().expect("lock").push(value);
        Ok(())
    }

    fn reopen(&self) -> Result<(), String> {
        self.reopens.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn close(&self) {
        self.closes.fetch_add(1, Ordering::SeqCst);
    }

    fn head(&self) -> Option<(u64, String)> {
        let count = self.records.lock().expect("lock").len() as u64;
        Some((count, format!("sha256:{count:064}")))
    }
}

/// Opens [`MemoryDevice`]s by path (the same one again after a seal), or refuses while
/// `refuse` is set.
#[derive(Default)]
struct MemoryFactory {
    devices: Mutex<BTreeMap<String, Arc<MemoryDevice>>>,
    refuse: AtomicBool,
    /// The options each open saw, by path.
    options: Mutex<BTreeMap<String, BTreeMap<String, String>>>,
}

impl AuditDeviceFactory for MemoryFactory {
    fn open(
        &self,
        spec: &DeviceSpec,
        options: &BTreeMap<String, String>,
        signer: CheckpointSigner,
    ) -> Result<Arc<dyn AuditDevice>, String> {
        if self.refuse.load(Ordering::SeqCst) {
            return Err("cannot create /var/log/custos/audit.log: no such directory".into());
        }
        if spec.kind != "file" {
            return Err(format!("unknown audit device type {:?}", spec.kind));
        }
        self.options
            .lock()
            .expect("lock")
            .insert(spec.path.clone(), options.clone());
        let device = self
            .devices
            .lock()
            .expect("lock")
            .entry(spec.path.clone())
            .or_default()
            .clone();
        *device.signer.lock().expect("lock") = Some(signer);
        Ok(device)
    }
}

impl MemoryFactory {
    fn device(&self, path: &str) -> Arc<MemoryDevice> {
        self.devices
            .lock()
            .expect("lock")
            .get(path)
            .cloned()
            .expect("device opened")
    }
}

fn spec(path: &str, options: &[(&str, &str)]) -> DeviceSpec {
    DeviceSpec {
        path: path.into(),
        kind: "file".into(),
        description: String::new(),
        options: options
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect(),
        local: false,
    }
}

struct Fixture {
    engine: Engine,
    storage: Arc<MemoryStorage>,
    clock: Arc<FakeClock>,
    factory: Arc<MemoryFactory>,
    root: String,
    share: zeroize::Zeroizing<Vec<u8>>,
}

fn config(factory: &Arc<MemoryFactory>, declared: Vec<DeviceSpec>) -> AuditConfig {
    AuditConfig {
        factory: factory.clone(),
        declared,
        allow_api_creation: true,
        allow_log_raw: false,
        status_of: super::default_status,
    }
}

async fn fixture_with(configure: impl FnOnce(&Arc<MemoryFactory>) -> AuditConfig) -> Fixture {
    let storage = Arc::new(MemoryStorage::new());
    let clock = Arc::new(FakeClock::new(
        "2025-01-15T10:00:00Z".parse().expect("time"),
    ));
    let engine = Engine::new(storage.clone(), clock.clone());
    let factory = Arc::new(MemoryFactory::default());
    engine.set_audit_config(configure(&factory));
    let output = engine.dev_init(None).await.expect("dev init");
    let root = output.root_token.to_string();
    let share = output.shares.first().expect("a share").clone();
    engine
        .mount(&root, "secret/", "kv", &[("version", "2")])
        .await
        .expect("mount");
    Fixture {
        engine,
        storage,
        clock,
        factory,
        root,
        share,
    }
}

/// An engine with one declared device, `file/`.
async fn fixture() -> Fixture {
    fixture_with(|factory| config(factory, vec![spec("file/", &[])])).await
}

impl Fixture {
    async fn run(
        &self,
        operation: Operation,
        path: &str,
        token: &str,
        data: Option<Value>,
    ) -> Result<Option<LogicalResponse>, EngineError> {
        let mut request = Request::new(operation, path).token(token);
        request.request_id = crate::new_request_id();
        if let Some(data) = data {
            request = request.data(data);
        }
        self.engine.handle(request).await
    }

    async fn root(&self, operation: Operation, path: &str, data: Value) -> Option<LogicalResponse> {
        self.run(operation, path, &self.root, Some(data))
            .await
            .unwrap_or_else(|error| panic!("{path}: {error}"))
    }

    fn records(&self, path: &str) -> Vec<Value> {
        self.factory
            .device(path)
            .records
            .lock()
            .expect("lock")
            .clone()
    }

    fn clear(&self, path: &str) {
        self.factory
            .device(path)
            .records
            .lock()
            .expect("lock")
            .clear();
    }

    /// Every record of `path` as one string, to search for secrets in clear.
    fn all_text(&self, path: &str) -> String {
        self.records(path)
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }

    async fn audit_hash(&self, device: &str, input: &str) -> String {
        let answer = self
            .root(
                Operation::Update,
                &format!("sys/audit-hash/{device}"),
                json!({ "input": input }),
            )
            .await
            .expect("an answer");
        answer.data.expect("data")["hash"]
            .as_str()
            .expect("hash")
            .to_owned()
    }

    async fn token(&self, policies: &[&str]) -> String {
        let unsealed = self.engine.unsealed().expect("unsealed");
        self.engine
            .issue_token(
                &unsealed,
                TokenGrant {
                    policies: policies.iter().map(|p| (*p).to_owned()).collect(),
                    display_name: "test".into(),
                    ..TokenGrant::default()
                },
            )
            .await
            .expect("token")
            .client_token
    }

    async fn reseal(&self) {
        self.engine.seal(Some(&self.root)).await.expect("seal");
        self.engine
            .unseal(UnsealInput::Key(self.share.clone()))
            .await
            .expect("unseal");
    }
}

/// The records about `path` (request and response).
fn about<'a>(records: &'a [Value], path: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|record| record["request"]["path"] == path)
        .collect()
}

fn is_hmac(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|text| text.starts_with("hmac-sha256:") && text.len() == 12 + 64)
}

#[tokio::test]
async fn kv_write_and_read_records_are_shaped_like_vaults() {
    let f = fixture().await;
    f.root(
        Operation::Update,
        "secret/data/app",
        json!({"data": {"password": "hunter2-planted", "port": 5432}}),
    )
    .await;
    f.root(Operation::Read, "secret/data/app", Value::Null)
        .await;
    let records = f.records("file/");
    let app = about(&records, "secret/data/app");
    assert_eq!(app.len(), 4, "{records:?}");
    let (request, response) = (app[0], app[1]);
    assert_eq!(request["type"], "request");
    assert!(
        request["time"]
            .as_str()
            .expect("time")
            .starts_with("2025-01-15T10:00:00")
    );
    assert!(is_hmac(&request["auth"]["client_token"]));
    assert!(is_hmac(&request["auth"]["accessor"]));
    assert_eq!(request["auth"]["policies"], json!(["root"]));
    assert_eq!(request["auth"]["token_policies"], json!(["root"]));
    assert_eq!(request["auth"]["token_type"], "service");
    let block = &request["request"];
    assert_eq!(block["operation"], "update");
    assert_eq!(block["mount_point"], "secret/");
    assert_eq!(block["mount_type"], "kv");
    assert_eq!(block["mount_class"], "secret");
    assert!(
        block["mount_accessor"]
            .as_str()
            .expect("accessor")
            .starts_with("kv_")
    );
    assert_eq!(block["namespace"], json!({"id": "root"}));
    assert_eq!(block["client_token"], request["auth"]["client_token"]);
    assert!(is_hmac(&block["client_token_accessor"]));
    assert!(is_hmac(&block["data"]["data"]["password"]));
    assert_eq!(block["data"]["data"]["port"], 5432, "numbers stay");
    assert!(block["id"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(response["type"], "response");
    assert_eq!(
        response["request"], request["request"],
        "the same request block"
    );
    assert_eq!(response["response"]["status"], 200);
    assert_eq!(response["response"]["mount_type"], "kv");
    assert!(response.get("error").is_none());
    // The read: the secret hashed, its timestamps in clear (as Vault).
    let read = app[3];
    assert_eq!(read["request"]["operation"], "read");
    let data = &read["response"]["data"];
    assert!(is_hmac(&data["data"]["password"]), "{read}");
    assert_eq!(
        data["data"]["password"],
        json!(f.audit_hash("file", "hunter2-planted").await),
        "sys/audit-hash answers the hash the records show"
    );
    assert!(
        data["metadata"]["created_time"]
            .as_str()
            .is_some_and(|time| time.starts_with("2025-01-15T10:00:00")),
        "{read}"
    );
    assert!(
        is_hmac(&data["metadata"]["deletion_time"]),
        "empty strings are hashed too"
    );
    // The second request's caller hashes come from the device's cache: the same values.
    assert_eq!(
        read["auth"]["client_token"],
        request["auth"]["client_token"]
    );
    assert_eq!(
        read["request"]["client_token_accessor"],
        block["client_token_accessor"]
    );
    assert_eq!(
        read["auth"]["client_token"],
        json!(f.audit_hash("file", &f.root).await)
    );
    let text = f.all_text("file/");
    assert!(!text.contains("hunter2-planted"));
    assert!(!text.contains(&f.root));
}

#[tokio::test]
async fn a_login_hashes_the_password_and_the_issued_token() {
    let f = fixture().await;
    f.root(
        Operation::Update,
        "sys/auth/userpass",
        json!({"type": "userpass"}),
    )
    .await;
    f.root(
        Operation::Update,
        "auth/userpass/users/alice",
        json!({"password": "correct horse planted", "token_policies": "default"}),
    )
    .await;
    f.clear("file/");
    let mut login = Request::new(Operation::Update, "auth/userpass/login/alice")
        .data(json!({"password": "correct horse planted"}));
    login.request_id = "login-1".into();
    let answer = f
        .engine
        .handle(login)
        .await
        .expect("login")
        .expect("answer");
    let issued = answer.auth.expect("a token").client_token;
    let records = f.records("file/");
    let login = about(&records, "auth/userpass/login/alice");
    assert_eq!(login.len(), 2, "{records:?}");
    assert!(is_hmac(&login[0]["request"]["data"]["password"]));
    assert_eq!(login[0]["request"]["mount_type"], "userpass");
    assert_eq!(login[0]["request"]["mount_class"], "auth");
    assert_eq!(login[0]["request"]["mount_point"], "auth/userpass/");
    let auth = &login[1]["response"]["auth"];
    assert_eq!(
        auth["client_token"],
        json!(f.audit_hash("file", &issued).await)
    );
    assert!(is_hmac(&auth["accessor"]));
    assert_eq!(auth["policies"], json!(["default"]));
    let text = f.all_text("file/");
    assert!(!text.contains("correct horse planted"));
    assert!(!text.contains(&issued));
}

#[tokio::test]
async fn a_created_token_is_hashed_in_the_response_auth() {
    let f = fixture().await;
    let answer = f
        .root(
            Operation::Update,
            "auth/token/create",
            json!({"policies": ["default"]}),
        )
        .await
        .expect("answer");
    let issued = answer.auth.expect("auth").client_token;
    let records = f.records("file/");
    let create = about(&records, "auth/token/create");
    assert_eq!(create[1]["request"]["mount_type"], "token");
    assert_eq!(
        create[1]["response"]["auth"]["client_token"],
        json!(f.audit_hash("file", &issued).await)
    );
    assert!(!f.all_text("file/").contains(&issued));
}

#[tokio::test]
async fn a_wrapped_response_hashes_the_wrapping_token() {
    let f = fixture().await;
    f.root(
        Operation::Update,
        "secret/data/app",
        json!({"data": {"api_key": "planted-wrapped-secret"}}),
    )
    .await;
    let mut request = Request::new(Operation::Read, "secret/data/app").token(&f.root);
    request.wrap_ttl = Some(300);
    let answer = f
        .engine
        .handle(request)
        .await
        .expect("read")
        .expect("answer");
    let wrap = answer.wrap_info.expect("wrapped");
    let records = f.records("file/");
    let read = about(&records, "secret/data/app")
        .into_iter()
        .find(|record| record["type"] == "response" && record["request"]["operation"] == "read")
        .expect("the read's response");
    assert_eq!(read["request"]["wrap_ttl"], 300);
    let info = &read["response"]["wrap_info"];
    assert_eq!(
        info["token"],
        json!(f.audit_hash("file", &wrap.token).await)
    );
    assert!(is_hmac(&info["accessor"]));
    assert_eq!(info["ttl"], 300);
    assert_eq!(info["creation_path"], "secret/data/app");
    // Unwrapping with the wrapping token as the request token is audited with its hash.
    let mut unwrap = Request::new(Operation::Update, "sys/wrapping/unwrap").token(&wrap.token);
    unwrap.request_id = "unwrap-1".into();
    f.engine.handle(unwrap).await.expect("unwrap");
    let records = f.records("file/");
    let unwrap = about(&records, "sys/wrapping/unwrap");
    assert_eq!(unwrap.len(), 2);
    assert_eq!(unwrap[0]["request"]["client_token"], info["token"]);
    assert!(is_hmac(&unwrap[1]["response"]["data"]["data"]["api_key"]));
    let text = f.all_text("file/");
    assert!(!text.contains(&wrap.token));
    assert!(!text.contains("planted-wrapped-secret"));
}

#[tokio::test]
async fn a_denied_request_and_a_bad_token_are_audited_with_their_errors() {
    let f = fixture().await;
    let token = f.token(&["default"]).await;
    let denied = f
        .run(Operation::Read, "secret/data/app", &token, None)
        .await;
    assert!(matches!(denied, Err(EngineError::PermissionDenied)));
    let bogus = "hvs.planted-bogus-token";
    let refused = f.run(Operation::Read, "secret/data/app", bogus, None).await;
    assert!(matches!(refused, Err(EngineError::PermissionDenied)));
    let records = f.records("file/");
    let app = about(&records, "secret/data/app");
    assert_eq!(app.len(), 4, "{records:?}");
    assert_eq!(app[1]["error"], "permission denied");
    assert_eq!(app[1]["response"]["status"], 403);
    assert_eq!(app[1]["auth"]["display_name"], "test");
    // The bad token: a request record with its hash and no caller, then the error.
    assert_eq!(
        app[2]["request"]["client_token"],
        json!(f.audit_hash("file", bogus).await)
    );
    assert_eq!(app[2]["auth"], json!({"token_type": "default"}));
    assert_eq!(
        app[2]["error"], "permission denied",
        "as Vault, on the request record"
    );
    assert!(app[0].get("error").is_none());
    assert_eq!(app[3]["error"], "permission denied");
    assert_eq!(app[3]["response"]["status"], 403);
    assert!(!f.all_text("file/").contains(bogus));
}

#[tokio::test]
async fn non_hmac_keys_of_the_mount_stay_in_clear() {
    let f = fixture().await;
    f.root(
        Operation::Update,
        "sys/mounts/secret/tune",
        json!({"audit_non_hmac_request_keys": ["visible"], "audit_non_hmac_response_keys": ["shown"]}),
    )
    .await;
    f.root(
        Operation::Update,
        "secret/data/app",
        json!({"data": {"visible": "clear-in", "shown": "clear-out", "hidden": "secret-in"}}),
    )
    .await;
    f.root(Operation::Read, "secret/data/app", Value::Null)
        .await;
    let records = f.records("file/");
    let app = about(&records, "secret/data/app");
    let written = &app[0]["request"]["data"]["data"];
    assert_eq!(written["visible"], "clear-in");
    assert!(is_hmac(&written["shown"]), "request keys only on requests");
    assert!(is_hmac(&written["hidden"]));
    let read = &app[3]["response"]["data"]["data"];
    assert_eq!(read["shown"], "clear-out");
    assert!(is_hmac(&read["visible"]));
    assert!(is_hmac(&read["hidden"]));
}

#[tokio::test]
async fn hmac_accessor_false_shows_accessors_in_clear() {
    let f = fixture().await;
    f.root(
        Operation::Update,
        "sys/audit/plain",
        json!({"type": "file", "options": {"hmac_accessor": "false", "file_path": "/tmp/x.log"}}),
    )
    .await;
    assert_eq!(
        f.factory.options.lock().expect("lock")["plain/"],
        BTreeMap::from([("file_path".to_owned(), "/tmp/x.log".to_owned())]),
        "the factory sees only the options the engine does not read"
    );
    let answer = f
        .root(Operation::Update, "auth/token/create", json!({}))
        .await
        .expect("answer");
    let issued = answer.auth.expect("auth");
    let records = f.records("plain/");
    let create = about(&records, "auth/token/create");
    assert_eq!(create.len(), 2, "{records:?}");
    assert_eq!(create[1]["response"]["auth"]["accessor"], issued.accessor);
    assert!(is_hmac(&create[1]["response"]["auth"]["client_token"]));
    assert!(
        create[0]["request"]["client_token_accessor"]
            .as_str()
            .is_some_and(|accessor| !accessor.starts_with("hmac-sha256:"))
    );
    // The declared device still hashes them.
    let hashed = f.records("file/");
    let create = about(&hashed, "auth/token/create");
    assert!(is_hmac(&create[1]["response"]["auth"]["accessor"]));
}

#[tokio::test]
async fn log_raw_is_refused_unless_the_configuration_allows_it() {
    let f = fixture().await;
    let refused = f
        .run(
            Operation::Update,
            "sys/audit/raw",
            &f.root,
            Some(json!({"type": "file", "options": {"log_raw": "true"}})),
        )
        .await;
    assert!(
        matches!(&refused, Err(EngineError::InvalidRequest(message)) if message.contains("unsafe_allow_audit_log_raw")),
        "{refused:?}"
    );
    let f = fixture_with(|factory| AuditConfig {
        allow_log_raw: true,
        ..config(factory, vec![spec("raw/", &[("log_raw", "true")])])
    })
    .await;
    f.root(
        Operation::Update,
        "secret/data/app",
        json!({"data": {"password": "raw-planted"}}),
    )
    .await;
    let text = f.all_text("raw/");
    assert!(text.contains("raw-planted"));
    assert!(text.contains(&f.root));
}

#[tokio::test]
async fn unsupported_options_are_refused() {
    let f = fixture().await;
    for options in [
        json!({"format": "jsonx"}),
        json!({"prefix": "custos:"}),
        json!({"hmac_accessor": "perhaps"}),
    ] {
        let refused = f
            .run(
                Operation::Update,
                "sys/audit/odd",
                &f.root,
                Some(json!({"type": "file", "options": options})),
            )
            .await;
        assert!(
            matches!(refused, Err(EngineError::InvalidRequest(_))),
            "{options}"
        );
    }
    let unknown_type = f
        .run(
            Operation::Update,
            "sys/audit/odd",
            &f.root,
            Some(json!({"type": "socket"})),
        )
        .await;
    assert!(
        matches!(unknown_type, Err(EngineError::InvalidRequest(message)) if message.contains("socket"))
    );
    let taken = f
        .run(
            Operation::Update,
            "sys/audit/file",
            &f.root,
            Some(json!({"type": "file"})),
        )
        .await;
    assert!(
        matches!(taken, Err(EngineError::InvalidRequest(message)) if message == "path already in use")
    );
}

#[tokio::test]
async fn a_failing_device_fails_the_request_closed_until_it_recovers() {
    let f = fixture().await;
    let device = f.factory.device("file/");
    device.failing.store(true, Ordering::SeqCst);
    let write = f
        .run(
            Operation::Update,
            "secret/data/app",
            &f.root,
            Some(json!({"data": {"password": "never-written"}})),
        )
        .await;
    assert!(
        matches!(write, Err(EngineError::AuditUnavailable)),
        "{write:?}"
    );
    assert_eq!(
        EngineError::AuditUnavailable.to_string(),
        "audit log unavailable: request refused"
    );
    device.failing.store(false, Ordering::SeqCst);
    let read = f
        .run(Operation::Read, "secret/data/app", &f.root, None)
        .await;
    assert!(
        matches!(&read, Ok(None) | Err(EngineError::NotFound(_)))
            || read
                .as_ref()
                .is_ok_and(|answer| answer.as_ref().is_some_and(|answer| answer.missing)),
        "the secret was not written: {read:?}"
    );
    f.root(
        Operation::Update,
        "secret/data/app",
        json!({"data": {"password": "written"}}),
    )
    .await;
    let read = f
        .root(Operation::Read, "secret/data/app", Value::Null)
        .await
        .expect("answer");
    assert_eq!(read.data.expect("data")["data"]["password"], "written");
}

#[tokio::test]
async fn one_working_device_of_several_is_enough() {
    let f = fixture_with(|factory| config(factory, vec![spec("file/", &[]), spec("second/", &[])]))
        .await;
    f.factory
        .device("file/")
        .failing
        .store(true, Ordering::SeqCst);
    f.root(
        Operation::Update,
        "secret/data/app",
        json!({"data": {"k": "v"}}),
    )
    .await;
    assert_eq!(about(&f.records("second/"), "secret/data/app").len(), 2);
    f.factory
        .device("second/")
        .failing
        .store(true, Ordering::SeqCst);
    let refused = f
        .run(Operation::Read, "secret/data/app", &f.root, None)
        .await;
    assert!(matches!(refused, Err(EngineError::AuditUnavailable)));
}

#[tokio::test]
async fn without_devices_nothing_is_required() {
    let f = fixture_with(|factory| config(factory, Vec::new())).await;
    f.root(
        Operation::Update,
        "secret/data/app",
        json!({"data": {"k": "v"}}),
    )
    .await;
    assert!(f.factory.devices.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn api_creation_is_refused_unless_allowed() {
    let f = fixture_with(|factory| AuditConfig {
        allow_api_creation: false,
        ..config(factory, Vec::new())
    })
    .await;
    let refused = f
        .run(
            Operation::Update,
            "sys/audit/file",
            &f.root,
            Some(json!({"type": "file"})),
        )
        .await;
    assert!(matches!(
        refused,
        Err(EngineError::InvalidRequest(message))
            if message == "cannot enable audit device via API; use declarative, config-based audit device management instead"
    ));
}

#[tokio::test]
async fn the_list_shows_every_device_and_config_devices_cannot_be_disabled() {
    let f = fixture().await;
    f.root(
        Operation::Update,
        "sys/audit/api",
        json!({"type": "file", "description": "made over the API", "local": true, "options": {"file_path": "/tmp/api.log", "signing_key": "x"}}),
    )
    .await;
    let list = f
        .root(Operation::Read, "sys/audit", Value::Null)
        .await
        .expect("answer")
        .data
        .expect("data");
    assert_eq!(
        list["api/"],
        json!({
            "type": "file",
            "description": "made over the API",
            "options": {"file_path": "/tmp/api.log", "signing_key": "<redacted>"},
            "local": true,
            "path": "api/",
        })
    );
    assert_eq!(list["file/"]["type"], "file");
    let refused = f
        .run(Operation::Delete, "sys/audit/file", &f.root, None)
        .await;
    assert!(matches!(
        refused,
        Err(EngineError::InvalidRequest(message)) if message == "cannot disable configuration-managed audit device"
    ));
    f.root(Operation::Delete, "sys/audit/nowhere", Value::Null)
        .await;
    f.root(Operation::Delete, "sys/audit/api", Value::Null)
        .await;
    assert_eq!(f.factory.device("api/").closes.load(Ordering::SeqCst), 1);
    let list = f
        .root(Operation::Read, "sys/audit", Value::Null)
        .await
        .expect("answer")
        .data
        .expect("data");
    assert!(list.get("api/").is_none());
    // Its salt went with it.
    assert!(
        f.storage
            .get("audit/salt/api")
            .await
            .expect("get")
            .is_none()
    );
}

#[tokio::test]
async fn audit_endpoints_need_sudo() {
    let f = fixture().await;
    let token = f.token(&["default"]).await;
    for (operation, path) in [
        (Operation::Read, "sys/audit"),
        (Operation::Update, "sys/audit-hash/file"),
        (Operation::Update, "sys/audit-verify/file"),
        (Operation::Delete, "sys/audit/file"),
    ] {
        let denied = f.run(operation, path, &token, Some(json!({}))).await;
        assert!(
            matches!(denied, Err(EngineError::PermissionDenied)),
            "{path}"
        );
    }
    let empty = f
        .run(
            Operation::Update,
            "sys/audit-hash/file",
            &f.root,
            Some(json!({})),
        )
        .await;
    assert!(
        matches!(empty, Err(EngineError::InvalidRequest(message)) if message == "the \"input\" parameter is empty")
    );
    let unknown = f
        .run(
            Operation::Update,
            "sys/audit-hash/nowhere",
            &f.root,
            Some(json!({"input": "x"})),
        )
        .await;
    assert!(
        matches!(unknown, Err(EngineError::InvalidRequest(message)) if message == "unknown audit backend \"nowhere/\"")
    );
}

#[tokio::test]
async fn salts_survive_sealing_and_devices_close_and_reopen() {
    let f = fixture().await;
    let before = f.audit_hash("file", "stable input").await;
    f.reseal().await;
    assert_eq!(f.factory.device("file/").closes.load(Ordering::SeqCst), 1);
    assert_eq!(f.audit_hash("file", "stable input").await, before);
    assert_ne!(
        before,
        f.audit_hash("file", "other input").await,
        "a different input, a different hash"
    );
    assert!(f.engine.reopen_audit_devices().is_ok());
    assert_eq!(f.factory.device("file/").reopens.load(Ordering::SeqCst), 1);
    f.engine.close_audit_devices().await;
    assert_eq!(f.factory.device("file/").closes.load(Ordering::SeqCst), 2);
    // Closed for good: no device, no service.
    let refused = f.run(Operation::Read, "sys/audit", &f.root, None).await;
    assert!(matches!(refused, Err(EngineError::AuditUnavailable)));
}

#[tokio::test]
async fn checkpoint_signatures_are_verified_but_never_made_for_callers() {
    let f = fixture().await;
    f.root(
        Operation::Update,
        "secret/data/app",
        json!({"data": {"k": "v"}}),
    )
    .await;
    let signer = f
        .factory
        .device("file/")
        .signer
        .lock()
        .expect("lock")
        .clone()
        .expect("a signer");
    let payload = "custos-audit-checkpoint/v1\nfile/\n7\nsha256:00\n2025-01-15T10:00:00Z\n6\ncount";
    let signature = signer(payload.as_bytes());
    assert!(signature.starts_with("hmac-sha256:"));
    assert_ne!(
        signature,
        f.audit_hash("file", payload).await,
        "the checkpoint key is not the hashing key"
    );
    let answer = f
        .root(
            Operation::Update,
            "sys/audit-verify/file",
            json!({"checkpoints": [
                {"payload": payload, "signature": signature},
                {"payload": format!("{payload}!"), "signature": signature},
                {"payload": payload, "signature": "hmac-sha256:00"},
                {"payload": payload},
            ]}),
        )
        .await
        .expect("answer")
        .data
        .expect("data");
    assert_eq!(answer["valid"], json!([true, false, false, false]));
    let head = &answer["head"];
    assert!(head["seq"].as_u64().is_some_and(|seq| seq > 0));
    assert!(
        head["hash"]
            .as_str()
            .is_some_and(|hash| hash.starts_with("sha256:"))
    );
}

#[tokio::test]
async fn a_device_that_cannot_open_at_unseal_fails_requests_until_it_opens() {
    let f = fixture().await;
    f.factory.refuse.store(true, Ordering::SeqCst);
    f.reseal().await;
    assert!(!f.engine.is_sealed(), "the unseal itself succeeds");
    let refused = f.run(Operation::Read, "sys/audit", &f.root, None).await;
    assert!(matches!(refused, Err(EngineError::AuditUnavailable)));
    f.factory.refuse.store(false, Ordering::SeqCst);
    // Opening is retried at most once a second.
    tokio::time::sleep(super::RETRY_INTERVAL + std::time::Duration::from_millis(50)).await;
    assert!(
        f.run(Operation::Read, "sys/audit", &f.root, None)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_stored_device_with_a_declared_path_is_refused_at_unseal() {
    let f = fixture_with(|factory| config(factory, Vec::new())).await;
    f.root(Operation::Update, "sys/audit/file", json!({"type": "file"}))
        .await;
    f.engine.seal(Some(&f.root)).await.expect("seal");
    f.engine
        .set_audit_config(config(&f.factory, vec![spec("file", &[])]));
    let refused = f.engine.unseal(UnsealInput::Key(f.share.clone())).await;
    assert!(
        matches!(&refused, Err(EngineError::InvalidRequest(message)) if message.contains("declared in the configuration and also enabled through the API")),
        "{refused:?}"
    );
}

#[tokio::test]
async fn the_device_table_is_mirrored_to_another_engine() {
    let f = fixture_with(|factory| config(factory, Vec::new())).await;
    let other = Engine::new(f.storage.clone(), f.clock.clone());
    let other_factory = Arc::new(MemoryFactory::default());
    other.set_audit_config(config(&other_factory, Vec::new()));
    other
        .unseal(UnsealInput::Key(f.share.clone()))
        .await
        .expect("unseal");
    f.root(Operation::Update, "sys/audit/api", json!({"type": "file"}))
        .await;
    let hash = f.audit_hash("api", "same everywhere").await;
    other.reconcile();
    let mut request = Request::new(Operation::Update, "sys/audit-hash/api")
        .token(&f.root)
        .data(json!({"input": "same everywhere"}));
    request.request_id = "other-1".into();
    let answer = other
        .handle(request)
        .await
        .expect("hash on the other node")
        .expect("answer");
    assert_eq!(answer.data.expect("data")["hash"], json!(hash), "one salt");
    let records = other_factory
        .device("api/")
        .records
        .lock()
        .expect("lock")
        .clone();
    assert_eq!(about(&records, "sys/audit-hash/api").len(), 2);
    f.root(Operation::Delete, "sys/audit/api", Value::Null)
        .await;
    other.reconcile();
    let request = Request::new(Operation::Read, "sys/audit").token(&f.root);
    let list = other
        .handle(request)
        .await
        .expect("list")
        .expect("answer")
        .data
        .expect("data");
    assert!(list.is_empty(), "{list:?}");
    assert_eq!(
        other_factory.device("api/").closes.load(Ordering::SeqCst),
        1
    );
}

#[tokio::test]
async fn a_leak_report_is_audited_with_the_reported_token_hashed() {
    let f = fixture().await;
    let leaked = f.token(&["default"]).await;
    let mut request = Request::new(Operation::Update, "sys/leaks")
        .data(json!({"leaks": [{"token": leaked, "url": "file:///repo/.env:3"}]}));
    request.request_id = "leak-1".into();
    f.engine.handle(request).await.expect("report");
    let records = f.records("file/");
    let leaks = about(&records, "sys/leaks");
    assert_eq!(leaks.len(), 2, "{records:?}");
    assert_eq!(
        leaks[0]["request"]["data"]["leaks"][0]["token"],
        json!(f.audit_hash("file", &leaked).await)
    );
    assert_eq!(leaks[0]["auth"], json!({"token_type": "default"}));
    assert_eq!(leaks[1]["response"]["status"], 200);
    assert!(!f.all_text("file/").contains(&leaked));
}

#[tokio::test]
async fn list_answers_can_be_elided() {
    let f = fixture_with(|factory| {
        config(
            factory,
            vec![spec("file/", &[("elide_list_responses", "true")])],
        )
    })
    .await;
    for name in ["a", "b", "c"] {
        f.root(
            Operation::Update,
            &format!("secret/data/{name}"),
            json!({"data": {"k": "v"}}),
        )
        .await;
    }
    let answer = f
        .root(Operation::List, "secret/metadata/", Value::Null)
        .await
        .expect("answer");
    assert_eq!(answer.data.expect("data")["keys"], json!(["a", "b", "c"]));
    let records = f.records("file/");
    let list = about(&records, "secret/metadata/");
    assert_eq!(list[1]["response"]["data"]["keys"], 3, "{records:?}");
}

#[test]
fn an_event_debug_shows_no_token_or_body() {
    let request = Request::new(Operation::Update, "secret/data/app")
        .token("planted-token")
        .data(json!({"password": "planted-password"}));
    let event = crate::AuditEvent::of_request(&request, "test");
    let shown = format!("{event:?}");
    assert!(shown.contains("secret/data/app"), "{shown}");
    assert!(!shown.contains("planted-token"), "{shown}");
    assert!(!shown.contains("planted-password"), "{shown}");
}

#[tokio::test]
async fn a_malformed_path_is_audited_with_its_error() {
    let f = fixture().await;
    let refused = f
        .run(Operation::Read, "secret/data/a/../b", &f.root, None)
        .await;
    assert!(matches!(refused, Err(EngineError::InvalidRequest(_))));
    let records = f.records("file/");
    let bad = about(&records, "secret/data/a/../b");
    assert_eq!(bad.len(), 2, "{records:?}");
    assert_eq!(bad[1]["response"]["status"], 400);
    assert!(
        bad[1]["error"]
            .as_str()
            .is_some_and(|error| error.starts_with("invalid path"))
    );
}

/// `sys/rotate`, `sys/key-status` and `sys/seal` are served outside the pipeline, and are
/// audited all the same: a refused token, a denied one and the root token each leave a request
/// and a response record; sealing is recorded before the devices close; and with no device able
/// to write, nothing is rotated.
#[tokio::test]
async fn seal_rotate_and_key_status_are_audited() {
    let f = fixture().await;
    let connection = crate::Connection::default();
    let bogus = "hvs.planted-bogus-token";
    assert!(matches!(
        f.engine
            .rotate_at("sys/rotate", Some(bogus), &connection)
            .await,
        Err(EngineError::PermissionDenied)
    ));
    let weak = f.token(&["default"]).await;
    assert!(matches!(
        f.engine.key_status_from(Some(&weak), &connection).await,
        Err(EngineError::PermissionDenied)
    ));
    let rotated = f.engine.rotate(Some(&f.root)).await.expect("rotate");
    let status = f
        .engine
        .key_status(Some(&f.root))
        .await
        .expect("key status");
    assert_eq!(status.term, rotated.term);

    let records = f.records("file/");
    let rotate = about(&records, "sys/rotate");
    assert_eq!(rotate.len(), 4, "{records:?}");
    assert_eq!(rotate[1]["error"], "permission denied");
    assert_eq!(
        rotate[0]["request"]["client_token"],
        json!(f.audit_hash("file", bogus).await)
    );
    assert_eq!(rotate[2]["type"], "request");
    assert_eq!(rotate[2]["auth"]["policies"], json!(["root"]));
    assert_eq!(rotate[3]["response"]["status"], 200);
    assert_eq!(
        rotate[3]["response"]["data"]["term"],
        json!(rotated.term),
        "numbers are not hashed"
    );
    assert_eq!(rotate[2]["request"]["id"], rotate[3]["request"]["id"]);
    let key_status = about(&records, "sys/key-status");
    assert_eq!(key_status.len(), 4, "{records:?}");
    assert_eq!(key_status[1]["response"]["status"], 403);
    assert_eq!(key_status[1]["auth"]["display_name"], "test");
    assert_eq!(key_status[3]["request"]["operation"], "read");
    assert!(!f.all_text("file/").contains(bogus));
    assert!(!f.all_text("file/").contains(&f.root));

    // No device can write: the rotation is refused and does not happen.
    f.factory
        .device("file/")
        .failing
        .store(true, Ordering::SeqCst);
    assert!(matches!(
        f.engine.rotate(Some(&f.root)).await,
        Err(EngineError::AuditUnavailable)
    ));
    f.factory
        .device("file/")
        .failing
        .store(false, Ordering::SeqCst);
    assert_eq!(
        f.engine
            .key_status(Some(&f.root))
            .await
            .expect("status")
            .term,
        rotated.term
    );

    // Sealing: recorded, then the devices close.
    f.clear("file/");
    f.engine.seal(Some(&f.root)).await.expect("seal");
    let records = f.records("file/");
    let seal = about(&records, "sys/seal");
    assert_eq!(seal.len(), 2, "{records:?}");
    assert_eq!(seal[1]["response"]["status"], 204);
}
