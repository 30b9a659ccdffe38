//! Logical `sys/` endpoints served through the pipeline: mounts, remount, the UI mount lookup.
//!
//! The seal life cycle endpoints (`sys/init`, `sys/unseal`, ...) are not here: they must work
//! while sealed, before any token exists, and have their own engine methods.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::logical::{LogicalResponse, Operation};
use crate::mounts::{self, Migration, MountConfig, MountEntry, MountTable};
use crate::pipeline::{Request, object};
use crate::{Engine, EngineError, Unsealed};

/// The built-in `sys/` mount, reported like Vault's.
fn system_mount_json() -> Value {
    json!({
        "accessor": "system",
        "config": {"default_lease_ttl": 0, "force_no_cache": false, "max_lease_ttl": 0},
        "description": "system endpoints used for control, policy and debugging",
        "external_entropy_access": false,
        "local": false,
        "options": null,
        "plugin_version": "",
        "running_plugin_version": concat!("v", env!("CARGO_PKG_VERSION"), "+builtin.custos"),
        "running_sha256": "",
        "seal_wrap": true,
        "type": "system",
        "uuid": "00000000-0000-0000-0000-000000000000",
    })
}

/// What `sys/mounts` and `sys/auth` report alike for an entry of their tables; each adds
/// `options` (and `deprecation_status`) in its own way.
pub(crate) fn entry_json(entry: &MountEntry) -> Map<String, Value> {
    let mut config = entry.config.optional_json();
    config.insert(
        "default_lease_ttl".into(),
        json!(entry.config.default_lease_ttl),
    );
    config.insert("force_no_cache".into(), json!(entry.config.force_no_cache));
    config.insert("max_lease_ttl".into(), json!(entry.config.max_lease_ttl));
    let mut out = Map::new();
    out.insert("accessor".into(), json!(entry.accessor));
    out.insert("config".into(), Value::Object(config));
    out.insert("description".into(), json!(entry.description));
    out.insert("external_entropy_access".into(), json!(false));
    out.insert("local".into(), json!(entry.local));
    out.insert("plugin_version".into(), json!(""));
    out.insert(
        "running_plugin_version".into(),
        json!(concat!("v", env!("CARGO_PKG_VERSION"), "+builtin.custos")),
    );
    out.insert("running_sha256".into(), json!(""));
    out.insert("seal_wrap".into(), json!(entry.seal_wrap));
    out.insert("type".into(), json!(entry.kind));
    out.insert("uuid".into(), json!(entry.uuid));
    out
}

pub(crate) fn mount_json(entry: &MountEntry) -> Value {
    let mut out = entry_json(entry);
    out.insert("deprecation_status".into(), json!("supported"));
    // Vault reports `{}` for a mount without options (and omits them from `tune`).
    out.insert("options".into(), json!(entry.options));
    Value::Object(out)
}

/// What a `tune` read of an entry reports alike for `sys/mounts` and `sys/auth`: its TTLs as
/// they apply (zero shown as the system default), `force_no_cache`, `description` and the
/// optional settings.
pub(crate) fn tune_json(entry: &MountEntry) -> Map<String, Value> {
    let mut data = entry.config.optional_json();
    data.insert(
        "default_lease_ttl".into(),
        json!(effective_ttl(entry.config.default_lease_ttl)),
    );
    data.insert(
        "max_lease_ttl".into(),
        json!(effective_ttl(entry.config.max_lease_ttl)),
    );
    data.insert("force_no_cache".into(), json!(entry.config.force_no_cache));
    data.insert("description".into(), json!(entry.description));
    data
}

/// Applies a tune request's settings and `description` to an entry of either table.
pub(crate) fn tune_entry(
    entry: &mut MountEntry,
    data: &Map<String, Value>,
    description: Option<&str>,
) -> Result<(), EngineError> {
    entry.config = tune_config(data, entry.config.clone())?;
    if let Some(description) = description {
        description.clone_into(&mut entry.description);
    }
    Ok(())
}

