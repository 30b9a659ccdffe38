//! The `apikeys` secrets engine: keyrings of API keys that custos issues, stores only as keyed
//! hashes, and verifies at gateway speed (`docs/apikeys.md`).
//!
//! - `model.rs`: what is stored, and how request fields become stored values;
//! - `state.rs`: the in-memory index (hash → key, with live counters), built once per unsealing
//!   and kept current by every change, this node's and (through the change feed) other nodes';
//! - `verify.rs`: `POST verify`, which reads the index only;
//! - `usage.rs`: uses, last use and analytics, written behind in batches;
//! - `endpoints.rs`: keyrings, keys, reroll, permissions and roles, config, analytics.
//!
//! The mount's index lives in the engine's [`MountStates`](crate::logical::MountStates) under
//! the mount's uuid, so it survives from request to request and is dropped with the unsealing.

mod endpoints;
mod fast;
mod model;
mod state;
mod usage;
mod verify;

#[cfg(test)]
mod tests;

use std::sync::{Arc, RwLock};

use serde_json::Map;

use crate::logical::{
    LogicalBackend, LogicalRequest, LogicalResponse, MountContext, MountStorage, Operation,
};
use crate::{Engine, EngineError, Invalidation, Unsealed};

pub(crate) use state::Index;

/// The engine type name (`sys/mounts`).
pub(crate) const KIND: &str = "apikeys";

/// The per-mount state: the index, built on first need.
#[derive(Default)]
pub(crate) struct ApiKeysMount {
    index: RwLock<Option<Arc<Index>>>,
    building: tokio::sync::Mutex<()>,
}

impl ApiKeysMount {
    /// The index if it is built.
    pub(crate) fn built(&self) -> Option<Arc<Index>> {
        self.index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The index, built from storage first if it is not yet.
    pub(crate) async fn index(&self, storage: &MountStorage) -> Result<Arc<Index>, EngineError> {
        if let Some(index) = self.built() {
            return Ok(index);
        }
        let _building = self.building.lock().await;
        if let Some(index) = self.built() {
            return Ok(index);
        }
        let index = Arc::new(Index::build(storage.clone()).await?);
        *self
            .index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(index.clone());
        Ok(index)
    }
}

/// The backend (stateless: its state is the mount's [`ApiKeysMount`]).
pub(crate) struct ApiKeys;

fn mount_state(ctx: &MountContext) -> Result<Arc<ApiKeysMount>, EngineError> {
    ctx.states
        .get_or_insert_with(&ctx.mount_uuid, ApiKeysMount::default)
}

fn body(request: &LogicalRequest) -> Map<String, serde_json::Value> {
    request.data.clone().unwrap_or_default()
}

#[async_trait::async_trait]
impl LogicalBackend for ApiKeys {
    async fn handle(
        &self,
        ctx: &MountContext,
        request: LogicalRequest,
    ) -> Result<Option<LogicalResponse>, EngineError> {
        let mount = mount_state(ctx)?;
        let index = mount.index(&ctx.storage).await?;
        let now = ctx.now.as_second();
        let segments: Vec<&str> = request.path.split('/').collect();
        let write = matches!(request.operation, Operation::Create | Operation::Update);
        match (request.operation, segments.as_slice()) {
            (Operation::Create | Operation::Update, ["verify"]) => {
                verify_request(&index, ctx, &request).await.map(Some)
            }
            (_, ["verify"]) => Err(EngineError::MethodNotAllowed),
            (Operation::Read, ["config"]) => Ok(Some(endpoints::config_answer(&index.config()))),
            (_, ["config"]) if write => endpoints::write_config(&index, &body(&request))
                .await
                .map(Some),
            (Operation::List, ["keyrings"] | ["keyrings", ""]) => {
                endpoints::list_keyrings(&index).await.map(Some)
            }
            (Operation::Read, ["keyrings", name]) => {
                endpoints::read_keyring_answer(&index, name).await
            }
            (_, ["keyrings", name]) if write => {
                endpoints::write_keyring(&index, name, &body(&request), now)
                    .await
                    .map(Some)
            }
            (Operation::Delete, ["keyrings", name]) => {
                endpoints::delete_keyring(&index, name).await?;
                Ok(Some(LogicalResponse::no_content()))
            }
            (Operation::List, ["keyrings", ring, "keys"] | ["keyrings", ring, "keys", ""]) => {
                endpoints::list_keys(&index, ring, &request.query).await
            }
            (_, ["keyrings", ring, "keys"]) if write => {
                endpoints::create_key(&index, ring, &body(&request), now)
                    .await
                    .map(Some)
            }
            (Operation::Read, ["keyrings", ring, "keys", id]) => {
                endpoints::read_key_answer(&index, ring, id).await
            }
            (_, ["keyrings", ring, "keys", id]) if write => {
                endpoints::update_key(&index, ring, id, &body(&request), now)
                    .await
                    .map(Some)
            }
            (Operation::Delete, ["keyrings", ring, "keys", id]) => {
                endpoints::delete_key(&index, ring, id).await?;
                Ok(Some(LogicalResponse::no_content()))
            }
            (_, ["keyrings", ring, "keys", id, "reroll"]) if write => {
                endpoints::reroll_key(&index, ring, id, &body(&request), now)
                    .await
                    .map(Some)
            }
            (
                _,
                [
                    "keyrings",
                    ring,
                    "keys",
                    id,
                    which @ ("permissions" | "roles"),
                ],
            ) if write => endpoints::edit_list(&index, ring, id, which, &body(&request), now)
                .await
                .map(Some),
            (Operation::Read, ["keyrings", ring, "analytics"]) => {
                endpoints::analytics(&index, ring, &request.query, now).await
            }
            (
                _,
                ["config"]
                | ["keyrings"]
                | ["keyrings", _]
                | ["keyrings", _, "keys" | "analytics"]
                | ["keyrings", _, "keys", _]
                | ["keyrings", _, "keys", _, "reroll" | "permissions" | "roles"],
            ) => Err(EngineError::MethodNotAllowed),
            _ => Ok(None),
        }
    }

