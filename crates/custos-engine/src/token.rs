//! Tokens, stored only as keyed hashes.
//!
//! Today there is one kind of token, the root token created at init. The token store of the
//! identity issue extends this module; the storage layout is already final: an entry per token at
//! `sys/token/id/<hex HMAC-SHA256 of the token>`, sealed by the barrier, and the HMAC key itself
//! at `core/token-hmac-key`, also behind the barrier.

use custos_crypto::KeyedHasher;
use serde::{Deserialize, Serialize};

use crate::EngineError;

pub(crate) const HMAC_KEY_PATH: &str = "core/token-hmac-key";
pub(crate) const TOKEN_PREFIX: &str = "sys/token/id/";

/// What the store keeps about a token (never the token itself).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct TokenEntry {
    pub(crate) policies: Vec<String>,
    pub(crate) display_name: String,
    pub(crate) created_time: i64,
    /// A public handle for the token (lookups, revocation, audit) that is not the token.
    #[serde(default)]
    pub(crate) accessor: String,
    /// Nanoseconds since the epoch, for `issue_time`.
    #[serde(default)]
    pub(crate) issue_time_nanos: i128,
    /// When a leak report first named this token (unix seconds). Root tokens are marked, not
    /// revoked, by a report: see `leaks.rs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) leaked_at: Option<i64>,
    /// The token comes from a login that passed MFA (TOTP): policy rules with
    /// `require_mfa = true` admit it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) mfa: bool,
}

/// What a token is to be created with: by a login (an auth method's answer) or by
/// `auth/token/create`. The token store checks it against the parent and fills in defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenGrant {
    /// Policies to attach (`default` is added unless `no_default_policy`).
    pub policies: Vec<String>,
    pub no_default_policy: bool,
    /// Shown in lookups and audit: `userpass-alice`, `approle`, `cert-web`.
    pub display_name: String,
    /// Free-form metadata (Vault's `meta`): `username`, `role_name`, ...
    pub metadata: std::collections::BTreeMap<String, String>,
    /// Seconds; 0 means the mount's (or the system's) default.
    pub ttl: u64,
    /// Seconds; 0 means the mount's (or the system's) maximum.
    pub max_ttl: u64,
    /// Seconds; a periodic token is renewed to this period, without a maximum.
    pub period: u64,
    /// Seconds; a hard limit no renewal passes. 0: none.
    pub explicit_max_ttl: u64,
    /// How many requests the token may make; 0: unlimited.
    pub num_uses: u64,
    pub renewable: bool,
    /// Addresses the token may be used from (empty: anywhere).
    pub bound_cidrs: Vec<custos_core::Cidr>,
    /// Lower-case hex SHA-256 of the client certificate the token must arrive with.
    pub bound_cert_fingerprint: Option<String>,
    /// The login passed MFA.
    pub mfa: bool,
    /// The path that created the token, e.g. `auth/userpass/login/alice` (set by the pipeline).
    pub path: String,
}

/// Vault's `auth` block: a freshly issued token.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub client_token: String,
    pub accessor: String,
    /// All policies, `default` included.
    pub policies: Vec<String>,
    pub token_policies: Vec<String>,
    pub metadata: std::collections::BTreeMap<String, String>,
    /// Seconds until it expires; 0: never.
    pub lease_duration: u64,
    pub renewable: bool,
    pub orphan: bool,
    pub num_uses: u64,
    pub mfa: bool,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("accessor", &self.accessor)
            .field("policies", &self.policies)
            .field("lease_duration", &self.lease_duration)
            .finish_non_exhaustive()
    }
}

pub(crate) fn token_path(hasher: &KeyedHasher, token: &str) -> String {
    token_path_for_hash(&hasher.hash_hex(token.as_bytes()))
}

/// Where the entry of the token whose keyed hash is `hash_hex` is stored.
pub(crate) fn token_path_for_hash(hash_hex: &str) -> String {
    format!("{TOKEN_PREFIX}{hash_hex}")
}

