//! Inventory tests: the bounded sets and merges on their own, then engines over `MemoryStorage`
//! with a fake clock, driven through the pipeline as clients would.

use std::net::IpAddr;
use std::sync::Arc;

use custos_storage::{MemoryStorage, Storage};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::endpoints::{Filters, parse_instant};
use super::*;
use crate::logical::Operation;
use crate::{ClientCert, FakeClock, Request, UnsealInput};

const ROOT: &str = "root-token-for-inventory";
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
    Env {
        engine,
        clock,
        storage,
        share: output.shares[0].clone(),
    }
}

fn connection(address: &str, agent: &str) -> Connection {
    Connection {
        remote_addr: Some(address.parse::<IpAddr>().expect("address")),
        user_agent: Some(agent.to_owned()),
        ..Connection::default()
    }
}

impl Env {
    /// A second engine (another node) on the same storage and clock, unsealed.
    async fn second_node(&self) -> Engine {
        let engine = Engine::new(self.storage.clone(), self.clock.clone());
        engine
            .unseal(UnsealInput::Key(self.share.clone()))
            .await
            .expect("unseal the second node");
        engine
    }

    fn advance(&self, seconds: i64) {
        self.clock.advance(SignedDuration::from_secs(seconds));
    }

    async fn root(&self, operation: Operation, path: &str, data: Value) -> Value {
        let answer = self
            .engine
            .handle(Request::new(operation, path).token(ROOT).data(data))
            .await
            .expect("root request")
            .expect("answer");
        Value::Object(answer.data.unwrap_or_default())
    }

    /// A new token with `policies` and a long TTL; answers (token, accessor).
    async fn token(&self, policies: &[&str]) -> (String, String) {
        let answer = self
            .engine
            .handle(
                Request::new(Operation::Update, "auth/token/create")
                    .token(ROOT)
                    .data(json!({"policies": policies, "ttl": "2000h"})),
            )
            .await
            .expect("create token")
            .expect("answer");
        let auth = answer.auth.expect("auth");
        (auth.client_token, auth.accessor)
    }

    /// One request with `token` on `connection` (the token looks itself up).
    async fn use_token(engine: &Engine, token: &str, connection: Connection) {
        let mut request = Request::new(Operation::Read, "auth/token/lookup-self").token(token);
        request.connection = connection;
        engine.handle(request).await.expect("lookup-self");
    }

    /// `sys/inventory` with `query`, as root.
    async fn inventory_on(engine: &Engine, query: &[(&str, &str)]) -> Vec<Value> {
        let mut request = Request::new(Operation::Read, "sys/inventory").token(ROOT);
        for (key, value) in query {
            request = request.query(key, value);
        }
        let answer = engine
            .handle(request)
            .await
            .expect("sys/inventory")
            .expect("answer");
        let data = answer.data.expect("data");
        data["credentials"].as_array().expect("credentials").clone()
    }

    async fn inventory(&self, query: &[(&str, &str)]) -> Vec<Value> {
        Env::inventory_on(&self.engine, query).await
    }

    async fn stored_records(&self) -> Vec<String> {
        self.storage
            .list("sys/inventory/", None, 1000)
            .await
            .expect("list")
            .keys
    }
}

fn find<'a>(credentials: &'a [Value], kind: &str, id: &str) -> Option<&'a Value> {
    credentials
        .iter()
        .find(|credential| credential["kind"] == kind && credential["id"] == id)
}

fn values(credential: &Value, set: &str, field: &str) -> Vec<String> {
    let mut values: Vec<String> = credential[set]
        .as_array()
        .expect("set")
        .iter()
        .map(|item| item[field].as_str().expect("value").to_owned())
        .collect();
    values.sort();
    values
}

#[test]
fn a_bounded_set_evicts_the_least_recently_seen_value() {
    let mut set: Bounded<String> = Bounded::default();
    let mut evicted = 0;
    for (time, value) in ["a", "b", "c"].iter().enumerate() {
        evicted += set.touch(*value, time as i64, 3, ToOwned::to_owned);
    }
    // `a` is seen again, so `b` is now the least recently seen.
    evicted += set.touch("a", 10, 3, ToOwned::to_owned);
    evicted += set.touch("d", 11, 3, ToOwned::to_owned);
    assert_eq!(evicted, 1);
    let mut kept: Vec<&str> = set.items.iter().map(|seen| seen.value.as_str()).collect();
    kept.sort_unstable();
    assert_eq!(kept, ["a", "c", "d"]);
    let a = set.items.iter().find(|seen| seen.value == "a").expect("a");
    assert_eq!((a.first_seen, a.last_seen, a.requests), (0, 10, 2));
}

