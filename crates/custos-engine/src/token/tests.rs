//! Token store tests: an engine over `MemoryStorage` with a `FakeClock`, driven through the
//! pipeline as a client would, and checked against what is left in storage.

use std::sync::{Arc, Mutex};

use custos_storage::{MemoryStorage, Storage, Transaction};
use serde_json::{Value, json};

use super::store::{NewToken, lifetime, sanitize_policies};
use super::*;
use crate::logical::{LogicalResponse, Operation};
use crate::pipeline::{AuditEvent, AuditSink, ClientCert, Connection, Request};
use crate::{Engine, EngineError, FakeClock, Limits};

/// 2026-01-01T00:00:00Z.
const START: i64 = 1_767_225_600;
const ROOT: &str = "root-token";

/// The policies a harness starts with.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Policies {
    /// Vault's `default` policy: a token without other policies may only use itself.
    Vault,
    /// `default` rewritten to allow everything but `sudo`: every token that has it may do
    /// anything that needs no sudo, so a non-root parent can create children.
    AllowAll,
}

/// Keeps every alert it is given.
#[derive(Default)]
struct Alerts(Mutex<Vec<String>>);

#[async_trait::async_trait]
impl AuditSink for Alerts {
    async fn record(&self, event: &AuditEvent<'_>) -> Result<(), EngineError> {
        if let Some(alert) = &event.alert {
            self.0.lock().expect("alerts lock").push(alert.clone());
        }
        Ok(())
    }
}

struct Harness {
    engine: Engine,
    clock: Arc<FakeClock>,
    storage: Arc<MemoryStorage>,
    alerts: Arc<Alerts>,
    share: zeroize::Zeroizing<Vec<u8>>,
}

async fn harness_with(policies: Policies) -> Harness {
    let storage = Arc::new(MemoryStorage::new());
    let clock = Arc::new(FakeClock::new(
        jiff::Timestamp::from_second(START).expect("start time"),
    ));
    let alerts = Arc::new(Alerts::default());
    let engine = Engine::with_audit(
        storage.clone(),
        clock.clone(),
        Limits::default(),
        alerts.clone(),
    );
    let init = engine
        .dev_init(Some(zeroize::Zeroizing::new(ROOT.to_owned())))
        .await
        .expect("dev init");
    if policies == Policies::AllowAll {
        // Not `sudo`: the tests of what needs sudo expect only root to have it.
        let everything = r#"path "*" { capabilities = ["create", "read", "update", "patch", "delete", "list"] }"#;
        engine
            .handle(
                Request::new(Operation::Update, "sys/policies/acl/default")
                    .token(ROOT)
                    .data(json!({ "policy": everything })),
            )
            .await
            .expect("default policy rewritten");
    }
    Harness {
        engine,
        clock,
        storage,
        alerts,
        share: init.shares[0].clone(),
    }
}

/// Vault's `default` policy: only root may do more than a token's self-service.
async fn harness() -> Harness {
    harness_with(Policies::Vault).await
}

impl Harness {
    async fn call(
        &self,
        operation: Operation,
        path: &str,
        token: &str,
        data: Value,
    ) -> Result<Option<LogicalResponse>, EngineError> {
        self.engine
            .handle(Request::new(operation, path).token(token).data(data))
            .await
    }

    async fn write(
        &self,
        path: &str,
        token: &str,
        data: Value,
    ) -> Result<LogicalResponse, EngineError> {
        self.call(Operation::Update, path, token, data)
            .await
            .map(|answer| answer.expect("an answer"))
    }

    async fn create(&self, token: &str, data: Value) -> IssuedToken {
        self.write("auth/token/create", token, data)
            .await
            .expect("create")
            .auth
            .expect("an auth block")
    }

    async fn lookup(&self, token: &str) -> Result<serde_json::Map<String, Value>, EngineError> {
        self.write("auth/token/lookup", ROOT, json!({ "token": token }))
            .await
            .map(|answer| answer.data.expect("lookup data"))
    }

    async fn works(&self, token: &str) -> bool {
        self.engine
            .authenticate(Some(token), &Connection::default())
            .await
            .is_ok()
    }

    fn advance(&self, seconds: i64) {
        self.clock.advance(jiff::SignedDuration::from_secs(seconds));
    }

    /// The store's current revision: it moves on every write.
    async fn revision(&self) -> u64 {
        self.storage
            .commit(Transaction::new())
            .await
            .expect("revision")
            .0
    }

    async fn keys(&self, prefix: &str) -> Vec<String> {
        self.storage.list(prefix, None, 0).await.expect("list").keys
    }
}

fn invalid(result: Result<impl std::fmt::Debug, EngineError>) -> String {
    match result {
        Err(EngineError::InvalidRequest(message)) => message,
        other => panic!("expected an invalid request, got {other:?}"),
    }
}

