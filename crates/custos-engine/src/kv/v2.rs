//! KV version 2: versioned secrets with metadata, check-and-set, soft delete, undelete and
//! destroy, answering the paths, fields and messages of Vault's `kv` engine with `version=2`.
//!
//! Paths below the mount: `config`, `data/<path>`, `metadata/<path>`, `delete/<path>`,
//! `undelete/<path>`, `destroy/<path>` and `subkeys/<path>`.
//!
//! # Storage layout (keys relative to the mount's storage)
//!
//! - `config`: the mount's `Config` as JSON (`max_versions`, `cas_required`,
//!   `delete_version_after` in seconds, negative when disabled). Absent means all defaults.
//! - `meta/<path>`: the secret's `KeyMetadata` as JSON: settings, custom metadata, current and
//!   oldest version, and one entry per kept version (created/deletion time, destroyed flag).
//!   Listing `metadata/<folder>` walks these keys.
//! - `ver/<path>/<version>`: one version's data as JSON `{"data": {...}}`. The version is the
//!   last segment and is all digits, so the key names exactly one (path, version) pair.
//!   Destroying a version, trimming past `max_versions` and deleting the metadata remove these keys.
//!
//! Every change that touches several keys (a new version plus its metadata and the versions it
//! trims, destroy, metadata delete) is one storage transaction conditioned on the revisions of
//! `meta/<path>` and `config` read at its start. A concurrent change makes the commit fail with
//! [`EngineError::Conflict`]; the operation then starts over from a fresh read, so check-and-set
//! races have exactly one winner per version and no update is lost.
//!
//! # Expiry (beyond Vault)
//!
//! The custom metadata keys `expires_at` (an RFC 3339 time) and `rotation_period` (a duration such
//! as `720h`) are validated on write. A `data/` read of a secret whose `expires_at` has passed fails
//! with [`EngineError::Expired`] unless the request says `allow_expired=true`, and [`posture`] lists
//! the secrets that are expired, about to expire, or due for rotation.

use std::collections::BTreeMap;

use custos_storage::{Revision, Transaction};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::EngineError;
use crate::kv::{
    check_path_limits, decode, encode_limited, folder_prefix, format_go_duration, format_time,
    list_children, parse_bool, parse_duration_seconds, parse_go_duration, parse_int, unsupported,
};
use crate::logical::{
    LogicalBackend, LogicalRequest, LogicalResponse, MountContext, MountStorage, Operation,
};

#[cfg(test)]
mod tests;

const CONFIG_KEY: &str = "config";
const META_PREFIX: &str = "meta/";
const VERSION_PREFIX: &str = "ver/";
/// Versions kept when neither the key nor the mount sets `max_versions`.
const DEFAULT_MAX_VERSIONS: u32 = 10;
/// How often an operation starts over after losing a race before it gives up with `Conflict`.
const MAX_ATTEMPTS: usize = 100;
/// Vault's limits on `custom_metadata`.
const MAX_CUSTOM_METADATA_KEYS: usize = 64;
const MAX_CUSTOM_METADATA_KEY_LEN: usize = 128;
const MAX_CUSTOM_METADATA_VALUE_LEN: usize = 512;
const CUSTOM_METADATA_ERROR_PREFIX: &str = "custom_metadata validation failed";
/// The custom metadata keys of custos' expiry extension.
pub const EXPIRES_AT_KEY: &str = "expires_at";
pub const ROTATION_PERIOD_KEY: &str = "rotation_period";

/// The KV v2 secrets engine.
#[derive(Clone, Copy, Debug, Default)]
pub struct KvV2;

/// Timestamps are stored in the same RFC 3339 form Vault prints.
mod time_format {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(super) fn serialize<S: Serializer>(
        time: &Timestamp,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_str(time)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Timestamp, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(D::Error::custom)
    }

    pub(super) mod option {
        use jiff::Timestamp;
        use serde::{Deserialize, Deserializer, Serializer, de::Error};

        pub(in super::super) fn serialize<S: Serializer>(
            time: &Option<Timestamp>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match time {
                Some(time) => serializer.collect_str(time),
                None => serializer.serialize_none(),
            }
        }

        pub(in super::super) fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<Timestamp>, D::Error> {
            match Option::<String>::deserialize(deserializer)? {
                Some(text) => text.parse().map(Some).map_err(D::Error::custom),
                None => Ok(None),
            }
        }
    }
}

/// The mount-wide settings (`<mount>/config`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Config {
    /// 0 means the default of 10.
    max_versions: u32,
    cas_required: bool,
    /// Seconds; 0 means unset, negative means disabled.
    delete_version_after: i64,
}

/// What is known about one version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct VersionMeta {
    #[serde(with = "time_format")]
    created_time: Timestamp,
    /// Set by a soft delete, or in advance by `delete_version_after`. In the future means "not yet".
    #[serde(with = "time_format::option")]
    deletion_time: Option<Timestamp>,
    destroyed: bool,
}

impl VersionMeta {
    fn is_deleted(&self, now: Timestamp) -> bool {
        self.deletion_time.is_some_and(|deletion| deletion <= now)
    }

    /// Whether reading this version yields its data.
    fn is_live(&self, now: Timestamp) -> bool {
        !self.destroyed && !self.is_deleted(now)
    }
}

/// Everything about one secret except its data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct KeyMetadata {
    #[serde(with = "time_format")]
    created_time: Timestamp,
    #[serde(with = "time_format")]
    updated_time: Timestamp,
    current_version: u64,
    /// 0 until the version count first reaches `max_versions`, then
    /// `current_version - max_versions + 1`, as in Vault.
    oldest_version: u64,
    /// 0 means "use the mount's setting".
    max_versions: u32,
    cas_required: bool,
    /// Seconds; 0 means unset.
    delete_version_after: i64,
    custom_metadata: Option<BTreeMap<String, String>>,
    versions: BTreeMap<u64, VersionMeta>,
}

impl KeyMetadata {
    fn new(now: Timestamp) -> KeyMetadata {
        KeyMetadata {
            created_time: now,
            updated_time: now,
            current_version: 0,
            oldest_version: 0,
            max_versions: 0,
            cas_required: false,
            delete_version_after: 0,
            custom_metadata: None,
            versions: BTreeMap::new(),
        }
    }

