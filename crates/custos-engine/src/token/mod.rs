//! The token store: tokens, stored only as keyed hashes, in a tree of parents and children.
//!
//! Storage layout, all behind the barrier:
//! - `sys/token/id/<hash>`: the entry of the token whose keyed hash (HMAC-SHA256 under the key at
//!   `core/token-hmac-key`) is `<hash>`; the token itself is never stored.
//! - `sys/token/accessor/<HMAC of accessor>`: the accessor index (accessor → token hash). An
//!   accessor is a random id distinct from the token; it names the token for lookups and
//!   revocation and never authenticates.
//! - `sys/token/parent/<parent hash>/<child hash>`: the children of a token, so revoking a token
//!   revokes its subtree.
//! - `sys/token/role/<name>`: token roles (`auth/token/roles/<name>`).
//!
//! Every change that touches several of these keys is one storage transaction. Revoking a subtree
//! marks its root first (it stops authenticating at once), then deletes the tree leaves first, one
//! token per transaction, so an interrupted revocation leaves a smaller tree still reachable from
//! its marked root: revoking again, or `auth/token/tidy`, finishes the job.
//!
//! `store.rs` holds the storage operations and rules (issue, authenticate, renew, revoke),
//! `endpoints.rs` the `auth/token/*` paths.

mod decoded;
mod endpoints;
mod store;

pub(crate) use decoded::DecodedTokens;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use custos_crypto::KeyedHasher;
use serde::{Deserialize, Serialize};

use crate::EngineError;

pub(crate) use endpoints::is_token_store_path;
pub(crate) use store::{AccessorIndex, Revocation};

pub(crate) const HMAC_KEY_PATH: &str = "core/token-hmac-key";
pub(crate) const TOKEN_PREFIX: &str = "sys/token/id/";
pub(crate) const ACCESSOR_PREFIX: &str = "sys/token/accessor/";
pub(crate) const PARENT_PREFIX: &str = "sys/token/parent/";
pub(crate) const ROLE_PREFIX: &str = "sys/token/role/";

/// The TTL a token gets when nobody asks for one, and the longest a non-periodic token lives
/// (from its creation, renewals included): Vault's system defaults, 768h (32 days).
pub(crate) const SYSTEM_DEFAULT_TTL: u64 = 768 * 3600;
pub(crate) const SYSTEM_MAX_TTL: u64 = 768 * 3600;

/// What the store keeps about a token (never the token itself). Every field added after the
/// first release has a serde default, so entries written by older builds stay readable (the
/// root token of an old store reads as a non-expiring orphan).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct TokenEntry {
    pub(crate) policies: Vec<String>,
    pub(crate) display_name: String,
    /// Unix seconds.
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
    /// The keyed hash of the parent token; `None` for an orphan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) parent: Option<String>,
    /// Vault's `meta`: free-form metadata (`None` renders as `null`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) meta: Option<BTreeMap<String, String>>,
    /// The path that created the token (`auth/token/create`, `auth/userpass/login/alice`).
    /// Empty in entries older than the token store, which were all root tokens made at init.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) path: String,
    /// The TTL the token was created with (or last renewed to), in seconds; 0: never expires.
    #[serde(default)]
    pub(crate) ttl: u64,
    /// When the token expires (unix seconds); `None`: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) expire_time: Option<i64>,
    /// Seconds: a hard limit from creation that no renewal passes. 0: none.
    #[serde(default)]
    pub(crate) explicit_max_ttl: u64,
    /// Seconds: a periodic token is renewed to this period, without a maximum. 0: not periodic.
    #[serde(default)]
    pub(crate) period: u64,
    /// Seconds from creation that renewals may not pass (the system maximum at creation, or a
    /// policy's cap). 0: none (root tokens, periodic tokens).
    #[serde(default)]
    pub(crate) max_ttl: u64,
    /// Uses left; 0: unlimited. The last use revokes the token.
    #[serde(default)]
    pub(crate) num_uses: u64,
    #[serde(default)]
    pub(crate) renewable: bool,
    /// Addresses (CIDR blocks) the token may be used from; empty: anywhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) bound_cidrs: Vec<String>,
    /// Lower-case hex SHA-256 of the client certificate the token must arrive with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) bound_cert_fingerprint: Option<String>,
    /// The token role it was created from (`auth/token/create/<role>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) role: Option<String>,
    /// Unix seconds of the last renewal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) last_renewal_time: Option<i64>,
    /// The TTL the last renewal gave (seconds): a renewal without an increment repeats it, as
    /// Vault's does.
    #[serde(default)]
    pub(crate) last_increment: u64,
    /// Set when a revocation of this token began: the token no longer authenticates, and
    /// revoking it again (or tidying) finishes what was interrupted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) revoking: Option<Revocation>,
}