/// Deletes everything a mount (or auth method) stored, page by page. Its entry is already out
/// of its table, so nothing new lands under its prefix meanwhile.
pub(crate) async fn delete_mount_data(
    barrier: &std::sync::Arc<crate::Barrier>,
    uuid: &str,
) -> Result<(), EngineError> {
    let storage = crate::logical::MountStorage::new(barrier.clone(), uuid);
    loop {
        let page = storage.list("", None, 500).await?;
        if page.keys.is_empty() {
            return Ok(());
        }
        let mut txn = custos_storage::Transaction::new();
        for key in page.keys {
            txn = txn.delete(key);
        }
        storage.commit(txn).await?;
    }
}

pub(crate) fn string_field(
    data: &Map<String, Value>,
    name: &str,
) -> Result<Option<String>, EngineError> {
    match data.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err(EngineError::InvalidRequest(format!(
            "{name} must be a string, not {other}"
        ))),
    }
}

pub(crate) fn bool_field(
    data: &Map<String, Value>,
    name: &str,
) -> Result<Option<bool>, EngineError> {
    match data.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(flag)) => Ok(Some(*flag)),
        Some(Value::String(text)) => text
            .parse()
            .map(Some)
            .map_err(|_| EngineError::InvalidRequest(format!("{name} must be a boolean"))),
        Some(_) => Err(EngineError::InvalidRequest(format!(
            "{name} must be a boolean"
        ))),
    }
}

pub(crate) fn options_field(
    data: &Map<String, Value>,
) -> Result<BTreeMap<String, String>, EngineError> {
    match data.get("options") {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(options)) => options
            .iter()
            .map(|(key, value)| match value {
                Value::String(text) => Ok((key.clone(), text.clone())),
                Value::Number(number) => Ok((key.clone(), number.to_string())),
                _ => Err(EngineError::InvalidRequest(format!(
                    "options.{key} must be a string"
                ))),
            })
            .collect(),
        Some(_) => Err(EngineError::InvalidRequest(
            "options must be an object".into(),
        )),
    }
}

/// Parses a TTL given as seconds or a duration string (`"768h"`); Vault accepts both.
pub(crate) fn ttl_field(
    config: &Map<String, Value>,
    name: &str,
) -> Result<Option<u64>, EngineError> {
    match config.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => number.as_u64().map(Some).ok_or_else(|| {
            EngineError::InvalidRequest(format!("{name} must be a non-negative number of seconds"))
        }),
        // The CLI sends `""` for every TTL flag left unset: Vault reads it as "leave unchanged".
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(Value::String(text)) if text == "system" => Ok(Some(0)),
        Some(Value::String(text)) => parse_ttl(text).map(Some).ok_or_else(|| {
            EngineError::InvalidRequest(format!("{name} {text:?} is not a duration"))
        }),
        Some(_) => Err(EngineError::InvalidRequest(format!(
            "{name} must be a duration"
        ))),
    }
}

fn invalid_visibility(value: Option<&Value>) -> EngineError {
    let shown = match value {
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    EngineError::InvalidRequest(format!("invalid listing_visibility {shown}"))
}

/// A list of strings given as a JSON array or a comma-separated string, as Vault's
/// `TypeCommaStringSlice` accepts it; numbers count as their text.
pub(crate) fn string_list_field(
    data: &Map<String, Value>,
    name: &str,
) -> Result<Option<Vec<String>>, EngineError> {
    let item = |value: &Value| match value {
        Value::String(text) => Ok(text.clone()),
        Value::Number(number) => Ok(number.to_string()),
        _ => Err(EngineError::InvalidRequest(format!(
            "{name} must be a list of strings"
        ))),
    };
    match data.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Ok(Some(Vec::new())),
        Some(Value::String(text)) => Ok(Some(
            text.split(',').map(|part| part.trim().to_owned()).collect(),
        )),
        Some(Value::Number(number)) => Ok(Some(vec![number.to_string()])),
        Some(Value::Array(values)) => values.iter().map(item).collect::<Result<_, _>>().map(Some),
        Some(_) => Err(EngineError::InvalidRequest(format!(
            "{name} must be a list of strings"
        ))),
    }
}

/// A tuned TTL as `tune` reports it: zero means "the system default", which Vault reports as
/// 32 days.
pub(crate) fn effective_ttl(ttl: u64) -> u64 {
    const SYSTEM_TTL: u64 = 32 * 24 * 3600;
    if ttl == 0 { SYSTEM_TTL } else { ttl }
}