#[test]
fn merging_records_adds_counts_and_widens_times() {
    let record = |first: i64, last: i64, requests: u64, addresses: &[&str]| Record {
        credential: CredentialId {
            kind: CredentialKind::Userpass,
            mount: "userpass/".into(),
            id: "alice".into(),
            secret_id_accessor: None,
        },
        auth_type: "userpass".into(),
        token_path: String::new(),
        display_name: format!("at-{last}"),
        policies: vec![],
        first_seen: first,
        last_seen: last,
        requests,
        addresses: Bounded {
            items: addresses
                .iter()
                .map(|address| Seen {
                    value: (*address).to_owned(),
                    first_seen: first,
                    last_seen: last,
                    requests,
                })
                .collect(),
        },
        user_agents: Bounded::default(),
        cert_fingerprints: Bounded::default(),
        evicted: Evicted::default(),
    };
    let mut merged = record(100, 200, 3, &["10.0.0.1"]);
    merged.merge(record(50, 150, 2, &["10.0.0.1", "10.0.0.2"]));
    assert_eq!(
        (merged.first_seen, merged.last_seen, merged.requests),
        (50, 200, 5)
    );
    // The more recent use's description stays.
    assert_eq!(merged.display_name, "at-200");
    let shared = merged
        .addresses
        .items
        .iter()
        .find(|seen| seen.value == "10.0.0.1")
        .expect("shared address");
    assert_eq!(
        (shared.first_seen, shared.last_seen, shared.requests),
        (50, 200, 5)
    );
    assert_eq!(merged.addresses.items.len(), 2);

    // Past the bound, the least recently seen addresses go and are counted.
    let many: Vec<String> = (0..MAX_ADDRESSES + 3)
        .map(|n| format!("10.1.0.{n}"))
        .collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    merged.merge(record(300, 400, 1, &many));
    assert_eq!(merged.addresses.items.len(), MAX_ADDRESSES);
    assert_eq!(merged.evicted.addresses, 5);
}

#[test]
fn user_agents_are_cut_at_a_character_boundary() {
    let long = "é".repeat(MAX_USER_AGENT_BYTES);
    let cut = truncate(&long, MAX_USER_AGENT_BYTES);
    assert_eq!(cut.len(), MAX_USER_AGENT_BYTES);
    assert_eq!(truncate("curl/8", MAX_USER_AGENT_BYTES), "curl/8");
    let odd = format!("a{long}");
    assert_eq!(
        truncate(&odd, MAX_USER_AGENT_BYTES).len(),
        MAX_USER_AGENT_BYTES - 1
    );
}

#[test]
fn instants_are_rfc_3339_or_a_duration_back_from_now() {
    let now = Timestamp::from_second(START).expect("time");
    assert_eq!(
        parse_instant("2025-12-31T00:00:00Z", now),
        Some(START - 86_400)
    );
    assert_eq!(parse_instant("30d", now), Some(START - 30 * 86_400));
    assert_eq!(parse_instant("720h", now), Some(START - 720 * 3600));
    assert_eq!(parse_instant("90", now), Some(START - 90));
    for bad in ["yesterday", "-3d", "d", "3x"] {
        assert_eq!(parse_instant(bad, now), None, "{bad}");
    }
}

#[test]
fn bad_filters_are_refused() {
    let now = Timestamp::from_second(START).expect("time");
    let parse = |key: &str, value: &str| {
        Filters::parse(
            &std::collections::BTreeMap::from([(key.to_owned(), value.to_owned())]),
            now,
        )
    };
    for (key, value) in [
        ("unused_since", "last week"),
        ("min_addresses", "-1"),
        ("min_addresses", "two"),
        ("kind", "apikey"),
        ("limit", "0"),
    ] {
        assert!(
            matches!(parse(key, value), Err(EngineError::InvalidRequest(_))),
            "{key}={value}"
        );
    }
    let filters = parse("limit", "1000000").expect("limit");
    assert_eq!(filters.limit, endpoints::MAX_LIMIT);
    assert_eq!(
        parse("kind", "approle").expect("kind").kind,
        Some(CredentialKind::Approle)
    );
}

