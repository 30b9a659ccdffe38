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
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use crate::logical::{
    LogicalBackend, LogicalRequest, LogicalResponse, LoginRenewal, MountContext, Operation,
    RenewalLimits, equivalent_policies,
};
use crate::sys::{bool_field, string_list_field, ttl_field};
use crate::{EngineError, TokenGrant};

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

/// The token parameters of a user (Vault's `tokenutil` fields).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct TokenParams {
    #[serde(default)]
    pub(crate) token_policies: Vec<String>,
    /// The policies were set with the old `policies` field, which reads report too.
    #[serde(default)]
    pub(crate) legacy_policies: bool,
    #[serde(default)]
    pub(crate) token_ttl: u64,
    #[serde(default)]
    pub(crate) token_max_ttl: u64,
    #[serde(default)]
    pub(crate) token_explicit_max_ttl: u64,
    #[serde(default)]
    pub(crate) token_period: u64,
    #[serde(default)]
    pub(crate) token_num_uses: u64,
    #[serde(default)]
    pub(crate) token_no_default_policy: bool,
    #[serde(default)]
    pub(crate) token_bound_cidrs: Vec<String>,
}

impl TokenParams {
    /// Applies the token fields present in `data` (absent ones keep their value).
    pub(crate) fn update(&mut self, data: &Map<String, Value>) -> Result<(), EngineError> {
        if let Some(policies) = string_list_field(data, "token_policies")? {
            self.token_policies = clean_policies(policies);
            self.legacy_policies = false;
        } else if let Some(policies) = string_list_field(data, "policies")? {
            self.token_policies = clean_policies(policies);
            self.legacy_policies = true;
        }
        for (name, slot) in [
            ("token_ttl", &mut self.token_ttl),
            ("token_max_ttl", &mut self.token_max_ttl),
            ("token_explicit_max_ttl", &mut self.token_explicit_max_ttl),
            ("token_period", &mut self.token_period),
        ] {
            if let Some(seconds) = ttl_field(data, name)? {
                *slot = seconds;
            }
        }
        if let Some(uses) = count_field(data, "token_num_uses")? {
            self.token_num_uses = uses;
        }
        if let Some(flag) = bool_field(data, "token_no_default_policy")? {
            self.token_no_default_policy = flag;
        }
        if let Some(blocks) = string_list_field(data, "token_bound_cidrs")? {
            let blocks: Vec<String> = blocks.into_iter().filter(|b| !b.is_empty()).collect();
            for block in &blocks {
                block
                    .parse::<custos_core::Cidr>()
                    .map_err(|error| EngineError::InvalidRequest(error.to_string()))?;
            }
            self.token_bound_cidrs = blocks;
        }
        if self.token_max_ttl != 0 && self.token_ttl > self.token_max_ttl {
            return Err(EngineError::InvalidRequest(
                "\"token_ttl\" cannot be greater than \"token_max_ttl\"".into(),
            ));
        }
        Ok(())
    }

    /// Vault's read shape of the token fields.
    pub(crate) fn to_json(&self, out: &mut Map<String, Value>) {
        out.insert("token_bound_cidrs".into(), json!(self.token_bound_cidrs));
        out.insert(
            "token_explicit_max_ttl".into(),
            json!(self.token_explicit_max_ttl),
        );
        out.insert("token_max_ttl".into(), json!(self.token_max_ttl));
        out.insert(
            "token_no_default_policy".into(),
            json!(self.token_no_default_policy),
        );
        out.insert("token_num_uses".into(), json!(self.token_num_uses));
        out.insert("token_period".into(), json!(self.token_period));
        out.insert("token_policies".into(), json!(self.token_policies));
        out.insert("token_strictly_bind_ip".into(), json!(false));
        out.insert("token_ttl".into(), json!(self.token_ttl));
        out.insert("token_type".into(), json!("default"));
        if self.legacy_policies {
            out.insert("policies".into(), json!(self.token_policies));
        }
    }

    /// The grant a successful login asks for.
    pub(crate) fn grant(&self) -> Result<TokenGrant, EngineError> {
        let bound_cidrs = self
            .token_bound_cidrs
            .iter()
            .map(|block| {
                block
                    .parse::<custos_core::Cidr>()
                    .map_err(|error| EngineError::Internal(format!("stored CIDR: {error}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(TokenGrant {
            policies: self.token_policies.clone(),
            no_default_policy: self.token_no_default_policy,
            ttl: self.token_ttl,
            max_ttl: self.token_max_ttl,
            period: self.token_period,
            explicit_max_ttl: self.token_explicit_max_ttl,
            num_uses: self.token_num_uses,
            renewable: true,
            bound_cidrs,
            ..TokenGrant::default()
        })
    }
}

fn clean_policies(policies: Vec<String>) -> Vec<String> {
    let mut policies: Vec<String> = policies
        .into_iter()
        .map(|policy| policy.trim().to_lowercase())
        .filter(|policy| !policy.is_empty())
        .collect();
    policies.sort();
    policies.dedup();
    policies
}

/// A non-negative integer field (a number or its text).
fn count_field(data: &Map<String, Value>, name: &str) -> Result<Option<u64>, EngineError> {
    let invalid = || EngineError::InvalidRequest(format!("{name} must be a non-negative integer"));
    match data.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => number.as_u64().map(Some).ok_or_else(invalid),
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(Value::String(text)) => text.parse().map(Some).map_err(|_| invalid()),
        Some(_) => Err(invalid()),
    }
}

/// One user, as stored.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct UserEntry {
    /// argon2id PHC string.
    pub(crate) password_hash: String,
    #[serde(flatten)]
    pub(crate) token: TokenParams,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) totp: Option<TotpEnrolment>,
}

impl std::fmt::Debug for UserEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserEntry")
            .field("token", &self.token)
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
        let name = login
            .metadata
            .get("username")
            .map(String::as_str)
            .unwrap_or_default();
        let user = match user_name(name) {
            Ok(name) => load_user(ctx, &name).await?,
            Err(_) => None,
        };
        let Some((user, _)) = user else {
            return Err(EngineError::InvalidRequest(format!(
                "user {name:?} no longer exists, not renewing"
            )));
        };
        if !equivalent_policies(&user.token.token_policies, &login.policies) {
            return Err(EngineError::InvalidRequest(
                "policies have changed, not renewing".into(),
            ));
        }
        Ok(Some(RenewalLimits {
            ttl: user.token.token_ttl,
            max_ttl: user.token.token_max_ttl,
            period: user.token.token_period,
        }))
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
    entry.token.to_json(&mut data);
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
    let password_hash = match (password, &existing) {
        (Some(password), _) => hash(password).await?,
        (None, Some((entry, _))) => entry.password_hash.clone(),
        (None, None) => return Err(EngineError::InvalidRequest("missing password".into())),
    };
    let entry = UserEntry {
        password_hash,
        token,
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
    let mut grant = entry.token.grant()?;
    let label = ctx
        .mount_path
        .trim_start_matches("auth/")
        .trim_end_matches('/')
        .replace('/', "-");
    grant.display_name = format!("{label}-{name}");
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