    /// `null` when unset or empty, as Vault answers (it drops an empty map).
    fn custom_metadata_json(&self) -> Value {
        match &self.custom_metadata {
            None => Value::Null,
            Some(map) if map.is_empty() => Value::Null,
            Some(map) => Value::Object(
                map.iter()
                    .map(|(key, value)| (key.clone(), Value::String(value.clone())))
                    .collect(),
            ),
        }
    }

    fn custom(&self, key: &str) -> Option<&str> {
        self.custom_metadata
            .as_ref()
            .and_then(|map| map.get(key))
            .map(String::as_str)
    }

    fn expires_at(&self) -> Option<Timestamp> {
        self.custom(EXPIRES_AT_KEY)
            .and_then(|text| text.parse::<Timestamp>().ok())
    }

    fn rotation_period(&self) -> Option<SignedDuration> {
        let nanos = parse_go_duration(self.custom(ROTATION_PERIOD_KEY)?).ok()?;
        let nanos = i64::try_from(nanos).ok()?;
        (nanos > 0).then(|| SignedDuration::from_nanos(nanos))
    }

    /// The per-version fields Vault returns from `data/` reads and writes.
    fn version_json(&self, version: u64, meta: &VersionMeta) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert(
            "created_time".into(),
            Value::String(format_time(meta.created_time)),
        );
        map.insert("custom_metadata".into(), self.custom_metadata_json());
        map.insert(
            "deletion_time".into(),
            Value::String(meta.deletion_time.map(format_time).unwrap_or_default()),
        );
        map.insert("destroyed".into(), Value::Bool(meta.destroyed));
        map.insert("version".into(), Value::from(version));
        map
    }

    /// The whole record as `metadata/<path>` reads it.
    fn to_json(&self) -> Map<String, Value> {
        let mut versions = Map::new();
        for (number, meta) in &self.versions {
            let mut entry = Map::new();
            entry.insert(
                "created_time".into(),
                Value::String(format_time(meta.created_time)),
            );
            entry.insert(
                "deletion_time".into(),
                Value::String(meta.deletion_time.map(format_time).unwrap_or_default()),
            );
            entry.insert("destroyed".into(), Value::Bool(meta.destroyed));
            versions.insert(number.to_string(), Value::Object(entry));
        }
        let mut map = Map::new();
        map.insert("cas_required".into(), Value::Bool(self.cas_required));
        map.insert(
            "created_time".into(),
            Value::String(format_time(self.created_time)),
        );
        map.insert("current_version".into(), Value::from(self.current_version));
        map.insert("custom_metadata".into(), self.custom_metadata_json());
        map.insert(
            "delete_version_after".into(),
            Value::String(format_go_duration(self.delete_version_after)),
        );
        map.insert("max_versions".into(), Value::from(self.max_versions));
        map.insert("oldest_version".into(), Value::from(self.oldest_version));
        map.insert(
            "updated_time".into(),
            Value::String(format_time(self.updated_time)),
        );
        map.insert("versions".into(), Value::Object(versions));
        map
    }

    /// Records a new version created at `now` and trims the oldest ones past the effective
    /// `max_versions`. Returns the new version number and the trimmed version numbers, whose data
    /// the caller deletes in the same transaction.
    fn add_version(
        &mut self,
        config: &Config,
        now: Timestamp,
    ) -> Result<(u64, Vec<u64>), EngineError> {
        let number = self.current_version.checked_add(1).ok_or_else(|| {
            EngineError::InvalidRequest("the secret has too many versions".into())
        })?;
        let deletion_time = scheduled_deletion(now, config, self);
        self.versions.insert(
            number,
            VersionMeta {
                created_time: now,
                deletion_time,
                destroyed: false,
            },
        );
        self.current_version = number;
        self.updated_time = now;
        let max_versions = if self.max_versions != 0 {
            self.max_versions
        } else if config.max_versions != 0 {
            config.max_versions
        } else {
            DEFAULT_MAX_VERSIONS
        };
        // Vault's sliding window: once `current_version - oldest_version` reaches the limit,
        // `oldest_version` becomes `current_version - max_versions + 1` and everything older is
        // trimmed. Since `oldest_version` starts at 0, it moves to 1 when the count first reaches
        // the limit, before anything is trimmed, as Vault reports it.
        let mut trimmed = Vec::new();
        if number.saturating_sub(self.oldest_version) >= u64::from(max_versions) {
            let newest_to_delete = number - u64::from(max_versions);
            let kept = self.versions.split_off(&(newest_to_delete + 1));
            trimmed.extend(self.versions.keys().copied());
            self.versions = kept;
            self.oldest_version = newest_to_delete + 1;
        }
        Ok((number, trimmed))
    }
}

/// When a version created at `created` is deleted by `delete_version_after`: the smaller non-zero
/// of the mount's and the key's setting, as Vault computes it at write time.
fn scheduled_deletion(
    created: Timestamp,
    config: &Config,
    meta: &KeyMetadata,
) -> Option<Timestamp> {
    if config.delete_version_after < 0 {
        return None;
    }
    let (mount, key) = (config.delete_version_after, meta.delete_version_after);
    if mount == 0 && key == 0 {
        return None;
    }
    let mut delay = key;
    if (mount != 0 && mount < delay) || delay == 0 {
        delay = mount;
    }
    created.checked_add(SignedDuration::from_secs(delay)).ok()
}

/// One version's data, stored at `ver/<path>/<version>`.
#[derive(Serialize, Deserialize)]
struct VersionRecord {
    data: Map<String, Value>,
}

fn meta_key(path: &str) -> String {
    format!("{META_PREFIX}{path}")
}

fn version_key(path: &str, version: u64) -> String {
    format!("{VERSION_PREFIX}{path}/{version}")
}

/// The config and one secret's metadata, with the revisions they were read at.
struct Snapshot {
    config: Config,
    config_revision: Option<Revision>,
    meta: Option<KeyMetadata>,
    meta_revision: Option<Revision>,
}

