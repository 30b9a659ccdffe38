//! Auth methods through the whole engine: `sys/auth`, userpass users and logins, TOTP, the
//! login lockout. In-memory storage, a fake clock, real crypto.

use std::net::IpAddr;
use std::sync::Arc;

use custos_storage::MemoryStorage;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use crate::logical::{LogicalResponse, Operation};
use crate::{Connection, Engine, EngineError, FakeClock, Request};

const ROOT: &str = "root-token-for-tests";

pub(super) struct Env {
    pub(super) engine: Engine,
    pub(super) clock: Arc<FakeClock>,
    pub(super) storage: Arc<MemoryStorage>,
}

pub(super) async fn env() -> Env {
    let storage = Arc::new(MemoryStorage::new());
    // 2026-01-01T00:00:00Z
    let clock = Arc::new(FakeClock::new(
        Timestamp::from_second(1_767_225_600).expect("time"),
    ));
    let engine = Engine::new(storage.clone(), clock.clone());
    engine
        .dev_init(Some(Zeroizing::new(ROOT.to_owned())))
        .await
        .expect("dev init");
    Env {
        engine,
        clock,
        storage,
    }
}

pub(super) fn request(operation: Operation, path: &str, data: Value) -> Request {
    Request::new(operation, path).data(data)
}

impl Env {
    pub(super) async fn root(
        &self,
        operation: Operation,
        path: &str,
        data: Value,
    ) -> Result<Option<LogicalResponse>, EngineError> {
        self.engine
            .handle(request(operation, path, data).token(ROOT))
            .await
    }

    pub(super) async fn root_data(&self, operation: Operation, path: &str) -> Map<String, Value> {
        self.root(operation, path, Value::Null)
            .await
            .expect("request")
            .expect("answer")
            .data
            .expect("data")
    }

    pub(super) async fn login_from(
        &self,
        address: Option<&str>,
        path: &str,
        data: Value,
    ) -> Result<Option<LogicalResponse>, EngineError> {
        let mut request = request(Operation::Update, path, data);
        request.connection = Connection {
            remote_addr: address.map(|text| text.parse::<IpAddr>().expect("address")),
            ..Connection::default()
        };
        self.engine.handle(request).await
    }

    pub(super) async fn login(
        &self,
        path: &str,
        data: Value,
    ) -> Result<Option<LogicalResponse>, EngineError> {
        self.login_from(None, path, data).await
    }

    pub(super) async fn with_userpass(self) -> Env {
        self.root(
            Operation::Update,
            "sys/auth/userpass",
            json!({"type": "userpass"}),
        )
        .await
        .expect("enable userpass");
        self
    }

    pub(super) async fn user(&self, name: &str, data: Value) {
        self.root(
            Operation::Update,
            &format!("auth/userpass/users/{name}"),
            data,
        )
        .await
        .expect("create user");
    }

    pub(super) fn advance(&self, seconds: i64) {
        self.clock.advance(SignedDuration::from_secs(seconds));
    }
}

fn invalid(result: Result<Option<LogicalResponse>, EngineError>) -> String {
    match result {
        Err(EngineError::InvalidRequest(message)) => message,
        other => panic!("expected a 400, got {other:?}"),
    }
}

#[tokio::test]
async fn the_auth_list_always_has_the_token_store() {
    let env = env().await;
    let list = env.root_data(Operation::Read, "sys/auth").await;
    let token = &list["token/"];
    assert_eq!(token["type"], "token");
    assert_eq!(token["description"], "token based credentials");
    assert!(
        token["accessor"]
            .as_str()
            .is_some_and(|accessor| accessor.starts_with("auth_token_"))
    );
    assert_eq!(token["config"]["token_type"], "default-service");
    assert_eq!(token["options"], Value::Null);
    assert_eq!(list.len(), 1);

    let tune = env.root_data(Operation::Read, "sys/auth/token/tune").await;
    assert_eq!(tune["token_type"], "default-service");
    assert_eq!(tune["description"], "token based credentials");
}