/// Seconds from `"90"`, `"90s"`, `"5m"`, `"768h"`.
pub(crate) fn parse_ttl(text: &str) -> Option<u64> {
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(seconds);
    }
    let duration: jiff::SignedDuration = text.parse().ok()?;
    u64::try_from(duration.as_secs()).ok()
}

pub(crate) fn config_field(
    data: &Map<String, Value>,
    base: MountConfig,
) -> Result<MountConfig, EngineError> {
    let config = match data.get("config") {
        None | Some(Value::Null) => return Ok(base),
        Some(Value::Object(config)) => config,
        Some(_) => {
            return Err(EngineError::InvalidRequest(
                "config must be an object".into(),
            ));
        }
    };
    tune_config(config, base)
}

pub(crate) fn tune_config(
    config: &Map<String, Value>,
    mut base: MountConfig,
) -> Result<MountConfig, EngineError> {
    if let Some(ttl) = ttl_field(config, "default_lease_ttl")? {
        base.default_lease_ttl = ttl;
    }
    if let Some(ttl) = ttl_field(config, "max_lease_ttl")? {
        base.max_lease_ttl = ttl;
    }
    if let Some(flag) = bool_field(config, "force_no_cache")? {
        base.force_no_cache = flag;
    }
    if let Some(visibility) = string_field(config, "listing_visibility")
        .map_err(|_| invalid_visibility(config.get("listing_visibility")))?
    {
        if !matches!(visibility.as_str(), "" | "hidden" | "unauth") {
            return Err(EngineError::InvalidRequest(format!(
                "invalid listing_visibility {visibility}"
            )));
        }
        base.listing_visibility = visibility;
    }
    let lists = [
        (
            "audit_non_hmac_request_keys",
            &mut base.audit_non_hmac_request_keys,
        ),
        (
            "audit_non_hmac_response_keys",
            &mut base.audit_non_hmac_response_keys,
        ),
        (
            "passthrough_request_headers",
            &mut base.passthrough_request_headers,
        ),
        (
            "allowed_response_headers",
            &mut base.allowed_response_headers,
        ),
    ];
    for (name, slot) in lists {
        if let Some(list) = string_list_field(config, name)? {
            *slot = list;
        }
    }
    if base.max_lease_ttl != 0 && base.default_lease_ttl > base.max_lease_ttl {
        return Err(EngineError::InvalidRequest(
            "default lease TTL cannot be greater than maximum lease TTL".into(),
        ));
    }
    Ok(base)
}

/// `kv-v2` and `kv-v1` are Vault's aliases for `kv` with a version option.
fn resolve_type(kind: &str, options: &mut BTreeMap<String, String>) -> String {
    match kind {
        "kv-v2" => {
            options.insert("version".into(), "2".into());
            "kv".into()
        }
        "kv-v1" => {
            options.insert("version".into(), "1".into());
            "kv".into()
        }
        other => other.to_owned(),
    }
}

