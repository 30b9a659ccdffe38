//! The `userpass` auth method: users with argon2id-hashed passwords, optional TOTP as a second
//! factor, and the token parameters a login grants.
//!
//! Storage (the method's own `MountStorage`): one JSON entry per user at `user/<name>`, names
//! lower-cased as Vault does. The password is kept only as an argon2id PHC string
//! (`custos_crypto::hash_password`); the TOTP secret (20 random bytes) is behind the barrier
//! like everything else, and shown once, at enrolment.
//!
//! Hashing is slow on purpose, so it runs on the blocking thread pool, at most one hash per
//! CPU at a time ([`HASHING`]): a flood of logins queues instead of starving the runtime. A
//! login for a name that does not exist verifies against a dummy hash with the same
//! parameters, so it costs the same time as a wrong password.

mod totp;

use std::collections::BTreeMap;
use std::sync::LazyLock;

use custos_storage::{Revision, Transaction};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::EngineError;
use crate::auth::role;
use crate::auth::token_fields::TokenFields;
use crate::logical::{
    LogicalBackend, LogicalRequest, LogicalResponse, LoginRenewal, MountContext, Operation,
    RenewalLimits,
};

pub(crate) use totp::TotpEnrolment;

const USER_PREFIX: &str = "user/";

/// What a wrong user name or password is told (the same for both).
pub(crate) const INVALID_CREDENTIALS: &str = "invalid username or password";
/// What a user with TOTP enrolled is told when the password or the code is wrong or missing.
pub(crate) const INVALID_CREDENTIALS_MFA: &str = "invalid username, password or TOTP code";

/// At most this many password hashes are computed at once (one per CPU).
static HASHING: LazyLock<tokio::sync::Semaphore> = LazyLock::new(|| {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    tokio::sync::Semaphore::new(cpus)
});

/// The hash an unknown user's password is verified against, so that an unknown user costs the
/// same time as a known one: made with the same parameters as real hashes (a test checks that
/// they stay the same). Which password it hashes does not matter: a match against it never
/// logs anyone in.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$uwNV2Z4yE67Zer4ihy0BMg$dhAlpvoid8/wliHeZ/ZfXUOBrAKhJrKcnJSXjRqk5fg";

/// Whether a user's policies now come from the old `policies` field: `token_policies` wins
/// when both are given; a write naming neither keeps what was.
fn legacy_policies(data: &Map<String, Value>, current: bool) -> bool {
    if data.contains_key("token_policies") {
        false
    } else {
        data.contains_key("policies") || current
    }
}

/// One user, as stored.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct UserEntry {
    /// argon2id PHC string.
    pub(crate) password_hash: String,
    /// The token settings, stored flat beside the hash. Entries written before the settings
    /// were shared with the other auth methods named them `token_ttl` and so on; they decode
    /// through the fields' aliases.
    #[serde(flatten)]
    pub(crate) token: TokenFields,
    /// The policies were set with the old `policies` field, which reads report too.
    #[serde(default)]
    pub(crate) legacy_policies: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) totp: Option<TotpEnrolment>,
}

impl std::fmt::Debug for UserEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserEntry")
            .field("token", &self.token)
            .field("legacy_policies", &self.legacy_policies)
            .field("totp_enrolled", &self.totp.is_some())
            .finish_non_exhaustive()
    }
}

/// Checks and lower-cases a user name: letters, digits, `-`, `_`, `.`, `@`.
fn user_name(raw: &str) -> Result<String, EngineError> {
    let name = raw.trim_end_matches('/');
    let valid = !name.is_empty()
        && name.len() <= 256
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    if !valid {
        return Err(EngineError::InvalidRequest(format!(
            "invalid user name {}: use letters, digits, '-', '_', '.' and '@'",
            crate::Untrusted(name)
        )));
    }
    Ok(name.to_lowercase())
}

/// The password field: a non-empty string.
fn password_field(data: &Map<String, Value>) -> Result<Zeroizing<String>, EngineError> {
    match data.get("password") {
        None | Some(Value::Null) => Err(EngineError::InvalidRequest("missing password".into())),
        Some(Value::String(text)) if text.is_empty() => {
            Err(EngineError::InvalidRequest("missing password".into()))
        }
        Some(Value::String(text)) => Ok(Zeroizing::new(text.clone())),
        Some(_) => Err(EngineError::InvalidRequest(
            "password must be a string".into(),
        )),
    }
}

/// Hashes a password off the runtime's worker threads.
async fn hash(password: Zeroizing<String>) -> Result<String, EngineError> {
    let _permit = HASHING
        .acquire()
        .await
        .map_err(|_| EngineError::Internal("password hashing is shut down".into()))?;
    tokio::task::spawn_blocking(move || custos_crypto::hash_password(password.as_bytes()))
        .await
        .map_err(|error| EngineError::Internal(format!("password hashing task: {error}")))?
        .map_err(|error| EngineError::Internal(format!("password hashing: {error}")))
}