impl Snapshot {
    async fn load(storage: &MountStorage, path: &str) -> Result<Snapshot, EngineError> {
        let (config, config_revision) = load_config(storage).await?;
        let key = meta_key(path);
        let (meta, meta_revision) = match storage.get(&key).await? {
            Some(entry) => (Some(decode(&key, &entry.value)?), Some(entry.revision)),
            None => (None, None),
        };
        Ok(Snapshot {
            config,
            config_revision,
            meta,
            meta_revision,
        })
    }

    /// A transaction that only commits if neither the config nor the metadata changed since.
    fn guard(&self, path: &str) -> Transaction {
        Transaction::new()
            .require_unchanged(CONFIG_KEY, self.config_revision)
            .require_unchanged(meta_key(path), self.meta_revision)
    }
}

/// One secret's metadata, for reads that do not depend on the mount's config.
async fn load_meta(storage: &MountStorage, path: &str) -> Result<Option<KeyMetadata>, EngineError> {
    let key = meta_key(path);
    match storage.get(&key).await? {
        Some(entry) => Ok(Some(decode(&key, &entry.value)?)),
        None => Ok(None),
    }
}

async fn load_config(storage: &MountStorage) -> Result<(Config, Option<Revision>), EngineError> {
    match storage.get(CONFIG_KEY).await? {
        Some(entry) => Ok((decode(CONFIG_KEY, &entry.value)?, Some(entry.revision))),
        None => Ok((Config::default(), None)),
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, EngineError> {
    serde_json::to_vec(value)
        .map_err(|error| EngineError::Internal(format!("encoding kv metadata: {error}")))
}

async fn read_version(
    storage: &MountStorage,
    path: &str,
    version: u64,
) -> Result<Map<String, Value>, EngineError> {
    let key = version_key(path, version);
    let entry = storage
        .get(&key)
        .await?
        .ok_or_else(|| EngineError::Internal(format!("kv version data {key:?} is missing")))?;
    Ok(decode::<VersionRecord>(&key, &entry.value)?.data)
}

/// Commits `txn`; `Ok(false)` when it lost a race and the operation should start over.
async fn try_commit(storage: &MountStorage, txn: Transaction) -> Result<bool, EngineError> {
    match storage.commit(txn).await {
        Ok(_) => Ok(true),
        Err(EngineError::Conflict) => {
            tokio::task::yield_now().await;
            Ok(false)
        }
        Err(error) => Err(error),
    }
}

fn gave_up() -> EngineError {
    tracing::warn!(
        attempts = MAX_ATTEMPTS,
        "kv write kept losing races, giving up"
    );
    EngineError::Conflict
}

fn missing(data: Map<String, Value>) -> Option<LogicalResponse> {
    Some(LogicalResponse {
        data: Some(data),
        missing: true,
        ..LogicalResponse::default()
    })
}

/// Vault's answer to a path outside the KV v2 endpoints (typically a KV v1-style `<mount>/<key>`):
/// 404 with a normal body (data null) whose warning names the `vault kv` subcommand to use.
fn invalid_path(operation: Operation) -> Option<LogicalResponse> {
    let subcommand = match operation {
        Operation::Read => "get",
        Operation::List => "list",
        Operation::Create | Operation::Update => "put",
        Operation::Patch => "patch",
        Operation::Delete => "delete",
    };
    Some(LogicalResponse {
        data: None,
        warnings: vec![format!(
            "Invalid path for a versioned K/V secrets engine. See the API docs for the appropriate \
             API endpoints to use. If using the Vault CLI, use 'vault kv {subcommand}' for this \
             operation."
        )],
        missing: true,
        ..LogicalResponse::default()
    })
}

/// Vault's answer to a PATCH of a secret that does not exist: 404 with an empty body.
fn patch_target_missing() -> Option<LogicalResponse> {
    Some(LogicalResponse {
        data: None,
        missing: true,
        ..LogicalResponse::default()
    })
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The `version` parameter of a read: `None` for "the current one".
fn requested_version(request: &LogicalRequest) -> Result<Option<u64>, EngineError> {
    match request.field("version") {
        None | Some(Value::Null) => Ok(None),
        Some(value) => {
            let version = parse_int("version", &value)?;
            Ok(u64::try_from(version).ok().filter(|version| *version > 0))
        }
    }
}

/// The `data` field of a write: required, and a JSON object.
fn data_field(request: &LogicalRequest) -> Result<Map<String, Value>, EngineError> {
    match request.data.as_ref().and_then(|body| body.get("data")) {
        None | Some(Value::Null) => Err(EngineError::InvalidRequest("no data provided".into())),
        Some(Value::Object(data)) => Ok(data.clone()),
        Some(other) => Err(EngineError::InvalidRequest(format!(
            "\"data\" must be a JSON object, got {}",
            type_name(other)
        ))),
    }
}

/// The `options.cas` field of a write, weakly typed as Vault decodes it.
fn cas_option(request: &LogicalRequest) -> Result<Option<i64>, EngineError> {
    let options = match request.data.as_ref().and_then(|body| body.get("options")) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(options)) => options,
        Some(other) => {
            return Err(EngineError::InvalidRequest(format!(
                "\"options\" must be a JSON object, got {}",
                type_name(other)
            )));
        }
    };
    let parse_error =
        || EngineError::InvalidRequest("error parsing check-and-set parameter".into());
    match options.get("cas") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(0)),
        Some(Value::Bool(flag)) => Ok(Some(i64::from(*flag))),
        Some(value @ (Value::Number(_) | Value::String(_))) => {
            parse_int("cas", value).map(Some).map_err(|_| parse_error())
        }
        Some(_) => Err(parse_error()),
    }
}

fn check_cas(config: &Config, meta: &KeyMetadata, cas: Option<i64>) -> Result<(), EngineError> {
    match cas {
        Some(cas) => {
            if u64::try_from(cas).ok() != Some(meta.current_version) {
                return Err(EngineError::InvalidRequest(
                    "check-and-set parameter did not match the current version".into(),
                ));
            }
        }
        None => {
            if config.cas_required || meta.cas_required {
                return Err(EngineError::InvalidRequest(
                    "check-and-set parameter required for this call".into(),
                ));
            }
        }
    }
    Ok(())
}