impl TokenEntry {
    /// The root token made at init (or by dev mode).
    pub(crate) fn root(accessor: String, now: jiff::Timestamp) -> TokenEntry {
        TokenEntry {
            policies: vec!["root".into()],
            display_name: "root".into(),
            created_time: now.as_second(),
            accessor,
            issue_time_nanos: now.as_nanosecond(),
            path: "auth/token/root".into(),
            ..TokenEntry::default()
        }
    }

    pub(crate) fn is_root(&self) -> bool {
        self.policies.iter().any(|policy| policy == "root")
    }

    /// Whether the token has expired at `now` (unix seconds).
    pub(crate) fn is_expired(&self, now: i64) -> bool {
        self.expire_time.is_some_and(|expire| expire <= now)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<TokenEntry, EngineError> {
        serde_json::from_slice(bytes)
            .map_err(|error| EngineError::Internal(format!("token entry is corrupt: {error}")))
    }

    pub(crate) fn encode(&self) -> Result<Vec<u8>, EngineError> {
        serde_json::to_vec(self)
            .map_err(|error| EngineError::Internal(format!("encoding token entry: {error}")))
    }
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
    /// The accessor of the AppRole secret id the login spent (never the secret id), for the
    /// client inventory; not kept with the token.
    pub secret_id_accessor: Option<String>,
}

/// Vault's `auth` block: a freshly issued token. Serialisable so a wrapping record can keep it
/// (behind the barrier); fields added later default when an older record is read.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedToken {
    pub client_token: String,
    pub accessor: String,
    /// All policies, `default` included.
    pub policies: Vec<String>,
    pub token_policies: Vec<String>,
    #[serde(default)]
    pub metadata: std::collections::BTreeMap<String, String>,
    /// Seconds until it expires; 0: never.
    pub lease_duration: u64,
    pub renewable: bool,
    pub orphan: bool,
    #[serde(default)]
    pub num_uses: u64,
    #[serde(default)]
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

/// Where the entry of the token whose keyed hash is `hash_hex` is stored.
pub(crate) fn token_path_for_hash(hash_hex: &str) -> String {
    format!("{TOKEN_PREFIX}{hash_hex}")
}

/// Where the accessor index entry of `accessor` is stored (named by its keyed hash, so the
/// index's keys say nothing about the accessors).
pub(crate) fn accessor_path(hasher: &KeyedHasher, accessor: &str) -> String {
    format!(
        "{ACCESSOR_PREFIX}{}",
        hasher.hash_hex(format!("accessor:{accessor}").as_bytes())
    )
}

/// The link that records `child` as a child of `parent` (both keyed hashes).
pub(crate) fn parent_link_path(parent: &str, child: &str) -> String {
    format!("{PARENT_PREFIX}{parent}/{child}")
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

/// What audit records show of the token `entry`, whose keyed hash is `hash` (Vault's `auth`
/// block).
pub(crate) fn audit_auth<'a>(entry: &'a TokenEntry, hash: &'a str) -> crate::AuditAuth<'a> {
    crate::AuditAuth {
        accessor: &entry.accessor,
        display_name: &entry.display_name,
        policies: &entry.policies,
        metadata: entry.meta.as_ref(),
        token_type: "service",
        ttl: entry.ttl,
        issue_time_nanos: entry.issue_time_nanos,
        remaining_uses: entry.num_uses,
        token_key: hash,
    }
}