#[tokio::test]
async fn two_addresses_and_two_agents_show_up_on_the_right_accessor() {
    let env = env().await;
    let (token, accessor) = env.token(&["app"]).await;
    let (_, other) = env.token(&["app"]).await;
    Env::use_token(&env.engine, &token, connection("127.0.0.2", "agent-a/1")).await;
    env.advance(5);
    Env::use_token(&env.engine, &token, connection("127.0.0.3", "agent-b/2")).await;
    Env::use_token(&env.engine, &token, connection("127.0.0.3", "agent-b/2")).await;

    // Nothing flushed yet: the read sees memory.
    assert!(env.stored_records().await.is_empty());
    let credentials = env.inventory(&[]).await;
    let entry = find(&credentials, "token", &accessor).expect("the token's record");
    assert_eq!(
        values(entry, "addresses", "address"),
        ["127.0.0.2", "127.0.0.3"]
    );
    assert_eq!(
        values(entry, "user_agents", "user_agent"),
        ["agent-a/1", "agent-b/2"]
    );
    assert_eq!(entry["requests"], 3);
    assert_eq!(entry["auth_method"], "token/");
    assert_eq!(entry["policies"], json!(["app", "default"]));
    assert_eq!(entry["first_seen"], "2026-01-01T00:00:00Z");
    assert_eq!(entry["last_seen"], "2026-01-01T00:00:05Z");
    // The most recent address first, with its own counts.
    assert_eq!(entry["addresses"][0]["address"], "127.0.0.3");
    assert_eq!(entry["addresses"][0]["requests"], 2);
    // The other token was never used: listed, with no use.
    let unused = find(&credentials, "token", &other).expect("the unused token");
    assert_eq!(unused["requests"], 0);
    assert_eq!(unused["last_seen"], Value::Null);
    assert_eq!(unused["addresses"], json!([]));

    // Flushed, the same answer comes from storage.
    let flushed = env.engine.flush_inventory().await.expect("flush");
    assert!(flushed.written >= 1);
    assert!(!env.stored_records().await.is_empty());
    let again = env.inventory(&[]).await;
    assert_eq!(find(&again, "token", &accessor), Some(entry));
}

#[tokio::test]
async fn reads_merge_stored_and_unflushed_use() {
    let env = env().await;
    let (token, accessor) = env.token(&[]).await;
    Env::use_token(&env.engine, &token, connection("10.0.0.1", "a")).await;
    env.engine.flush_inventory().await.expect("flush");
    env.advance(60);
    Env::use_token(&env.engine, &token, connection("10.0.0.2", "a")).await;
    let credentials = env.inventory(&[]).await;
    let entry = find(&credentials, "token", &accessor).expect("record");
    assert_eq!(entry["requests"], 2);
    assert_eq!(
        values(entry, "addresses", "address"),
        ["10.0.0.1", "10.0.0.2"]
    );
    assert_eq!(entry["user_agents"][0]["requests"], 2);
    assert_eq!(entry["last_seen"], "2026-01-01T00:01:00Z");
}