#[tokio::test]
async fn enable_list_read_tune_and_disable_a_method() {
    let env = env().await;
    env.root(
        Operation::Update,
        "sys/auth/up2",
        json!({"type": "userpass", "description": "people", "config": {"default_lease_ttl": "1h", "max_lease_ttl": "2h"}}),
    )
    .await
    .expect("enable");
    let list = env.root_data(Operation::Read, "sys/auth").await;
    let entry = &list["up2/"];
    assert_eq!(entry["type"], "userpass");
    assert_eq!(entry["description"], "people");
    assert_eq!(entry["config"]["default_lease_ttl"], 3600);
    assert_eq!(entry["config"]["max_lease_ttl"], 7200);
    assert_eq!(entry["deprecation_status"], "supported");
    let accessor = entry["accessor"].as_str().expect("accessor");
    assert!(
        accessor.starts_with("auth_userpass_") && accessor.len() == 22,
        "{accessor}"
    );

    let tune = env.root_data(Operation::Read, "sys/auth/up2/tune").await;
    assert_eq!(tune["default_lease_ttl"], 3600);
    assert_eq!(tune["max_lease_ttl"], 7200);
    assert_eq!(tune["description"], "people");
    env.root(
        Operation::Update,
        "sys/auth/up2/tune",
        json!({"default_lease_ttl": "30m", "description": "staff"}),
    )
    .await
    .expect("tune");
    let tune = env.root_data(Operation::Read, "sys/auth/up2/tune").await;
    assert_eq!(tune["default_lease_ttl"], 1800);
    assert_eq!(tune["description"], "staff");
    let single = env.root_data(Operation::Read, "sys/auth/up2").await;
    assert_eq!(single["accessor"], accessor);

    // A user's data goes away with the method.
    env.root(
        Operation::Update,
        "auth/up2/users/alice",
        json!({"password": "pw"}),
    )
    .await
    .expect("user");
    let uuid = single["uuid"].as_str().expect("uuid").to_owned();
    let prefix = format!("logical/{uuid}/");
    let stored = || async {
        custos_storage::Storage::list(env.storage.as_ref(), &prefix, None, 10)
            .await
            .expect("list")
            .keys
            .len()
    };
    assert_eq!(stored().await, 1);
    env.root(Operation::Delete, "sys/auth/up2", Value::Null)
        .await
        .expect("disable");
    assert_eq!(stored().await, 0);
    let list = env.root_data(Operation::Read, "sys/auth").await;
    assert!(!list.contains_key("up2/"));
    // Disabling what is not there succeeds, as in Vault.
    env.root(Operation::Delete, "sys/auth/up2", Value::Null)
        .await
        .expect("disable again");
}

#[tokio::test]
async fn bad_enables_and_tunes_are_400s() {
    let env = env().await.with_userpass().await;
    for (path, data, message) in [
        (
            "sys/auth/userpass",
            json!({"type": "userpass"}),
            "path is already in use at userpass/",
        ),
        (
            "sys/auth/userpass/nested",
            json!({"type": "userpass"}),
            "path is already in use at userpass/",
        ),
        (
            "sys/auth/token",
            json!({"type": "userpass"}),
            "path is already in use at token/",
        ),
        (
            "sys/auth/x",
            json!({"type": "nope"}),
            "plugin not found in the catalog: nope",
        ),
        (
            "sys/auth/x",
            json!({"type": "token"}),
            "plugin not found in the catalog: token",
        ),
        ("sys/auth/x", json!({}), "missing type"),
        (
            "sys/auth/x",
            json!({"type": 5}),
            "type must be a string, not 5",
        ),
        (
            "sys/auth/nothere/tune",
            json!({"default_lease_ttl": 5}),
            "cannot fetch sysview for path \"auth/nothere/\"",
        ),
        (
            "sys/auth/userpass/tune",
            json!({"default_lease_ttl": "2h", "max_lease_ttl": "1h"}),
            "default lease TTL cannot be greater than maximum lease TTL",
        ),
        (
            "sys/auth/userpass/tune",
            json!({"default_lease_ttl": "soon"}),
            "default_lease_ttl \"soon\" is not a duration",
        ),
    ] {
        let message_got = invalid(env.root(Operation::Update, path, data).await);
        assert_eq!(message_got, message, "{path}");
    }
    assert_eq!(
        invalid(
            env.root(Operation::Delete, "sys/auth/token", Value::Null)
                .await
        ),
        "token credential backend cannot be disabled"
    );
    assert_eq!(
        invalid(
            env.root(Operation::Read, "sys/auth/nothere", Value::Null)
                .await
        ),
        "No auth engine at nothere/"
    );
    assert_eq!(
        invalid(
            env.root(Operation::Read, "sys/auth/nothere/tune", Value::Null)
                .await
        ),
        "cannot fetch sysview for path \"auth/nothere/\""
    );
}

