//! Tests of the policy store, its endpoints and the authorisation of requests: an engine over
//! `MemoryStorage` with a `FakeClock`, tokens issued straight through the token seam.

use std::net::IpAddr;
use std::sync::Arc;

use custos_storage::MemoryStorage;
use serde_json::{Map, Value, json};

use crate::logical::{LogicalResponse, Operation};
use crate::{Engine, EngineError, FakeClock, Request, TokenGrant};

struct Fixture {
    engine: Engine,
    clock: Arc<FakeClock>,
    storage: Arc<MemoryStorage>,
    root: String,
    share: zeroize::Zeroizing<Vec<u8>>,
}

/// Wednesday 2025-01-15 10:00:00 UTC.
const START: &str = "2025-01-15T10:00:00Z";

async fn fixture() -> Fixture {
    let storage = Arc::new(MemoryStorage::new());
    let clock = Arc::new(FakeClock::new(START.parse().expect("time")));
    let engine = Engine::new(storage.clone(), clock.clone());
    let output = engine.dev_init(None).await.expect("dev init");
    let root = output.root_token.to_string();
    let share = output.shares.first().expect("a share").clone();
    engine
        .mount(&root, "secret/", "kv", &[("version", "2")])
        .await
        .expect("mount");
    Fixture {
        engine,
        clock,
        storage,
        root,
        share,
    }
}

impl Fixture {
    async fn token(&self, policies: &[&str], mfa: bool) -> String {
        let unsealed = self.engine.unsealed().expect("unsealed");
        self.engine
            .issue_token(
                &unsealed,
                TokenGrant {
                    policies: policies.iter().map(|p| (*p).to_owned()).collect(),
                    display_name: "test".into(),
                    mfa,
                    ..TokenGrant::default()
                },
            )
            .await
            .expect("token")
            .client_token
    }

    async fn run(
        &self,
        operation: Operation,
        path: &str,
        token: &str,
        data: Option<Value>,
    ) -> Result<Option<LogicalResponse>, EngineError> {
        let mut request = Request::new(operation, path).token(token);
        if let Some(data) = data {
            request = request.data(data);
        }
        self.engine.handle(request).await
    }

    async fn create_child(
        &self,
        token: &str,
        body: Value,
    ) -> Result<Option<LogicalResponse>, EngineError> {
        self.run(Operation::Update, "auth/token/create", token, Some(body))
            .await
    }

    async fn write_secret(
        &self,
        path: &str,
        token: &str,
    ) -> Result<Option<LogicalResponse>, EngineError> {
        let body = json!({"data": {"k": "v"}, "k": "v"});
        self.run(Operation::Update, path, token, Some(body)).await
    }

    async fn write_policy(&self, name: &str, text: &str) -> Result<(), EngineError> {
        self.run(
            Operation::Update,
            &format!("sys/policies/acl/{name}"),
            &self.root,
            Some(json!({ "policy": text })),
        )
        .await
        .map(drop)
    }

    async fn data(
        &self,
        operation: Operation,
        path: &str,
        token: &str,
        body: Value,
    ) -> Map<String, Value> {
        self.run(operation, path, token, Some(body))
            .await
            .expect("request succeeds")
            .expect("an answer")
            .data
            .expect("data")
    }
}

fn denied<T: std::fmt::Debug>(result: Result<T, EngineError>) -> bool {
    matches!(result, Err(EngineError::PermissionDenied))
}

fn invalid<T: std::fmt::Debug>(result: Result<T, EngineError>) -> String {
    match result {
        Err(EngineError::InvalidRequest(message)) => message,
        other => panic!("expected a 400, got {other:?}"),
    }
}

impl Engine {
    /// `handle` on an owned engine, so a closure can return the future.
    async fn handle_owned(self, request: Request) -> Result<Option<LogicalResponse>, EngineError> {
        self.handle(request).await
    }
}

#[tokio::test]
async fn default_and_root_exist_after_init() {
    let f = fixture().await;
    let listed = f
        .data(Operation::Read, "sys/policy", &f.root, json!({}))
        .await;
    assert_eq!(listed["keys"], json!(["default", "root"]));
    assert_eq!(listed["policies"], json!(["default", "root"]));
    let listed = f
        .data(Operation::List, "sys/policies/acl", &f.root, json!({}))
        .await;
    assert_eq!(listed["keys"], json!(["default", "root"]));
    let default = f
        .data(
            Operation::Read,
            "sys/policies/acl/default",
            &f.root,
            json!({}),
        )
        .await;
    assert!(
        default["policy"]
            .as_str()
            .expect("text")
            .contains("auth/token/lookup-self")
    );
    let root = f
        .data(Operation::Read, "sys/policy/root", &f.root, json!({}))
        .await;
    assert_eq!(root["name"], "root");
    assert_eq!(root["rules"], "");
}