/// Fails a read of an expired secret unless the caller allows it.
fn check_expiry(
    request: &LogicalRequest,
    path: &str,
    meta: &KeyMetadata,
    now: Timestamp,
) -> Result<(), EngineError> {
    let Some(expires_at) = meta.expires_at() else {
        return Ok(());
    };
    if expires_at > now {
        return Ok(());
    }
    let allowed = match request.field("allow_expired") {
        None | Some(Value::Null) => false,
        Some(value) => parse_bool("allow_expired", &value)?,
    };
    if allowed {
        return Ok(());
    }
    Err(EngineError::Expired(format!(
        "secret {path:?} expired at {}; read it with allow_expired=true to override",
        format_time(expires_at)
    )))
}

/// RFC 7396 JSON merge patch: objects merge key by key, `null` removes a key, anything else
/// replaces the target.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// The key structure of `data` with every leaf replaced by `null`, down to `depth` levels
/// (0 means all of them).
fn subkeys(data: &Map<String, Value>, depth: u64, level: u64) -> Map<String, Value> {
    data.iter()
        .map(|(key, value)| {
            let value = match value {
                Value::Object(inner) if depth == 0 || level < depth => {
                    Value::Object(subkeys(inner, depth, level + 1))
                }
                _ => Value::Null,
            };
            (key.clone(), value)
        })
        .collect()
}

/// A list of version numbers as Vault's `TypeCommaIntSlice` accepts it: `[1, 2]`, `"1,2"` or `3`.
fn versions_field(request: &LogicalRequest) -> Result<Vec<u64>, EngineError> {
    let numbers = match request.field("versions") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| parse_int("versions", item))
            .collect::<Result<Vec<_>, _>>()?,
        Some(Value::String(text)) => text
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(|part| parse_int("versions", &Value::String(part.to_owned())))
            .collect::<Result<Vec<_>, _>>()?,
        Some(value @ Value::Number(_)) => vec![parse_int("versions", &value)?],
        Some(other) => {
            return Err(EngineError::InvalidRequest(format!(
                "\"versions\" must be a list of version numbers, got {}",
                type_name(&other)
            )));
        }
    };
    if numbers.is_empty() {
        return Err(EngineError::InvalidRequest(
            "no version number provided".into(),
        ));
    }
    // Negative numbers name no version; they are skipped like unknown ones.
    Ok(numbers
        .into_iter()
        .filter_map(|number| u64::try_from(number).ok())
        .collect())
}

/// Turns a request's `custom_metadata` into strings, as Vault's weak decoding does. In a patch,
/// `null` means "remove this key" and comes back as `None`.
fn custom_metadata_field(
    value: &Value,
    patch: bool,
) -> Result<BTreeMap<String, Option<String>>, EngineError> {
    let Value::Object(map) = value else {
        return Err(EngineError::InvalidRequest(format!(
            "{CUSTOM_METADATA_ERROR_PREFIX}: custom_metadata must be an object of strings, got {}",
            type_name(value)
        )));
    };
    let mut out = BTreeMap::new();
    for (key, value) in map {
        let text = match value {
            Value::Null if patch => None,
            Value::Null => Some(String::new()),
            Value::String(text) => Some(text.clone()),
            Value::Bool(flag) => Some(if *flag { "1".into() } else { "0".into() }),
            Value::Number(number) => Some(number.to_string()),
            Value::Array(_) | Value::Object(_) => {
                return Err(EngineError::InvalidRequest(format!(
                    "{CUSTOM_METADATA_ERROR_PREFIX}: value for key {key:?} must be a string, got {}",
                    type_name(value)
                )));
            }
        };
        out.insert(key.clone(), text);
    }
    Ok(out)
}

fn printable(text: &str) -> bool {
    !text.chars().any(char::is_control)
}

/// Checks Vault's limits on custom metadata and custos' expiry keys; the error lists every
/// problem in Vault's multi-error format.
fn validate_custom_metadata(map: &BTreeMap<String, String>) -> Result<(), EngineError> {
    let mut problems = Vec::new();
    if map.len() > MAX_CUSTOM_METADATA_KEYS {
        problems.push(format!(
            "{CUSTOM_METADATA_ERROR_PREFIX}: payload must contain at most {MAX_CUSTOM_METADATA_KEYS} keys, provided {}",
            map.len()
        ));
    }
    for (key, value) in map {
        if key.is_empty() || key.len() > MAX_CUSTOM_METADATA_KEY_LEN {
            problems.push(format!(
                "{CUSTOM_METADATA_ERROR_PREFIX}: length of key {key:?} is {} but must be 0 < len(key) <= {MAX_CUSTOM_METADATA_KEY_LEN}",
                key.len()
            ));
        }
        if value.is_empty() || value.len() > MAX_CUSTOM_METADATA_VALUE_LEN {
            problems.push(format!(
                "{CUSTOM_METADATA_ERROR_PREFIX}: length of value for key {key:?} is {} but must be 0 < len(value) <= {MAX_CUSTOM_METADATA_VALUE_LEN}",
                value.len()
            ));
        }
        if !printable(key) {
            problems.push(format!(
                "{CUSTOM_METADATA_ERROR_PREFIX}: key {key:?} ({key}) contains unprintable characters"
            ));
        }
        if !printable(value) {
            problems.push(format!(
                "{CUSTOM_METADATA_ERROR_PREFIX}: value for key {key:?} contains unprintable characters"
            ));
        }
    }
    if let Some(expires_at) = map.get(EXPIRES_AT_KEY)
        && expires_at.parse::<Timestamp>().is_err()
    {
        problems.push(format!(
            "{CUSTOM_METADATA_ERROR_PREFIX}: {EXPIRES_AT_KEY} {expires_at:?} is not an RFC 3339 time such as \"2030-01-31T00:00:00Z\""
        ));
    }
    if let Some(period) = map.get(ROTATION_PERIOD_KEY)
        && !parse_go_duration(period).is_ok_and(|nanos| nanos > 0)
    {
        problems.push(format!(
            "{CUSTOM_METADATA_ERROR_PREFIX}: {ROTATION_PERIOD_KEY} {period:?} is not a positive duration such as \"720h\""
        ));
    }
    if problems.is_empty() {
        return Ok(());
    }
    let count = problems.len();
    let mut message = if count == 1 {
        "1 error occurred:\n".to_owned()
    } else {
        format!("{count} errors occurred:\n")
    };
    for problem in problems {
        message.push_str("\t* ");
        message.push_str(&problem);
        message.push('\n');
    }
    message.push('\n');
    Err(EngineError::InvalidRequest(message))
}