#[tokio::test]
async fn two_nodes_flushing_the_same_credential_both_count() {
    let env = env().await;
    let second = env.second_node().await;
    let (token, accessor) = env.token(&[]).await;
    env.advance(10);
    Env::use_token(&env.engine, &token, connection("10.0.0.1", "node-one")).await;
    env.advance(10);
    Env::use_token(&second, &token, connection("10.0.0.2", "node-two")).await;
    Env::use_token(&second, &token, connection("10.0.0.1", "node-two")).await;
    env.engine.flush_inventory().await.expect("flush one");
    second.flush_inventory().await.expect("flush two");
    // Flushing again writes nothing new.
    assert_eq!(
        env.engine.flush_inventory().await.expect("flush").written,
        0,
        "nothing new since the last flush"
    );
    let credentials = Env::inventory_on(&second, &[]).await;
    let entry = find(&credentials, "token", &accessor).expect("record");
    assert_eq!(entry["requests"], 3);
    assert_eq!(entry["first_seen"], "2026-01-01T00:00:10Z");
    assert_eq!(entry["last_seen"], "2026-01-01T00:00:20Z");
    assert_eq!(
        values(entry, "addresses", "address"),
        ["10.0.0.1", "10.0.0.2"]
    );
    assert_eq!(
        values(entry, "user_agents", "user_agent"),
        ["node-one", "node-two"]
    );
    let shared = entry["addresses"]
        .as_array()
        .expect("addresses")
        .iter()
        .find(|item| item["address"] == "10.0.0.1")
        .expect("shared address");
    assert_eq!(shared["requests"], 2);
}

#[tokio::test]
async fn addresses_past_the_bound_evict_the_least_recently_seen() {
    let env = env().await;
    let (token, accessor) = env.token(&[]).await;
    for n in 0..MAX_ADDRESSES + 4 {
        env.advance(1);
        Env::use_token(&env.engine, &token, connection(&format!("10.9.0.{n}"), "a")).await;
    }
    let credentials = env.inventory(&[]).await;
    let entry = find(&credentials, "token", &accessor).expect("record");
    let addresses = values(entry, "addresses", "address");
    assert_eq!(addresses.len(), MAX_ADDRESSES);
    for gone in 0..4 {
        assert!(!addresses.contains(&format!("10.9.0.{gone}")), "{gone}");
    }
    assert_eq!(entry["evicted"]["addresses"], 4);
    assert_eq!(entry["requests"], MAX_ADDRESSES + 4);
}

#[tokio::test]
async fn unused_since_finds_a_token_that_was_never_used() {
    let env = env().await;
    let (never, never_accessor) = env.token(&[]).await;
    let (busy, busy_accessor) = env.token(&[]).await;
    drop(never);
    Env::use_token(&env.engine, &busy, connection("10.0.0.1", "a")).await;
    env.engine.flush_inventory().await.expect("flush");

    let unused = env.inventory(&[("unused_since", "1h")]).await;
    assert!(find(&unused, "token", &never_accessor).is_some());
    assert!(find(&unused, "token", &busy_accessor).is_none());

    env.advance(31 * 86_400);
    let unused = env.inventory(&[("unused_since", "30d")]).await;
    assert!(find(&unused, "token", &never_accessor).is_some());
    let stale = find(&unused, "token", &busy_accessor).expect("not used for 31 days");
    assert_eq!(stale["last_seen"], "2026-01-01T00:00:00Z");

    Env::use_token(&env.engine, &busy, connection("10.0.0.1", "a")).await;
    let unused = env.inventory(&[("unused_since", "30d")]).await;
    assert!(find(&unused, "token", &busy_accessor).is_none());
    let never = find(&unused, "token", &never_accessor).expect("still never used");
    assert_eq!(never["first_seen"], Value::Null);
    assert_eq!(never["created_time"], "2026-01-01T00:00:00Z");
}

#[tokio::test]
async fn filters_pick_credentials() {
    let env = env().await;
    let (web, web_accessor) = env.token(&["web"]).await;
    let (db, db_accessor) = env.token(&["db"]).await;
    Env::use_token(&env.engine, &web, connection("10.0.0.1", "a")).await;
    Env::use_token(&env.engine, &web, connection("10.0.0.2", "a")).await;
    Env::use_token(&env.engine, &db, connection("10.0.0.1", "a")).await;

    let two_places = env.inventory(&[("min_addresses", "2")]).await;
    assert_eq!(two_places.len(), 1);
    assert_eq!(two_places[0]["id"], web_accessor.as_str());

    let db_only = env.inventory(&[("policy", "db")]).await;
    assert_eq!(db_only.len(), 1);
    assert_eq!(db_only[0]["id"], db_accessor.as_str());

    assert!(env.inventory(&[("kind", "userpass")]).await.is_empty());
    let tokens = env.inventory(&[("kind", "token")]).await;
    // Root, web and db.
    assert_eq!(tokens.len(), 3);
    assert_eq!(env.inventory(&[("auth_method", "token/")]).await.len(), 3);
    assert_eq!(env.inventory(&[("auth_method", "token")]).await.len(), 3);
    assert!(
        env.inventory(&[("auth_method", "approle/")])
            .await
            .is_empty()
    );

    // Pages of one, following `next_after`, list each credential once.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut request = Request::new(Operation::Read, "sys/inventory")
            .token(ROOT)
            .query("limit", "1");
        if let Some(after) = &after {
            request = request.query("after", after);
        }
        let data = env
            .engine
            .handle(request)
            .await
            .expect("page")
            .expect("answer")
            .data
            .expect("data");
        let page = data["credentials"].as_array().expect("credentials");
        seen.extend(page.iter().map(|item| item["id"].clone()));
        match &data["next_after"] {
            Value::String(next) => after = Some(next.clone()),
            _ => break,
        }
        assert_eq!(page.len(), 1);
    }
    assert_eq!(seen.len(), 3);
    seen.dedup();
    assert_eq!(seen.len(), 3);
}