#[tokio::test]
async fn create_answers_with_vault_auth_block_and_lookup() {
    let h = harness().await;
    let answer = h
        .write(
            "auth/token/create",
            ROOT,
            json!({"policies": ["b", "a"], "ttl": "1h", "meta": {"team": "x"}, "display_name": "My App!"}),
        )
        .await
        .unwrap();
    assert!(answer.data.is_none());
    let auth = answer.auth.unwrap();
    assert_eq!(auth.policies, ["a", "b", "default"]);
    assert_eq!(auth.lease_duration, 3600);
    assert!(auth.renewable);
    assert!(!auth.orphan);
    assert_eq!(auth.metadata.get("team").map(String::as_str), Some("x"));
    assert!(auth.client_token.starts_with("custos_token_"));
    assert_ne!(auth.accessor, auth.client_token);

    h.advance(100);
    let data = h.lookup(&auth.client_token).await.unwrap();
    assert_eq!(data["id"], auth.client_token.as_str());
    assert_eq!(data["accessor"], auth.accessor.as_str());
    assert_eq!(data["creation_ttl"], 3600);
    assert_eq!(data["ttl"], 3500);
    assert_eq!(data["creation_time"], START);
    assert_eq!(data["expire_time"], "2026-01-01T01:00:00Z");
    assert_eq!(data["display_name"], "token-My-App");
    assert_eq!(data["path"], "auth/token/create");
    assert_eq!(data["orphan"], false);
    assert_eq!(data["type"], "service");
    assert_eq!(data["meta"], json!({"team": "x"}));
    assert_eq!(data["num_uses"], 0);
    assert_eq!(data["leaked"], false);
    assert_eq!(data["bound_cidrs"], json!([]));
    assert_eq!(data["bound_cert_fingerprint"], Value::Null);

    // By accessor: the same, without the token.
    let by_accessor = h
        .write(
            "auth/token/lookup-accessor",
            ROOT,
            json!({"accessor": auth.accessor}),
        )
        .await
        .unwrap()
        .data
        .unwrap();
    assert_eq!(by_accessor["id"], "");
    assert_eq!(by_accessor["ttl"], 3500);

    // The root token, looking itself up.
    let own = h
        .call(Operation::Read, "auth/token/lookup-self", ROOT, Value::Null)
        .await
        .unwrap()
        .unwrap()
        .data
        .unwrap();
    assert_eq!(own["id"], ROOT);
    assert_eq!(own["policies"], json!(["root"]));
    assert_eq!(own["expire_time"], Value::Null);
    assert_eq!(own["ttl"], 0);
    assert_eq!(own["orphan"], true);
    assert_eq!(own["path"], "auth/token/root");
}

#[tokio::test]
async fn unknown_tokens_and_accessors_get_vaults_errors() {
    let h = harness().await;
    assert!(matches!(
        h.lookup("custos_token_nope").await,
        Err(EngineError::PermissionDenied)
    ));
    assert_eq!(
        invalid(
            h.write(
                "auth/token/lookup-accessor",
                ROOT,
                json!({"accessor": "nope"})
            )
            .await
        ),
        "invalid accessor"
    );
    assert_eq!(
        invalid(
            h.write("auth/token/renew", ROOT, json!({"token": "nope"}))
                .await
        ),
        "token not found"
    );
    // Revoking what is not there succeeds, as in Vault.
    assert!(
        h.write("auth/token/revoke", ROOT, json!({"token": "nope"}))
            .await
            .is_ok()
    );
    let answer = h
        .write(
            "auth/token/revoke-accessor",
            ROOT,
            json!({"accessor": "nope"}),
        )
        .await
        .unwrap();
    assert_eq!(answer.warnings, ["No token found with this accessor"]);
    assert_eq!(
        invalid(
            h.write("auth/token/revoke-orphan", ROOT, json!({"token": "nope"}))
                .await
        ),
        "token to revoke not found"
    );
}

#[tokio::test]
async fn bad_input_is_a_clear_error_and_writes_nothing() {
    let h = harness().await;
    let before = h.keys(TOKEN_PREFIX).await.len();
    for (body, message) in [
        (json!({"ttl": "bogus"}), "ttl"),
        (json!({"num_uses": -1}), "number of uses cannot be negative"),
        (json!({"ttl": "-5s"}), "ttl must be positive"),
        (json!({"bound_cidrs": ["nope"]}), "invalid bound_cidrs"),
        (
            json!({"bound_cert_fingerprint": "abc"}),
            "bound_cert_fingerprint",
        ),
        (json!({"type": "batch"}), "batch"),
        (json!({"meta": "x"}), "meta must be an object"),
        (json!({"policies": {"a": 1}}), "policies must be a list"),
    ] {
        let message_seen = invalid(h.write("auth/token/create", ROOT, body.clone()).await);
        assert!(message_seen.contains(message), "{body}: {message_seen}");
    }
    assert_eq!(h.keys(TOKEN_PREFIX).await.len(), before);
}

#[tokio::test]
async fn ttls_follow_vaults_defaults_and_caps() {
    let h = harness().await;
    // No TTL: the system default, 768h.
    assert_eq!(
        h.create(ROOT, json!({"policies": ["a"]}))
            .await
            .lease_duration,
        SYSTEM_DEFAULT_TTL
    );
    // More than the maximum: capped, with Vault's warning.
    let answer = h
        .write(
            "auth/token/create",
            ROOT,
            json!({"policies": ["a"], "ttl": "10000h"}),
        )
        .await
        .unwrap();
    assert_eq!(answer.auth.unwrap().lease_duration, SYSTEM_MAX_TTL);
    assert_eq!(
        answer.warnings,
        [
            "TTL of \"10000h\" exceeded the effective max_ttl of \"768h\"; TTL value is capped accordingly"
        ]
    );
    // The explicit maximum caps the TTL.
    let capped = h
        .create(
            ROOT,
            json!({"policies": ["a"], "ttl": "2h", "explicit_max_ttl": "1h"}),
        )
        .await;
    assert_eq!(capped.lease_duration, 3600);
    // A root child without a TTL never expires and is not renewable.
    let root_child = h.create(ROOT, json!({})).await;
    assert_eq!(root_child.policies, ["root"]);
    assert_eq!(root_child.lease_duration, 0);
    assert!(!root_child.renewable);
    // Periodic: one period at a time, renewed back to the period with no maximum.
    let periodic = h
        .create(ROOT, json!({"policies": ["a"], "period": "1h"}))
        .await;
    assert_eq!(periodic.lease_duration, 3600);
    for _ in 0..30 {
        h.advance(50 * 60);
        let renewed = h
            .write(
                "auth/token/renew",
                ROOT,
                json!({"token": periodic.client_token, "increment": "5h"}),
            )
            .await
            .unwrap()
            .auth
            .unwrap();
        assert_eq!(renewed.lease_duration, 3600);
    }
    assert!(h.works(&periodic.client_token).await);
}

