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