/// The settings a `metadata/` write or patch may change.
struct MetadataChange {
    max_versions: Option<u32>,
    cas_required: Option<bool>,
    delete_version_after: Option<i64>,
    custom_metadata: Option<BTreeMap<String, Option<String>>>,
}

impl MetadataChange {
    /// `mount_config` is true for the mount's `config`, where a negative `delete_version_after`
    /// means "disabled"; a secret's metadata refuses it, as Vault does.
    fn parse(
        request: &LogicalRequest,
        patch: bool,
        mount_config: bool,
    ) -> Result<MetadataChange, EngineError> {
        let field = |name: &str| request.field(name).filter(|value| !value.is_null());
        let max_versions = field("max_versions")
            .map(|value| {
                let number = parse_int("max_versions", &value)?;
                u32::try_from(number).map_err(|_| {
                    EngineError::InvalidRequest(format!(
                        "max_versions must be between 0 and {}, got {number}",
                        u32::MAX
                    ))
                })
            })
            .transpose()?;
        let cas_required = field("cas_required")
            .map(|value| parse_bool("cas_required", &value))
            .transpose()?;
        let delete_version_after = field("delete_version_after")
            .map(|value| {
                let seconds = parse_duration_seconds("delete_version_after", &value)?;
                if seconds < 0 && !mount_config {
                    // Vault's message; a negative delay would make every later version deleted
                    // (unreadable) the moment it is written.
                    return Err(EngineError::InvalidRequest(format!(
                        "error converting input for field \"delete_version_after\": cannot provide negative value '{seconds}'"
                    )));
                }
                Ok(seconds)
            })
            .transpose()?;
        let custom_metadata = field("custom_metadata")
            .map(|value| custom_metadata_field(&value, patch))
            .transpose()?;
        Ok(MetadataChange {
            max_versions,
            cas_required,
            delete_version_after,
            custom_metadata,
        })
    }

    fn is_empty(&self) -> bool {
        self.max_versions.is_none()
            && self.cas_required.is_none()
            && self.delete_version_after.is_none()
            && self.custom_metadata.is_none()
    }

    /// Applies the change; a write replaces `custom_metadata`, a patch merges into it.
    fn apply(&self, meta: &mut KeyMetadata, patch: bool) -> Result<(), EngineError> {
        if let Some(max_versions) = self.max_versions {
            meta.max_versions = max_versions;
        }
        if let Some(cas_required) = self.cas_required {
            meta.cas_required = cas_required;
        }
        if let Some(delete_version_after) = self.delete_version_after {
            meta.delete_version_after = delete_version_after;
        }
        if let Some(change) = &self.custom_metadata {
            let mut custom = if patch {
                meta.custom_metadata.clone().unwrap_or_default()
            } else {
                BTreeMap::new()
            };
            for (key, value) in change {
                match value {
                    Some(value) => {
                        custom.insert(key.clone(), value.clone());
                    }
                    None => {
                        custom.remove(key);
                    }
                }
            }
            validate_custom_metadata(&custom)?;
            meta.custom_metadata = Some(custom);
        }
        Ok(())
    }
}

/// Splits `data/app/db` into the endpoint (`data`) and the secret path (`app/db`).
fn split_endpoint(path: &str) -> (&str, &str) {
    path.split_once('/').unwrap_or((path, ""))
}

/// A secret path fit for anything but listing: non-empty, not a folder.
fn is_secret_path(path: &str) -> bool {
    !path.is_empty() && !path.ends_with('/')
}

#[async_trait::async_trait]
impl LogicalBackend for KvV2 {
    /// `data/` and `metadata/` writes create when the secret has no metadata yet, as Vault's
    /// KV v2 existence checks decide; the other endpoints always update.
    async fn exists(
        &self,
        ctx: &MountContext,
        request: &LogicalRequest,
    ) -> Result<Option<bool>, EngineError> {
        let (endpoint, path) = split_endpoint(&request.path);
        if !matches!(endpoint, "data" | "metadata") || !is_secret_path(path) {
            return Ok(None);
        }
        Ok(Some(ctx.storage.get(&meta_key(path)).await?.is_some()))
    }

    #[tracing::instrument(skip_all, fields(operation = ?request.operation))]
    async fn handle(
        &self,
        ctx: &MountContext,
        request: LogicalRequest,
    ) -> Result<Option<LogicalResponse>, EngineError> {
        let full_path = request.path.clone();
        let (endpoint, path) = split_endpoint(&full_path);
        if endpoint == "metadata" && request.operation == Operation::List {
            let prefix = format!("{META_PREFIX}{}", folder_prefix(path));
            return list_children(&ctx.storage, &prefix).await;
        }
        if endpoint == "config" && path.is_empty() {
            return handle_config(ctx, &request).await;
        }
        if !matches!(
            endpoint,
            "data" | "metadata" | "delete" | "undelete" | "destroy" | "subkeys"
        ) {
            return Ok(invalid_path(request.operation));
        }
        check_path_limits(path)?;
        if !is_secret_path(path) {
            return match request.operation {
                Operation::Read => Ok(None),
                operation => Err(unsupported(operation, &full_path)),
            };
        }
        match (endpoint, request.operation) {
            ("data", Operation::Read) => read_data(ctx, &request, path).await,
            ("data", Operation::Create | Operation::Update) => {
                write_data(ctx, &request, path).await
            }
            ("data", Operation::Patch) => patch_data(ctx, &request, path).await,
            ("data", Operation::Delete) => delete_latest(ctx, path).await,
            ("metadata", Operation::Read) => read_metadata(ctx, path).await,
            ("metadata", Operation::Create | Operation::Update) => {
                write_metadata(ctx, &request, path, false).await
            }
            ("metadata", Operation::Patch) => write_metadata(ctx, &request, path, true).await,
            ("metadata", Operation::Delete) => delete_metadata(ctx, path).await,
            ("delete" | "undelete" | "destroy", Operation::Create | Operation::Update) => {
                change_versions(ctx, &request, endpoint, path).await
            }
            ("subkeys", Operation::Read) => read_subkeys(ctx, &request, path).await,
            (_, operation) => Err(unsupported(operation, &full_path)),
        }
    }
}

