//! API-key engine tests: engines over `MemoryStorage` with a fake clock, driven through the
//! pipeline as clients would (mount, keyrings, keys, verify, reroll, analytics, leaks, nodes).

use std::sync::Arc;

use custos_storage::{MemoryStorage, Storage};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::logical::Operation;
use crate::{Engine, EngineError, FakeClock, Invalidation, Request, UnsealInput};

const ROOT: &str = "root-token-for-apikeys";
/// 2026-01-01T00:00:00Z.
const START: i64 = 1_767_225_600;

struct Env {
    engine: Engine,
    clock: Arc<FakeClock>,
    storage: Arc<MemoryStorage>,
    share: Zeroizing<Vec<u8>>,
}

async fn env() -> Env {
    let storage = Arc::new(MemoryStorage::new());
    let clock = Arc::new(FakeClock::new(Timestamp::from_second(START).expect("time")));
    let engine = Engine::new(storage.clone(), clock.clone());
    let output = engine
        .dev_init(Some(Zeroizing::new(ROOT.to_owned())))
        .await
        .expect("dev init");
    let env = Env {
        engine,
        clock,
        storage,
        share: output.shares[0].clone(),
    };
    env.call(
        Operation::Update,
        "sys/mounts/apikeys",
        json!({"type": "apikeys"}),
    )
    .await
    .expect("mount apikeys");
    env
}

impl Env {
    fn advance(&self, seconds: i64) {
        self.clock.advance(SignedDuration::from_secs(seconds));
    }

    async fn call_as(
        engine: &Engine,
        token: &str,
        operation: Operation,
        path: &str,
        data: Value,
    ) -> Result<Value, EngineError> {
        let mut request = Request::new(operation, path).token(token);
        if !data.is_null() {
            request = request.data(data);
        }
        let answer = engine.handle(request).await?;
        Ok(answer
            .and_then(|answer| answer.data)
            .map(Value::Object)
            .unwrap_or(Value::Null))
    }

    async fn call(
        &self,
        operation: Operation,
        path: &str,
        data: Value,
    ) -> Result<Value, EngineError> {
        Env::call_as(&self.engine, ROOT, operation, path, data).await
    }

    async fn ok(&self, operation: Operation, path: &str, data: Value) -> Value {
        self.call(operation, path, data)
            .await
            .unwrap_or_else(|error| panic!("{operation:?} {path}: {error}"))
    }

    async fn keyring(&self, name: &str, data: Value) -> Value {
        self.ok(Operation::Update, &format!("apikeys/keyrings/{name}"), data)
            .await
    }

    /// Creates a key; answers (key, key_id).
    async fn key(&self, ring: &str, data: Value) -> (String, String) {
        let answer = self
            .ok(
                Operation::Update,
                &format!("apikeys/keyrings/{ring}/keys"),
                data,
            )
            .await;
        (
            answer["key"].as_str().expect("key").to_owned(),
            answer["key_id"].as_str().expect("key_id").to_owned(),
        )
    }

    async fn verify_on(engine: &Engine, body: Value) -> Value {
        Env::call_as(engine, ROOT, Operation::Update, "apikeys/verify", body)
            .await
            .expect("verify")
    }

    async fn verify(&self, body: Value) -> Value {
        Env::verify_on(&self.engine, body).await
    }

    async fn code(&self, body: Value) -> String {
        self.verify(body).await["code"]
            .as_str()
            .expect("code")
            .to_owned()
    }

    async fn mount_uuid(&self) -> String {
        let mounts = self.ok(Operation::Read, "sys/mounts", Value::Null).await;
        mounts["apikeys/"]["uuid"]
            .as_str()
            .expect("uuid")
            .to_owned()
    }

    /// A token made by root with these settings (`auth/token/create`).
    async fn token(&self, settings: Value) -> String {
        let request = Request::new(Operation::Update, "auth/token/create")
            .token(ROOT)
            .data(settings);
        let created = self
            .engine
            .handle(request)
            .await
            .expect("token")
            .expect("answer");
        created.auth.expect("auth").client_token
    }