/// A fresh random token in custos's checksummed key format, `custos_token_<30><6>`: 30 base62
/// characters drawn from 240 random bits (62^30 is about 2^178, so about 178 bits of entropy),
/// and a CRC-32 that lets `custos scan` (and any scanner) tell a real leaked token from a random
/// string offline.
pub(crate) fn new_token() -> Result<String, EngineError> {
    let mut random = zeroize::Zeroizing::new([0u8; 30]);
    custos_crypto::fill_random(random.as_mut())
        .map_err(|error| EngineError::Internal(format!("random: {error}")))?;
    let token = custos_core::ApiKey::from_random(custos_core::CUSTOS_TOKEN_PREFIX, &random)
        .map_err(|error| EngineError::Internal(format!("token format: {error}")))?;
    Ok(token.as_str().to_owned())
}

/// Who is calling, once their token checked out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub policies: Vec<String>,
    pub display_name: String,
    pub accessor: String,
    pub created_time: i64,
    pub issue_time_nanos: i128,
    /// When a leak report named this token (unix seconds), if one did.
    pub leaked_at: Option<i64>,
    /// The token comes from a login that passed MFA.
    pub mfa: bool,
}

impl Caller {
    pub fn is_root(&self) -> bool {
        self.policies.iter().any(|policy| policy == "root")
    }
}

impl From<TokenEntry> for Caller {
    fn from(entry: TokenEntry) -> Self {
        Caller {
            policies: entry.policies,
            display_name: entry.display_name,
            accessor: entry.accessor,
            created_time: entry.created_time,
            issue_time_nanos: entry.issue_time_nanos,
            leaked_at: entry.leaked_at,
            mfa: entry.mfa,
        }
    }
}

/// `auth/token/lookup-self`: what Vault clients call to check a token (hvac's
/// `is_authenticated`, Terraform's provider at start-up, `vault login`).
pub(crate) fn lookup_self(caller: &Caller, token: &str) -> crate::logical::LogicalResponse {
    let issue_time = jiff::Timestamp::from_nanosecond(caller.issue_time_nanos)
        .map(|time| time.to_string())
        .unwrap_or_default();
    let leaked_at = caller
        .leaked_at
        .and_then(|seconds| jiff::Timestamp::from_second(seconds).ok())
        .map(|time| time.to_string());
    crate::pipeline::object(serde_json::json!({
        "accessor": caller.accessor,
        "creation_time": caller.created_time,
        "creation_ttl": 0,
        "display_name": caller.display_name,
        "entity_id": "",
        "expire_time": null,
        "explicit_max_ttl": 0,
        "id": token,
        "issue_time": issue_time,
        // custos's own: a leak report named this token (a root token is marked, not revoked).
        "leaked": caller.leaked_at.is_some(),
        "leaked_at": leaked_at,
        "meta": null,
        "num_uses": 0,
        "orphan": true,
        "path": "auth/token/root",
        "policies": caller.policies,
        "renewable": false,
        "ttl": 0,
        "type": "service",
    }))
}

impl crate::Engine {
    /// Creates a token for `grant`. The seam between auth methods and the token store: logins
    /// hand their grant here (through the pipeline), `auth/token/create` too.
    ///
    /// This first version stores policies, display name, accessor and the MFA fact; TTLs, the
    /// parent tree, accessor index, use counts and bindings are the token store's to add.
    pub(crate) async fn issue_token(
        &self,
        unsealed: &crate::Unsealed,
        grant: TokenGrant,
    ) -> Result<IssuedToken, EngineError> {
        let token = new_token()?;
        let accessor = crate::random_id()?;
        let mut policies = grant.policies.clone();
        if !grant.no_default_policy && !policies.iter().any(|policy| policy == "default") {
            policies.push("default".into());
        }
        policies.sort();
        policies.dedup();
        let now = self.now();
        let entry = TokenEntry {
            policies: policies.clone(),
            display_name: grant.display_name.clone(),
            created_time: now.as_second(),
            accessor: accessor.clone(),
            issue_time_nanos: now.as_nanosecond(),
            leaked_at: None,
            mfa: grant.mfa,
        };
        let value = serde_json::to_vec(&entry)
            .map_err(|error| EngineError::Internal(format!("token entry: {error}")))?;
        unsealed
            .barrier
            .put(&token_path(&unsealed.token_hasher, &token), value)
            .await?;
        Ok(IssuedToken {
            client_token: token,
            accessor,
            token_policies: policies.clone(),
            policies,
            metadata: grant.metadata,
            lease_duration: grant.ttl,
            renewable: grant.renewable,
            orphan: true,
            num_uses: grant.num_uses,
            mfa: grant.mfa,
        })
    }
}