#[tokio::test]
async fn logins_record_the_user_and_the_role_and_secret_id() {
    let env = env().await;
    env.root(
        Operation::Update,
        "sys/auth/userpass",
        json!({"type": "userpass"}),
    )
    .await;
    env.root(
        Operation::Update,
        "auth/userpass/users/alice",
        json!({"password": "correct horse", "policies": "dev"}),
    )
    .await;
    let mut login = Request::new(Operation::Update, "auth/userpass/login/alice")
        .data(json!({"password": "correct horse"}));
    login.connection = connection("192.0.2.7", "laptop");
    let issued = env
        .engine
        .handle(login)
        .await
        .expect("login")
        .expect("answer")
        .auth
        .expect("token");

    env.root(
        Operation::Update,
        "sys/auth/approle",
        json!({"type": "approle"}),
    )
    .await;
    env.root(
        Operation::Update,
        "auth/approle/role/web",
        json!({"token_policies": "web"}),
    )
    .await;
    let role_id = env
        .root(
            Operation::Read,
            "auth/approle/role/web/role-id",
            Value::Null,
        )
        .await["role_id"]
        .as_str()
        .expect("role id")
        .to_owned();
    let secret = env
        .root(
            Operation::Update,
            "auth/approle/role/web/secret-id",
            Value::Null,
        )
        .await;
    let mut login = Request::new(Operation::Update, "auth/approle/login").data(
        json!({"role_id": role_id, "secret_id": secret["secret_id"].as_str().expect("secret id")}),
    );
    login.connection = connection("192.0.2.8", "deployer");
    env.engine.handle(login).await.expect("approle login");

    let users = env.inventory(&[("kind", "userpass")]).await;
    assert_eq!(users.len(), 1);
    assert_eq!(users[0]["id"], "alice");
    assert_eq!(users[0]["auth_method"], "userpass/");
    assert_eq!(values(&users[0], "addresses", "address"), ["192.0.2.7"]);
    // The token the login issued is listed under the method too.
    let by_method = env.inventory(&[("auth_method", "userpass/")]).await;
    assert!(find(&by_method, "token", &issued.accessor).is_some());
    assert_eq!(by_method.len(), 2);

    let roles = env.inventory(&[("auth_method", "approle")]).await;
    let role = find(&roles, "approle", "web").expect("the role's record");
    assert_eq!(role["secret_id_accessor"], secret["secret_id_accessor"]);
    assert_eq!(values(role, "user_agents", "user_agent"), ["deployer"]);
    // Nothing secret is kept: neither the role id nor the secret id.
    env.engine.flush_inventory().await.expect("flush");
    let everything = serde_json::to_string(&env.inventory(&[]).await).expect("json");
    assert!(!everything.contains(&role_id));
    assert!(!everything.contains(secret["secret_id"].as_str().expect("secret id")));
    assert!(!everything.contains(&issued.client_token));
}