/// Verifies a password against a stored hash (or the dummy hash when `stored` is `None`, which
/// never succeeds) off the runtime's worker threads.
async fn verify(password: Zeroizing<String>, stored: Option<String>) -> Result<bool, EngineError> {
    let _permit = HASHING
        .acquire()
        .await
        .map_err(|_| EngineError::Internal("password hashing is shut down".into()))?;
    tokio::task::spawn_blocking(move || {
        let known = stored.is_some();
        let stored = stored.as_deref().unwrap_or(DUMMY_HASH);
        let matched = custos_crypto::verify_password(password.as_bytes(), stored)
            .map_err(|error| EngineError::Internal(format!("stored password hash: {error}")))?;
        Ok(matched && known)
    })
    .await
    .map_err(|error| EngineError::Internal(format!("password hashing task: {error}")))?
}

async fn load_user(
    ctx: &MountContext,
    name: &str,
) -> Result<Option<(UserEntry, Revision)>, EngineError> {
    let Some(plain) = ctx.storage.get(&format!("{USER_PREFIX}{name}")).await? else {
        return Ok(None);
    };
    let entry: UserEntry = serde_json::from_slice(&plain.value)
        .map_err(|error| EngineError::Internal(format!("user entry is corrupt: {error}")))?;
    Ok(Some((entry, plain.revision)))
}

/// Writes a user if it is still at `revision` (`None`: still absent).
async fn store_user(
    ctx: &MountContext,
    name: &str,
    entry: &UserEntry,
    revision: Option<Revision>,
) -> Result<(), EngineError> {
    let key = format!("{USER_PREFIX}{name}");
    let bytes = serde_json::to_vec(entry)
        .map_err(|error| EngineError::Internal(format!("encoding user: {error}")))?;
    ctx.storage
        .commit(
            Transaction::new()
                .require_unchanged(key.clone(), revision)
                .put(key, bytes),
        )
        .await
        .map(drop)
}

/// The `userpass` backend.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Userpass;

#[async_trait::async_trait]
impl LogicalBackend for Userpass {
    /// `users/<name>` exists when the user does (Vault's existence check: creating a user
    /// needs `create`, changing one `update`).
    async fn exists(
        &self,
        ctx: &MountContext,
        request: &LogicalRequest,
    ) -> Result<Option<bool>, EngineError> {
        let path = request.path.trim_end_matches('/');
        let Some(name) = path
            .strip_prefix("users/")
            .filter(|name| !name.contains('/'))
        else {
            return Ok(None);
        };
        let Ok(name) = user_name(name) else {
            // The handler refuses the name with its own message.
            return Ok(None);
        };
        Ok(Some(
            ctx.storage
                .get(&format!("{USER_PREFIX}{name}"))
                .await?
                .is_some(),
        ))
    }

    async fn handle(
        &self,
        ctx: &MountContext,
        request: LogicalRequest,
    ) -> Result<Option<LogicalResponse>, EngineError> {
        let path = request.path.trim_end_matches('/').to_owned();
        let data = request.data.clone().unwrap_or_default();
        if path == "users" {
            return match request.operation {
                Operation::List => list_users(ctx).await,
                _ => Err(EngineError::MethodNotAllowed),
            };
        }
        if let Some(name) = path.strip_prefix("login/") {
            return match request.operation {
                Operation::Create | Operation::Update => login(ctx, name, &data).await.map(Some),
                _ => Err(EngineError::MethodNotAllowed),
            };
        }
        let Some(rest) = path.strip_prefix("users/") else {
            return Ok(None);
        };
        let (name, action) = match rest.split_once('/') {
            Some((name, action)) => (name, Some(action)),
            None => (rest, None),
        };
        let name = user_name(name)?;
        match (action, request.operation) {
            (None, Operation::Read) => read_user(ctx, &name).await,
            (None, Operation::Create | Operation::Update) => {
                write_user(ctx, &name, &data).await.map(Some)
            }
            (None, Operation::Delete) => {
                ctx.storage.delete(&format!("{USER_PREFIX}{name}")).await?;
                Ok(Some(LogicalResponse::no_content()))
            }
            (Some("password"), Operation::Create | Operation::Update) => {
                set_password(ctx, &name, &data).await.map(Some)
            }
            (Some("policies"), Operation::Create | Operation::Update) => {
                set_policies(ctx, &name, &data).await.map(Some)
            }
            (Some("totp"), Operation::Create | Operation::Update) => {
                totp::enrol(ctx, &name).await.map(Some)
            }
            (Some("totp"), Operation::Read) => totp::status(ctx, &name).await,
            (Some("totp"), Operation::Delete) => totp::remove(ctx, &name).await.map(Some),
            (Some("password" | "policies" | "totp"), _) | (None, _) => {
                Err(EngineError::MethodNotAllowed)
            }
            (Some(_), _) => Ok(None),
        }
    }