#[test]
fn lifetime_caps_by_policy_and_parent() {
    let parent = store::ParentRef {
        hash: "p".into(),
        entry: TokenEntry {
            expire_time: Some(START + 600),
            ..TokenEntry::default()
        },
        revision: custos_storage::Revision(1),
    };
    let spec = NewToken {
        policies: vec!["a".into()],
        ttl: 3600,
        renewable: true,
        policy_max_ttl: Some(1800),
        ..NewToken::default()
    };
    let life = lifetime(&spec, START).unwrap();
    assert_eq!((life.ttl, life.max_ttl), (1800, 1800));
    let child = NewToken {
        parent: Some(parent.clone()),
        ..spec.clone()
    };
    assert_eq!(lifetime(&child, START).unwrap().ttl, 600);
    // An expiring parent cannot make a token that never expires.
    let root_child = NewToken {
        policies: vec!["root".into()],
        ttl: 0,
        policy_max_ttl: None,
        parent: Some(parent),
        ..NewToken::default()
    };
    assert!(lifetime(&root_child, START).is_err());
    assert_eq!(
        sanitize_policies(&["B ".into(), "a".into(), "a".into()], true),
        ["a", "b", "default"]
    );
    assert_eq!(
        sanitize_policies(&["root".into(), "a".into()], true),
        ["root"]
    );
}

#[tokio::test]
async fn expired_tokens_are_refused_at_once() {
    let h = harness().await;
    let token = h
        .create(ROOT, json!({"policies": ["a"], "ttl": "60s"}))
        .await;
    h.advance(59);
    assert!(h.works(&token.client_token).await);
    h.advance(1);
    assert!(!h.works(&token.client_token).await);
    assert!(matches!(
        h.call(
            Operation::Read,
            "auth/token/lookup-self",
            &token.client_token,
            Value::Null
        )
        .await,
        Err(EngineError::PermissionDenied)
    ));
    assert!(matches!(
        h.lookup(&token.client_token).await,
        Err(EngineError::PermissionDenied)
    ));
    assert_eq!(
        invalid(
            h.write(
                "auth/token/renew",
                ROOT,
                json!({"token": token.client_token})
            )
            .await
        ),
        "token not found"
    );
    // Tidy removes it, with its accessor index.
    let tidy = h.write("auth/token/tidy", ROOT, json!({})).await.unwrap();
    assert_eq!(tidy.data.unwrap()["expired_revoked"], 1);
    assert_eq!(h.keys(TOKEN_PREFIX).await.len(), 1);
    assert_eq!(h.keys(ACCESSOR_PREFIX).await.len(), 1);
}

#[tokio::test]
async fn renewal_stays_within_the_explicit_maximum() {
    let h = harness().await;
    let token = h
        .create(
            ROOT,
            json!({"policies": ["a"], "ttl": "1h", "explicit_max_ttl": "2h"}),
        )
        .await;
    h.advance(50 * 60);
    let renew = |increment: &'static str| {
        let token = token.client_token.clone();
        let h = &h;
        async move {
            h.write(
                "auth/token/renew-self",
                &token,
                json!({"increment": increment}),
            )
            .await
        }
    };
    assert_eq!(
        renew("1h").await.unwrap().auth.unwrap().lease_duration,
        3600
    );
    h.advance(50 * 60);
    // 100 minutes in: 20 left before the explicit maximum.
    assert_eq!(
        renew("1h").await.unwrap().auth.unwrap().lease_duration,
        20 * 60
    );
    let data = h.lookup(&token.client_token).await.unwrap();
    assert_eq!(data["ttl"], 20 * 60);
    assert_eq!(data["last_renewal_time"], START + 100 * 60);
    h.advance(20 * 60);
    assert!(!h.works(&token.client_token).await);

    let fixed = h
        .create(ROOT, json!({"policies": ["a"], "renewable": false}))
        .await;
    assert_eq!(
        invalid(
            h.write(
                "auth/token/renew",
                ROOT,
                json!({"token": fixed.client_token})
            )
            .await
        ),
        "lease is not renewable"
    );
    assert_eq!(
        invalid(h.write("auth/token/renew-self", ROOT, json!({})).await),
        "lease is not renewable"
    );
    // By accessor: the answer carries no token.
    let other = h
        .create(ROOT, json!({"policies": ["a"], "ttl": "1h"}))
        .await;
    let by_accessor = h
        .write(
            "auth/token/renew-accessor",
            ROOT,
            json!({"accessor": other.accessor}),
        )
        .await
        .unwrap()
        .auth
        .unwrap();
    assert_eq!(by_accessor.client_token, "");
    assert_eq!(by_accessor.accessor, other.accessor);
    assert_eq!(by_accessor.lease_duration, 3600);
    // Without an increment, a renewal repeats the last one (as Vault's does).
    h.write(
        "auth/token/renew",
        ROOT,
        json!({"token": other.client_token, "increment": "30m"}),
    )
    .await
    .unwrap();
    let again = h
        .write(
            "auth/token/renew-accessor",
            ROOT,
            json!({"accessor": other.accessor}),
        )
        .await
        .unwrap()
        .auth
        .unwrap();
    assert_eq!(again.lease_duration, 1800);
}