    async fn exists(
        &self,
        ctx: &MountContext,
        request: &LogicalRequest,
    ) -> Result<Option<bool>, EngineError> {
        let segments: Vec<&str> = request.path.split('/').collect();
        match segments.as_slice() {
            // Creating a keyring needs `create`, changing one `update`.
            ["keyrings", name] => Ok(Some(
                ctx.storage
                    .get(&format!("{}{name}", model::KEYRINGS))
                    .await?
                    .is_some(),
            )),
            // Adding a key to a keyring is creating something.
            ["keyrings", _, "keys"] => Ok(Some(false)),
            _ => Ok(None),
        }
    }
}

/// `POST verify`.
async fn verify_request(
    index: &Index,
    ctx: &MountContext,
    request: &LogicalRequest,
) -> Result<LogicalResponse, EngineError> {
    let verdict = verify_with(
        index,
        request.data.as_ref(),
        ctx.feed_lost,
        ctx.now.as_millisecond(),
    )
    .await?;
    Ok(LogicalResponse::data(verify::answer(&verdict)))
}

/// Verifies the key a request body names, at `now_ms`. With `feed_lost`, other nodes' changes
/// may have been missed, so the key is looked up in storage too.
pub(crate) async fn verify_with(
    index: &Index,
    data: Option<&Map<String, serde_json::Value>>,
    feed_lost: bool,
    now_ms: i64,
) -> Result<verify::Verdict, EngineError> {
    let parsed = verify::VerifyRequest::parse(data)?;
    let mut entry = verify::find(index, &parsed.key);
    if feed_lost {
        // Other nodes' changes may be missed: ask storage about this key.
        entry = match entry {
            Some(found) => {
                index.reload_key(&found.id).await?;
                index.by_id(&found.id)
            }
            None => match verify::classify(index, &parsed.key) {
                verify::Lookup::Nothing => None,
                verify::Lookup::Ours(hash) => {
                    index.find_in_storage(model::HashKind::Hmac, &hash).await?
                }
                verify::Lookup::Foreign => {
                    index
                        .find_in_storage(model::HashKind::Sha256, &verify::sha256(&parsed.key))
                        .await?
                }
            },
        };
    }
    Ok(verify::check(index, entry.as_ref(), &parsed, now_ms))
}

/// What a flush of every API-key mount wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApiKeysFlush {
    /// Usage records written (uses left, last use).
    pub usage_records: usize,
    /// Hourly analytics records written.
    pub analytics_records: usize,
    /// Rerolled keys whose grace ended, deleted.
    pub expired_keys: usize,
}

/// How often expired analytics are looked for.
const RETENTION_SWEEP_SECONDS: i64 = 3600;

impl Engine {
    /// Writes what API-key verifications spent and counted (uses left, last use, analytics) and
    /// deletes rerolled keys whose grace ended. The binary calls it every second; sealing calls
    /// it one last time, so a clean shutdown loses no use.
    pub async fn flush_apikeys(&self) -> Result<ApiKeysFlush, EngineError> {
        let unsealed = self.unsealed().ok_or(EngineError::Sealed)?;
        flush_all(&unsealed, self.now().as_second()).await
    }