async fn handle_config(
    ctx: &MountContext,
    request: &LogicalRequest,
) -> Result<Option<LogicalResponse>, EngineError> {
    match request.operation {
        Operation::Read => {
            let (config, _) = load_config(&ctx.storage).await?;
            let mut data = Map::new();
            data.insert("cas_required".into(), Value::Bool(config.cas_required));
            data.insert(
                "delete_version_after".into(),
                Value::String(format_go_duration(config.delete_version_after)),
            );
            data.insert("max_versions".into(), Value::from(config.max_versions));
            Ok(Some(LogicalResponse::data(data)))
        }
        Operation::Create | Operation::Update | Operation::Patch => {
            // The mount's settings have the same names and types as a secret's.
            let MetadataChange {
                max_versions,
                cas_required,
                delete_version_after,
                ..
            } = MetadataChange::parse(request, false, true)?;
            for _ in 0..MAX_ATTEMPTS {
                let (mut config, revision) = load_config(&ctx.storage).await?;
                if let Some(max_versions) = max_versions {
                    config.max_versions = max_versions;
                }
                if let Some(cas_required) = cas_required {
                    config.cas_required = cas_required;
                }
                if let Some(delete_version_after) = delete_version_after {
                    // Any negative value disables it, as in Vault.
                    config.delete_version_after = delete_version_after.max(-1);
                }
                let txn = Transaction::new()
                    .require_unchanged(CONFIG_KEY, revision)
                    .put(CONFIG_KEY, encode(&config)?);
                if try_commit(&ctx.storage, txn).await? {
                    return Ok(Some(LogicalResponse::no_content()));
                }
            }
            Err(gave_up())
        }
        operation => Err(unsupported(operation, "config")),
    }
}

async fn read_data(
    ctx: &MountContext,
    request: &LogicalRequest,
    path: &str,
) -> Result<Option<LogicalResponse>, EngineError> {
    let version = requested_version(request)?;
    let Some(meta) = load_meta(&ctx.storage, path).await? else {
        return Ok(None);
    };
    check_expiry(request, path, &meta, ctx.now)?;
    let number = version.unwrap_or(meta.current_version);
    let Some(version_meta) = meta.versions.get(&number) else {
        return Ok(None);
    };
    let mut body = Map::new();
    body.insert("data".into(), Value::Null);
    body.insert(
        "metadata".into(),
        Value::Object(meta.version_json(number, version_meta)),
    );
    if !version_meta.is_live(ctx.now) {
        return Ok(missing(body));
    }
    let data = read_version(&ctx.storage, path, number).await?;
    body.insert("data".into(), Value::Object(data));
    Ok(Some(LogicalResponse::data(body)))
}

/// Writes `data` as a new version on top of `snapshot`; `Ok(None)` when it lost a race.
async fn commit_new_version(
    ctx: &MountContext,
    path: &str,
    snapshot: &Snapshot,
    mut meta: KeyMetadata,
    record: Vec<u8>,
) -> Result<Option<LogicalResponse>, EngineError> {
    let (number, trimmed) = meta.add_version(&snapshot.config, ctx.now)?;
    let mut txn = snapshot
        .guard(path)
        .put(version_key(path, number), record)
        .put(meta_key(path), encode(&meta)?);
    for version in &trimmed {
        txn = txn.delete(version_key(path, *version));
    }
    if !try_commit(&ctx.storage, txn).await? {
        return Ok(None);
    }
    tracing::debug!(
        version = number,
        trimmed = trimmed.len(),
        "kv v2 version written"
    );
    let version_meta = meta
        .versions
        .get(&number)
        .ok_or_else(|| EngineError::Internal("new kv version missing from metadata".into()))?;
    Ok(Some(LogicalResponse::data(
        meta.version_json(number, version_meta),
    )))
}

async fn write_data(
    ctx: &MountContext,
    request: &LogicalRequest,
    path: &str,
) -> Result<Option<LogicalResponse>, EngineError> {
    let data = data_field(request)?;
    let cas = cas_option(request)?;
    let record = encode_limited(&VersionRecord { data }, ctx.max_value_bytes)?;
    for _ in 0..MAX_ATTEMPTS {
        let snapshot = Snapshot::load(&ctx.storage, path).await?;
        let meta = snapshot
            .meta
            .clone()
            .unwrap_or_else(|| KeyMetadata::new(ctx.now));
        check_cas(&snapshot.config, &meta, cas)?;
        if let Some(response) =
            commit_new_version(ctx, path, &snapshot, meta, record.clone()).await?
        {
            return Ok(Some(response));
        }
    }
    Err(gave_up())
}

async fn patch_data(
    ctx: &MountContext,
    request: &LogicalRequest,
    path: &str,
) -> Result<Option<LogicalResponse>, EngineError> {
    let patch = Value::Object(data_field(request)?);
    let cas = cas_option(request)?;
    for _ in 0..MAX_ATTEMPTS {
        let snapshot = Snapshot::load(&ctx.storage, path).await?;
        let Some(meta) = snapshot.meta.clone() else {
            return Ok(patch_target_missing());
        };
        check_cas(&snapshot.config, &meta, cas)?;
        let current = meta.current_version;
        let Some(version_meta) = meta.versions.get(&current) else {
            return Ok(patch_target_missing());
        };
        if !version_meta.is_live(ctx.now) {
            return Ok(missing(meta.version_json(current, version_meta)));
        }
        let mut merged = Value::Object(read_version(&ctx.storage, path, current).await?);
        merge_patch(&mut merged, &patch);
        let Value::Object(data) = merged else {
            return Err(EngineError::Internal(
                "merge patch produced a non-object".into(),
            ));
        };
        let record = encode_limited(&VersionRecord { data }, ctx.max_value_bytes)?;
        if let Some(response) = commit_new_version(ctx, path, &snapshot, meta, record).await? {
            return Ok(Some(response));
        }
    }
    Err(gave_up())
}