#[tokio::test]
async fn method_paths_other_than_login_need_a_root_token_today() {
    let env = env().await.with_userpass().await;
    let anonymous = env
        .engine
        .handle(request(Operation::List, "auth/userpass/users", Value::Null))
        .await;
    assert!(
        matches!(anonymous, Err(EngineError::PermissionDenied)),
        "{anonymous:?}"
    );
    let nowhere = env
        .root(Operation::Read, "auth/nothing/users/x", Value::Null)
        .await;
    assert!(
        matches!(nowhere, Err(EngineError::NoRoute(_))),
        "{nowhere:?}"
    );
    // Logins at an unknown mount are not logins: they need a token like anything else.
    let unknown = env
        .login("auth/nothing/login/alice", json!({"password": "x"}))
        .await;
    assert!(
        matches!(unknown, Err(EngineError::PermissionDenied)),
        "{unknown:?}"
    );
}

#[tokio::test]
async fn user_crud_in_vault_shapes() {
    let env = env().await.with_userpass().await;
    env.user(
        "Alice",
        json!({"password": "pw1", "token_policies": "b,a", "token_ttl": "1h", "token_bound_cidrs": ["10.0.0.0/8"], "token_num_uses": 3}),
    )
    .await;
    let user = env
        .root_data(Operation::Read, "auth/userpass/users/alice")
        .await;
    assert_eq!(
        Value::Object(user.clone()),
        json!({
            "token_bound_cidrs": ["10.0.0.0/8"],
            "token_explicit_max_ttl": 0,
            "token_max_ttl": 0,
            "token_no_default_policy": false,
            "token_num_uses": 3,
            "token_period": 0,
            "token_policies": ["a", "b"],
            "token_strictly_bind_ip": false,
            "token_ttl": 3600,
            "token_type": "default",
        })
    );
    let list = env.root_data(Operation::List, "auth/userpass/users").await;
    assert_eq!(list["keys"], json!(["alice"]));

    // Updates keep what they do not name; the old `policies` field is reported back.
    env.root(
        Operation::Update,
        "auth/userpass/users/alice/policies",
        json!({"policies": "d"}),
    )
    .await
    .expect("policies");
    let user = env
        .root_data(Operation::Read, "auth/userpass/users/alice")
        .await;
    assert_eq!(user["policies"], json!(["d"]));
    assert_eq!(user["token_policies"], json!(["d"]));
    assert_eq!(user["token_ttl"], 3600);

    env.root(
        Operation::Update,
        "auth/userpass/users/alice/password",
        json!({"password": "pw2"}),
    )
    .await
    .expect("password");
    assert!(
        env.login("auth/userpass/login/alice", json!({"password": "pw1"}))
            .await
            .is_err()
    );
    assert!(
        env.login("auth/userpass/login/alice", json!({"password": "pw2"}))
            .await
            .is_ok()
    );

    env.root(Operation::Delete, "auth/userpass/users/alice", Value::Null)
        .await
        .expect("delete");
    let gone = env
        .root(Operation::Read, "auth/userpass/users/alice", Value::Null)
        .await
        .expect("read");
    assert!(gone.is_none());
    let empty = env
        .root(Operation::List, "auth/userpass/users", Value::Null)
        .await
        .expect("list");
    assert!(empty.is_none());
}