    /// The verify lane's answer (`Ok(None)`: not served by it).
    async fn lane(
        &self,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> Result<Option<Value>, EngineError> {
        let answer = self
            .engine
            .verify_api_key(
                path,
                Some(token),
                body.and_then(Value::as_object),
                &crate::Connection::default(),
            )
            .await?;
        Ok(answer.map(|bytes| serde_json::from_slice(&bytes).expect("JSON")))
    }

    /// Updates a key of the keyring `acme`.
    async fn update_key(&self, id: &str, data: Value) -> Value {
        self.ok(
            Operation::Update,
            &format!("apikeys/keyrings/acme/keys/{id}"),
            data,
        )
        .await
    }

    /// Another node on the same storage and clock, unsealed.
    async fn second_node(&self) -> Engine {
        let engine = Engine::new(self.storage.clone(), self.clock.clone());
        engine
            .unseal(UnsealInput::Key(self.share.clone()))
            .await
            .expect("unseal the second node");
        engine
    }
}

#[tokio::test]
async fn keyrings_are_created_read_listed_updated_and_checked() {
    let env = env().await;
    let ring = env
        .keyring(
            "acme",
            json!({
                "prefix": "acme_live",
                "permissions": ["docs.read"],
                "roles": {"admin": ["*"], "reader": ["docs.read", "billing.read"]},
                "ratelimits": [{"name": "requests", "limit": 100, "duration": "60s"}],
                "default_ttl": "720h",
                "environment": "live",
            }),
        )
        .await;
    assert_eq!(ring["prefix"], "acme_live");
    assert_eq!(ring["default_ttl"], 720 * 3600);
    assert_eq!(ring["ratelimits"][0]["duration"], "60s");
    let read = env
        .ok(Operation::Read, "apikeys/keyrings/acme", Value::Null)
        .await;
    assert_eq!(
        read["roles"]["reader"],
        json!(["billing.read", "docs.read"])
    );
    let updated = env.keyring("acme", json!({"description": "Acme"})).await;
    assert_eq!(updated["description"], "Acme");
    assert_eq!(
        updated["prefix"], "acme_live",
        "an update keeps what it does not name"
    );
    let list = env
        .ok(Operation::List, "apikeys/keyrings", Value::Null)
        .await;
    assert_eq!(list["keys"], json!(["acme"]));

    for (name, body) in [
        ("no-prefix", json!({})),
        ("bad", json!({"prefix": "Acme"})),
        ("bad", json!({"prefix": "acme_"})),
        (
            "bad",
            json!({"prefix": "acme", "permissions": ["docs read"]}),
        ),
        (
            "bad",
            json!({"prefix": "acme", "ratelimits": [{"limit": 1}]}),
        ),
        ("bad", json!({"prefix": "acme", "unknown": 1})),
        ("bad", json!({"prefix": "acme", "roles": ["x"]})),
    ] {
        let error = env
            .call(
                Operation::Update,
                &format!("apikeys/keyrings/{name}"),
                body.clone(),
            )
            .await
            .expect_err("refused");
        assert!(
            matches!(error, EngineError::InvalidRequest(_)),
            "{body}: {error}"
        );
    }
    let missing = env
        .call(Operation::Read, "apikeys/keyrings/nope", Value::Null)
        .await
        .expect("read");
    assert!(missing.is_null());
}

#[tokio::test]
async fn a_created_key_verifies_and_is_answered_once() {
    let env = env().await;
    env.keyring("acme", json!({"prefix": "acme_live"})).await;
    let created = env
        .ok(
            Operation::Update,
            "apikeys/keyrings/acme/keys",
            json!({"name": "ci", "owner_id": "user_1", "meta": {"plan": "pro"}, "permissions": ["docs.read"]}),
        )
        .await;
    let key = created["key"].as_str().expect("key").to_owned();
    let parsed = custos_core::ApiKey::parse(&key).expect("the key has our format");
    assert_eq!(parsed.prefix(), "acme_live");
    assert!(created["key_id"].as_str().unwrap().starts_with("key_"));
    assert_eq!(
        created["hint"],
        format!("acme_live_…{}", &key[key.len() - 4..])
    );

    let answer = env.verify(json!({"key": key})).await;
    assert_eq!(answer["valid"], true);
    assert_eq!(answer["code"], "VALID");
    assert_eq!(answer["key_id"], created["key_id"]);
    assert_eq!(answer["keyring"], "acme");
    assert_eq!(answer["owner_id"], "user_1");
    assert_eq!(answer["name"], "ci");
    assert_eq!(answer["meta"], json!({"plan": "pro"}));
    assert_eq!(answer["permissions"], json!(["docs.read"]));
    assert_eq!(answer["enabled"], true);
    assert!(
        !answer.to_string().contains(&key),
        "an answer never holds the key"
    );

    // Reading the key never shows it again.
    let id = created["key_id"].as_str().unwrap();
    let read = env
        .ok(
            Operation::Read,
            &format!("apikeys/keyrings/acme/keys/{id}"),
            Value::Null,
        )
        .await;
    assert!(read.get("key").is_none());
    assert!(!read.to_string().contains(&key));
    assert!(
        read["last_used_at"].is_string(),
        "the verification was noted"
    );

    // A changed character fails the checksum; an unknown key of our format is not found.
    let mut typo = key.clone().into_bytes();
    let last = typo.len() - 1;
    typo[last] = if typo[last] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    assert_eq!(env.code(json!({"key": typo})).await, "NOT_FOUND");
    let other = custos_core::ApiKey::from_random("acme_live", &[7; 30]).unwrap();
    assert_eq!(env.code(json!({"key": other.as_str()})).await, "NOT_FOUND");
    assert_eq!(
        env.code(json!({"key": "not a key at all"})).await,
        "NOT_FOUND"
    );
    let not_found = env.verify(json!({"key": other.as_str()})).await;
    assert_eq!(not_found, json!({"valid": false, "code": "NOT_FOUND"}));
    // A key of another keyring, when the request names one.
    assert_eq!(
        env.code(json!({"key": key, "keyring": "other"})).await,
        "NOT_FOUND"
    );

    for bad in [
        json!({}),
        json!({"key": 5}),
        json!({"key": key, "cost": -1}),
        json!({"key": key, "permissions": "a AND"}),
        json!({"key": key, "permissions": {"xor": ["a"]}}),
        json!({"key": key, "extra": true}),
    ] {
        let error = env
            .call(Operation::Update, "apikeys/verify", bad.clone())
            .await
            .expect_err("refused");
        assert!(
            matches!(error, EngineError::InvalidRequest(_)),
            "{bad}: {error}"
        );
    }
}

#[tokio::test]
async fn disabled_expired_and_revoked_keys_are_refused() {
    let env = env().await;
    env.keyring("acme", json!({"prefix": "acme"})).await;
    let (key, id) = env.key("acme", json!({"ttl": "1h"})).await;
    assert_eq!(env.code(json!({"key": key})).await, "VALID");
    env.update_key(&id, json!({"enabled": false})).await;
    assert_eq!(env.code(json!({"key": key})).await, "DISABLED");
    env.update_key(&id, json!({"enabled": true})).await;
    assert_eq!(env.code(json!({"key": key})).await, "VALID");
    env.advance(3600);
    assert_eq!(env.code(json!({"key": key})).await, "EXPIRED");
    env.update_key(&id, json!({"expires_at": null})).await;
    assert_eq!(env.code(json!({"key": key})).await, "VALID");

    env.ok(
        Operation::Delete,
        &format!("apikeys/keyrings/acme/keys/{id}"),
        Value::Null,
    )
    .await;
    assert_eq!(env.code(json!({"key": key})).await, "NOT_FOUND");
    let read = env
        .call(
            Operation::Read,
            &format!("apikeys/keyrings/acme/keys/{id}"),
            Value::Null,
        )
        .await
        .expect("read");
    assert!(read.is_null(), "a revoked key is gone");

    // Deleting a keyring revokes its keys.
    let (second, _) = env.key("acme", json!({})).await;
    assert_eq!(env.code(json!({"key": second})).await, "VALID");
    env.ok(Operation::Delete, "apikeys/keyrings/acme", Value::Null)
        .await;
    assert_eq!(env.code(json!({"key": second})).await, "NOT_FOUND");
    let error = env
        .call(Operation::Update, "apikeys/keyrings/acme/keys", json!({}))
        .await
        .expect_err("no keyring");
    assert!(matches!(error, EngineError::NotFound(_)), "{error}");
}

#[tokio::test]
async fn permission_queries_roles_and_wildcards() {
    let env = env().await;
    env.keyring(
        "acme",
        json!({"prefix": "acme", "roles": {"billing": ["billing.*"], "admin": ["*"]}}),
    )
    .await;
    let (key, id) = env
        .key(
            "acme",
            json!({"permissions": ["docs.read"], "roles": ["billing"]}),
        )
        .await;
    let code = |query: Value| {
        let key = key.clone();
        let env = &env;
        async move { env.code(json!({"key": key, "permissions": query})).await }
    };
    assert_eq!(code(json!("docs.read")).await, "VALID");
    assert_eq!(
        code(json!("billing.refund")).await,
        "VALID",
        "role with a wildcard"
    );
    assert_eq!(code(json!("docs.write")).await, "INSUFFICIENT_PERMISSIONS");
    assert_eq!(code(json!("docs.read AND billing.read")).await, "VALID");
    assert_eq!(
        code(json!("docs.read AND admin")).await,
        "INSUFFICIENT_PERMISSIONS"
    );
    assert_eq!(
        code(json!("docs.write OR (docs.read AND billing.x)")).await,
        "VALID"
    );
    assert_eq!(
        code(json!({"and": ["docs.read", {"or": ["nope", "billing.a"]}]})).await,
        "VALID"
    );
    assert_eq!(
        code(json!({"or": ["nope", "never"]})).await,
        "INSUFFICIENT_PERMISSIONS"
    );
    // A refused query spends nothing and says so.
    let answer = env
        .verify(json!({"key": key, "permissions": "admin"}))
        .await;
    assert_eq!(answer["valid"], false);
    assert_eq!(answer["key_id"], id.as_str());

    // Roles and permissions are edited in place.
    env.ok(
        Operation::Update,
        &format!("apikeys/keyrings/acme/keys/{id}/roles"),
        json!({"add": ["admin"]}),
    )
    .await;
    assert_eq!(code(json!("anything.at.all")).await, "VALID");
    env.ok(
        Operation::Update,
        &format!("apikeys/keyrings/acme/keys/{id}/roles"),
        json!({"set": []}),
    )
    .await;
    assert_eq!(
        code(json!("billing.refund")).await,
        "INSUFFICIENT_PERMISSIONS"
    );
    let edited = env
        .ok(
            Operation::Update,
            &format!("apikeys/keyrings/acme/keys/{id}/permissions"),
            json!({"add": ["docs.write"], "remove": ["docs.read"]}),
        )
        .await;
    assert_eq!(edited["permissions"], json!(["docs.write"]));
    assert_eq!(code(json!("docs.read")).await, "INSUFFICIENT_PERMISSIONS");
    assert_eq!(code(json!("docs.write")).await, "VALID");
    // A role the keyring does not define is refused.
    let error = env
        .call(
            Operation::Update,
            &format!("apikeys/keyrings/acme/keys/{id}/roles"),
            json!({"add": ["ghost"]}),
        )
        .await
        .expect_err("unknown role");
    assert!(matches!(error, EngineError::InvalidRequest(_)));
    // Changing a role on the keyring changes what its keys hold.
    env.ok(
        Operation::Update,
        &format!("apikeys/keyrings/acme/keys/{id}/roles"),
        json!({"set": ["billing"]}),
    )
    .await;
    env.keyring(
        "acme",
        json!({"roles": {"billing": ["billing.read"], "admin": ["*"]}}),
    )
    .await;
    assert_eq!(
        code(json!("billing.refund")).await,
        "INSUFFICIENT_PERMISSIONS"
    );
    assert_eq!(code(json!("billing.read")).await, "VALID");
}

#[tokio::test]
async fn remaining_uses_cost_and_refill() {
    let env = env().await;
    env.keyring("acme", json!({"prefix": "acme"})).await;
    let (key, id) = env.key("acme", json!({"remaining": 3})).await;
    let answer = env.verify(json!({"key": key})).await;
    assert_eq!(answer["remaining"], 2);
    let answer = env.verify(json!({"key": key, "cost": 2})).await;
    assert_eq!(answer["code"], "VALID");
    assert_eq!(answer["remaining"], 0);
    assert_eq!(env.code(json!({"key": key})).await, "USAGE_EXCEEDED");
    // Cost 0 checks without spending.
    assert_eq!(env.code(json!({"key": key, "cost": 0})).await, "VALID");
    // Setting `remaining` again starts a new count.
    env.update_key(&id, json!({"remaining": 1})).await;
    assert_eq!(env.code(json!({"key": key})).await, "VALID");
    assert_eq!(env.code(json!({"key": key})).await, "USAGE_EXCEEDED");

    // A daily refill gives the uses back at midnight UTC.
    let (daily, _) = env
        .key(
            "acme",
            json!({"remaining": 2, "refill": {"amount": 5, "interval": "daily"}}),
        )
        .await;
    assert_eq!(env.code(json!({"key": daily, "cost": 2})).await, "VALID");
    assert_eq!(env.code(json!({"key": daily})).await, "USAGE_EXCEEDED");
    env.advance(23 * 3600);
    assert_eq!(env.code(json!({"key": daily})).await, "USAGE_EXCEEDED");
    env.advance(3600);
    let answer = env.verify(json!({"key": daily})).await;
    assert_eq!(answer["code"], "VALID", "refilled at midnight");
    assert_eq!(answer["remaining"], 4);
    // Monthly refills need a day between 1 and 31.
    let error = env
        .call(
            Operation::Update,
            "apikeys/keyrings/acme/keys",
            json!({"refill": {"amount": 1, "interval": "monthly", "day": 32}}),
        )
        .await
        .expect_err("bad day");
    assert!(matches!(error, EngineError::InvalidRequest(_)));
}

#[tokio::test]
async fn several_rate_limits_on_one_key() {
    let env = env().await;
    env.keyring("acme", json!({"prefix": "acme"})).await;
    let (key, _) = env
        .key(
            "acme",
            json!({"ratelimits": [
                {"name": "burst", "limit": 2, "duration": "1s"},
                {"name": "minute", "limit": 3, "duration": "60s"},
            ]}),
        )
        .await;
    let answer = env.verify(json!({"key": key})).await;
    assert_eq!(answer["code"], "VALID");
    assert_eq!(
        answer["ratelimit"]["name"], "burst",
        "the tightest limit is reported"
    );
    assert_eq!(answer["ratelimit"]["remaining"], 1);
    assert_eq!(env.code(json!({"key": key})).await, "VALID");
    let limited = env.verify(json!({"key": key})).await;
    assert_eq!(limited["code"], "RATE_LIMITED");
    assert_eq!(limited["ratelimit"]["name"], "burst");
    assert!(limited["ratelimit"]["reset"].is_string());
    // Two seconds later the burst window is clear, the minute window has one left.
    env.advance(2);
    assert_eq!(env.code(json!({"key": key})).await, "VALID");
    let limited = env.verify(json!({"key": key})).await;
    assert_eq!(limited["code"], "RATE_LIMITED");
    assert_eq!(limited["ratelimit"]["name"], "minute");
    // Only the named limit applies when the request names one; its cost is its own.
    env.advance(120);
    let answer = env
        .verify(json!({"key": key, "ratelimits": [{"name": "minute", "cost": 3}]}))
        .await;
    assert_eq!(answer["code"], "VALID");
    assert_eq!(answer["ratelimit"]["remaining"], 0);
    assert_eq!(
        env.code(json!({"key": key, "ratelimits": ["burst"]})).await,
        "VALID"
    );
    assert_eq!(env.code(json!({"key": key})).await, "RATE_LIMITED");
}

#[tokio::test]
async fn reroll_keeps_the_old_key_until_its_grace_ends() {
    let env = env().await;
    env.keyring("acme", json!({"prefix": "acme"})).await;
    let (old, old_id) = env
        .key(
            "acme",
            json!({"name": "svc", "permissions": ["a"], "remaining": 10}),
        )
        .await;
    env.code(json!({"key": old})).await;
    let rolled = env
        .ok(
            Operation::Update,
            &format!("apikeys/keyrings/acme/keys/{old_id}/reroll"),
            json!({"grace": "1h"}),
        )
        .await;
    let new = rolled["key"].as_str().expect("new key").to_owned();
    assert_ne!(rolled["key_id"], old_id.as_str());
    assert_eq!(rolled["name"], "svc");
    assert_eq!(rolled["permissions"], json!(["a"]));
    assert_eq!(rolled["remaining"], 9, "what is left carries over");
    assert_eq!(env.code(json!({"key": new})).await, "VALID");
    assert_eq!(
        env.code(json!({"key": old})).await,
        "VALID",
        "within the grace"
    );
    env.advance(3600);
    assert_eq!(env.code(json!({"key": old})).await, "EXPIRED");
    assert_eq!(env.code(json!({"key": new})).await, "VALID");
    // The flush deletes the old key once its grace ended.
    let flushed = env.engine.flush_apikeys().await.expect("flush");
    assert_eq!(flushed.expired_keys, 1);
    assert_eq!(env.code(json!({"key": old})).await, "NOT_FOUND");

    // Without a grace the old key stops at once.
    let new_id = rolled["key_id"].as_str().unwrap();
    let again = env
        .ok(
            Operation::Update,
            &format!("apikeys/keyrings/acme/keys/{new_id}/reroll"),
            json!({}),
        )
        .await;
    assert_eq!(env.code(json!({"key": new})).await, "NOT_FOUND");
    assert_eq!(
        env.code(json!({"key": again["key"].as_str().unwrap()}))
            .await,
        "VALID"
    );
}

#[tokio::test]
async fn concurrent_verifications_spend_exactly_the_remaining_uses() {
    let env = env().await;
    env.keyring("acme", json!({"prefix": "acme"})).await;
    let (key, _) = env.key("acme", json!({"remaining": 50})).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let engine = env.engine.clone();
        let key = key.clone();
        tasks.spawn(async move { Env::verify_on(&engine, json!({"key": key})).await });
    }
    let mut valid = 0;
    let mut exceeded = 0;
    while let Some(answer) = tasks.join_next().await {
        match answer.expect("task")["code"].as_str() {
            Some("VALID") => valid += 1,
            Some("USAGE_EXCEEDED") => exceeded += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((valid, exceeded), (50, 150));
}

#[tokio::test]
async fn remaining_uses_survive_a_seal_and_a_crash_keeps_the_last_flush() {
    let env = env().await;
    env.keyring("acme", json!({"prefix": "acme"})).await;
    let (key, _) = env.key("acme", json!({"remaining": 10})).await;
    for _ in 0..4 {
        assert_eq!(env.code(json!({"key": key})).await, "VALID");
    }
    // A clean seal writes what was spent.
    env.engine.seal(Some(ROOT)).await.expect("seal");
    env.engine
        .unseal(UnsealInput::Key(env.share.clone()))
        .await
        .expect("unseal");
    let answer = env.verify(json!({"key": key})).await;
    assert_eq!(answer["remaining"], 5);

    // A flush, more uses, then a crash (a new process on the same storage, no flush): the
    // uses after the flush are lost, and only those.
    env.engine.flush_apikeys().await.expect("flush");
    for _ in 0..2 {
        env.code(json!({"key": key})).await;
    }
    let restarted = env.second_node().await;
    let answer = Env::verify_on(&restarted, json!({"key": key})).await;
    assert_eq!(
        answer["remaining"], 4,
        "5 flushed, the 2 unflushed uses are the bound"
    );
}

#[tokio::test]
async fn a_key_revoked_on_one_node_is_refused_by_another_at_its_next_notification() {
    let env = env().await;
    env.keyring("acme", json!({"prefix": "acme"})).await;
    let (key, id) = env.key("acme", json!({})).await;
    let other = env.second_node().await;
    other.attach_change_feed();
    other
        .apply_invalidation(&Invalidation::All { revision: None })
        .await;
    assert_eq!(
        Env::verify_on(&other, json!({"key": key})).await["code"],
        "VALID"
    );
    let uuid = env.mount_uuid().await;

    // Disabled on the first node: the second applies the change it is told about.
    env.update_key(&id, json!({"enabled": false})).await;
    assert_eq!(
        Env::verify_on(&other, json!({"key": key})).await["code"],
        "VALID",
        "not told yet (the feed is what makes it see the change)"
    );
    let changed = Invalidation::Keys {
        keys: vec![format!("logical/{uuid}/keys/{id}")],
        revision: None,
    };
    other.apply_invalidation(&changed).await;
    assert_eq!(
        Env::verify_on(&other, json!({"key": key})).await["code"],
        "DISABLED"
    );

    env.ok(
        Operation::Delete,
        &format!("apikeys/keyrings/acme/keys/{id}"),
        Value::Null,
    )
    .await;
    other.apply_invalidation(&changed).await;
    assert_eq!(
        Env::verify_on(&other, json!({"key": key})).await["code"],
        "NOT_FOUND"
    );

    // A key created on the first node while the feed is down is found through storage.
    other.apply_invalidation(&Invalidation::Lost).await;
    let (fresh, _) = env.key("acme", json!({})).await;
    assert_eq!(
        Env::verify_on(&other, json!({"key": fresh})).await["code"],
        "VALID"
    );
}

#[tokio::test]
async fn uses_spent_on_two_nodes_add_up() {
    let env = env().await;
    env.keyring("acme", json!({"prefix": "acme"})).await;
    let (key, id) = env.key("acme", json!({"remaining": 10})).await;
    let other = env.second_node().await;
    for _ in 0..3 {
        assert_eq!(env.code(json!({"key": key})).await, "VALID");
        assert_eq!(
            Env::verify_on(&other, json!({"key": key})).await["code"],
            "VALID"
        );
    }
    env.engine.flush_apikeys().await.expect("flush one");
    other.flush_apikeys().await.expect("flush two");
    let uuid = env.mount_uuid().await;
    let usage = Invalidation::Keys {
        keys: vec![format!("logical/{uuid}/usage/{id}")],
        revision: None,
    };
    env.engine.apply_invalidation(&usage).await;
    assert_eq!(
        env.verify(json!({"key": key, "cost": 0})).await["remaining"],
        4
    );
}

#[tokio::test]
async fn keys_are_never_stored_in_clear() {
    let env = env().await;
    env.keyring("acme", json!({"prefix": "acme"})).await;
    let (key, _) = env.key("acme", json!({"remaining": 5})).await;
    env.code(json!({"key": key})).await;
    env.engine.flush_apikeys().await.expect("flush");
    let body = &key[key.len() - 36..];
    for stored in env.storage.list("", None, 0).await.expect("list").keys {
        assert!(
            !stored.contains(body),
            "a storage key holds the key: {stored}"
        );
        let value = env.storage.get(&stored).await.expect("get").expect("value");
        assert!(
            !value
                .value
                .windows(body.len())
                .any(|window| window == body.as_bytes()),
            "{stored} holds the key in clear"
        );
    }
}

#[tokio::test]
async fn imported_hashes_verify() {
    let env = env().await;
    env.keyring("acme", json!({"prefix": "acme"})).await;
    let legacy = "sk_live_4eC39HqLyjWDarjtT1zdp7dc";
    let hash = custos_crypto::sha256_hex(legacy.as_bytes());
    let created = env
        .ok(
            Operation::Update,
            "apikeys/keyrings/acme/keys",
            json!({"hash": {"value": hash, "variant": "sha256_hex"}, "name": "migrated"}),
        )
        .await;
    assert!(created.get("key").is_none(), "an imported key is not shown");
    assert_eq!(created["imported"], true);
    let answer = env.verify(json!({"key": legacy})).await;
    assert_eq!(answer["code"], "VALID");
    assert_eq!(answer["name"], "migrated");
    // The same hash twice is refused.
    let error = env
        .call(
            Operation::Update,
            "apikeys/keyrings/acme/keys",
            json!({"hash": {"value": hash}}),
        )
        .await
        .expect_err("duplicate");
    assert!(matches!(error, EngineError::InvalidRequest(_)));
    let error = env
        .call(
            Operation::Update,
            "apikeys/keyrings/acme/keys",
            json!({"hash": {"value": "abc", "variant": "sha256_hex"}}),
        )
        .await
        .expect_err("not a digest");
    assert!(matches!(error, EngineError::InvalidRequest(_)));
}

#[tokio::test]
async fn keys_are_listed_by_page_and_owner() {
    let env = env().await;
    env.keyring("acme", json!({"prefix": "acme"})).await;
    env.keyring("other", json!({"prefix": "other"})).await;
    let mut alice = Vec::new();
    for n in 0..5 {
        let owner = if n % 2 == 0 { "alice" } else { "bob" };
        let (_, id) = env.key("acme", json!({"owner_id": owner})).await;
        if owner == "alice" {
            alice.push(id);
        }
    }
    env.key("other", json!({"owner_id": "alice"})).await;
    alice.sort();
    let request = Request::new(Operation::List, "apikeys/keyrings/acme/keys")
        .token(ROOT)
        .query("owner_id", "alice");
    let answer = env
        .engine
        .handle(request)
        .await
        .expect("list")
        .expect("answer");
    let data = answer.data.expect("data");
    assert_eq!(data["keys"], json!(alice));
    assert_eq!(data["key_info"][&alice[0]]["owner_id"], "alice");

    let request = Request::new(Operation::List, "apikeys/keyrings/acme/keys")
        .token(ROOT)
        .query("limit", "2");
    let page = env
        .engine
        .handle(request)
        .await
        .expect("list")
        .expect("answer");
    let page = page.data.expect("data");
    assert_eq!(page["keys"].as_array().unwrap().len(), 2);
    let next = page["next_after"].as_str().expect("more").to_owned();
    let request = Request::new(Operation::List, "apikeys/keyrings/acme/keys")
        .token(ROOT)
        .query("after", &next);
    let rest = env
        .engine
        .handle(request)
        .await
        .expect("list")
        .expect("answer");
    assert_eq!(
        rest.data.expect("data")["keys"].as_array().unwrap().len(),
        3
    );
}

#[tokio::test]
async fn analytics_count_outcomes_per_hour_and_key() {
    let env = env().await;
    env.keyring("acme", json!({"prefix": "acme"})).await;
    let (busy, busy_id) = env
        .key("acme", json!({"name": "busy", "remaining": 3}))
        .await;
    let (quiet, quiet_id) = env.key("acme", json!({"name": "quiet"})).await;
    for _ in 0..4 {
        env.code(json!({"key": busy})).await;
    }
    env.code(json!({"key": quiet})).await;
    env.advance(3600);
    env.code(json!({"key": quiet})).await;
    let unknown = custos_core::ApiKey::from_random("acme", &[1; 30]).unwrap();
    env.code(json!({"key": unknown.as_str(), "keyring": "acme"}))
        .await;

    let request = Request::new(Operation::Read, "apikeys/keyrings/acme/analytics")
        .token(ROOT)
        .query("since", "2h");
    let answer = env
        .engine
        .handle(request)
        .await
        .expect("analytics")
        .expect("answer");
    let data = answer.data.expect("data");
    assert_eq!(data["totals"]["VALID"], 5);
    assert_eq!(data["totals"]["USAGE_EXCEEDED"], 1);
    assert_eq!(data["totals"]["NOT_FOUND"], 1);
    assert_eq!(data["totals"]["total"], 7);
    let buckets = data["buckets"].as_array().expect("buckets");
    assert_eq!(buckets.len(), 2, "{buckets:?}");
    assert_eq!(buckets[0]["total"], 5);
    assert_eq!(buckets[1]["total"], 2);
    assert_eq!(data["top_keys"][0]["key_id"], busy_id.as_str());
    assert_eq!(data["top_keys"][0]["name"], "busy");
    assert_eq!(data["top_keys"][0]["total"], 4);
    assert!(data["last_used_at"].is_string());

    let request = Request::new(Operation::Read, "apikeys/keyrings/acme/analytics")
        .token(ROOT)
        .query("since", "2h")
        .query("group_by", "day")
        .query("key_id", &quiet_id);
    let answer = env
        .engine
        .handle(request)
        .await
        .expect("analytics")
        .expect("answer");
    let data = answer.data.expect("data");
    assert_eq!(data["totals"]["total"], 2);
    assert_eq!(data["buckets"].as_array().unwrap().len(), 1);

    // Retention: a short one drops the old hours.
    env.ok(
        Operation::Update,
        "apikeys/config",
        json!({"analytics_retention": "1h"}),
    )
    .await;
    env.advance(3 * 3600);
    env.engine.flush_apikeys().await.expect("flush and sweep");
    let request = Request::new(Operation::Read, "apikeys/keyrings/acme/analytics")
        .token(ROOT)
        .query("since", "10h");
    let answer = env
        .engine
        .handle(request)
        .await
        .expect("analytics")
        .expect("answer");
    assert_eq!(answer.data.expect("data")["totals"]["total"], 0);
}

#[tokio::test]
async fn leak_reports_revoke_api_keys() {
    let env = env().await;
    env.keyring("acme", json!({"prefix": "acme_live"})).await;
    let (key, _) = env.key("acme", json!({})).await;
    let unknown = custos_core::ApiKey::from_random("acme_live", &[3; 30]).unwrap();
    let request = Request::new(Operation::Update, "sys/leaks").data(json!({"leaks": [
        {"token": key, "type": "acme_api_key", "url": "https://example.com/x"},
        {"token": unknown.as_str()},
    ]}));
    let answer = env
        .engine
        .handle(request)
        .await
        .expect("report")
        .expect("answer");
    let data = answer.data.expect("data");
    assert_eq!(data["revoked"], 1);
    assert_eq!(data["results"][0]["label"], "true_positive");
    assert_eq!(data["results"][0]["kind"], "api_key");
    assert_eq!(data["results"][1]["label"], "false_positive");
    assert_eq!(env.code(json!({"key": key})).await, "NOT_FOUND");
    assert!(!Value::Object(data).to_string().contains(&key));
}

#[tokio::test]
async fn policies_decide_who_verifies_and_who_manages() {
    let env = env().await;
    env.keyring("acme", json!({"prefix": "acme"})).await;
    let (key, _) = env.key("acme", json!({})).await;
    env.ok(
        Operation::Update,
        "sys/policies/acl/gateway",
        json!({"policy": "path \"apikeys/verify\" { capabilities = [\"update\"] }"}),
    )
    .await;
    let gateway = env.token(json!({"policies": ["gateway"]})).await;
    let answer = Env::call_as(
        &env.engine,
        &gateway,
        Operation::Update,
        "apikeys/verify",
        json!({"key": key}),
    )
    .await
    .expect("the gateway verifies");
    assert_eq!(answer["code"], "VALID");
    let error = Env::call_as(
        &env.engine,
        &gateway,
        Operation::Update,
        "apikeys/keyrings/acme/keys",
        json!({}),
    )
    .await
    .expect_err("the gateway cannot issue keys");
    assert!(matches!(error, EngineError::PermissionDenied), "{error}");
}

#[tokio::test]
async fn the_mount_answers_unknown_paths_and_operations_clearly() {
    let env = env().await;
    let error = env
        .call(Operation::Read, "apikeys/verify", Value::Null)
        .await
        .expect_err("read verify");
    assert!(matches!(error, EngineError::MethodNotAllowed), "{error}");
    let missing = env
        .call(Operation::Read, "apikeys/nothing/here", Value::Null)
        .await
        .expect("read");
    assert!(missing.is_null());
    let error = env
        .call(
            Operation::Update,
            "apikeys/keyrings/bad name",
            json!({"prefix": "a"}),
        )
        .await
        .expect_err("bad name");
    assert!(matches!(error, EngineError::InvalidRequest(_)), "{error}");
}

impl Env {
    /// The analytics records in storage (keys relative to the mount).
    async fn analytics_keys(&self) -> Vec<String> {
        let prefix = format!("logical/{}/analytics/", self.mount_uuid().await);
        let keys = self
            .storage
            .list(&prefix, None, 0)
            .await
            .expect("list")
            .keys;
        keys.into_iter()
            .map(|key| key[prefix.len()..].to_owned())
            .collect()
    }
}

#[tokio::test]
async fn verifications_naming_an_unknown_keyring_are_counted_without_it() {
    let env = env().await;
    env.keyring("acme", json!({"prefix": "acme"})).await;
    let unknown = custos_core::ApiKey::from_random("acme", &[1; 30]).unwrap();
    // A caller that may verify must not make a record for every name it sends.
    for ring in ["nosuch", "acme", "x/y"] {
        let answer = env
            .verify(json!({"key": unknown.as_str(), "keyring": ring}))
            .await;
        assert_eq!(answer["code"], "NOT_FOUND");
    }
    env.engine.flush_apikeys().await.expect("flush");
    let rings: Vec<String> = env
        .analytics_keys()
        .await
        .iter()
        .map(|key| key.rsplit_once('/').expect("ring/hour").0.to_owned())
        .collect();
    assert_eq!(rings, ["-", "acme"], "{rings:?}");
}

#[tokio::test]
async fn analytics_of_a_deleted_keyring_go_with_it() {
    let env = env().await;
    env.keyring("acme", json!({"prefix": "acme"})).await;
    let (key, _) = env.key("acme", json!({})).await;
    env.code(json!({"key": key})).await;
    env.engine.flush_apikeys().await.expect("flush");
    assert_eq!(env.analytics_keys().await.len(), 1);
    env.ok(Operation::Delete, "apikeys/keyrings/acme", Value::Null)
        .await;
    assert_eq!(env.analytics_keys().await, Vec::<String>::new());
    // A keyring of the same name starts with no history.
    env.keyring("acme", json!({"prefix": "acme"})).await;
    let data = env
        .ok(
            Operation::Read,
            "apikeys/keyrings/acme/analytics",
            Value::Null,
        )
        .await;
    assert_eq!(data["totals"]["total"], 0, "{data}");
}

#[tokio::test]
async fn retention_expires_analytics_of_keyrings_that_no_longer_exist() {
    let env = env().await;
    env.keyring("acme", json!({"prefix": "acme"})).await;
    let (key, _) = env.key("acme", json!({})).await;
    env.code(json!({"key": key})).await;
    // Deleted with a count not yet written: the next flush writes it after the deletion.
    env.ok(Operation::Delete, "apikeys/keyrings/acme", Value::Null)
        .await;
    env.engine.flush_apikeys().await.expect("flush");
    env.ok(
        Operation::Update,
        "apikeys/config",
        json!({"analytics_retention": "1h"}),
    )
    .await;
    env.advance(3 * 3600);
    env.engine.flush_apikeys().await.expect("flush and sweep");
    assert_eq!(env.analytics_keys().await, Vec::<String>::new());
}

#[tokio::test]
async fn the_verify_lane_answers_as_the_pipeline_does() {
    let env = env().await;
    env.keyring(
        "acme",
        json!({"prefix": "acme", "roles": {"r": ["docs.*"]}}),
    )
    .await;
    let (key, _) = env
        .key(
            "acme",
            json!({"roles": ["r"], "meta": {"tier": 2}, "ratelimits": [{"name": "x", "limit": 100, "duration": "60s"}]}),
        )
        .await;
    for body in [
        json!({"key": key, "permissions": "docs.read", "cost": 0}),
        json!({"key": key, "permissions": "admin", "cost": 0}),
        json!({"key": "acme_nothing"}),
    ] {
        let lane = env.lane("apikeys/verify", ROOT, Some(&body)).await;
        let lane = lane.expect("lane").expect("served by the lane");
        assert_eq!(lane, env.verify(body.clone()).await, "{body}");
    }
    // Bad bodies and denied callers get the pipeline's errors.
    let error = env
        .lane("apikeys/verify", ROOT, None)
        .await
        .expect_err("no key");
    assert!(matches!(error, EngineError::InvalidRequest(_)));
    let plain = env.token(json!({"policies": ["default"]})).await;
    let body = json!({"key": key});
    let error = env
        .lane("apikeys/verify", &plain, Some(&body))
        .await
        .expect_err("denied");
    assert!(matches!(error, EngineError::PermissionDenied), "{error}");
    // What the lane does not serve goes to the pipeline: other paths, refused tokens, and
    // tokens with limited uses (the pipeline spends the use).
    let limited = env
        .token(json!({"policies": ["root"], "num_uses": 3}))
        .await;
    for (path, token) in [
        ("apikeys/keyrings/acme", ROOT),
        ("secret/verify", ROOT),
        ("apikeys/verify", "not-a-token"),
        ("apikeys/verify", limited.as_str()),
    ] {
        let served = env.lane(path, token, Some(&body)).await.expect("lane");
        assert!(served.is_none(), "{path} {token}");
    }
}
