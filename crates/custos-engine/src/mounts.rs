//! The mount table: which secrets engine serves which path prefix.
//!
//! Stored behind the barrier at `core/mounts` as JSON, changed only with a compare-and-swap on
//! that key, and cached in memory. Each mount has a random UUID; its data lives under
//! `logical/<uuid>/`, so renaming a mount (`sys/remount`) moves no data and disabling one deletes
//! exactly its keys.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use custos_storage::Revision;
use serde::{Deserialize, Serialize};

use crate::logical::LogicalBackend;
use crate::{EngineError, Unsealed};

pub(crate) const MOUNTS_PATH: &str = "core/mounts";

/// Paths no mount may take or shadow.
const RESERVED: [&str; 4] = ["sys/", "auth/", "cubbyhole/", "identity/"];

/// Tunable settings of a mount, as `sys/mounts` reports them.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct MountConfig {
    #[serde(default)]
    pub default_lease_ttl: u64,
    #[serde(default)]
    pub max_lease_ttl: u64,
    #[serde(default)]
    pub force_no_cache: bool,
    /// Request keys the audit log keeps in clear (Vault's `audit_non_hmac_request_keys`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audit_non_hmac_request_keys: Vec<String>,
    /// Response keys the audit log keeps in clear.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audit_non_hmac_response_keys: Vec<String>,
    /// `""`, `"hidden"` or `"unauth"`; stored and reported, the UI listing is not filtered by it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub listing_visibility: String,
    /// Request headers passed to the engine; stored and reported.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub passthrough_request_headers: Vec<String>,
    /// Response headers the engine may set; stored and reported.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_response_headers: Vec<String>,
}

impl MountConfig {
    /// The optional settings, each only when set, as Vault reports them (`omitempty`).
    pub(crate) fn optional_json(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut out = serde_json::Map::new();
        let lists = [
            (
                "audit_non_hmac_request_keys",
                &self.audit_non_hmac_request_keys,
            ),
            (
                "audit_non_hmac_response_keys",
                &self.audit_non_hmac_response_keys,
            ),
            (
                "passthrough_request_headers",
                &self.passthrough_request_headers,
            ),
            ("allowed_response_headers", &self.allowed_response_headers),
        ];
        for (name, list) in lists {
            if !list.is_empty() {
                out.insert(name.into(), serde_json::json!(list));
            }
        }
        if !self.listing_visibility.is_empty() {
            out.insert(
                "listing_visibility".into(),
                serde_json::Value::String(self.listing_visibility.clone()),
            );
        }
        out
    }
}

/// One mounted engine.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct MountEntry {
    /// With a trailing slash: `secret/`.
    pub path: String,
    /// Engine type: `kv`.
    #[serde(rename = "type")]
    pub kind: String,
    pub description: String,
    pub uuid: String,
    pub accessor: String,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    #[serde(default)]
    pub config: MountConfig,
    #[serde(default)]
    pub local: bool,
    #[serde(default)]
    pub seal_wrap: bool,
}

/// How many `sys/remount` moves the table remembers for `sys/remount/status/<id>`.
pub(crate) const MIGRATIONS_KEPT: usize = 32;

/// One finished `sys/remount` move (mount paths with their trailing slash).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Migration {
    pub(crate) id: String,
    pub(crate) source: String,
    pub(crate) target: String,
}

/// The whole table, as stored.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct MountTable {
    pub(crate) version: u32,
    pub(crate) entries: Vec<MountEntry>,
    /// The latest moves, oldest first. Kept in the table so that a move is recorded in the same
    /// commit that makes it, and its status answers on every node and after a restart.
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    pub(crate) migrations: VecDeque<Migration>,
    /// The storage revision this copy was read or written at (`None`: never stored).
    #[serde(skip)]
    pub(crate) revision: Option<Revision>,
}

impl MountTable {
    /// An empty table, as before the first mount.
    pub(crate) fn empty() -> MountTable {
        MountTable {
            version: 1,
            entries: Vec::new(),
            migrations: VecDeque::new(),
            revision: None,
        }
    }