#[tokio::test]
async fn certificate_fingerprints_are_recorded() {
    let env = env().await;
    let (token, accessor) = env.token(&[]).await;
    let mut with_cert = connection("10.0.0.1", "a");
    with_cert.client_cert = ClientCert::from_chain(vec![b"not really a certificate".to_vec()]);
    let fingerprint = with_cert
        .client_cert
        .as_ref()
        .expect("cert")
        .fingerprint
        .clone();
    Env::use_token(&env.engine, &token, with_cert).await;
    let credentials = env.inventory(&[]).await;
    let entry = find(&credentials, "token", &accessor).expect("record");
    assert_eq!(
        values(entry, "cert_fingerprints", "fingerprint"),
        [fingerprint]
    );
}

#[tokio::test]
async fn revoked_tokens_drop_out_and_their_records_go() {
    let env = env().await;
    let (token, accessor) = env.token(&[]).await;
    Env::use_token(&env.engine, &token, connection("10.0.0.1", "a")).await;
    env.engine.flush_inventory().await.expect("flush");
    let before = env.stored_records().await.len();
    env.root(
        Operation::Update,
        "auth/token/revoke-accessor",
        json!({"accessor": accessor}),
    )
    .await;
    let credentials = env.inventory(&[]).await;
    assert!(find(&credentials, "token", &accessor).is_none());
    // The root token's record stays; the revoked token's is gone.
    env.engine.flush_inventory().await.expect("flush");
    let after = env.stored_records().await.len();
    assert_eq!(after, before - 1);
}

#[tokio::test]
async fn sealed_flushes_keep_what_memory_holds() {
    let env = env().await;
    let (token, accessor) = env.token(&[]).await;
    Env::use_token(&env.engine, &token, connection("10.0.0.1", "a")).await;
    env.engine.seal(Some(ROOT)).await.expect("seal");
    assert!(matches!(
        env.engine.flush_inventory().await,
        Err(EngineError::Sealed)
    ));
    env.engine
        .unseal(UnsealInput::Key(env.share.clone()))
        .await
        .expect("unseal");
    env.engine.flush_inventory().await.expect("flush");
    // Read on a node that never saw the request: it comes from storage.
    let second = env.second_node().await;
    let credentials = Env::inventory_on(&second, &[]).await;
    let entry = find(&credentials, "token", &accessor).expect("record");
    assert_eq!(entry["requests"], 1);
}

#[tokio::test]
async fn reading_the_inventory_needs_a_policy_that_grants_it() {
    let env = env().await;
    env.root(
        Operation::Update,
        "sys/policies/acl/auditor",
        json!({"policy": r#"path "sys/inventory" { capabilities = ["read"] }"#}),
    )
    .await;
    let (auditor, _) = env.token(&["auditor"]).await;
    let (nobody, _) = env.token(&["nothing"]).await;
    let read = |token: &str| {
        env.engine
            .handle(Request::new(Operation::Read, "sys/inventory").token(token))
    };
    assert!(read(&auditor).await.is_ok());
    let refused = read(&nobody).await;
    assert!(
        matches!(refused, Err(EngineError::PermissionDenied)),
        "{refused:?}"
    );
}

/// Memory storage that refuses commits touching the inventory while `down` is set.
#[derive(Default)]
struct InventoryOutage {
    inner: MemoryStorage,
    down: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl Storage for InventoryOutage {
    fn backend_name(&self) -> &'static str {
        "inventory-outage"
    }

    async fn get(
        &self,
        key: &str,
    ) -> Result<Option<custos_storage::Entry>, custos_storage::StorageError> {
        self.inner.get(key).await
    }

    async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<custos_storage::ListPage, custos_storage::StorageError> {
        self.inner.list(prefix, after, limit).await
    }

    async fn commit(
        &self,
        txn: custos_storage::Transaction,
    ) -> Result<custos_storage::Revision, custos_storage::StorageError> {
        let touches_inventory = txn.ops.iter().any(|op| match op {
            custos_storage::Op::Put(key, _) | custos_storage::Op::Delete(key) => {
                key.starts_with(INVENTORY_PREFIX)
            }
        });
        if touches_inventory && self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(custos_storage::StorageError::unavailable(
                "inventory outage",
                "the test took storage down",
            ));
        }
        self.inner.commit(txn).await
    }
}

#[tokio::test]
async fn a_failed_flush_keeps_its_records_for_the_next_one() {
    let storage = Arc::new(InventoryOutage::default());
    let clock = Arc::new(FakeClock::new(Timestamp::from_second(START).expect("time")));
    let engine = Engine::new(storage.clone(), clock.clone());
    engine
        .dev_init(Some(Zeroizing::new(ROOT.to_owned())))
        .await
        .expect("dev init");
    let answer = engine
        .handle(
            Request::new(Operation::Update, "auth/token/create")
                .token(ROOT)
                .data(json!({"policies": ["app"]})),
        )
        .await
        .expect("create")
        .expect("answer");
    let auth = answer.auth.expect("auth");
    storage
        .down
        .store(true, std::sync::atomic::Ordering::SeqCst);
    // Three failed flushes with use in between: nothing is lost, nothing counted twice.
    for address in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
        Env::use_token(&engine, &auth.client_token, connection(address, "a")).await;
        assert!(matches!(
            engine.flush_inventory().await,
            Err(EngineError::Unavailable(_))
        ));
    }
    assert_eq!(
        engine.inner.inventory.snapshot().len(),
        2,
        "one record per credential (the root token and the new one)"
    );
    storage
        .down
        .store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(engine.flush_inventory().await.expect("flush").written, 2);
    let credentials = Env::inventory_on(&engine, &[]).await;
    let entry = find(&credentials, "token", &auth.accessor).expect("record");
    assert_eq!(entry["requests"], 3);
    assert_eq!(
        values(entry, "addresses", "address"),
        ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    );
}