impl Engine {
    /// Routes `sys/<rest>` paths that go through the pipeline.
    pub(crate) async fn handle_sys(
        &self,
        unsealed: &Unsealed,
        rest: &str,
        request: Request,
    ) -> Result<Option<LogicalResponse>, EngineError> {
        if let Some(answer) = self.handle_audit(unsealed, rest, &request).await {
            return answer;
        }
        let operation = request.operation;
        let data = request.data.clone().unwrap_or_default();
        let rest = rest.trim_end_matches('/');
        if let Some(answer) = self.handle_sys_auth(unsealed, rest, operation, &data).await {
            return answer;
        }
        if rest == "mounts" {
            return match operation {
                Operation::Read => Ok(Some(self.list_mounts(unsealed))),
                _ => Err(EngineError::MethodNotAllowed),
            };
        }
        if let Some(path) = rest.strip_prefix("mounts/") {
            if let Some(path) = path.strip_suffix("/tune") {
                return match operation {
                    Operation::Read => self.read_tune(unsealed, path).map(Some),
                    Operation::Create | Operation::Update => {
                        self.tune(unsealed, path, &data).await.map(Some)
                    }
                    _ => Err(EngineError::MethodNotAllowed),
                };
            }
            return match operation {
                Operation::Read => {
                    let path = mounts::normalize_mount_path(path)?;
                    let table = unsealed.mounts();
                    let entry = table.find(&path).ok_or_else(|| {
                        EngineError::InvalidRequest(format!("no mount at {path:?}"))
                    })?;
                    Ok(Some(object(mount_json(entry))))
                }
                Operation::Create | Operation::Update => self
                    .enable_mount(unsealed, path, &data)
                    .await
                    .map(|()| Some(LogicalResponse::no_content())),
                Operation::Delete => self
                    .disable_mount(unsealed, path)
                    .await
                    .map(|()| Some(LogicalResponse::no_content())),
                _ => Err(EngineError::MethodNotAllowed),
            };
        }
        if rest == "remount" {
            return match operation {
                Operation::Create | Operation::Update => {
                    self.remount(unsealed, &data).await.map(Some)
                }
                _ => Err(EngineError::MethodNotAllowed),
            };
        }
        if let Some(id) = rest.strip_prefix("remount/status/") {
            return match operation {
                Operation::Read => Ok(unsealed
                    .mounts()
                    .migrations
                    .iter()
                    .find(|migration| migration.id == id)
                    .cloned()
                    .map(|migration| {
                        LogicalResponse::data(
                            json!({
                                "migration_id": migration.id,
                                "migration_info": {
                                    "source_mount": migration.source,
                                    "target_mount": migration.target,
                                    "status": "success",
                                },
                            })
                            .as_object()
                            .cloned()
                            .unwrap_or_default(),
                        )
                    })),
                _ => Err(EngineError::MethodNotAllowed),
            };
        }
        if rest == "inventory" {
            return match operation {
                Operation::Read => self.read_inventory(unsealed, &request).await.map(Some),
                _ => Err(EngineError::MethodNotAllowed),
            };
        }
        if rest == "posture/secrets" {
            return match operation {
                Operation::Read => self.secrets_posture(unsealed, &request).await.map(Some),
                _ => Err(EngineError::MethodNotAllowed),
            };
        }
        if let Some(path) = rest.strip_prefix("internal/ui/mounts/") {
            return match operation {
                Operation::Read => self.ui_mount(unsealed, path).map(Some),
                _ => Err(EngineError::MethodNotAllowed),
            };
        }
        Err(EngineError::NoRoute(request.path))
    }

    /// `sys/posture/secrets` (custos only): secrets of every KV v2 mount that are expired,
    /// expire within `within` (default 7 days), or are due for rotation.
    async fn secrets_posture(
        &self,
        unsealed: &Unsealed,
        request: &Request,
    ) -> Result<LogicalResponse, EngineError> {
        let within = match request.query.get("within") {
            None => jiff::SignedDuration::from_hours(7 * 24),
            Some(text) => {
                let seconds = parse_ttl(text).ok_or_else(|| {
                    EngineError::InvalidRequest(format!("within {text:?} is not a duration"))
                })?;
                jiff::SignedDuration::from_secs(i64::try_from(seconds).unwrap_or(i64::MAX))
            }
        };
        let now = self.now();
        let table = unsealed.mounts();
        let mut findings = Vec::new();
        for entry in &table.entries {
            if entry.kind != "kv" || entry.options.get("version").map(String::as_str) != Some("2") {
                continue;
            }
            let storage = crate::logical::MountStorage::new(unsealed.barrier.clone(), &entry.uuid);
            for finding in crate::kv::v2::posture(&storage, now, within).await? {
                let mut json = finding.to_json();
                json.insert("mount".into(), Value::String(entry.path.clone()));
                json.insert(
                    "path".into(),
                    Value::String(format!("{}{}", entry.path, finding.path)),
                );
                findings.push(Value::Object(json));
            }
        }
        Ok(object(json!({
            "within_seconds": within.as_secs(),
            "secrets": findings,
        })))
    }

    fn list_mounts(&self, unsealed: &Unsealed) -> LogicalResponse {
        let table = unsealed.mounts();
        let mut data = Map::new();
        for entry in &table.entries {
            data.insert(entry.path.clone(), mount_json(entry));
        }
        data.insert("sys/".into(), system_mount_json());
        LogicalResponse::data(data)
    }