    /// Reads the stored table (an empty one when none is stored yet).
    pub(crate) async fn load(barrier: &crate::Barrier) -> Result<MountTable, EngineError> {
        MountTable::load_at(barrier, MOUNTS_PATH).await
    }

    /// Writes the table to `key` if it is still as read (absent, for a table never stored):
    /// `Ok(false)` when another writer changed it first, to be read again. On success the
    /// table carries its new revision.
    pub(crate) async fn store_at(
        &mut self,
        barrier: &crate::Barrier,
        key: &str,
    ) -> Result<bool, EngineError> {
        let stored = barrier
            .put_table_if_unchanged(
                key,
                &*self,
                self.revision,
                custos_storage::Transaction::new(),
            )
            .await?;
        if stored.is_some() {
            self.revision = stored;
        }
        Ok(stored.is_some())
    }

    /// Reads a table of this shape stored at `key` (the mount table, the auth table).
    pub(crate) async fn load_at(
        barrier: &crate::Barrier,
        key: &str,
    ) -> Result<MountTable, EngineError> {
        Ok(match barrier.get_table::<MountTable>(key).await? {
            Some((mut table, revision)) => {
                table.revision = Some(revision);
                table
            }
            None => MountTable::empty(),
        })
    }
}

/// Reloads the mount table from storage: another node may have changed it.
pub(crate) async fn reload(unsealed: &Unsealed) -> Result<(), EngineError> {
    let table = MountTable::load(&unsealed.barrier).await?;
    unsealed.set_mounts(table);
    Ok(())
}

impl MountTable {
    /// The mount with the longest path that prefixes `path`.
    pub(crate) fn route(&self, path: &str) -> Option<&MountEntry> {
        self.entries
            .iter()
            .filter(|entry| {
                path.starts_with(&entry.path) || entry.path.strip_suffix('/') == Some(path)
            })
            .max_by_key(|entry| entry.path.len())
    }

    pub(crate) fn find(&self, path: &str) -> Option<&MountEntry> {
        self.entries.iter().find(|entry| entry.path == path)
    }

    /// Refuses a new mount path that is reserved, taken, or nested in or around another mount.
    pub(crate) fn check_free(&self, path: &str) -> Result<(), EngineError> {
        if RESERVED
            .iter()
            .any(|reserved| path.starts_with(reserved) || reserved.starts_with(path))
        {
            return Err(EngineError::InvalidRequest(format!(
                "cannot mount at {path:?}: the path is reserved"
            )));
        }
        if let Some(existing) = self
            .entries
            .iter()
            .find(|entry| path.starts_with(&entry.path) || entry.path.starts_with(path))
        {
            return Err(EngineError::InvalidRequest(format!(
                "path is already in use at {}",
                existing.path
            )));
        }
        Ok(())
    }
}

/// Normalises a mount path: no leading slash, exactly one trailing slash, validated segments.
pub(crate) fn normalize_mount_path(path: &str) -> Result<String, EngineError> {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return Err(EngineError::InvalidRequest("mount path is empty".into()));
    }
    crate::pipeline::validate_path(trimmed)?;
    Ok(format!("{trimmed}/"))
}

/// Engine types custos can mount, and the backend serving a mount.
pub(crate) fn backend_for(entry: &MountEntry) -> Result<Arc<dyn LogicalBackend>, EngineError> {
    match entry.kind.as_str() {
        "kv" => match entry.options.get("version").map(String::as_str) {
            None | Some("1") | Some("") => Ok(Arc::new(crate::kv::v1::KvV1)),
            Some("2") => Ok(Arc::new(crate::kv::v2::KvV2)),
            Some(other) => Err(EngineError::InvalidRequest(format!(
                "kv version {other:?} is not supported (use 1 or 2)"
            ))),
        },
        crate::apikeys::KIND => Ok(Arc::new(crate::apikeys::ApiKeys)),
        other => Err(EngineError::InvalidRequest(format!(
            "plugin not found in the catalog: {other}"
        ))),
    }
}

/// The description Vault's dev mode gives its `secret/` mount of this type.
pub(crate) fn default_description(kind: &str) -> &'static str {
    match kind {
        "kv" => "key/value secret storage",
        crate::apikeys::KIND => "API keys",
        _ => "",
    }
}