    fn unauthenticated_paths(&self) -> &'static [&'static str] {
        &["login/*"]
    }

    /// The user name, lower-cased as the method stores it, so `Alice` and `alice` share a count.
    fn login_subject(&self, request: &LogicalRequest) -> String {
        request
            .path
            .strip_prefix("login/")
            .unwrap_or(&request.path)
            .trim_end_matches('/')
            .to_lowercase()
    }

    /// As Vault: a token whose user was deleted, or whose user's policies changed since the
    /// login, is not renewed; otherwise the user's current TTLs apply.
    async fn renew_login(
        &self,
        ctx: &MountContext,
        login: &LoginRenewal,
    ) -> Result<Option<RenewalLimits>, EngineError> {
        let name = role::login_metadata(login, "username");
        let user = match user_name(name) {
            Ok(name) => load_user(ctx, &name).await?,
            Err(_) => None,
        };
        let Some((user, _)) = user else {
            return Err(EngineError::InvalidRequest(format!(
                "user {name:?} no longer exists, not renewing"
            )));
        };
        role::check_same_policies(&user.token, login)?;
        Ok(Some(role::current_limits(&user.token)))
    }
}

async fn list_users(ctx: &MountContext) -> Result<Option<LogicalResponse>, EngineError> {
    let mut names = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = ctx
            .storage
            .list(USER_PREFIX, after.as_deref(), 1000)
            .await?;
        names.extend(
            page.keys
                .iter()
                .filter_map(|key| key.strip_prefix(USER_PREFIX))
                .map(str::to_owned),
        );
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    if names.is_empty() {
        // Vault answers an empty list with 404 and no errors.
        return Ok(None);
    }
    Ok(Some(LogicalResponse::list(names)))
}

async fn read_user(ctx: &MountContext, name: &str) -> Result<Option<LogicalResponse>, EngineError> {
    let Some((entry, _)) = load_user(ctx, name).await? else {
        return Ok(None);
    };
    let mut data = Map::new();
    entry.token.render(&mut data);
    if entry.legacy_policies {
        data.insert("policies".into(), data["token_policies"].clone());
    }
    Ok(Some(LogicalResponse::data(data)))
}

/// Creates or updates a user. A new user needs a password; an update without one keeps it.
async fn write_user(
    ctx: &MountContext,
    name: &str,
    data: &Map<String, Value>,
) -> Result<LogicalResponse, EngineError> {
    // Parse everything before the (slow) hash, so bad input is refused at once.
    let password = match data.get("password") {
        None | Some(Value::Null) => None,
        Some(_) => Some(password_field(data)?),
    };
    let existing = load_user(ctx, name).await?;
    let mut token = existing
        .as_ref()
        .map(|(entry, _)| entry.token.clone())
        .unwrap_or_default();
    token.update(data)?;
    let legacy_policies = legacy_policies(
        data,
        existing
            .as_ref()
            .is_some_and(|(entry, _)| entry.legacy_policies),
    );
    let password_hash = match (password, &existing) {
        (Some(password), _) => hash(password).await?,
        (None, Some((entry, _))) => entry.password_hash.clone(),
        (None, None) => return Err(EngineError::InvalidRequest("missing password".into())),
    };
    let entry = UserEntry {
        password_hash,
        token,
        legacy_policies,
        totp: existing.as_ref().and_then(|(entry, _)| entry.totp.clone()),
    };
    store_user(ctx, name, &entry, existing.map(|(_, revision)| revision)).await?;
    Ok(LogicalResponse::no_content())
}

async fn set_password(
    ctx: &MountContext,
    name: &str,
    data: &Map<String, Value>,
) -> Result<LogicalResponse, EngineError> {
    let password = password_field(data)?;
    let Some((mut entry, revision)) = load_user(ctx, name).await? else {
        return Err(EngineError::InvalidRequest(
            "username does not exist".into(),
        ));
    };
    entry.password_hash = hash(password).await?;
    store_user(ctx, name, &entry, Some(revision)).await?;
    Ok(LogicalResponse::no_content())
}

