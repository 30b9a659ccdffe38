//! KV version 1: one unversioned JSON object per path, as Vault's `kv` engine with `version=1`.
//!
//! Storage layout (relative to the mount): `data/<path>` holds the secret as a JSON object.
//! The `data/` prefix keeps room for engine bookkeeping keys beside the secrets.
//!
//! A read answers `lease_duration` as Vault does: the secret's own `ttl` (or, without one, its
//! `lease`) field when it parses as a duration, else the mount's `default_lease_ttl`, else the
//! system default of 768h. Vault Agent and consul-template refresh on that schedule.

use serde_json::{Map, Value};

use crate::EngineError;
use crate::kv::{
    check_path_limits, decode, encode_limited, folder_prefix, list_children,
    parse_duration_seconds, unsupported,
};
use crate::logical::{LogicalBackend, LogicalRequest, LogicalResponse, MountContext, Operation};

/// Where the secrets live below the mount.
const DATA_PREFIX: &str = "data/";

/// Vault's system default lease TTL (768h), used when neither the secret nor the mount sets one.
pub const SYSTEM_DEFAULT_LEASE_TTL: u64 = 768 * 3600;

/// The `lease_duration` of a read of `secret` on a mount whose default lease TTL is
/// `mount_default` (0: unset). A `ttl` or `lease` that does not parse is ignored, as in Vault;
/// it is not capped by the mount's maximum either.
fn lease_duration(secret: &Map<String, Value>, mount_default: u64) -> u64 {
    let own = secret
        .get("ttl")
        .or_else(|| secret.get("lease"))
        .and_then(|value| parse_duration_seconds("ttl", value).ok())
        .and_then(|seconds| u64::try_from(seconds).ok())
        .filter(|seconds| *seconds > 0);
    own.unwrap_or(if mount_default > 0 {
        mount_default
    } else {
        SYSTEM_DEFAULT_LEASE_TTL
    })
}

/// The KV v1 secrets engine.
#[derive(Clone, Copy, Debug, Default)]
pub struct KvV1;

fn storage_key(path: &str) -> String {
    format!("{DATA_PREFIX}{path}")
}

#[async_trait::async_trait]
impl LogicalBackend for KvV1 {
    #[tracing::instrument(skip_all, fields(operation = ?request.operation))]
    /// A secret exists when its key is stored (as in Vault's KV v1).
    async fn exists(
        &self,
        ctx: &MountContext,
        request: &LogicalRequest,
    ) -> Result<Option<bool>, EngineError> {
        let path = request.path.as_str();
        if path.is_empty() || path.ends_with('/') {
            return Ok(None);
        }
        Ok(Some(ctx.storage.get(&storage_key(path)).await?.is_some()))
    }

    async fn handle(
        &self,
        ctx: &MountContext,
        request: LogicalRequest,
    ) -> Result<Option<LogicalResponse>, EngineError> {
        let path = request.path.as_str();
        check_path_limits(path)?;
        if request.operation == Operation::List {
            let prefix = format!("{DATA_PREFIX}{}", folder_prefix(path));
            return list_children(&ctx.storage, &prefix).await;
        }
        // A path ending in `/` names a folder, and only listing makes sense for folders.
        if path.is_empty() || path.ends_with('/') {
            return match request.operation {
                Operation::Read => Ok(None),
                operation => Err(unsupported(operation, path)),
            };
        }
        match request.operation {
            Operation::Read => {
                let key = storage_key(path);
                let Some(entry) = ctx.storage.get(&key).await? else {
                    return Ok(None);
                };
                let secret: Map<String, Value> = decode(&key, &entry.value)?;
                let lease = lease_duration(&secret, ctx.config.default_lease_ttl);
                let mut answer = LogicalResponse::data(secret);
                answer.lease_duration = lease;
                Ok(Some(answer))
            }
            Operation::Create | Operation::Update => {
                let secret = match request.data {
                    Some(secret) if !secret.is_empty() => secret,
                    _ => {
                        return Err(EngineError::InvalidRequest("missing data fields".into()));
                    }
                };
                let bytes = encode_limited(&secret, ctx.max_value_bytes)?;
                ctx.storage.put(&storage_key(path), bytes).await?;
                tracing::debug!("kv v1 secret written");
                Ok(Some(LogicalResponse::no_content()))
            }
            Operation::Delete => {
                ctx.storage.delete(&storage_key(path)).await?;
                Ok(Some(LogicalResponse::no_content()))
            }
            operation @ (Operation::Patch | Operation::List) => Err(unsupported(operation, path)),
        }
    }
}