#[tokio::test]
async fn help_describes_the_inventory() {
    let env = env().await;
    let help = env
        .engine
        .help(Some(ROOT), &Connection::default(), "sys/inventory")
        .await
        .expect("help");
    let text = help["help"].as_str().expect("help text");
    assert!(text.contains("Matching Route: ^inventory$"), "{text}");
    assert!(text.contains("unused_since"), "{text}");
}

#[test]
fn a_certificate_login_is_recorded_by_its_fingerprint() {
    let inventory = Inventory::default();
    let grant = crate::TokenGrant {
        display_name: "cert-web".into(),
        policies: vec!["web".into()],
        bound_cert_fingerprint: Some("ab".repeat(32)),
        metadata: [("cert_name".to_owned(), "web".to_owned())].into(),
        ..crate::TokenGrant::default()
    };
    let connection = connection("10.0.0.9", "curl/8");
    for now in [START, START + 7] {
        inventory.record_login(
            &LoginCredential {
                method_type: "cert",
                mount: "cert/",
                grant: &grant,
                connection: &connection,
            },
            now,
        );
    }
    // A method the inventory does not know is ignored.
    inventory.record_login(
        &LoginCredential {
            method_type: "oidc",
            mount: "oidc/",
            grant: &grant,
            connection: &connection,
        },
        START,
    );
    let records = inventory.snapshot();
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record.credential.kind, CredentialKind::Cert);
    assert_eq!(record.credential.id, "ab".repeat(32));
    assert_eq!(record.credential.mount, "cert/");
    assert_eq!((record.first_seen, record.last_seen), (START, START + 7));
    assert_eq!(record.requests, 2);
    assert_eq!(record.display_name, "cert-web");
    assert_eq!(record.policies, ["web"]);
}

#[test]
fn concurrent_requests_are_all_counted() {
    let inventory = Arc::new(Inventory::default());
    let entries: Vec<TokenEntry> = (0..4)
        .map(|n| TokenEntry {
            accessor: format!("accessor-{n}"),
            policies: vec!["app".into()],
            ..TokenEntry::default()
        })
        .collect();
    let entries = Arc::new(entries);
    let threads: Vec<_> = (0..8)
        .map(|thread| {
            let inventory = inventory.clone();
            let entries = entries.clone();
            std::thread::spawn(move || {
                let connection = connection(&format!("10.0.0.{thread}"), "a");
                for request in 0..1000 {
                    inventory.record_token(&entries[request % 4], &connection, START);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("thread");
    }
    let records = inventory.drain();
    assert_eq!(records.len(), 4);
    for record in &records {
        assert_eq!(record.requests, 2000, "{}", record.credential.id);
        assert_eq!(record.addresses.items.len(), 8);
    }
    assert!(
        inventory.snapshot().is_empty(),
        "a drain empties the shards"
    );
}