#[tokio::test]
async fn revoking_a_token_revokes_its_whole_subtree() {
    let h = harness_with(Policies::AllowAll).await;
    let a = h
        .create(ROOT, json!({"policies": ["p"], "ttl": "1h"}))
        .await;
    let b = h.create(&a.client_token, json!({})).await;
    let c = h.create(&a.client_token, json!({})).await;
    let d = h.create(&b.client_token, json!({})).await;
    let other = h
        .create(ROOT, json!({"policies": ["p"], "ttl": "1h"}))
        .await;
    // Children of root are linked too: a and other under root, b and c under a, d under b.
    assert_eq!(h.keys(PARENT_PREFIX).await.len(), 5);
    assert!(!b.orphan);
    assert_eq!(b.policies, ["default", "p"]);

    h.write("auth/token/revoke", ROOT, json!({"token": a.client_token}))
        .await
        .unwrap();
    for token in [&a, &b, &c, &d] {
        assert!(!h.works(&token.client_token).await);
    }
    assert!(h.works(&other.client_token).await);
    assert!(h.works(ROOT).await);
    assert_eq!(h.keys(PARENT_PREFIX).await.len(), 1);
    // Root and `other` are left, with their accessor indexes.
    assert_eq!(h.keys(TOKEN_PREFIX).await.len(), 2);
    assert_eq!(h.keys(ACCESSOR_PREFIX).await.len(), 2);

    // revoke-self and revoke-accessor go the same way.
    let e = h.create(&other.client_token, json!({})).await;
    h.write(
        "auth/token/revoke-accessor",
        ROOT,
        json!({"accessor": other.accessor}),
    )
    .await
    .unwrap();
    assert!(!h.works(&e.client_token).await);
    let f = h.create(ROOT, json!({"policies": ["p"]})).await;
    h.write("auth/token/revoke-self", &f.client_token, json!({}))
        .await
        .unwrap();
    assert!(!h.works(&f.client_token).await);
}

#[tokio::test]
async fn revoke_orphan_keeps_the_children() {
    let h = harness_with(Policies::AllowAll).await;
    let a = h
        .create(ROOT, json!({"policies": ["p"], "ttl": "1h"}))
        .await;
    let b = h.create(&a.client_token, json!({})).await;
    let grandchild = h.create(&b.client_token, json!({})).await;
    h.write(
        "auth/token/revoke-orphan",
        ROOT,
        json!({"token": a.client_token}),
    )
    .await
    .unwrap();
    assert!(!h.works(&a.client_token).await);
    assert!(h.works(&b.client_token).await);
    assert!(h.works(&grandchild.client_token).await);
    assert_eq!(h.lookup(&b.client_token).await.unwrap()["orphan"], true);
    assert_eq!(h.keys(PARENT_PREFIX).await.len(), 1);
    // Only root (or sudo) may orphan children.
    assert_eq!(
        invalid(
            h.write(
                "auth/token/revoke-orphan",
                &b.client_token,
                json!({"token": grandchild.client_token})
            )
            .await
        ),
        "root or sudo privileges required to revoke and orphan"
    );
}

#[tokio::test]
async fn an_interrupted_revocation_is_finished_by_a_retry_or_tidy() {
    let h = harness_with(Policies::AllowAll).await;
    let unsealed = h.engine.unsealed().unwrap();
    for retry_with_tidy in [false, true] {
        let a = h
            .create(ROOT, json!({"policies": ["p"], "ttl": "1h"}))
            .await;
        let b = h.create(&a.client_token, json!({})).await;
        let hash = unsealed.token_hasher.hash_hex(a.client_token.as_bytes());
        // What a crash right after the first step leaves: the root of the tree marked.
        let (entry, revision) = h
            .engine
            .load_token(&unsealed, &hash)
            .await
            .unwrap()
            .unwrap();
        h.engine
            .mark_revoking(&unsealed, &hash, entry, revision, Revocation::Tree)
            .await
            .unwrap();
        assert!(
            !h.works(&a.client_token).await,
            "a marked token stops working at once"
        );
        assert!(h.works(&b.client_token).await);
        if retry_with_tidy {
            let tidy = h.write("auth/token/tidy", ROOT, json!({})).await.unwrap();
            assert_eq!(tidy.data.unwrap()["revocations_finished"], 1);
        } else {
            h.write(
                "auth/token/revoke-accessor",
                ROOT,
                json!({"accessor": a.accessor}),
            )
            .await
            .unwrap();
        }
        assert!(!h.works(&b.client_token).await);
        assert!(h.keys(PARENT_PREFIX).await.is_empty());
        assert_eq!(h.keys(TOKEN_PREFIX).await.len(), 1);
    }
}

#[tokio::test]
async fn no_child_slips_in_under_a_token_being_revoked() {
    let h = harness_with(Policies::AllowAll).await;
    let unsealed = h.engine.unsealed().unwrap();
    let a = h
        .create(ROOT, json!({"policies": ["p"], "ttl": "1h"}))
        .await;
    let hash = unsealed.token_hasher.hash_hex(a.client_token.as_bytes());
    let (entry, revision) = h
        .engine
        .load_token(&unsealed, &hash)
        .await
        .unwrap()
        .unwrap();
    h.engine
        .mark_revoking(&unsealed, &hash, entry.clone(), revision, Revocation::Tree)
        .await
        .unwrap();
    // A creation that read the parent before the mark fails its condition...
    let spec = NewToken {
        policies: vec!["p".into()],
        ttl: 60,
        parent: Some(store::ParentRef {
            hash: hash.clone(),
            entry,
            revision,
        }),
        ..NewToken::default()
    };
    assert!(matches!(
        h.engine.create_token(&unsealed, spec).await,
        Err(EngineError::Conflict)
    ));
    // ...and one that comes after it is refused: the parent no longer authenticates.
    assert!(matches!(
        h.write("auth/token/create", &a.client_token, json!({}))
            .await,
        Err(EngineError::PermissionDenied)
    ));
    assert!(h.keys(&format!("{PARENT_PREFIX}{hash}/")).await.is_empty());
}