async fn set_policies(
    ctx: &MountContext,
    name: &str,
    data: &Map<String, Value>,
) -> Result<LogicalResponse, EngineError> {
    let Some((mut entry, revision)) = load_user(ctx, name).await? else {
        return Err(EngineError::InvalidRequest(
            "username does not exist".into(),
        ));
    };
    let mut only_policies = Map::new();
    for field in ["token_policies", "policies"] {
        if let Some(value) = data.get(field) {
            only_policies.insert(field.into(), value.clone());
        }
    }
    if only_policies.is_empty() {
        return Err(EngineError::InvalidRequest("missing token_policies".into()));
    }
    entry.token.update(&only_policies)?;
    entry.legacy_policies = legacy_policies(&only_policies, entry.legacy_policies);
    store_user(ctx, name, &entry, Some(revision)).await?;
    Ok(LogicalResponse::no_content())
}

/// `login/<name>`: the password, and the TOTP code once the user enrolled.
async fn login(
    ctx: &MountContext,
    raw_name: &str,
    data: &Map<String, Value>,
) -> Result<LogicalResponse, EngineError> {
    let name = user_name(raw_name)?;
    let password = password_field(data)?;
    let code = totp::code_field(data)?;
    let user = load_user(ctx, &name).await?;
    let stored = user.as_ref().map(|(entry, _)| entry.password_hash.clone());
    let matched = verify(password, stored).await?;
    let Some((mut entry, revision)) = user else {
        return Err(EngineError::InvalidRequest(INVALID_CREDENTIALS.into()));
    };
    let mfa = entry.totp.is_some();
    if let Some(enrolment) = &mut entry.totp {
        let accepted =
            matched && code.is_some_and(|code| enrolment.accept(code, ctx.now.as_second()));
        if !accepted {
            return Err(EngineError::InvalidRequest(INVALID_CREDENTIALS_MFA.into()));
        }
        // The used step is recorded before the token is issued; a concurrent login with the
        // same code loses the compare-and-swap and is refused like a replay.
        match store_user(ctx, &name, &entry, Some(revision)).await {
            Ok(()) => {}
            Err(EngineError::Conflict) => {
                return Err(EngineError::InvalidRequest(INVALID_CREDENTIALS_MFA.into()));
            }
            Err(error) => return Err(error),
        }
    } else if !matched {
        return Err(EngineError::InvalidRequest(INVALID_CREDENTIALS.into()));
    }
    let label = ctx
        .mount_path
        .trim_start_matches("auth/")
        .trim_end_matches('/')
        .replace('/', "-");
    let mut grant = entry.token.grant(format!("{label}-{name}"))?;
    grant.metadata = BTreeMap::from([("username".to_owned(), name)]);
    grant.mfa = mfa;
    Ok(LogicalResponse::login(grant))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dummy_hash_costs_what_a_real_hash_costs() {
        let (memory, passes, lanes) = custos_crypto::PASSWORD_PARAMS;
        let real = custos_crypto::hash_password(b"x").expect("hash");
        let params = format!("$argon2id$v=19$m={memory},t={passes},p={lanes}$");
        assert!(real.starts_with(&params), "{real}");
        assert!(DUMMY_HASH.starts_with(&params), "{DUMMY_HASH}");
        assert_eq!(DUMMY_HASH.len(), real.len());
        assert!(!custos_crypto::verify_password(b"", DUMMY_HASH).expect("verify"));
    }

    #[test]
    fn users_stored_in_the_old_flat_shape_still_decode() {
        let old = serde_json::json!({
            "password_hash": DUMMY_HASH,
            "token_policies": ["dev"],
            "legacy_policies": true,
            "token_ttl": 3600,
            "token_max_ttl": 7200,
            "token_explicit_max_ttl": 0,
            "token_period": 60,
            "token_num_uses": 2,
            "token_no_default_policy": true,
            "token_bound_cidrs": ["10.0.0.0/8"],
        });
        let entry: UserEntry = serde_json::from_value(old).expect("old entry");
        assert_eq!(entry.token.policies, ["dev"]);
        assert!(entry.legacy_policies);
        assert_eq!(
            (entry.token.ttl, entry.token.max_ttl, entry.token.period),
            (3600, 7200, 60)
        );
        assert_eq!(entry.token.num_uses, 2);
        assert!(entry.token.no_default_policy);
        assert_eq!(entry.token.bound_cidrs, ["10.0.0.0/8"]);
        assert_eq!(entry.token.token_type, "default");

        let again: UserEntry = serde_json::from_slice(&serde_json::to_vec(&entry).expect("encode"))
            .expect("new entry");
        assert_eq!(again.token, entry.token);
        assert!(again.legacy_policies);
    }

    #[tokio::test]
    async fn an_unknown_user_never_matches() {
        let matched = verify(
            Zeroizing::new("custos: no user has this password".into()),
            None,
        )
        .await
        .expect("verify");
        assert!(!matched);
    }
}