#[tokio::test]
async fn policy_crud_and_vault_errors() {
    let f = fixture().await;
    f.write_policy(
        "Team-A",
        r#"path "secret/data/a/*" { capabilities = ["read"] }"#,
    )
    .await
    .expect("written");
    let read = f
        .data(
            Operation::Read,
            "sys/policies/acl/team-a",
            &f.root,
            json!({}),
        )
        .await;
    assert_eq!(read["name"], "team-a", "names are lower-cased");
    assert!(
        read["policy"]
            .as_str()
            .expect("text")
            .contains("secret/data/a/*")
    );
    // The legacy endpoint takes `rules` with a warning.
    let answer = f
        .run(
            Operation::Update,
            "sys/policy/legacy",
            &f.root,
            Some(json!({"rules": r#"path "x" { policy = "read" }"#})),
        )
        .await
        .expect("ok")
        .expect("answer");
    assert_eq!(
        answer.warnings,
        ["'rules' is deprecated, please use 'policy' instead"]
    );
    let legacy = f
        .data(Operation::Read, "sys/policy/legacy", &f.root, json!({}))
        .await;
    assert_eq!(legacy["rules"], r#"path "x" { policy = "read" }"#);
    // Missing: not found (404).
    let missing = f
        .run(Operation::Read, "sys/policies/acl/nope", &f.root, None)
        .await
        .expect("ok");
    assert!(missing.is_none());
    // Bad input: 400 with Vault's texts, nothing stored.
    let message = invalid(
        f.write_policy("bad", "path \"a\" {\n  capabilities = [\"reed\"]\n}")
            .await,
    );
    assert_eq!(
        message,
        "failed to parse policy: line 2: unknown capability \"reed\""
    );
    assert!(
        invalid(
            f.run(
                Operation::Update,
                "sys/policies/acl/bad",
                &f.root,
                Some(json!({}))
            )
            .await
        )
        .contains("'policy' parameter not supplied or empty")
    );
    let zone = invalid(
        f.write_policy(
            "bad",
            r#"path "a" { capabilities = ["read"] days = ["mon"] time_zone = "Mars/Olympus" }"#,
        )
        .await,
    );
    assert!(zone.contains("unknown time zone"), "{zone}");
    assert!(
        f.run(Operation::Read, "sys/policies/acl/bad", &f.root, None)
            .await
            .expect("ok")
            .is_none()
    );
    assert_eq!(
        invalid(
            f.write_policy("root", r#"path "a" { capabilities = ["read"] }"#)
                .await
        ),
        "cannot update \"root\" policy"
    );
    assert_eq!(
        invalid(
            f.run(Operation::Delete, "sys/policies/acl/root", &f.root, None)
                .await
        ),
        "cannot delete \"root\" policy"
    );
    assert_eq!(
        invalid(
            f.run(Operation::Delete, "sys/policy/default", &f.root, None)
                .await
        ),
        "cannot delete default policy"
    );
    // Delete, and a second delete is fine (as in Vault).
    for _ in 0..2 {
        f.run(Operation::Delete, "sys/policies/acl/team-a", &f.root, None)
            .await
            .expect("deleted");
    }
    let listed = f
        .data(Operation::List, "sys/policies/acl", &f.root, json!({}))
        .await;
    assert_eq!(listed["keys"], json!(["default", "legacy", "root"]));
    // Versions count writes; `cas` compares with them.
    let read = f
        .data(
            Operation::Read,
            "sys/policies/acl/legacy",
            &f.root,
            json!({}),
        )
        .await;
    assert_eq!(read["version"], 1);
    assert_eq!(read["modified"], START);
    let cas = |cas: u64| {
        f.run(
            Operation::Update,
            "sys/policies/acl/legacy",
            &f.root,
            Some(json!({"policy": r#"path "y" { policy = "read" }"#, "cas": cas})),
        )
    };
    assert_eq!(
        invalid(cas(0).await),
        "compare-and-swap parameter did not match existing policy version"
    );
    cas(1).await.expect("cas matches");
    let read = f
        .data(
            Operation::Read,
            "sys/policies/acl/legacy",
            &f.root,
            json!({}),
        )
        .await;
    assert_eq!(read["version"], 2);
    // `default` can be edited.
    f.write_policy(
        "default",
        r#"path "auth/token/lookup-self" { capabilities = ["read"] }"#,
    )
    .await
    .expect("default is editable");
}

#[tokio::test]
async fn tokens_are_limited_by_their_policies() {
    let f = fixture().await;
    f.write_policy(
        "apps",
        r#"
path "secret/data/apps/+/config" { capabilities = ["create", "read", "update"] }
path "secret/data/shared/*" { capabilities = ["read"] }
path "secret/data/shared/private" { capabilities = ["deny"] }
path "secret/metadata/shared/" { capabilities = ["list"] }
"#,
    )
    .await
    .expect("written");
    for path in [
        "secret/data/apps/web/config",
        "secret/data/shared/a",
        "secret/data/shared/private",
        "secret/data/other",
    ] {
        f.run(
            Operation::Update,
            path,
            &f.root,
            Some(json!({"data": {"k": "v"}})),
        )
        .await
        .expect("root writes anything");
    }
    let token = f.token(&["apps"], false).await;
    let read = |path: &'static str| f.run(Operation::Read, path, &token, None);
    assert!(
        read("secret/data/apps/web/config")
            .await
            .expect("allowed")
            .is_some()
    );
    assert!(
        denied(read("secret/data/apps/web/extra/config").await),
        "+ is one segment"
    );
    assert!(
        read("secret/data/shared/a")
            .await
            .expect("allowed")
            .is_some()
    );
    assert!(
        denied(read("secret/data/shared/private").await),
        "deny wins"
    );
    assert!(denied(read("secret/data/other").await));
    assert!(
        f.run(
            Operation::Update,
            "secret/data/apps/api/config",
            &token,
            Some(json!({"data": {"k": "v"}}))
        )
        .await
        .is_ok()
    );
    assert!(denied(
        f.run(
            Operation::Update,
            "secret/data/shared/a",
            &token,
            Some(json!({"data": {}}))
        )
        .await
    ));
    // A list without the trailing slash is decided on the folder.
    assert!(
        f.run(Operation::List, "secret/metadata/shared", &token, None)
            .await
            .is_ok()
    );
    // `default` comes with every token: lookup-self works, policy admin does not.
    assert!(read("auth/token/lookup-self").await.is_ok());
    assert!(denied(read("sys/policies/acl/apps").await));
    assert!(denied(
        f.run(Operation::Read, "sys/mounts", &token, None).await
    ));
    // A policy change applies at once.
    f.write_policy(
        "apps",
        r#"path "secret/data/other" { capabilities = ["read"] }"#,
    )
    .await
    .expect("rewritten");
    assert!(denied(read("secret/data/shared/a").await));
    assert!(read("secret/data/other").await.is_ok());
    // So does a deletion.
    f.run(Operation::Delete, "sys/policies/acl/apps", &f.root, None)
        .await
        .expect("deleted");
    assert!(denied(read("secret/data/other").await));
}

#[tokio::test]
async fn root_protected_paths_need_sudo() {
    let f = fixture().await;
    f.write_policy(
        "operator",
        r#"
path "sys/rotate" { capabilities = ["update"] }
path "sys/key-status" { capabilities = ["read"] }
path "sys/seal" { capabilities = ["update"] }
"#,
    )
    .await
    .expect("written");
    let plain = f.token(&["operator"], false).await;
    assert!(denied(f.engine.rotate(Some(&plain)).await));
    assert!(
        f.engine.key_status(Some(&plain)).await.is_ok(),
        "key-status is not root-protected"
    );
    assert!(denied(f.engine.seal(Some(&plain)).await));
    assert!(!f.engine.is_sealed());
    f.write_policy(
        "operator",
        r#"
path "sys/rotate" { capabilities = ["update", "sudo"] }
path "sys/seal" { capabilities = ["update", "sudo"] }
"#,
    )
    .await
    .expect("rewritten");
    assert!(f.engine.rotate(Some(&plain)).await.is_ok());
    assert!(denied(f.engine.key_status(Some(&plain)).await));
    f.engine.seal(Some(&plain)).await.expect("sealed with sudo");
    assert!(f.engine.is_sealed());
}

#[tokio::test]
async fn conditions_use_address_mfa_and_clock() {
    let f = fixture().await;
    f.write_policy(
        "guarded",
        r#"
path "secret/data/office/*" {
  capabilities = ["read"]
  cidrs = ["10.0.0.0/8"]
}
path "secret/data/mfa/*" {
  capabilities = ["read"]
  require_mfa = true
}
path "secret/data/hours/*" {
  capabilities = ["read"]
  not_before = "09:00"
  not_after = "17:00"
  time_zone = "UTC"
  days = ["mon", "tue", "wed", "thu", "fri"]
}
"#,
    )
    .await
    .expect("written");
    for path in [
        "secret/data/office/a",
        "secret/data/mfa/a",
        "secret/data/hours/a",
    ] {
        f.run(
            Operation::Update,
            path,
            &f.root,
            Some(json!({"data": {"k": "v"}})),
        )
        .await
        .expect("written");
    }
    let token = f.token(&["guarded"], false).await;
    let with_mfa = f.token(&["guarded"], true).await;
    let from = |address: Option<&str>, path: &str, token: &str| {
        let mut request = Request::new(Operation::Read, path).token(token);
        request.connection.remote_addr = address.map(|a| a.parse::<IpAddr>().expect("address"));
        f.engine.handle(request)
    };
    assert!(
        from(Some("10.1.2.3"), "secret/data/office/a", &token)
            .await
            .is_ok()
    );
    assert!(denied(
        from(Some("192.0.2.1"), "secret/data/office/a", &token).await
    ));
    assert!(denied(from(None, "secret/data/office/a", &token).await));
    assert!(denied(from(None, "secret/data/mfa/a", &token).await));
    assert!(from(None, "secret/data/mfa/a", &with_mfa).await.is_ok());
    // Wednesday 10:00 UTC: inside; 18:00: outside; Saturday: outside.
    assert!(from(None, "secret/data/hours/a", &token).await.is_ok());
    f.clock.advance(jiff::SignedDuration::from_hours(8));
    assert!(denied(from(None, "secret/data/hours/a", &token).await));
    f.clock.advance(jiff::SignedDuration::from_hours(64));
    assert!(denied(from(None, "secret/data/hours/a", &token).await));
}

#[tokio::test]
async fn parameter_rules_see_the_request_body() {
    let f = fixture().await;
    f.write_policy(
        "mounts",
        r#"
path "sys/mounts/*" {
  capabilities = ["create", "update"]
  allowed_parameters = { "type" = ["kv", "kv-v2"], "description" = [], "options" = [], "config" = [] }
}
"#,
    )
    .await
    .expect("written");
    let token = f.token(&["mounts"], false).await;
    assert!(
        f.run(
            Operation::Update,
            "sys/mounts/team",
            &token,
            Some(json!({"type": "kv"}))
        )
        .await
        .is_ok()
    );
    assert!(denied(
        f.run(
            Operation::Update,
            "sys/mounts/other",
            &token,
            Some(json!({"type": "transit"}))
        )
        .await
    ));
}

#[tokio::test]
async fn capabilities_endpoints_answer_like_vault() {
    let f = fixture().await;
    f.write_policy(
        "caps",
        r#"path "secret/*" { capabilities = ["read", "create", "sudo", "list"] }"#,
    )
    .await
    .expect("written");
    let token = f.token(&["caps"], false).await;
    let answer = f
        .data(
            Operation::Update,
            "sys/capabilities",
            &f.root,
            json!({"token": token, "path": "secret/foo"}),
        )
        .await;
    assert_eq!(
        answer["capabilities"],
        json!(["create", "list", "read", "sudo"])
    );
    assert_eq!(
        answer["secret/foo"],
        json!(["create", "list", "read", "sudo"])
    );
    let answer = f
        .data(
            Operation::Update,
            "sys/capabilities-self",
            &token,
            json!({"paths": ["secret/foo", "sys/x"]}),
        )
        .await;
    assert_eq!(answer["sys/x"], json!(["deny"]));
    assert!(!answer.contains_key("capabilities"));
    let answer = f
        .data(
            Operation::Update,
            "sys/capabilities-self",
            &f.root,
            json!({"path": "x"}),
        )
        .await;
    assert_eq!(answer["capabilities"], json!(["root"]));
    assert_eq!(
        invalid(
            f.run(
                Operation::Update,
                "sys/capabilities",
                &f.root,
                Some(json!({"token": "nope", "path": "x"}))
            )
            .await
        ),
        "invalid token"
    );
    assert_eq!(
        invalid(
            f.run(
                Operation::Update,
                "sys/capabilities-self",
                &token,
                Some(json!({}))
            )
            .await
        ),
        "paths must be supplied"
    );
    // sys/capabilities itself needs a grant (default only has capabilities-self).
    assert!(denied(
        f.run(
            Operation::Update,
            "sys/capabilities",
            &token,
            Some(json!({"token": token, "path": "x"}))
        )
        .await
    ));
}

#[tokio::test]
async fn explain_names_the_policy_rule_and_failed_condition() {
    let f = fixture().await;
    f.write_policy(
        "reader",
        r#"path "secret/data/*" { capabilities = ["read"] }"#,
    )
    .await
    .expect("written");
    f.write_policy(
        "office",
        r#"path "secret/data/prod/*" { capabilities = ["read", "update"] cidrs = ["10.0.0.0/8"] max_ttl = "1h" }"#,
    )
    .await
    .expect("written");
    let token = f.token(&["reader", "office"], false).await;
    let allowed = f
        .data(
            Operation::Update,
            "sys/policies/explain",
            &f.root,
            json!({"token": token, "path": "secret/data/app", "operation": "read"}),
        )
        .await;
    assert_eq!(allowed["allowed"], true);
    assert_eq!(allowed["policy"], "reader");
    assert_eq!(allowed["pattern"], "secret/data/*");
    let refused = f
        .data(
            Operation::Update,
            "sys/policies/explain",
            &f.root,
            json!({"token": token, "path": "secret/data/prod/db", "operation": "update"}),
        )
        .await;
    assert_eq!(refused["allowed"], false);
    assert_eq!(refused["pattern"], "secret/data/prod/*");
    assert_eq!(refused["policy"], "office");
    let failed = refused["failed_condition"]
        .as_str()
        .expect("a failed condition");
    assert!(
        failed.contains("cidrs") && failed.contains("office"),
        "{failed}"
    );
    // The caller's own token by default, and sudo on root-protected paths.
    let own = f
        .data(
            Operation::Update,
            "sys/policies/explain",
            &f.root,
            json!({"path": "sys/seal", "operation": "update"}),
        )
        .await;
    assert_eq!(own["allowed"], true);
    assert_eq!(own["root"], true);
    assert_eq!(own["sudo_required"], true);
    assert!(
        invalid(
            f.run(
                Operation::Update,
                "sys/policies/explain",
                &f.root,
                Some(json!({"path": "x", "operation": "fly"}))
            )
            .await
        )
        .contains("unknown operation")
    );
}

#[tokio::test]
async fn another_node_sees_policy_changes_after_invalidation() {
    let f = fixture().await;
    f.write_policy("p", r#"path "secret/data/*" { capabilities = ["read"] }"#)
        .await
        .expect("written");
    f.run(
        Operation::Update,
        "secret/data/a",
        &f.root,
        Some(json!({"data": {"k": "v"}})),
    )
    .await
    .expect("written");
    let token = f.token(&["p"], false).await;
    // A second node over the same storage, following a change feed.
    let other = Engine::new(f.storage.clone(), f.clock.clone());
    other.attach_change_feed();
    other
        .apply_invalidation(&crate::Invalidation::All { revision: None })
        .await;
    other
        .unseal(crate::UnsealInput::Key(f.share.clone()))
        .await
        .expect("the second node unseals");
    let request = Request::new(Operation::Read, "secret/data/a").token(&token);
    let read = |engine: &Engine| engine.clone().handle_owned(request.clone());
    assert!(read(&other).await.is_ok());
    // The first node tightens the policy; the second applies the change notice.
    f.write_policy("p", r#"path "secret/data/b" { capabilities = ["read"] }"#)
        .await
        .expect("rewritten");
    assert!(read(&other).await.is_ok(), "not yet notified");
    other
        .apply_invalidation(&crate::Invalidation::Keys {
            keys: vec![format!("{}p", super::POLICY_PREFIX)],
            revision: None,
        })
        .await;
    assert!(denied(read(&other).await));
}

#[tokio::test]
async fn a_write_where_nothing_exists_needs_create() {
    let f = fixture().await;
    f.run(
        Operation::Update,
        "sys/mounts/v1",
        &f.root,
        Some(json!({"type": "kv"})),
    )
    .await
    .expect("kv v1 mounted");
    f.write_policy(
        "writers",
        r#"
path "secret/data/new/*" { capabilities = ["create"] }
path "secret/data/old/*" { capabilities = ["update"] }
path "v1/new/*" { capabilities = ["create"] }
"#,
    )
    .await
    .expect("written");
    let token = f.token(&["writers"], false).await;
    // `create` writes a new secret, but cannot replace it.
    assert!(f.write_secret("secret/data/new/a", &token).await.is_ok());
    assert!(denied(f.write_secret("secret/data/new/a", &token).await));
    // `update` cannot create, but replaces what exists.
    assert!(denied(f.write_secret("secret/data/old/a", &token).await));
    f.write_secret("secret/data/old/a", &f.root)
        .await
        .expect("root creates");
    assert!(f.write_secret("secret/data/old/a", &token).await.is_ok());
    // KV v1 too.
    assert!(f.write_secret("v1/new/a", &token).await.is_ok());
    assert!(denied(f.write_secret("v1/new/a", &token).await));
}

#[tokio::test]
async fn ui_mount_lookup_needs_some_grant_under_the_mount() {
    let f = fixture().await;
    f.run(
        Operation::Update,
        "sys/mounts/hidden",
        &f.root,
        Some(json!({"type": "kv"})),
    )
    .await
    .expect("mounted");
    f.write_policy(
        "app",
        r#"path "secret/data/app/*" { capabilities = ["read"] }"#,
    )
    .await
    .expect("written");
    let token = f.token(&["app"], false).await;
    let lookup = |path: &'static str| f.run(Operation::Read, path, &token, None);
    let answer = lookup("sys/internal/ui/mounts/secret/app/db")
        .await
        .expect("allowed")
        .expect("an answer");
    assert_eq!(answer.data.expect("data")["path"], "secret/");
    assert!(denied(lookup("sys/internal/ui/mounts/hidden/x").await));
    assert!(denied(lookup("sys/internal/ui/mounts/nowhere/x").await));
}

/// An audit record's path and outcome.
type Record = (String, Option<Result<(), String>>);

/// Keeps every audit record's path and outcome.
#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<Record>>);

#[async_trait::async_trait]
impl crate::AuditSink for Recorder {
    async fn record(&self, event: &crate::AuditEvent<'_>) -> Result<(), EngineError> {
        self.0
            .lock()
            .expect("lock")
            .push((event.path.to_owned(), event.outcome.clone()));
        Ok(())
    }
}

#[tokio::test]
async fn a_denied_request_is_audited() {
    let recorder = Arc::new(Recorder::default());
    let storage = Arc::new(MemoryStorage::new());
    let clock = Arc::new(FakeClock::new(START.parse().expect("time")));
    let engine = Engine::with_audit(storage, clock, crate::Limits::default(), recorder.clone());
    engine.dev_init(None).await.expect("dev init");
    let unsealed = engine.unsealed().expect("unsealed");
    let token = engine
        .issue_token(&unsealed, TokenGrant::default())
        .await
        .expect("token")
        .client_token;
    let result = engine
        .handle(Request::new(Operation::Read, "sys/mounts").token(&token))
        .await;
    assert!(denied(result));
    let records = recorder.0.lock().expect("lock").clone();
    let mounts: Vec<_> = records
        .iter()
        .filter(|(path, _)| path == "sys/mounts")
        .collect();
    assert_eq!(mounts.len(), 2, "{records:?}");
    assert_eq!(mounts[1].1, Some(Err("permission denied".to_owned())));
}

#[tokio::test]
async fn seal_life_cycle_calls_see_the_connection_address() {
    let f = fixture().await;
    f.write_policy(
        "ops",
        r#"path "sys/rotate" { capabilities = ["update", "sudo"] cidrs = ["10.0.0.0/8"] }"#,
    )
    .await
    .expect("written");
    let token = f.token(&["ops"], false).await;
    let from = |address: &str| crate::Connection {
        remote_addr: Some(address.parse().expect("address")),
        ..crate::Connection::default()
    };
    assert!(
        f.engine
            .rotate_at("sys/rotate", Some(&token), &from("10.0.0.9"))
            .await
            .is_ok()
    );
    assert!(denied(
        f.engine
            .rotate_at("sys/rotate", Some(&token), &from("192.0.2.9"))
            .await
    ));
    assert!(
        denied(f.engine.rotate(Some(&token)).await),
        "no address, no match"
    );
}

#[tokio::test]
async fn token_creation_follows_the_policy_sudo_and_max_ttl() {
    let f = fixture().await;
    f.write_policy(
        "creator",
        r#"path "auth/token/create" { capabilities = ["update"] max_ttl = "1h" }"#,
    )
    .await
    .expect("written");
    f.write_policy(
        "admin",
        r#"path "auth/token/create" { capabilities = ["update", "sudo"] }"#,
    )
    .await
    .expect("written");
    let creator = f.token(&["creator"], false).await;
    // The rule's max_ttl caps the child's TTL.
    let child = f
        .create_child(&creator, json!({"ttl": "8h", "policies": ["creator"]}))
        .await
        .expect("created")
        .expect("an answer");
    let auth = child.auth.expect("a token");
    assert!(auth.lease_duration <= 3600, "{}", auth.lease_duration);
    // Orphans need sudo on the path: the creator has none, the admin has it.
    assert!(matches!(
        f.create_child(&creator, json!({"no_parent": true})).await,
        Err(EngineError::InvalidRequest(message)) if message.contains("sudo")
    ));
    let admin = f.token(&["admin"], false).await;
    let orphan = f
        .create_child(&admin, json!({"no_parent": true}))
        .await
        .expect("created")
        .expect("an answer");
    assert!(orphan.auth.expect("a token").orphan);
    // Without a grant on the path, no token at all.
    let plain = f.token(&[], false).await;
    assert!(denied(f.create_child(&plain, json!({})).await));
}

#[tokio::test]
async fn capabilities_by_accessor() {
    let f = fixture().await;
    f.write_policy("reader", r#"path "secret/*" { capabilities = ["read"] }"#)
        .await
        .expect("written");
    let unsealed = f.engine.unsealed().expect("unsealed");
    let issued = f
        .engine
        .issue_token(
            &unsealed,
            TokenGrant {
                policies: vec!["reader".into()],
                ..TokenGrant::default()
            },
        )
        .await
        .expect("token");
    let answer = f
        .data(
            Operation::Update,
            "sys/capabilities-accessor",
            &f.root,
            json!({"accessor": issued.accessor, "path": "secret/x"}),
        )
        .await;
    assert_eq!(answer["capabilities"], json!(["read"]));
    assert_eq!(
        invalid(
            f.run(
                Operation::Update,
                "sys/capabilities-accessor",
                &f.root,
                Some(json!({"accessor": "nope", "path": "x"}))
            )
            .await
        ),
        "invalid accessor"
    );
}

#[tokio::test]
async fn auth_method_users_and_roles_need_create_when_new() {
    let f = fixture().await;
    for (path, kind) in [
        ("sys/auth/userpass", "userpass"),
        ("sys/auth/approle", "approle"),
        ("sys/auth/cert", "cert"),
    ] {
        f.run(
            Operation::Update,
            path,
            &f.root,
            Some(json!({"type": kind})),
        )
        .await
        .expect("enabled");
    }
    f.write_policy(
        "onboarding",
        r#"
path "auth/userpass/users/*" { capabilities = ["create"] }
path "auth/approle/role/*" { capabilities = ["create"] }
path "auth/cert/certs/*" { capabilities = ["create"] }
"#,
    )
    .await
    .expect("written");
    let token = f.token(&["onboarding"], false).await;
    let write = |path: &'static str| {
        f.run(
            Operation::Update,
            path,
            &token,
            Some(json!({"password": "correct horse battery", "token_policies": "default"})),
        )
    };
    assert!(
        write("auth/userpass/users/alice").await.is_ok(),
        "a new user"
    );
    assert!(
        denied(write("auth/userpass/users/alice").await),
        "changing needs update"
    );
    assert!(write("auth/approle/role/web").await.is_ok(), "a new role");
    assert!(
        denied(write("auth/approle/role/WEB").await),
        "names are case-insensitive"
    );
    let pem = crate::auth::cert::tests::ca("onboarding CA").pem();
    let write_cert = |path: &'static str| {
        f.run(
            Operation::Update,
            path,
            &token,
            Some(json!({"certificate": pem.clone(), "token_policies": "default"})),
        )
    };
    assert!(
        write_cert("auth/cert/certs/web").await.is_ok(),
        "a new role"
    );
    assert!(
        denied(write_cert("auth/cert/certs/Web").await),
        "changing needs update"
    );
}