#[tokio::test]
async fn a_child_never_outlives_or_out_privileges_its_parent() {
    let h = harness_with(Policies::AllowAll).await;
    let parent = h
        .create(ROOT, json!({"policies": ["a", "b"], "ttl": "1h"}))
        .await;
    let answer = h
        .write(
            "auth/token/create",
            &parent.client_token,
            json!({"policies": ["a"], "ttl": "5h"}),
        )
        .await
        .unwrap();
    assert_eq!(answer.auth.as_ref().unwrap().lease_duration, 3600);
    assert!(
        answer.warnings[0].contains("never outlives its parent"),
        "{:?}",
        answer.warnings
    );
    let child = answer.auth.unwrap();
    assert_eq!(child.policies, ["a", "default"]);
    h.advance(30 * 60);
    let renewed = h
        .write(
            "auth/token/renew",
            &parent.client_token,
            json!({"token": child.client_token, "increment": "5h"}),
        )
        .await
        .unwrap()
        .auth
        .unwrap();
    assert_eq!(renewed.lease_duration, 30 * 60);

    for (body, message) in [
        (
            json!({"policies": ["c"]}),
            "child policies must be subset of parent",
        ),
        // Vault checks the subset first, so this is the message for root too.
        (
            json!({"policies": ["root"]}),
            "child policies must be subset of parent",
        ),
        (
            json!({"no_parent": true}),
            "root or sudo privileges required to create orphan token",
        ),
        (
            json!({"period": "1h"}),
            "root or sudo privileges required to create periodic token",
        ),
        (
            json!({"id": "chosen"}),
            "root or sudo privileges required to specify token id",
        ),
    ] {
        assert_eq!(
            invalid(
                h.write("auth/token/create", &parent.client_token, body)
                    .await
            ),
            message
        );
    }
    // No policies asked for: the parent's.
    let inherited = h.create(&parent.client_token, json!({})).await;
    assert_eq!(inherited.policies, ["a", "b", "default"]);
    let bare = h
        .create(
            &parent.client_token,
            json!({"policies": ["a"], "no_default_policy": true}),
        )
        .await;
    assert_eq!(bare.policies, ["a"]);
    // Root may choose the id, and make orphans.
    let chosen = h
        .create(
            ROOT,
            json!({"id": "my-token", "policies": ["x"], "no_parent": true}),
        )
        .await;
    assert_eq!(chosen.client_token, "my-token");
    assert!(chosen.orphan);
    assert!(h.works("my-token").await);
    let orphan = h
        .write("auth/token/create-orphan", ROOT, json!({"policies": ["x"]}))
        .await
        .unwrap()
        .auth
        .unwrap();
    assert!(orphan.orphan);
}

#[tokio::test]
async fn use_limits_count_down_and_the_last_use_revokes() {
    let h = harness_with(Policies::AllowAll).await;
    let limited = h
        .create(ROOT, json!({"policies": ["a"], "num_uses": 3}))
        .await;
    assert_eq!(limited.num_uses, 3);
    let lookup_self = || {
        h.call(
            Operation::Read,
            "auth/token/lookup-self",
            &limited.client_token,
            Value::Null,
        )
    };
    assert_eq!(
        lookup_self().await.unwrap().unwrap().data.unwrap()["num_uses"],
        2
    );
    // A token with a use limit cannot escape it through children.
    assert_eq!(
        invalid(
            h.write("auth/token/create", &limited.client_token, json!({}))
                .await
        ),
        "restricted use token cannot generate child tokens"
    );
    assert_eq!(
        lookup_self().await.unwrap().unwrap().data.unwrap()["num_uses"],
        0
    );
    assert!(matches!(
        lookup_self().await,
        Err(EngineError::PermissionDenied)
    ));
    assert_eq!(h.keys(TOKEN_PREFIX).await.len(), 1);
    assert_eq!(h.keys(ACCESSOR_PREFIX).await.len(), 1);

    // Without a limit, a request costs no write.
    let plain = h.create(ROOT, json!({"policies": ["a"]})).await;
    let before = h.revision().await;
    h.call(
        Operation::Read,
        "auth/token/lookup-self",
        &plain.client_token,
        Value::Null,
    )
    .await
    .unwrap();
    assert!(h.works(&plain.client_token).await);
    assert_eq!(h.revision().await, before);
}

#[tokio::test]
async fn a_denied_request_spends_no_use() {
    let h = harness().await;
    let limited = h
        .create(ROOT, json!({"policies": ["a"], "num_uses": 2}))
        .await;
    // Vault's `default` policy refuses this token on everything but its self paths.
    assert!(matches!(
        h.call(
            Operation::Read,
            "sys/mounts",
            &limited.client_token,
            Value::Null
        )
        .await,
        Err(EngineError::PermissionDenied)
    ));
    assert_eq!(
        h.lookup(&limited.client_token).await.unwrap()["num_uses"],
        2
    );
}

#[tokio::test]
async fn self_paths_work_for_any_valid_token_and_others_need_authorisation() {
    let h = harness().await;
    let token = h
        .create(ROOT, json!({"policies": ["a"], "ttl": "1h"}))
        .await;
    // Vault's `default` policy grants `read` on lookup-self and `update` on renew-self.
    assert!(
        h.call(
            Operation::Read,
            "auth/token/lookup-self",
            &token.client_token,
            Value::Null
        )
        .await
        .is_ok()
    );
    assert!(
        h.write("auth/token/renew-self", &token.client_token, json!({}))
            .await
            .is_ok()
    );
    // As in Vault, a POST to lookup-self is an update, which `default` does not grant.
    assert!(matches!(
        h.write("auth/token/lookup-self", &token.client_token, json!({}))
            .await,
        Err(EngineError::PermissionDenied)
    ));
    assert!(matches!(
        h.write(
            "auth/token/lookup",
            &token.client_token,
            json!({"token": ROOT})
        )
        .await,
        Err(EngineError::PermissionDenied)
    ));
    assert!(matches!(
        h.write("auth/token/create", &token.client_token, json!({}))
            .await,
        Err(EngineError::PermissionDenied)
    ));
    h.write("auth/token/revoke-self", &token.client_token, json!({}))
        .await
        .unwrap();
    assert!(!h.works(&token.client_token).await);
}