    fn ui_mount(&self, unsealed: &Unsealed, path: &str) -> Result<LogicalResponse, EngineError> {
        let table = unsealed.mounts();
        let path = path.trim_start_matches('/');
        let entry = table
            .route(path)
            .or_else(|| table.find(&format!("{}/", path.trim_end_matches('/'))))
            .ok_or(EngineError::PermissionDenied)?;
        let mut json = mount_json(entry);
        if let Some(object) = json.as_object_mut() {
            object.insert("path".into(), Value::String(entry.path.clone()));
        }
        Ok(object(json))
    }

    fn read_tune(&self, unsealed: &Unsealed, path: &str) -> Result<LogicalResponse, EngineError> {
        let path = mounts::normalize_mount_path(path)?;
        let table = unsealed.mounts();
        let entry = table.find(&path).ok_or_else(|| {
            EngineError::InvalidRequest(format!("cannot fetch sysview for path {path:?}"))
        })?;
        let mut data = tune_json(entry);
        if !entry.options.is_empty() {
            data.insert("options".into(), json!(entry.options));
        }
        Ok(LogicalResponse::data(data))
    }

    async fn enable_mount(
        &self,
        unsealed: &Unsealed,
        path: &str,
        data: &Map<String, Value>,
    ) -> Result<(), EngineError> {
        let path = mounts::normalize_mount_path(path)?;
        let kind = string_field(data, "type")?
            .filter(|kind| !kind.is_empty())
            .ok_or_else(|| EngineError::InvalidRequest("missing type".into()))?;
        let mut options = options_field(data)?;
        let kind = resolve_type(&kind, &mut options);
        // Vault leaves the description empty unless one is given.
        let description = string_field(data, "description")?.unwrap_or_default();
        let config = config_field(data, MountConfig::default())?;
        let uuid = crate::random_id()?;
        let entry = MountEntry {
            accessor: format!("{kind}_{}", &uuid[..8]),
            uuid,
            path: path.clone(),
            kind,
            description,
            options,
            config,
            local: bool_field(data, "local")?.unwrap_or(false),
            seal_wrap: bool_field(data, "seal_wrap")?.unwrap_or(false),
        };
        // Refuse unknown types and versions before touching the table.
        mounts::backend_for(&entry)?;
        self.update_mounts(unsealed, |table| {
            table.check_free(&path)?;
            table.entries.push(entry.clone());
            Ok(())
        })
        .await?;
        tracing::info!(path = %path, kind = %entry.kind, "mount enabled");
        Ok(())
    }

    async fn disable_mount(&self, unsealed: &Unsealed, path: &str) -> Result<(), EngineError> {
        let path = mounts::normalize_mount_path(path)?;
        if path == "sys/" {
            return Err(EngineError::InvalidRequest(format!(
                "cannot unmount {path:?}"
            )));
        }
        let mut removed = None;
        self.update_mounts(unsealed, |table| {
            removed = None;
            if let Some(index) = table.entries.iter().position(|entry| entry.path == path) {
                removed = Some(table.entries.remove(index));
            }
            Ok(())
        })
        .await?;
        // As Vault: disabling a path that is not mounted succeeds.
        let Some(entry) = removed else {
            return Ok(());
        };
        // The mount is gone from the table first, so nothing new is written under its prefix;
        // then its data is deleted.
        delete_mount_data(&unsealed.barrier, &entry.uuid).await?;
        tracing::info!(path = %path, "mount disabled and its data deleted");
        Ok(())
    }