async fn delete_latest(
    ctx: &MountContext,
    path: &str,
) -> Result<Option<LogicalResponse>, EngineError> {
    for _ in 0..MAX_ATTEMPTS {
        let snapshot = Snapshot::load(&ctx.storage, path).await?;
        let Some(mut meta) = snapshot.meta.clone() else {
            return Ok(Some(LogicalResponse::no_content()));
        };
        let current = meta.current_version;
        match meta.versions.get_mut(&current) {
            Some(version_meta) if version_meta.is_live(ctx.now) => {
                version_meta.deletion_time = Some(ctx.now);
            }
            _ => return Ok(Some(LogicalResponse::no_content())),
        }
        let txn = snapshot.guard(path).put(meta_key(path), encode(&meta)?);
        if try_commit(&ctx.storage, txn).await? {
            return Ok(Some(LogicalResponse::no_content()));
        }
    }
    Err(gave_up())
}

/// `delete/`, `undelete/` and `destroy/` with a list of versions.
async fn change_versions(
    ctx: &MountContext,
    request: &LogicalRequest,
    endpoint: &str,
    path: &str,
) -> Result<Option<LogicalResponse>, EngineError> {
    let versions = versions_field(request)?;
    for _ in 0..MAX_ATTEMPTS {
        let snapshot = Snapshot::load(&ctx.storage, path).await?;
        let Some(mut meta) = snapshot.meta.clone() else {
            return Ok(Some(LogicalResponse::no_content()));
        };
        let undeleted_deletion = scheduled_deletion(ctx.now, &snapshot.config, &meta);
        let mut txn = snapshot.guard(path);
        for number in &versions {
            let Some(version_meta) = meta.versions.get_mut(number) else {
                continue;
            };
            if version_meta.destroyed {
                continue;
            }
            match endpoint {
                "delete" => {
                    if !version_meta.is_deleted(ctx.now) {
                        version_meta.deletion_time = Some(ctx.now);
                    }
                }
                // As Vault does, an undeleted version is scheduled for deletion again,
                // `delete_version_after` from now.
                "undelete" => version_meta.deletion_time = undeleted_deletion,
                _ => {
                    version_meta.destroyed = true;
                    txn = txn.delete(version_key(path, *number));
                }
            }
        }
        if Some(&meta) == snapshot.meta.as_ref() {
            return Ok(Some(LogicalResponse::no_content()));
        }
        txn = txn.put(meta_key(path), encode(&meta)?);
        if try_commit(&ctx.storage, txn).await? {
            tracing::debug!(
                endpoint,
                versions = versions.len(),
                "kv v2 versions changed"
            );
            return Ok(Some(LogicalResponse::no_content()));
        }
    }
    Err(gave_up())
}

async fn read_metadata(
    ctx: &MountContext,
    path: &str,
) -> Result<Option<LogicalResponse>, EngineError> {
    Ok(load_meta(&ctx.storage, path)
        .await?
        .map(|meta| LogicalResponse::data(meta.to_json())))
}

async fn write_metadata(
    ctx: &MountContext,
    request: &LogicalRequest,
    path: &str,
    patch: bool,
) -> Result<Option<LogicalResponse>, EngineError> {
    let change = MetadataChange::parse(request, patch, false)?;
    for _ in 0..MAX_ATTEMPTS {
        let snapshot = Snapshot::load(&ctx.storage, path).await?;
        let mut meta = match (snapshot.meta.clone(), patch) {
            (Some(meta), _) => meta,
            (None, true) => return Ok(None),
            (None, false) => {
                // Vault answers a write without any setting before looking at the key.
                if change.is_empty() {
                    return Ok(Some(LogicalResponse::no_content()));
                }
                KeyMetadata::new(ctx.now)
            }
        };
        change.apply(&mut meta, patch)?;
        let mut response = LogicalResponse::no_content();
        if change.cas_required == Some(false) && snapshot.config.cas_required {
            response.warnings.push(
                "\"cas_required\" set to false, but is mandated by backend config. This value will be ignored."
                    .into(),
            );
        }
        if Some(&meta) == snapshot.meta.as_ref() {
            return Ok(Some(response));
        }
        let txn = snapshot.guard(path).put(meta_key(path), encode(&meta)?);
        if try_commit(&ctx.storage, txn).await? {
            return Ok(Some(response));
        }
    }
    Err(gave_up())
}

async fn delete_metadata(
    ctx: &MountContext,
    path: &str,
) -> Result<Option<LogicalResponse>, EngineError> {
    for _ in 0..MAX_ATTEMPTS {
        let snapshot = Snapshot::load(&ctx.storage, path).await?;
        let Some(meta) = &snapshot.meta else {
            return Ok(Some(LogicalResponse::no_content()));
        };
        let mut txn = snapshot.guard(path);
        for number in meta.versions.keys() {
            txn = txn.delete(version_key(path, *number));
        }
        txn = txn.delete(meta_key(path));
        if try_commit(&ctx.storage, txn).await? {
            tracing::debug!(versions = meta.versions.len(), "kv v2 secret deleted");
            return Ok(Some(LogicalResponse::no_content()));
        }
    }
    Err(gave_up())
}

async fn read_subkeys(
    ctx: &MountContext,
    request: &LogicalRequest,
    path: &str,
) -> Result<Option<LogicalResponse>, EngineError> {
    let version = requested_version(request)?;
    let depth = match request.field("depth") {
        None | Some(Value::Null) => 0,
        Some(value) => {
            let depth = parse_int("depth", &value)?;
            u64::try_from(depth).map_err(|_| {
                EngineError::InvalidRequest("depth must be a non-negative integer".into())
            })?
        }
    };
    let Some(meta) = load_meta(&ctx.storage, path).await? else {
        return Ok(None);
    };
    let number = version.unwrap_or(meta.current_version);
    let Some(version_meta) = meta.versions.get(&number) else {
        return Ok(None);
    };
    let mut body = Map::new();
    body.insert(
        "metadata".into(),
        Value::Object(meta.version_json(number, version_meta)),
    );
    body.insert("subkeys".into(), Value::Null);
    if !version_meta.is_live(ctx.now) {
        return Ok(missing(body));
    }
    let data = read_version(&ctx.storage, path, number).await?;
    body.insert("subkeys".into(), Value::Object(subkeys(&data, depth, 1)));
    Ok(Some(LogicalResponse::data(body)))
}