#[tokio::test]
async fn accessors_name_tokens_but_never_authenticate() {
    let h = harness().await;
    let token = h.create(ROOT, json!({"policies": ["a"]})).await;
    assert!(!h.works(&token.accessor).await);
    assert!(matches!(
        h.call(
            Operation::Read,
            "auth/token/lookup-self",
            &token.accessor,
            Value::Null
        )
        .await,
        Err(EngineError::PermissionDenied)
    ));
    let listed = h
        .call(Operation::List, "auth/token/accessors", ROOT, Value::Null)
        .await
        .unwrap()
        .unwrap()
        .data
        .unwrap();
    let keys = listed["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert!(keys.contains(&json!(token.accessor)));
    // The root token's accessor is indexed from init on.
    let root_accessor = h.lookup(ROOT).await.unwrap()["accessor"].clone();
    assert!(keys.contains(&root_accessor));
    h.write(
        "auth/token/revoke-accessor",
        ROOT,
        json!({"accessor": token.accessor}),
    )
    .await
    .unwrap();
    assert!(!h.works(&token.client_token).await);
}

#[tokio::test]
async fn the_root_token_can_be_revoked() {
    let h = harness().await;
    // An orphan: a child of the root token would go with it.
    let other_root = h.create(ROOT, json!({"no_parent": true})).await;
    h.write(
        "auth/token/revoke",
        &other_root.client_token,
        json!({"token": ROOT}),
    )
    .await
    .unwrap();
    assert!(!h.works(ROOT).await);
    assert!(h.works(&other_root.client_token).await);
}

fn from(address: &str) -> Connection {
    Connection {
        remote_addr: Some(address.parse().expect("address")),
        ..Connection::default()
    }
}

#[tokio::test]
async fn cidr_bound_tokens_work_only_from_their_addresses() {
    let h = harness().await;
    let token = h
        .create(
            ROOT,
            json!({"policies": ["a"], "bound_cidrs": ["10.0.0.0/8", "192.0.2.7"]}),
        )
        .await;
    let check = |connection: Connection| {
        let token = token.client_token.clone();
        let engine = &h.engine;
        async move { engine.authenticate(Some(&token), &connection).await.is_ok() }
    };
    assert!(check(from("10.1.2.3")).await);
    assert!(check(from("192.0.2.7")).await);
    assert!(!check(from("192.0.2.8")).await);
    assert!(!check(Connection::default()).await, "no address: refused");
    assert_eq!(
        h.lookup(&token.client_token).await.unwrap()["bound_cidrs"],
        json!(["10.0.0.0/8", "192.0.2.7/32"])
    );

    let mut request =
        Request::new(Operation::Read, "auth/token/lookup-self").token(&token.client_token);
    request.connection = from("172.16.0.1");
    assert!(matches!(
        h.engine.handle(request).await,
        Err(EngineError::PermissionDenied)
    ));
    let alerts = h.alerts.0.lock().unwrap().clone();
    assert_eq!(alerts.len(), 1);
    assert!(
        alerts[0].contains("token binding check failed"),
        "{alerts:?}"
    );
    assert!(!alerts[0].contains(&token.client_token));
    let mut request =
        Request::new(Operation::Read, "auth/token/lookup-self").token(&token.client_token);
    request.connection = from("10.9.9.9");
    assert!(h.engine.handle(request).await.is_ok());
}

#[tokio::test]
async fn cert_bound_tokens_need_their_certificate_and_children_keep_the_binding() {
    let h = harness_with(Policies::AllowAll).await;
    let cert = ClientCert::from_chain(vec![b"leaf certificate".to_vec()]).unwrap();
    let other = ClientCert::from_chain(vec![b"another certificate".to_vec()]).unwrap();
    let token = h
        .create(
            ROOT,
            json!({"policies": ["a"], "bound_cert_fingerprint": cert.fingerprint.to_uppercase()}),
        )
        .await;
    let with = |cert: Option<ClientCert>| Connection {
        client_cert: cert,
        ..Connection::default()
    };
    let works = |connection: Connection, token: String| {
        let engine = &h.engine;
        async move { engine.authenticate(Some(&token), &connection).await.is_ok() }
    };
    assert!(works(with(Some(cert.clone())), token.client_token.clone()).await);
    assert!(!works(with(Some(other.clone())), token.client_token.clone()).await);
    assert!(!works(with(None), token.client_token.clone()).await);
    assert_eq!(
        h.lookup(&token.client_token).await.unwrap()["bound_cert_fingerprint"],
        cert.fingerprint.as_str()
    );

    let mut request = Request::new(Operation::Update, "auth/token/create")
        .token(&token.client_token)
        .data(json!({}));
    request.connection = with(Some(cert.clone()));
    let child = h
        .engine
        .handle(request)
        .await
        .unwrap()
        .unwrap()
        .auth
        .unwrap();
    assert!(works(with(Some(cert.clone())), child.client_token.clone()).await);
    assert!(!works(with(None), child.client_token.clone()).await);
}

#[tokio::test]
async fn roles_shape_the_tokens_created_from_them() {
    let h = harness().await;
    h.write(
        "auth/token/roles/web",
        ROOT,
        json!({"allowed_policies": ["a", "b"], "orphan": true, "token_period": "1h", "token_bound_cidrs": ["10.0.0.0/8"]}),
    )
    .await
    .unwrap();
    let role = h
        .call(Operation::Read, "auth/token/roles/web", ROOT, Value::Null)
        .await
        .unwrap()
        .unwrap()
        .data
        .unwrap();
    assert_eq!(role["allowed_policies"], json!(["a", "b"]));
    assert_eq!(role["token_period"], 3600);
    assert_eq!(role["orphan"], true);
    assert_eq!(role["renewable"], true);
    assert_eq!(role["token_bound_cidrs"], json!(["10.0.0.0/8"]));
    let listed = h
        .call(Operation::List, "auth/token/roles", ROOT, Value::Null)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(listed.data.unwrap()["keys"], json!(["web"]));

    let token = h
        .write("auth/token/create/web", ROOT, json!({"policies": ["a"]}))
        .await
        .unwrap()
        .auth
        .unwrap();
    assert_eq!(token.policies, ["a", "default"]);
    assert!(token.orphan);
    assert_eq!(token.lease_duration, 3600);
    let data = h.lookup(&token.client_token).await.unwrap();
    assert_eq!(data["role"], "web");
    assert_eq!(data["period"], 3600);
    assert_eq!(data["path"], "auth/token/create/web");
    assert_eq!(data["bound_cidrs"], json!(["10.0.0.0/8"]));

    let refused = invalid(
        h.write("auth/token/create/web", ROOT, json!({"policies": ["c"]}))
            .await,
    );
    assert_eq!(
        refused,
        r#"token policies (["c" "default"]) must be subset of the role's allowed policies (["a" "b" "default"]) or glob policies ([])"#
    );
    assert_eq!(
        invalid(h.write("auth/token/create/nosuch", ROOT, json!({})).await),
        "unknown role nosuch"
    );
    h.call(Operation::Delete, "auth/token/roles/web", ROOT, Value::Null)
        .await
        .unwrap();
    assert!(
        h.call(Operation::Read, "auth/token/roles/web", ROOT, Value::Null)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn login_grants_become_orphan_tokens_with_their_limits() {
    let h = harness().await;
    let unsealed = h.engine.unsealed().unwrap();
    let issued = h
        .engine
        .issue_token(
            &unsealed,
            TokenGrant {
                policies: vec!["app".into()],
                display_name: "userpass-alice".into(),
                ttl: 600,
                num_uses: 5,
                renewable: true,
                mfa: true,
                bound_cidrs: vec!["10.0.0.0/8".parse().unwrap()],
                path: "auth/userpass/login/alice".into(),
                ..TokenGrant::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(issued.policies, ["app", "default"]);
    assert!(issued.orphan);
    assert_eq!(issued.lease_duration, 600);
    let data = h.lookup(&issued.client_token).await.unwrap();
    assert_eq!(data["path"], "auth/userpass/login/alice");
    assert_eq!(data["mfa"], true);
    assert_eq!(data["num_uses"], 5);
    assert!(
        !h.works(&issued.client_token).await,
        "bound to 10/8, no address given"
    );
}

#[tokio::test]
async fn a_leak_report_revokes_the_subtree() {
    let h = harness_with(Policies::AllowAll).await;
    let a = h
        .create(ROOT, json!({"policies": ["p"], "ttl": "1h"}))
        .await;
    let b = h.create(&a.client_token, json!({})).await;
    let answer = h
        .engine
        .handle(
            Request::new(Operation::Update, "sys/leaks")
                .data(json!({"leaks": [{"token": a.client_token}]})),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer.data.unwrap()["revoked"], 1);
    assert!(!h.works(&a.client_token).await);
    assert!(!h.works(&b.client_token).await);
    assert!(h.keys(PARENT_PREFIX).await.is_empty());
}

#[test]
fn entries_written_before_the_token_store_still_read() {
    let old = br#"{"policies":["root"],"display_name":"root","created_time":1700000000,"accessor":"acc","issue_time_nanos":0}"#;
    let entry = TokenEntry::decode(old).unwrap();
    assert!(entry.is_root());
    assert_eq!(entry.expire_time, None);
    assert!(!entry.is_expired(i64::MAX));
    assert_eq!(entry.parent, None);
    assert_eq!(entry.num_uses, 0);
    let data = endpoints::lookup_data(&entry, "", START);
    assert_eq!(data["path"], "auth/token/root");
    assert_eq!(data["orphan"], true);
}

#[tokio::test]
async fn a_created_token_can_be_response_wrapped() {
    let h = harness().await;
    let mut request = Request::new(Operation::Update, "auth/token/create")
        .token(ROOT)
        .data(json!({"policies": ["a"], "ttl": "1h"}));
    request.wrap_ttl = Some(60);
    let wrapped = h.engine.handle(request).await.unwrap().unwrap();
    assert!(
        wrapped.auth.is_none(),
        "the token is only in the wrapped answer"
    );
    let wrap = wrapped.wrap_info.unwrap();
    assert_eq!(wrap.creation_path, "auth/token/create");
    let unwrapped = h
        .engine
        .handle(Request::new(Operation::Update, "sys/wrapping/unwrap").token(&wrap.token))
        .await
        .unwrap()
        .unwrap();
    assert!(unwrapped.data.is_none());
    let auth = unwrapped.auth.unwrap();
    assert_eq!(auth.policies, ["a", "default"]);
    assert!(h.works(&auth.client_token).await);
}

#[tokio::test]
async fn tidy_removes_what_points_at_nothing() {
    let h = harness_with(Policies::AllowAll).await;
    let unsealed = h.engine.unsealed().unwrap();
    let a = h
        .create(ROOT, json!({"policies": ["p"], "ttl": "1h"}))
        .await;
    let b = h.create(&a.client_token, json!({})).await;
    let a_hash = unsealed.token_hasher.hash_hex(a.client_token.as_bytes());
    let b_hash = unsealed.token_hasher.hash_hex(b.client_token.as_bytes());
    // Leftovers of older or interrupted writes: a link to no token, an index entry for no
    // token, and a child whose parent's entry is gone.
    unsealed
        .barrier
        .put(&parent_link_path(&a_hash, "0000"), Vec::new())
        .await
        .unwrap();
    unsealed
        .barrier
        .put(
            &accessor_path(&unsealed.token_hasher, "gone"),
            serde_json::to_vec(&json!({"accessor": "gone", "token_hash": "0000"})).unwrap(),
        )
        .await
        .unwrap();
    unsealed
        .barrier
        .delete(&token_path_for_hash(&a_hash))
        .await
        .unwrap();
    let counts = h
        .write("auth/token/tidy", ROOT, json!({}))
        .await
        .unwrap()
        .data
        .unwrap();
    assert_eq!(counts["accessor_indexes_removed"], 2, "{counts:?}");
    assert_eq!(counts["orphaned_links_removed"], 2, "{counts:?}");
    // a's own link under root, whose entry went without it.
    assert_eq!(counts["dangling_links_removed"], 1, "{counts:?}");
    assert!(h.keys(PARENT_PREFIX).await.is_empty());
    assert!(
        !h.works(&b.client_token).await,
        "a child never outlives its parent"
    );
    assert!(
        h.keys(&format!("{PARENT_PREFIX}{a_hash}/"))
            .await
            .is_empty()
    );
    assert!(h.load_missing(&b_hash).await);
    // The root token and its link-free entry are untouched.
    assert!(h.works(ROOT).await);
    assert_eq!(h.keys(ACCESSOR_PREFIX).await.len(), 1);
}

impl Harness {
    async fn load_missing(&self, hash: &str) -> bool {
        let unsealed = self.engine.unsealed().expect("unsealed");
        self.engine
            .load_token(&unsealed, hash)
            .await
            .expect("load")
            .is_none()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_never_use_a_token_more_often_than_allowed() {
    let h = Arc::new(harness().await);
    let limited = h
        .create(ROOT, json!({"policies": ["a"], "num_uses": 5}))
        .await;
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let h = h.clone();
            let token = limited.client_token.clone();
            tokio::spawn(async move {
                h.call(
                    Operation::Read,
                    "auth/token/lookup-self",
                    &token,
                    Value::Null,
                )
                .await
            })
        })
        .collect();
    let mut served = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(_) => served += 1,
            Err(EngineError::PermissionDenied) => {}
            // A request that lost every compare-and-swap race gives up; it used nothing.
            Err(EngineError::Conflict) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(served, 5);
    assert!(!h.works(&limited.client_token).await);
}

proptest::proptest! {
    #[test]
    fn a_new_token_never_outlives_its_limits(
        ttl in 0u64..4_000_000,
        explicit in 0u64..4_000_000,
        period in proptest::option::of(1u64..4_000_000),
        cap in proptest::option::of(1u64..4_000_000),
        parent_left in proptest::option::of(1i64..4_000_000),
    ) {
        let spec = NewToken {
            policies: vec!["a".into()],
            ttl,
            explicit_max_ttl: explicit,
            period: period.unwrap_or(0),
            renewable: true,
            policy_max_ttl: cap,
            parent: parent_left.map(|left| store::ParentRef {
                hash: "p".into(),
                entry: TokenEntry {
                    expire_time: Some(START + left),
                    ..TokenEntry::default()
                },
                revision: custos_storage::Revision(1),
            }),
            ..NewToken::default()
        };
        let life = lifetime(&spec, START).expect("a non-root token always gets a lifetime");
        proptest::prop_assert!(life.ttl > 0);
        if period.is_none() {
            proptest::prop_assert!(life.ttl <= SYSTEM_MAX_TTL);
        }
        if explicit > 0 {
            proptest::prop_assert!(life.ttl <= explicit);
        }
        if let Some(cap) = cap {
            proptest::prop_assert!(life.ttl <= cap);
        }
        if let Some(left) = parent_left {
            proptest::prop_assert!(life.ttl <= left as u64);
        }
    }
}

#[tokio::test]
async fn a_token_changed_or_revoked_by_another_node_is_seen_at_once() {
    let h = harness().await;
    let token = h
        .create(ROOT, json!({"policies": ["default"], "num_uses": 3}))
        .await;
    let lookup = |engine: &Engine, token: String| {
        let engine = engine.clone();
        async move {
            engine
                .handle(Request::new(Operation::Read, "auth/token/lookup-self").token(token))
                .await
        }
    };
    // Read (and decoded) here first; then another node on the same storage spends a use and
    // revokes it.
    let answer = lookup(&h.engine, token.client_token.clone())
        .await
        .expect("lookup");
    assert_eq!(answer.expect("answer").data.expect("data")["num_uses"], 2);
    let other = Engine::new(h.storage.clone(), h.clock.clone());
    other
        .unseal(crate::UnsealInput::Key(h.share.clone()))
        .await
        .expect("unseal the other node");
    let answer = lookup(&other, token.client_token.clone())
        .await
        .expect("lookup");
    assert_eq!(answer.expect("answer").data.expect("data")["num_uses"], 1);
    let answer = lookup(&h.engine, token.client_token.clone())
        .await
        .expect("lookup");
    assert_eq!(
        answer.expect("answer").data.expect("data")["num_uses"],
        0,
        "the use spent elsewhere counts here"
    );
    let error = lookup(&h.engine, token.client_token.clone())
        .await
        .expect_err("the last use revoked it");
    assert!(matches!(error, EngineError::PermissionDenied), "{error}");
    let error = lookup(&other, token.client_token.clone())
        .await
        .expect_err("revoked everywhere");
    assert!(matches!(error, EngineError::PermissionDenied), "{error}");
}