#[tokio::test]
async fn bad_user_input_is_a_400_and_writes_nothing() {
    let env = env().await.with_userpass().await;
    for (path, data, message) in [
        ("auth/userpass/users/bob", json!({}), "missing password"),
        (
            "auth/userpass/users/bob",
            json!({"password": 5}),
            "password must be a string",
        ),
        (
            "auth/userpass/users/bob",
            json!({"password": ["x"]}),
            "password must be a string",
        ),
        (
            "auth/userpass/users/bob",
            json!({"password": "x", "token_ttl": "soon"}),
            "error converting input \"soon\" for field \"token_ttl\": expected a duration such as \"3h\" or a number of seconds",
        ),
        (
            "auth/userpass/users/bob",
            json!({"password": "x", "token_num_uses": -1}),
            "token_num_uses cannot be negative",
        ),
        (
            "auth/userpass/users/bob",
            json!({"password": "x", "token_bound_cidrs": "10.0.0.0/99"}),
            "invalid CIDR block \"10.0.0.0/99\" in token_bound_cidrs",
        ),
        (
            "auth/userpass/users/bob",
            json!({"password": "x", "token_ttl": 10, "token_max_ttl": 5}),
            "'token_ttl' cannot be greater than 'token_max_ttl'",
        ),
        (
            "auth/userpass/users/bob",
            json!({"password": "x", "token_type": "batch"}),
            "token_type \"batch\" is not supported: logins issue service tokens",
        ),
        (
            "auth/userpass/users/bob/password",
            json!({"password": "x"}),
            "username does not exist",
        ),
        (
            "auth/userpass/users/bob/totp",
            json!({}),
            "username does not exist",
        ),
        (
            "auth/userpass/users/b%c/",
            json!({"password": "x"}),
            "invalid user name \"b%c\": use letters, digits, '-', '_', '.' and '@'",
        ),
    ] {
        assert_eq!(
            invalid(env.root(Operation::Update, path, data).await),
            message,
            "{path}"
        );
    }
    let bob = env
        .root(Operation::Read, "auth/userpass/users/bob", Value::Null)
        .await
        .expect("read");
    assert!(bob.is_none());
}

#[tokio::test]
async fn login_issues_a_token_with_the_users_settings_and_the_mounts_ttls() {
    let env = env().await.with_userpass().await;
    env.root(
        Operation::Update,
        "sys/auth/userpass/tune",
        json!({"default_lease_ttl": "2h", "max_lease_ttl": "3h"}),
    )
    .await
    .expect("tune");
    env.user("alice", json!({"password": "pw", "token_policies": "dev"}))
        .await;
    env.user("bob", json!({"password": "pw", "token_ttl": "5h"}))
        .await;
    let answer = env
        .login("auth/userpass/login/alice", json!({"password": "pw"}))
        .await
        .expect("login")
        .expect("answer");
    let auth = answer.auth.expect("auth block");
    assert_eq!(auth.policies, ["default", "dev"]);
    assert_eq!(auth.metadata["username"], "alice");
    assert_eq!(auth.lease_duration, 2 * 3600);
    assert!(auth.renewable);
    assert!(!auth.mfa);
    let caller = env
        .engine
        .authenticate(Some(&auth.client_token), &Connection::default())
        .await
        .expect("the token works");
    assert_eq!(caller.display_name, "userpass-alice");

    env.user("rooty", json!({"password": "pw", "token_policies": "root"}))
        .await;
    assert_eq!(
        invalid(
            env.login("auth/userpass/login/rooty", json!({"password": "pw"}))
                .await
        ),
        "auth methods cannot create root tokens"
    );
    let bob = env
        .login("auth/userpass/login/BOB", json!({"password": "pw"}))
        .await
        .expect("login")
        .expect("answer")
        .auth
        .expect("auth");
    // The mount's maximum caps the user's TTL.
    assert_eq!(bob.lease_duration, 3 * 3600);
}

#[tokio::test]
async fn wrong_passwords_and_unknown_users_get_the_same_answer() {
    let env = env().await.with_userpass().await;
    env.user("alice", json!({"password": "pw"})).await;
    let wrong = invalid(
        env.login("auth/userpass/login/alice", json!({"password": "nope"}))
            .await,
    );
    let unknown = invalid(
        env.login("auth/userpass/login/mallory", json!({"password": "nope"}))
            .await,
    );
    assert_eq!(wrong, "invalid username or password");
    assert_eq!(unknown, wrong);
    assert_eq!(
        invalid(env.login("auth/userpass/login/alice", json!({})).await),
        "missing password"
    );
    assert_eq!(
        invalid(
            env.login("auth/userpass/login/alice", json!({"password": 123}))
                .await
        ),
        "password must be a string"
    );
    assert_eq!(
        invalid(
            env.login("auth/userpass/login/alice", json!({"password": {"a": 1}}))
                .await
        ),
        "password must be a string"
    );
    let read = env
        .engine
        .handle(request(
            Operation::Read,
            "auth/userpass/login/alice",
            Value::Null,
        ))
        .await;
    assert!(
        matches!(read, Err(EngineError::MethodNotAllowed)),
        "{read:?}"
    );
}