    /// Revokes a leaked API key of any `apikeys` mount: `Some(key_id)` when it was one of ours.
    pub(crate) async fn revoke_leaked_api_key(
        &self,
        unsealed: &Unsealed,
        key: &str,
    ) -> Result<Option<String>, EngineError> {
        let mounts = apikeys_mounts(unsealed);
        for entry in mounts {
            let storage = MountStorage::new(unsealed.barrier.clone(), &entry.uuid);
            let mount = unsealed
                .mount_states
                .get_or_insert_with(&entry.uuid, ApiKeysMount::default)?;
            let index = mount.index(&storage).await?;
            let Some(found) = verify::find(&index, key) else {
                continue;
            };
            let record = found.lock().compiled.record.clone();
            endpoints::revoke_record(&index, &record, None).await?;
            {
                let mut live = found.lock();
                state::count(
                    &mut live.counts,
                    state::hour_of(self.now().as_second()),
                    state::Code::Leaked,
                );
            }
            index.mark_dirty(&found);
            tracing::warn!(
                mount = %entry.path,
                keyring = %record.keyring,
                key_id = %record.id,
                "leaked API key revoked"
            );
            return Ok(Some(record.id));
        }
        Ok(None)
    }
}

pub(crate) async fn flush_all(unsealed: &Unsealed, now: i64) -> Result<ApiKeysFlush, EngineError> {
    let live: Vec<String> = apikeys_mounts(unsealed)
        .into_iter()
        .map(|entry| entry.uuid)
        .collect();
    let mut total = ApiKeysFlush::default();
    let mut first_error = None;
    for (uuid, mount) in unsealed.mount_states.all::<ApiKeysMount>() {
        if !live.contains(&uuid) {
            // The mount was disabled: its data is gone, and so is its state.
            unsealed.mount_states.remove(&uuid);
            continue;
        }
        let Some(index) = mount.built() else {
            continue;
        };
        match index.flush().await {
            Ok(flushed) => {
                total.usage_records += flushed.usage_records;
                total.analytics_records += flushed.analytics_records;
            }
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
        match index.expire_graced(now).await {
            Ok(expired) => total.expired_keys += expired,
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
        if index.retention_sweep_due(now, RETENTION_SWEEP_SECONDS)
            && let Err(error) = index.expire_analytics(now).await
        {
            first_error.get_or_insert(error);
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(total),
    }
}

/// The mounts of this engine type, as the mount table has them now.
fn apikeys_mounts(unsealed: &Unsealed) -> Vec<crate::MountEntry> {
    unsealed
        .mounts()
        .entries
        .iter()
        .filter(|entry| entry.kind == KIND)
        .cloned()
        .collect()
}

/// Brings the indexes up to date with a message of the change feed.
pub(crate) async fn apply_invalidation(unsealed: &Unsealed, invalidation: &Invalidation) {
    match invalidation {
        Invalidation::Keys { keys, .. } => {
            for key in keys {
                let Some(rest) = key.strip_prefix("logical/") else {
                    continue;
                };
                let Some((uuid, relative)) = rest.split_once('/') else {
                    continue;
                };
                let Some(mount) = unsealed.mount_states.get::<ApiKeysMount>(uuid) else {
                    continue;
                };
                let Some(index) = mount.built() else {
                    continue;
                };
                if let Err(error) = index.apply_change(relative).await {
                    tracing::warn!(%error, "API key index: a change could not be applied; the mount's index is rebuilt");
                    mount.forget();
                }
            }
        }
        // Anything may have changed: every index reads storage again, keeping its counters.
        Invalidation::All { .. } => {
            for (_, mount) in unsealed.mount_states.all::<ApiKeysMount>() {
                if let Some(index) = mount.built()
                    && let Err(error) = index.reload_all().await
                {
                    tracing::warn!(%error, "API key index: reload failed; the mount's index is rebuilt");
                    mount.forget();
                }
            }
        }
        // Verifications read storage while the feed is down (`MountContext::feed_lost`).
        Invalidation::Lost => {}
    }
}

impl ApiKeysMount {
    /// Drops the index (its unflushed counters with it): the next request builds it again.
    pub(crate) fn forget(&self) {
        *self
            .index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }
}

/// Builds the indexes of every `apikeys` mount, so the first verification after an unseal
/// does not wait for it.
pub(crate) async fn warm(unsealed: &Unsealed) {
    let mounts = apikeys_mounts(unsealed);
    for entry in mounts {
        let storage = MountStorage::new(unsealed.barrier.clone(), &entry.uuid);
        let built = match unsealed
            .mount_states
            .get_or_insert_with(&entry.uuid, ApiKeysMount::default)
        {
            Ok(mount) => mount.index(&storage).await.map(drop),
            Err(error) => Err(error),
        };
        if let Err(error) = built {
            tracing::warn!(mount = %entry.path, %error, "API key index could not be built at unseal; the first request builds it");
        }
    }
}