/// Why a secret shows up in the [`posture`] report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PostureReason {
    /// `expires_at` has passed.
    Expired,
    /// `expires_at` is within the window asked for.
    Expiring,
    /// The current version is older than `rotation_period`.
    RotationDue,
}

impl PostureReason {
    /// The wire name: `expired`, `expiring`, `rotation_due`.
    pub fn as_str(self) -> &'static str {
        match self {
            PostureReason::Expired => "expired",
            PostureReason::Expiring => "expiring",
            PostureReason::RotationDue => "rotation_due",
        }
    }
}

/// One finding of the [`posture`] report. A secret that is both expired and due for rotation
/// appears twice, once per reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostureEntry {
    /// The secret's path below the mount (without `data/`).
    pub path: String,
    pub reason: PostureReason,
    pub expires_at: Option<Timestamp>,
    /// When the current version was written.
    pub last_rotated: Option<Timestamp>,
}

impl PostureEntry {
    /// The entry as JSON, with times in Vault's format and `null` when unknown.
    pub fn to_json(&self) -> Map<String, Value> {
        let time = |time: Option<Timestamp>| {
            time.map_or(Value::Null, |time| Value::String(format_time(time)))
        };
        let mut map = Map::new();
        map.insert("path".into(), Value::String(self.path.clone()));
        map.insert("reason".into(), Value::String(self.reason.as_str().into()));
        map.insert("expires_at".into(), time(self.expires_at));
        map.insert("last_rotated".into(), time(self.last_rotated));
        map
    }
}

/// Lists the secrets of a KV v2 mount that are expired, expire within `within` of `now`, or whose
/// current version is older than their `rotation_period`; sorted by path.
pub async fn posture(
    storage: &MountStorage,
    now: Timestamp,
    within: SignedDuration,
) -> Result<Vec<PostureEntry>, EngineError> {
    let horizon = now.checked_add(within).unwrap_or(Timestamp::MAX);
    let mut entries = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = storage.list(META_PREFIX, after.as_deref(), 1000).await?;
        for key in &page.keys {
            let Some(path) = key.strip_prefix(META_PREFIX) else {
                continue;
            };
            let Some(entry) = storage.get(key).await? else {
                continue;
            };
            let meta: KeyMetadata = decode(key, &entry.value)?;
            let expires_at = meta.expires_at();
            let last_rotated = meta
                .versions
                .get(&meta.current_version)
                .map(|version| version.created_time);
            let finding = |reason| PostureEntry {
                path: path.to_owned(),
                reason,
                expires_at,
                last_rotated,
            };
            if let Some(expires_at) = expires_at {
                if expires_at <= now {
                    entries.push(finding(PostureReason::Expired));
                } else if expires_at <= horizon {
                    entries.push(finding(PostureReason::Expiring));
                }
            }
            if let (Some(period), Some(rotated)) = (meta.rotation_period(), last_rotated)
                && rotated.checked_add(period).is_ok_and(|due| due <= now)
            {
                entries.push(finding(PostureReason::RotationDue));
            }
        }
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    Ok(entries)
}

/// Where KV v1 keeps its secrets (see `v1.rs`): `data/<path>`, one JSON object each.
const LEGACY_PREFIX: &str = "data/";

/// Converts the KV v1 secrets left in a mount upgraded to v2 (`sys/mounts/<path>/tune` with
/// `options.version` 2) into version 1 of v2 secrets, created at `now`, as Vault's upgrade does.
///
/// Each secret is converted in one transaction (its version, its metadata, the removal of its v1
/// key) conditioned on the v1 key being unchanged and the v2 metadata being absent, so nothing is
/// lost and an interrupted upgrade is resumed by running this again. A secret that already has v2
/// metadata (written after the upgrade began) keeps its v1 key, with a warning in the log.
/// Returns how many secrets were converted.
pub(crate) async fn upgrade_from_v1(
    storage: &MountStorage,
    now: Timestamp,
) -> Result<u64, EngineError> {
    let mut converted = 0;
    let mut after: Option<String> = None;
    loop {
        let page = storage.list(LEGACY_PREFIX, after.as_deref(), 500).await?;
        let Some(last) = page.keys.last().cloned() else {
            break;
        };
        for key in &page.keys {
            if convert_legacy(storage, key, now).await? {
                converted += 1;
            }
        }
        after = Some(last);
    }
    Ok(converted)
}

/// Converts one v1 secret at `key`; `Ok(false)` when it was left as it is.
async fn convert_legacy(
    storage: &MountStorage,
    key: &str,
    now: Timestamp,
) -> Result<bool, EngineError> {
    let Some(path) = key.strip_prefix(LEGACY_PREFIX) else {
        return Ok(false);
    };
    for _ in 0..MAX_ATTEMPTS {
        let Some(entry) = storage.get(key).await? else {
            return Ok(false);
        };
        if storage.get(&meta_key(path)).await?.is_some() {
            tracing::warn!(
                "kv upgrade: a v1 secret was left unconverted because the path already has v2 data"
            );
            return Ok(false);
        }
        let data: Map<String, Value> = decode(key, &entry.value)?;
        let mut meta = KeyMetadata::new(now);
        meta.current_version = 1;
        meta.oldest_version = 1;
        meta.versions.insert(
            1,
            VersionMeta {
                created_time: now,
                deletion_time: None,
                destroyed: false,
            },
        );
        let txn = Transaction::new()
            .require_unchanged(key, Some(entry.revision))
            .require_unchanged(meta_key(path), None)
            .put(version_key(path, 1), encode(&VersionRecord { data })?)
            .put(meta_key(path), encode(&meta)?)
            .delete(key);
        if try_commit(storage, txn).await? {
            return Ok(true);
        }
    }
    Err(gave_up())
}