/// The code of `secret` (base32 as enrolment shows it) at the clock's time.
fn code_at(secret_base32: &str, unix: i64) -> String {
    let secret = base32_decode(secret_base32);
    let step = custos_crypto::otp::totp_step(unix, 30);
    format!("{:06}", custos_crypto::otp::hotp(&secret, step, 6))
}

fn base32_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for byte in text.bytes() {
        let value = ALPHABET.iter().position(|&c| c == byte).expect("base32") as u32;
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    out
}

#[tokio::test]
async fn totp_enrolment_login_replay_and_bad_codes() {
    let env = env().await.with_userpass().await;
    env.user("alice", json!({"password": "pw"})).await;
    let status = env
        .root_data(Operation::Read, "auth/userpass/users/alice/totp")
        .await;
    assert_eq!(status["enrolled"], false);
    let enrolment = env
        .root(
            Operation::Update,
            "auth/userpass/users/alice/totp",
            json!({}),
        )
        .await
        .expect("enrol")
        .expect("answer")
        .data
        .expect("data");
    let secret = enrolment["secret"].as_str().expect("secret").to_owned();
    assert_eq!(secret.len(), 32);
    assert_eq!(
        enrolment["url"],
        format!(
            "otpauth://totp/custos:alice?secret={secret}&issuer=custos&algorithm=SHA1&digits=6&period=30"
        )
    );
    let status = env
        .root_data(Operation::Read, "auth/userpass/users/alice/totp")
        .await;
    assert_eq!(status["enrolled"], true);
    assert!(!status.contains_key("secret") && !status.contains_key("url"));

    // The password alone no longer does.
    let mfa_error = "invalid username, password or TOTP code";
    assert_eq!(
        invalid(
            env.login("auth/userpass/login/alice", json!({"password": "pw"}))
                .await
        ),
        mfa_error
    );
    let now = env.engine.now().as_second();
    let code = code_at(&secret, now);
    // A right code with a wrong password fails the same way.
    assert_eq!(
        invalid(
            env.login(
                "auth/userpass/login/alice",
                json!({"password": "no", "totp": code})
            )
            .await
        ),
        mfa_error
    );
    let auth = env
        .login(
            "auth/userpass/login/alice",
            json!({"password": "pw", "totp": code}),
        )
        .await
        .expect("login")
        .expect("answer")
        .auth
        .expect("auth");
    assert!(auth.mfa);
    let caller = env
        .engine
        .authenticate(Some(&auth.client_token), &Connection::default())
        .await
        .expect("token");
    assert!(caller.mfa);
    // The same code again is a replay.
    assert_eq!(
        invalid(
            env.login(
                "auth/userpass/login/alice",
                json!({"password": "pw", "totp": code})
            )
            .await
        ),
        mfa_error
    );
    // The previous step's code is older than the one used: refused too.
    let previous = code_at(&secret, now - 30);
    if previous != code {
        assert_eq!(
            invalid(
                env.login(
                    "auth/userpass/login/alice",
                    json!({"password": "pw", "totp": previous})
                )
                .await
            ),
            mfa_error
        );
    }
    // The next step's code works once the clock gets there (and one step early, by skew).
    env.advance(30);
    let next = code_at(&secret, now + 30);
    assert!(
        env.login(
            "auth/userpass/login/alice",
            json!({"password": "pw", "totp": next})
        )
        .await
        .is_ok()
    );
    // A code from far in the past is wrong.
    env.advance(30);
    let stale = code_at(&secret, now - 300);
    let current = code_at(&secret, env.engine.now().as_second());
    if stale != current {
        assert_eq!(
            invalid(
                env.login(
                    "auth/userpass/login/alice",
                    json!({"password": "pw", "totp": stale})
                )
                .await
            ),
            mfa_error
        );
    }
    for bad in [
        json!("12345"),
        json!("1234567"),
        json!("12a456"),
        json!(123456),
        json!(["123456"]),
    ] {
        assert_eq!(
            // Another name: these failures count too, and alice has had her share.
            invalid(
                env.login(
                    "auth/userpass/login/carol",
                    json!({"password": "pw", "totp": bad})
                )
                .await
            ),
            "totp must be a code of 6 digits"
        );
    }
    env.root(
        Operation::Delete,
        "auth/userpass/users/alice/totp",
        Value::Null,
    )
    .await
    .expect("remove");
    let auth = env
        .login("auth/userpass/login/alice", json!({"password": "pw"}))
        .await
        .expect("login")
        .expect("answer")
        .auth
        .expect("auth");
    assert!(!auth.mfa);
}