    /// `sys/mounts/<path>/tune`. Setting `options.version` to 2 on a KV v1 mount upgrades it in
    /// place, as Vault does: the table says v2 first (no v1 write lands after that), then each v1
    /// secret becomes version 1 of a v2 secret, atomically per secret. Tuning `version` 2 again
    /// on a v2 mount resumes an interrupted upgrade. Going back to v1 is refused.
    async fn tune(
        &self,
        unsealed: &Unsealed,
        path: &str,
        data: &Map<String, Value>,
    ) -> Result<LogicalResponse, EngineError> {
        let path = mounts::normalize_mount_path(path)?;
        let description = string_field(data, "description")?;
        let new_options = options_field(data)?;
        let mut upgraded = false;
        let mut kv_uuid = None;
        self.update_mounts(unsealed, |table| {
            upgraded = false;
            let entry = table
                .entries
                .iter_mut()
                .find(|entry| entry.path == path)
                .ok_or_else(|| EngineError::InvalidRequest(format!("no mount at {path:?}")))?;
            tune_entry(entry, data, description.as_deref())?;
            for (key, value) in &new_options {
                if entry.kind == "kv" && key == "version" {
                    let current = entry.options.get("version").map(String::as_str);
                    let current_is_v2 = current == Some("2");
                    match value.as_str() {
                        "2" if !current_is_v2 => upgraded = true,
                        "2" => {}
                        _ if current_is_v2 => {
                            return Err(EngineError::InvalidRequest(
                                "cannot downgrade mount from version 2".into(),
                            ));
                        }
                        // Vault leaves a v1 mount as it is when told version 1 (or "").
                        _ => continue,
                    }
                }
                entry.options.insert(key.clone(), value.clone());
            }
            mounts::backend_for(entry)?;
            kv_uuid = (entry.kind == "kv"
                && new_options.get("version").map(String::as_str) == Some("2"))
            .then(|| entry.uuid.clone());
            Ok(())
        })
        .await?;
        let Some(uuid) = kv_uuid else {
            return Ok(LogicalResponse::no_content());
        };
        let storage = crate::logical::MountStorage::new(unsealed.barrier.clone(), &uuid);
        // In its own task, so a request cut off by `listener.request_timeout` (or a client that
        // hangs up) does not stop the conversion half way; tuning again would resume it anyway.
        let now = self.now();
        let task = tokio::spawn(async move {
            let result = crate::kv::v2::upgrade_from_v1(&storage, now).await;
            if let Err(error) = &result {
                tracing::warn!(%error, "kv upgrade stopped; tune the mount to version 2 again to resume it");
            }
            result
        });
        let converted = task
            .await
            .map_err(|error| EngineError::Internal(format!("kv upgrade task: {error}")))??;
        if !upgraded && converted == 0 {
            return Ok(LogicalResponse::no_content());
        }
        tracing::info!(path = %path, converted, "kv mount upgraded from version 1 to version 2");
        let mut answer = LogicalResponse::data(Map::new());
        answer.warnings.push(format!(
            "Upgraded mount from version 1 to version 2: {converted} secrets are now version 1 of a versioned secret."
        ));
        Ok(answer)
    }

    async fn remount(
        &self,
        unsealed: &Unsealed,
        data: &Map<String, Value>,
    ) -> Result<LogicalResponse, EngineError> {
        let from = string_field(data, "from")?
            .ok_or_else(|| EngineError::InvalidRequest("missing from".into()))?;
        let to = string_field(data, "to")?
            .ok_or_else(|| EngineError::InvalidRequest("missing to".into()))?;
        let from = mounts::normalize_mount_path(&from)?;
        let to = mounts::normalize_mount_path(&to)?;
        if to.starts_with(&from) {
            return Err(EngineError::InvalidRequest(format!(
                "path already in use at {from:?}"
            )));
        }
        let id = crate::random_id()?;
        self.update_mounts(unsealed, |table| {
            let index = table
                .entries
                .iter()
                .position(|entry| entry.path == from)
                .ok_or_else(|| EngineError::InvalidRequest(format!("no mount at {from:?}")))?;
            let entry = table.entries.remove(index);
            table.check_free(&to)?;
            table.entries.push(MountEntry {
                path: to.clone(),
                ..entry
            });
            // Data is keyed by the mount's UUID, so the move is complete once the table is
            // written, and its record is written with it.
            while table.migrations.len() >= mounts::MIGRATIONS_KEPT {
                table.migrations.pop_front();
            }
            table.migrations.push_back(Migration {
                id: id.clone(),
                source: from.clone(),
                target: to.clone(),
            });
            Ok(())
        })
        .await?;
        Ok(object(json!({ "migration_id": id })))
    }

    /// Applies `change` to the stored mount table with a compare-and-swap, retrying on races.
    pub(crate) async fn update_mounts(
        &self,
        unsealed: &Unsealed,
        mut change: impl FnMut(&mut MountTable) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        for _ in 0..16 {
            let mut table = MountTable::load(&unsealed.barrier).await?;
            change(&mut table)?;
            if table
                .store_at(&unsealed.barrier, mounts::MOUNTS_PATH)
                .await?
            {
                unsealed.set_mounts(table);
                return Ok(());
            }
        }
        Err(EngineError::Conflict)
    }
}
