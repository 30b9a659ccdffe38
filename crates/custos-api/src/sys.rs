//! `sys/*` request and response bodies: health, seal status, init, unseal, key status, leader.

use serde::{Deserialize, Deserializer, Serialize};

/// Go clients send `null` for unset slices and strings; treat it like an absent field.
fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// `GET /v1/sys/health`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct HealthResponse {
    pub initialized: bool,
    pub sealed: bool,
    pub standby: bool,
    /// Vault Enterprise's read replicas; always false here, but clients (vaultrs) require it.
    #[serde(default)]
    pub performance_standby: bool,
    pub replication_performance_mode: String,
    pub replication_dr_mode: String,
    pub server_time_utc: i64,
    /// The Vault version custos is compatible with ([`crate::VAULT_COMPATIBLE_VERSION`]).
    pub version: String,
    /// custos's own version ([`crate::VERSION`]).
    #[serde(default)]
    pub custos_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
}

/// Query parameters of `sys/health` that pick the status codes, as Vault's.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct HealthQuery {
    pub standbyok: Option<String>,
    pub perfstandbyok: Option<String>,
    pub activecode: Option<String>,
    pub standbycode: Option<String>,
    pub sealedcode: Option<String>,
    pub uninitcode: Option<String>,
    pub drsecondarycode: Option<String>,
    pub performancestandbycode: Option<String>,
}

/// `GET /v1/sys/seal-status`, also the answer to `PUT /v1/sys/unseal`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SealStatusResponse {
    #[serde(rename = "type")]
    pub seal_type: String,
    pub initialized: bool,
    pub sealed: bool,
    /// Threshold of shares needed to unseal.
    pub t: u32,
    /// Number of shares.
    pub n: u32,
    pub progress: u32,
    pub nonce: String,
    pub recovery_seal: bool,
    /// The Vault version custos is compatible with ([`crate::VAULT_COMPATIBLE_VERSION`]).
    pub version: String,
    /// custos's own version ([`crate::VERSION`]).
    #[serde(default)]
    pub custos_version: String,
    #[serde(default)]
    pub build_date: String,
    pub migration: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    pub storage_type: String,
}

/// `GET /v1/sys/init`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct InitStatusResponse {
    pub initialized: bool,
}

/// `PUT /v1/sys/init`. Unknown fields are ignored, as Vault does.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct InitRequest {
    #[serde(default, deserialize_with = "nullable")]
    pub secret_shares: u32,
    #[serde(default, deserialize_with = "nullable")]
    pub secret_threshold: u32,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub pgp_keys: Vec<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub root_token_pgp_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_shares: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_shares: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_threshold: Option<u32>,
}

/// The answer to `PUT /v1/sys/init`: key shares in hex and base64, and the root token.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InitResponse {
    pub keys: Vec<String>,
    pub keys_base64: Vec<String>,
    pub root_token: String,
}

impl std::fmt::Debug for InitResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitResponse")
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

/// `PUT /v1/sys/unseal`.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct UnsealRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub reset: bool,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub migrate: bool,
    /// custos's own: the `nonce` of the round this submission belongs to, as `sys/seal-status`
    /// showed it. A submission (or reset) for a round that is no longer current is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

impl std::fmt::Debug for UnsealRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnsealRequest")
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("reset", &self.reset)
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

/// `GET /v1/sys/key-status`: Vault returns these fields both at the top level and in `data`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyStatus {
    pub term: u32,
    pub install_time: String,
    pub encryptions: u64,
}

/// `GET /v1/sys/leader`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LeaderResponse {
    pub ha_enabled: bool,
    pub is_self: bool,
    pub active_time: String,
    pub leader_address: String,
    pub leader_cluster_address: String,
}

/// `PUT /v1/sys/generate-root/attempt`: start an attempt with a one-time password as long as a
/// token (`otp_length`); without one the server generates it and answers it once in `otp`.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct GenerateRootInitRequest {
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub otp: String,
    /// Vault's PGP alternative to the OTP; custos refuses it.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "String::is_empty"
    )]
    pub pgp_key: String,
}

impl std::fmt::Debug for GenerateRootInitRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenerateRootInitRequest")
            .field("otp", &(!self.otp.is_empty()).then_some("<redacted>"))
            .finish_non_exhaustive()
    }
}

/// `PUT /v1/sys/generate-root/update`: one unseal key share (hex or base64) for the attempt
/// `nonce`.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct GenerateRootUpdateRequest {
    #[serde(default, deserialize_with = "nullable")]
    pub key: String,
    #[serde(default, deserialize_with = "nullable")]
    pub nonce: String,
}

impl std::fmt::Debug for GenerateRootUpdateRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenerateRootUpdateRequest")
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

/// The answer of `sys/generate-root/attempt` and `sys/generate-root/update`, Vault's shape.
/// On completion `encoded_token` (and `encoded_root_token`) is the new root token XOR'd with the
/// OTP, as unpadded standard base64; `bao operator generate-root -decode` reverses it.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct GenerateRootStatusResponse {
    #[serde(default)]
    pub nonce: String,
    #[serde(default)]
    pub started: bool,
    #[serde(default)]
    pub progress: u32,
    #[serde(default)]
    pub required: u32,
    #[serde(default)]
    pub complete: bool,
    #[serde(default)]
    pub encoded_token: String,
    #[serde(default)]
    pub encoded_root_token: String,
    #[serde(default)]
    pub pgp_fingerprint: String,
    #[serde(default)]
    pub otp: String,
    #[serde(default)]
    pub otp_length: u32,
}

impl std::fmt::Debug for GenerateRootStatusResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenerateRootStatusResponse")
            .field("nonce", &self.nonce)
            .field("started", &self.started)
            .field("progress", &self.progress)
            .field("required", &self.required)
            .field("complete", &self.complete)
            .finish_non_exhaustive()
    }
}

/// One item of the answer to `POST /v1/sys/leaks/github`, in GitHub's secret-scanning partner
/// format (the answer is a JSON array of these, without Vault's envelope).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct GithubLeakResult {
    /// SHA-256 of the reported string, lower-case hex.
    pub token_hash: String,
    /// The item's `type`, as GitHub sent it.
    pub token_type: String,
    /// `true_positive` (a live credential of this server, now revoked, or a root token marked
    /// leaked) or `false_positive`.
    pub label: String,
}

/// The headers GitHub signs its reports with.
pub const GITHUB_KEY_IDENTIFIER_HEADER: &str = "github-public-key-identifier";
pub const GITHUB_KEY_SIGNATURE_HEADER: &str = "github-public-key-signature";