#[tokio::test]
async fn repeated_failures_lock_a_user_out_whether_or_not_it_exists() {
    let env = env().await.with_userpass().await;
    env.user("alice", json!({"password": "pw"})).await;
    for name in ["alice", "mallory"] {
        let path = format!("auth/userpass/login/{name}");
        for _ in 0..5 {
            invalid(env.login(&path, json!({"password": "wrong"})).await);
        }
        // Locked: even the right password is refused, with the time to wait.
        match env.login(&path, json!({"password": "pw"})).await {
            Err(EngineError::LoginLocked {
                retry_after_seconds,
            }) => {
                assert_eq!(retry_after_seconds, 15 * 60);
            }
            other => panic!("{name}: expected a lockout, got {other:?}"),
        }
    }
    env.advance(15 * 60);
    assert!(
        env.login("auth/userpass/login/alice", json!({"password": "pw"}))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn an_address_that_fails_too_often_is_locked_out() {
    let env = env().await.with_userpass().await;
    env.user("alice", json!({"password": "pw"})).await;
    for index in 0..20 {
        invalid(
            env.login_from(
                Some("198.51.100.9"),
                &format!("auth/userpass/login/user{index}"),
                json!({"password": "x"}),
            )
            .await,
        );
    }
    let locked = env
        .login_from(
            Some("198.51.100.9"),
            "auth/userpass/login/alice",
            json!({"password": "pw"}),
        )
        .await;
    assert!(
        matches!(
            locked,
            Err(EngineError::LoginLocked {
                retry_after_seconds: 60
            })
        ),
        "{locked:?}"
    );
    let elsewhere = env
        .login_from(
            Some("198.51.100.10"),
            "auth/userpass/login/alice",
            json!({"password": "pw"}),
        )
        .await;
    assert!(elsewhere.is_ok(), "{elsewhere:?}");
}

#[tokio::test]
async fn help_describes_sys_auth_and_userpass_paths() {
    let env = env().await.with_userpass().await;
    let help = env
        .engine
        .help(Some(ROOT), &Connection::default(), "sys/auth/userpass")
        .await
        .expect("help");
    assert!(
        help["help"]
            .as_str()
            .is_some_and(|text| text.contains("credential backends"))
    );
    let help = env
        .engine
        .help(
            Some(ROOT),
            &Connection::default(),
            "auth/userpass/login/alice",
        )
        .await
        .expect("help");
    assert!(
        help["help"]
            .as_str()
            .is_some_and(|text| text.contains("Log in with a username and password")),
        "{help:?}"
    );
    let help = env
        .engine
        .help(
            Some(ROOT),
            &Connection::default(),
            "auth/userpass/users/alice/totp",
        )
        .await
        .expect("help");
    assert!(
        help["help"]
            .as_str()
            .is_some_and(|text| text.contains("Manage users"))
    );
    let missing = env
        .engine
        .help(Some(ROOT), &Connection::default(), "auth/nothing/login/x")
        .await;
    assert!(
        matches!(missing, Err(EngineError::NoRoute(_))),
        "{missing:?}"
    );
}

#[tokio::test]
async fn disabling_a_method_revokes_the_tokens_its_logins_issued() {
    let env = env().await.with_userpass().await;
    env.root(
        Operation::Update,
        "sys/auth/other",
        json!({"type": "userpass"}),
    )
    .await
    .expect("enable other");
    env.user("alice", json!({"password": "pw"})).await;
    env.root(
        Operation::Update,
        "auth/other/users/bob",
        json!({"password": "pw"}),
    )
    .await
    .expect("bob");
    let token_of =
        |answer: Option<LogicalResponse>| answer.expect("answer").auth.expect("auth").client_token;
    let alice = token_of(
        env.login("auth/userpass/login/alice", json!({"password": "pw"}))
            .await
            .expect("login"),
    );
    let bob = token_of(
        env.login("auth/other/login/bob", json!({"password": "pw"}))
            .await
            .expect("login"),
    );
    // A method called `user` must not take `userpass`'s tokens with it.
    env.root(Operation::Delete, "sys/auth/user", Value::Null)
        .await
        .expect("disable nothing");
    let works = |token: String| {
        let engine = env.engine.clone();
        async move {
            engine
                .authenticate(Some(&token), &Connection::default())
                .await
                .is_ok()
        }
    };
    assert!(works(alice.clone()).await);
    env.root(Operation::Delete, "sys/auth/userpass", Value::Null)
        .await
        .expect("disable");
    assert!(!works(alice).await, "alice's token is revoked");
    assert!(works(bob).await, "tokens of other methods stay");
    assert!(works(ROOT.to_owned()).await);
}

#[tokio::test]
async fn a_users_token_bindings_and_use_limit_reach_the_token() {
    let env = env().await.with_userpass().await;
    env.user(
        "carol",
        json!({"password": "pw", "token_bound_cidrs": "10.1.0.0/16", "token_num_uses": 2}),
    )
    .await;
    let auth = env
        .login_from(
            Some("10.1.2.3"),
            "auth/userpass/login/carol",
            json!({"password": "pw"}),
        )
        .await
        .expect("login")
        .expect("answer")
        .auth
        .expect("auth");
    assert_eq!(auth.num_uses, 2);
    let from = |address: &str| Connection {
        remote_addr: Some(address.parse().expect("address")),
        ..Connection::default()
    };
    assert!(
        env.engine
            .authenticate(Some(&auth.client_token), &from("10.1.9.9"))
            .await
            .is_ok()
    );
    assert!(matches!(
        env.engine
            .authenticate(Some(&auth.client_token), &from("192.0.2.1"))
            .await,
        Err(EngineError::PermissionDenied)
    ));
}

#[tokio::test]
async fn a_login_with_a_wrap_ttl_answers_a_wrapping_token_for_the_token() {
    let env = env().await.with_userpass().await;
    env.user("dave", json!({"password": "pw"})).await;
    let mut login = request(
        Operation::Update,
        "auth/userpass/login/dave",
        json!({"password": "pw"}),
    );
    login.wrap_ttl = Some(60);
    let wrapped = env
        .engine
        .handle(login)
        .await
        .expect("login")
        .expect("answer");
    assert!(wrapped.auth.is_none());
    let wrap_info = wrapped.wrap_info.expect("wrap info");
    assert_eq!(wrap_info.ttl, 60);
    assert_eq!(wrap_info.creation_path, "auth/userpass/login/dave");
    let unwrapped = env
        .engine
        .handle(Request::new(Operation::Update, "sys/wrapping/unwrap").token(&wrap_info.token))
        .await
        .expect("unwrap")
        .expect("answer");
    let auth = unwrapped.auth.expect("the login's token");
    assert_eq!(auth.metadata["username"], "dave");
    assert!(
        env.engine
            .authenticate(Some(&auth.client_token), &Connection::default())
            .await
            .is_ok()
    );
}

impl Env {
    /// Renews `token` itself (`auth/token/renew-self`), answering the new lease in seconds.
    async fn renew_self(&self, token: &str, data: Value) -> Result<u64, EngineError> {
        let answer = self
            .engine
            .handle(request(Operation::Update, "auth/token/renew-self", data).token(token))
            .await?
            .expect("answer");
        Ok(answer.auth.expect("auth block").lease_duration)
    }

    /// Logs in and answers the token.
    async fn token_from_login(&self, path: &str, data: Value) -> String {
        self.login(path, data)
            .await
            .expect("login")
            .expect("answer")
            .auth
            .expect("auth block")
            .client_token
    }
}

#[tokio::test]
async fn userpass_tokens_renew_only_while_the_user_and_its_policies_stay() {
    let env = env().await.with_userpass().await;
    env.user(
        "alice",
        json!({"password": "pw", "token_policies": "dev", "token_ttl": "1h"}),
    )
    .await;
    let token = env
        .token_from_login("auth/userpass/login/alice", json!({"password": "pw"}))
        .await;
    env.advance(600);
    assert_eq!(
        env.renew_self(&token, json!({})).await.expect("renew"),
        3600
    );
    // A new TTL for the user applies at the next renewal, as in Vault.
    env.user("alice", json!({"token_ttl": "20m"})).await;
    assert_eq!(
        env.renew_self(&token, json!({})).await.expect("renew"),
        1200
    );
    assert_eq!(
        env.renew_self(&token, json!({"increment": "30m"}))
            .await
            .expect("renew"),
        1800
    );

    env.user("alice", json!({"token_policies": "dev,ops"}))
        .await;
    assert_eq!(
        invalid_message(env.renew_self(&token, json!({})).await),
        "policies have changed, not renewing"
    );
    env.user("alice", json!({"token_policies": "dev"})).await;
    env.renew_self(&token, json!({}))
        .await
        .expect("the same policies again");
    env.root(Operation::Delete, "auth/userpass/users/alice", Value::Null)
        .await
        .expect("delete user");
    assert_eq!(
        invalid_message(env.renew_self(&token, json!({})).await),
        "user \"alice\" no longer exists, not renewing"
    );
    // Refusing the renewal does not revoke the token: it lives out its lease.
    env.engine
        .authenticate(Some(&token), &Connection::default())
        .await
        .expect("still valid until it expires");
}

#[tokio::test]
async fn approle_tokens_renew_with_the_roles_current_ttls_until_it_is_deleted() {
    let env = env().await;
    env.root(
        Operation::Update,
        "sys/auth/approle",
        json!({"type": "approle"}),
    )
    .await
    .expect("enable approle");
    env.root(
        Operation::Update,
        "auth/approle/role/web",
        json!({"token_policies": "app", "token_ttl": "1h", "token_max_ttl": "3h"}),
    )
    .await
    .expect("role");
    let role_id = env
        .root_data(Operation::Read, "auth/approle/role/web/role-id")
        .await["role_id"]
        .as_str()
        .expect("role_id")
        .to_owned();
    let secret_id = env
        .root(
            Operation::Update,
            "auth/approle/role/web/secret-id",
            Value::Null,
        )
        .await
        .expect("secret id")
        .expect("answer")
        .data
        .expect("data")["secret_id"]
        .as_str()
        .expect("secret_id")
        .to_owned();
    let token = env
        .token_from_login(
            "auth/approle/login",
            json!({"role_id": role_id, "secret_id": secret_id}),
        )
        .await;
    assert_eq!(
        env.renew_self(&token, json!({})).await.expect("renew"),
        3600
    );
    env.root(
        Operation::Update,
        "auth/approle/role/web",
        json!({"token_ttl": "10m", "token_max_ttl": "2h"}),
    )
    .await
    .expect("role update");
    assert_eq!(env.renew_self(&token, json!({})).await.expect("renew"), 600);
    // The role's new maximum caps an increment too (2h from the token's creation).
    env.advance(500);
    assert_eq!(
        env.renew_self(&token, json!({"increment": "5h"}))
            .await
            .expect("renew"),
        7200 - 500
    );
    env.root(Operation::Delete, "auth/approle/role/web", Value::Null)
        .await
        .expect("delete role");
    assert_eq!(
        invalid_message(env.renew_self(&token, json!({})).await),
        "role \"web\" does not exist during renewal"
    );
}

fn invalid_message<T: std::fmt::Debug>(result: Result<T, EngineError>) -> String {
    match result {
        Err(EngineError::InvalidRequest(message)) => message,
        other => panic!("expected a 400, got {other:?}"),
    }
}
