//! ACL policies in the engine: the stored policies, the compiled sets every request is
//! authorised with, and the endpoints that manage and explain them.
//!
//! - Each policy is stored at `sys/policy/acl/<name>` behind the barrier (JSON: name, text,
//!   version, time of the last write).
//! - [`PolicyStore`] holds every policy parsed, and a cache of compiled [`PolicySet`]s keyed by
//!   a token's (sorted) policy names. It is a mirrored table (`mirror::TABLES`): a change on
//!   another node reloads it, and a reload replaces the table, which drops the cache with it.
//!   Authorising a request is a cache lookup and a match; no storage access, no parsing.
//! - `root` is built in (allows everything; cannot be written or deleted); `default` is created
//!   at the first unseal if missing, and may be edited but not deleted.
//! - Endpoints: `sys/policy[/<name>]`, `sys/policies/acl[/<name>]`, `sys/capabilities`,
//!   `sys/capabilities-self`, and custos's `sys/policies/explain`.

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use custos_policy::{
    Capability, DEFAULT_POLICY, DEFAULT_POLICY_TEXT, Decision, Facts, Policy, PolicySet,
    ROOT_POLICY,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::logical::{LogicalResponse, Operation};
use crate::pipeline::{Request, object};
use crate::token::Caller;
use crate::untrusted::Untrusted;
use crate::{Engine, EngineError, Unsealed};

/// Where policies are stored, one key per policy.
pub(crate) const POLICY_PREFIX: &str = "sys/policy/acl/";

/// How many compiled sets one table caches before it starts over (each distinct combination of
/// policies on a token is one set).
const MAX_CACHED_SETS: usize = 4096;

/// The longest policy name accepted, in bytes.
const MAX_NAME_LEN: usize = 128;

/// Paths that need `sudo` besides the capability for the operation (Vault's root-protected
/// paths: the system backend's and the token store's). A trailing `*` is a prefix.
pub(crate) const SUDO_PATHS: &[&str] = &[
    "sys/auth/*",
    "sys/remount",
    "sys/audit",
    "sys/audit/*",
    // custos asks for sudo on these too: a hash or a verdict under a device's key is as
    // sensitive as the device list.
    "sys/audit-hash/*",
    "sys/audit-verify/*",
    "sys/raw",
    "sys/raw/*",
    "sys/rotate",
    "sys/rotate/keyring",
    "sys/rotate/root",
    "sys/seal",
    "sys/step-down",
    "sys/config/cors",
    "sys/config/auditing/*",
    "sys/config/ui/headers/*",
    "sys/plugins/catalog/*",
    "sys/revoke-prefix/*",
    "sys/revoke-force/*",
    "sys/leases/revoke-prefix/*",
    "sys/leases/revoke-force/*",
    "sys/leases/lookup/*",
    "sys/leases",
    "sys/internal/inspect/*",
    "auth/token/revoke-orphan/*",
    "auth/token/accessors*",
];

/// Whether `path` is root-protected.
pub(crate) fn needs_sudo(path: &str) -> bool {
    SUDO_PATHS
        .iter()
        .any(|pattern| match pattern.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => path == *pattern,
        })
}

/// The stored form of a policy.
#[derive(Serialize, Deserialize)]
struct StoredPolicy {
    name: String,
    policy: String,
    /// Counts writes from 1 (Vault's `version`, which `cas` compares with).
    #[serde(default)]
    version: u64,
    /// When it was last written (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    modified: Option<String>,
}

/// A policy as the table keeps it: its text (answered by reads) and its parsed rules.
#[derive(Debug)]
pub(crate) struct PolicyEntry {
    pub(crate) text: String,
    pub(crate) parsed: Policy,
    pub(crate) version: u64,
    pub(crate) modified: Option<String>,
}

/// Every stored policy, and the sets compiled from them.
#[derive(Debug, Default)]
pub(crate) struct PolicyTable {
    generation: u64,
    policies: BTreeMap<String, Arc<PolicyEntry>>,
    compiled: RwLock<HashMap<Vec<String>, Arc<PolicySet>>>,
}

/// The resolver the engine hands the policy compiler: the system's time zone database.
fn resolve_zone(name: &str) -> Option<jiff::tz::TimeZone> {
    jiff::tz::db().get(name).ok()
}

impl PolicyTable {
    /// The compiled set for a token's policies. Names with no stored policy are skipped, as
    /// Vault skips them; `root` among them gives the root set.
    pub(crate) fn set_for(&self, names: &[String]) -> Arc<PolicySet> {
        if names.iter().any(|name| name == ROOT_POLICY) {
            return root_set();
        }
        if let Some(set) = self
            .compiled
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(names)
        {
            return set.clone();
        }
        let policies: Vec<Policy> = names
            .iter()
            .filter_map(|name| self.policies.get(name))
            .map(|entry| entry.parsed.clone())
            .collect();
        let set = Arc::new(PolicySet::compile(&policies, &resolve_zone));
        let mut cache = self
            .compiled
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() >= MAX_CACHED_SETS {
            cache.clear();
        }
        cache.insert(names.to_vec(), set.clone());
        set
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Arc<PolicyEntry>> {
        self.policies.get(name)
    }
}

fn root_set() -> Arc<PolicySet> {
    static ROOT: std::sync::OnceLock<Arc<PolicySet>> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| Arc::new(PolicySet::root())).clone()
}

/// The node's copy of the policy table.
#[derive(Debug, Default)]
pub(crate) struct PolicyStore {
    table: RwLock<Arc<PolicyTable>>,
    /// Each load takes the next number; a load installs its table only over an older one, so a
    /// slow reload never undoes a newer one.
    next_generation: AtomicU64,
}

impl PolicyStore {
    pub(crate) fn table(&self) -> Arc<PolicyTable> {
        self.table
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn install(&self, table: PolicyTable) {
        let mut slot = self
            .table
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if table.generation > slot.generation {
            *slot = Arc::new(table);
        }
    }
}

fn corrupt(key: &str, why: impl std::fmt::Display) -> EngineError {
    EngineError::Internal(format!("stored policy {key}: {why}"))
}

/// Reads every stored policy.
async fn load(barrier: &crate::Barrier, generation: u64) -> Result<PolicyTable, EngineError> {
    let mut table = PolicyTable {
        generation,
        ..PolicyTable::default()
    };
    let mut after: Option<String> = None;
    loop {
        let page = barrier.list(POLICY_PREFIX, after.as_deref(), 1000).await?;
        for key in &page.keys {
            let Some(entry) = barrier.get(key).await? else {
                continue;
            };
            let stored: StoredPolicy =
                serde_json::from_slice(&entry.value).map_err(|error| corrupt(key, error))?;
            let parsed =
                Policy::parse(&stored.name, &stored.policy).map_err(|error| corrupt(key, error))?;
            table.policies.insert(
                stored.name,
                Arc::new(PolicyEntry {
                    text: stored.policy,
                    parsed,
                    version: stored.version,
                    modified: stored.modified,
                }),
            );
        }
        match page.next_after {
            Some(next) => after = Some(next),
            None => return Ok(table),
        }
    }
}

/// Reloads the policy table from storage (mirror reload, and after every local change).
pub(crate) async fn reload(unsealed: &Unsealed) -> Result<(), EngineError> {
    let generation = unsealed
        .policies
        .next_generation
        .fetch_add(1, Ordering::AcqRel)
        + 1;
    let table = load(&unsealed.barrier, generation).await?;
    unsealed.policies.install(table);
    Ok(())
}

/// Loads the policies at unseal, creating `default` when it is missing (the first unseal after
/// init, or a store from before policies existed).
pub(crate) async fn open(barrier: &crate::Barrier) -> Result<PolicyStore, EngineError> {
    let store = PolicyStore::default();
    let key = format!("{POLICY_PREFIX}{DEFAULT_POLICY}");
    if barrier.get(&key).await?.is_none() {
        let stored = StoredPolicy {
            name: DEFAULT_POLICY.into(),
            policy: DEFAULT_POLICY_TEXT.trim_start().into(),
            version: 1,
            modified: None,
        };
        let value = serde_json::to_vec(&stored)
            .map_err(|error| EngineError::Internal(format!("encoding policy: {error}")))?;
        // Only if still absent: another node may be creating (or have edited) it meanwhile.
        let txn = custos_storage::Transaction::new()
            .require_absent(&key)
            .put(&key, value);
        match barrier.commit(txn).await {
            Ok(_) | Err(EngineError::Conflict) => {}
            Err(error) => return Err(error),
        }
    }
    let generation = store.next_generation.fetch_add(1, Ordering::AcqRel) + 1;
    store.install(load(barrier, generation).await?);
    Ok(store)
}

/// The capability a request needs for its operation.
pub(crate) fn capability_for(operation: Operation) -> Capability {
    match operation {
        Operation::Read => Capability::Read,
        Operation::List => Capability::List,
        Operation::Create => Capability::Create,
        Operation::Update => Capability::Update,
        Operation::Patch => Capability::Patch,
        Operation::Delete => Capability::Delete,
    }
}

/// The path a decision is made on: a list is about a folder, so it ends in `/` (as Vault's HTTP
/// layer makes it).
pub(crate) fn acl_path(path: &str, operation: Operation) -> std::borrow::Cow<'_, str> {
    if operation == Operation::List && !path.ends_with('/') {
        std::borrow::Cow::Owned(format!("{path}/"))
    } else {
        std::borrow::Cow::Borrowed(path)
    }
}

/// A policy name from a path: lower case (as Vault stores names), checked.
fn policy_name(raw: &str) -> Result<String, EngineError> {
    let name = raw.trim_end_matches('/').to_lowercase();
    let invalid = |why: &str| {
        Err(EngineError::InvalidRequest(format!(
            "invalid policy name: {why}"
        )))
    };
    if name.is_empty() {
        return invalid("empty");
    }
    if name.len() > MAX_NAME_LEN {
        return invalid(&format!("longer than {MAX_NAME_LEN} bytes"));
    }
    if name.contains('/') || name.chars().any(char::is_control) {
        return invalid("slashes and control characters are not allowed");
    }
    Ok(name)
}

/// `path` or `paths` from a capabilities request.
fn requested_paths(data: &Map<String, Value>) -> Result<Vec<String>, EngineError> {
    let mut paths = Vec::new();
    let mut take = |value: &Value| -> Result<(), EngineError> {
        match value {
            Value::String(text) if text.is_empty() => Ok(()),
            Value::String(text) => {
                paths.extend(text.split(',').map(|part| part.trim().to_owned()));
                Ok(())
            }
            Value::Array(items) => {
                for item in items {
                    match item {
                        Value::String(text) => paths.push(text.clone()),
                        _ => {
                            return Err(EngineError::InvalidRequest(
                                "paths must be a list of strings".into(),
                            ));
                        }
                    }
                }
                Ok(())
            }
            Value::Null => Ok(()),
            _ => Err(EngineError::InvalidRequest(
                "paths must be a list of strings".into(),
            )),
        }
    };
    if let Some(value) = data.get("paths") {
        take(value)?;
    }
    if let Some(value) = data.get("path") {
        take(value)?;
    }
    paths.retain(|path| !path.is_empty());
    if paths.is_empty() {
        return Err(EngineError::InvalidRequest("paths must be supplied".into()));
    }
    if paths.len() > 256 {
        return Err(EngineError::InvalidRequest(
            "at most 256 paths per request".into(),
        ));
    }
    Ok(paths)
}

fn operation_named(name: &str) -> Result<Operation, EngineError> {
    Ok(match name {
        "read" => Operation::Read,
        "list" => Operation::List,
        "create" => Operation::Create,
        "update" | "write" => Operation::Update,
        "patch" => Operation::Patch,
        "delete" => Operation::Delete,
        other => {
            return Err(EngineError::InvalidRequest(format!(
                "unknown operation {other:?}: use read, list, create, update, patch or delete"
            )));
        }
    })
}

fn text_field<'a>(
    data: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, EngineError> {
    match data.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(EngineError::InvalidRequest(format!(
            "{name} must be a string"
        ))),
    }
}

impl Engine {
    /// Decides whether `caller` may make `request` as `operation` (a write may count as `create`,
    /// see `Engine::acl_operation`): the ACL of the caller's policies, with the
    /// request's address, the token's MFA, the clock and the body as facts, and `sudo` on
    /// root-protected paths. A denial is logged with the rule that decided.
    pub(crate) fn authorize(
        &self,
        unsealed: &Unsealed,
        caller: &Caller,
        request: &Request,
        operation: Operation,
    ) -> Result<Decision, EngineError> {
        let facts = Facts {
            remote_addr: request.connection.remote_addr,
            mfa: caller.mfa,
            now: self.now(),
            parameters: request.data.as_ref(),
            wrap_ttl: request.wrap_ttl,
        };
        if operation == Operation::Read
            && let Some(path) = request.path.strip_prefix("sys/internal/ui/mounts/")
        {
            return self.authorize_ui_mount(unsealed, caller, path);
        }
        self.authorize_with(unsealed, caller, &request.path, operation, &facts)
    }

    /// `sys/internal/ui/mounts/<path>` (which the `vault kv` CLI calls before every command) is
    /// not decided by a rule for its own path: as in Vault, a token may look up a mount when any
    /// of its rules grants something at or below that mount.
    fn authorize_ui_mount(
        &self,
        unsealed: &Unsealed,
        caller: &Caller,
        path: &str,
    ) -> Result<Decision, EngineError> {
        let set = unsealed.policies.table().set_for(&caller.policies);
        let table = unsealed.mounts();
        let path = path.trim_start_matches('/');
        let mount = table
            .route(path)
            .or_else(|| table.find(&format!("{}/", path.trim_end_matches('/'))));
        let allowed = match mount {
            Some(entry) => set.has_mount_access(&entry.path),
            // The endpoint answers "permission denied" for a path no mount serves.
            None => true,
        };
        if !allowed {
            tracing::info!(
                path = %Untrusted(path),
                accessor = %caller.accessor,
                reason = "no rule grants anything under this mount",
                "permission denied"
            );
            return Err(EngineError::PermissionDenied);
        }
        Ok(Decision {
            allowed: true,
            root: set.is_root(),
            sudo: false,
            capabilities: Vec::new(),
            matched: None,
            failed_condition: None,
            max_ttl: None,
            denied_reason: None,
        })
    }

    pub(crate) fn authorize_with(
        &self,
        unsealed: &Unsealed,
        caller: &Caller,
        path: &str,
        operation: Operation,
        facts: &Facts<'_>,
    ) -> Result<Decision, EngineError> {
        let set = unsealed.policies.table().set_for(&caller.policies);
        let path = acl_path(path, operation);
        let decision = set.evaluate(&path, capability_for(operation), facts);
        let sudo_missing = decision.allowed && needs_sudo(&path) && !decision.sudo;
        if decision.allowed && !sudo_missing {
            return Ok(decision);
        }
        let reason = if sudo_missing {
            "the path is root-protected and the matching rules do not grant sudo"
        } else {
            decision.denied_reason.as_deref().unwrap_or("denied")
        };
        let matched = decision.matched.as_ref();
        tracing::info!(
            path = %Untrusted(&path),
            operation = operation.capability(),
            accessor = %caller.accessor,
            policy = matched.map(|m| &*m.policy),
            pattern = matched.map(|m| &*m.pattern),
            failed_condition = decision.failed_condition.as_deref(),
            reason,
            "permission denied"
        );
        Err(EngineError::PermissionDenied)
    }

    /// Runs one operation the server serves outside the pipeline (`sys/seal`, `sys/rotate`,
    /// `sys/key-status`) as the pipeline runs a request: a request record first (a token that
    /// does not authenticate is recorded too), then the token authenticated and its policies
    /// asked about `path` with the connection's address as a fact, then `work`, then a response
    /// record with `answer`'s view of the result. No audit device able to write: refused
    /// before anything is done.
    pub(crate) async fn audited_operation<T>(
        &self,
        token: Option<&str>,
        path: &str,
        operation: Operation,
        connection: &crate::Connection,
        work: impl AsyncFnOnce(Arc<Unsealed>) -> Result<T, EngineError>,
        answer: impl FnOnce(&T) -> LogicalResponse,
    ) -> Result<T, EngineError> {
        let unsealed = self.unsealed().ok_or(EngineError::Sealed)?;
        self.refresh_tables(&unsealed).await?;
        let checked = match self.check_token(&unsealed, token, connection).await? {
            Ok((hash, entry, _)) => Some((hash, entry)),
            Err(_) => None,
        };
        let request_id = crate::new_request_id();
        let display_name = checked
            .as_ref()
            .map_or("", |(_, entry)| entry.display_name.as_str());
        let event = crate::AuditEvent {
            token,
            connection: Some(connection),
            auth: checked
                .as_ref()
                .map(|(hash, entry)| crate::token::audit_auth(entry, hash)),
            ..crate::AuditEvent::new(&request_id, operation, path, display_name)
        };
        let trail = self.audit_request(&unsealed, &event).await?;
        let result = async {
            let Some((_, entry)) = &checked else {
                return Err(EngineError::PermissionDenied);
            };
            let caller = Caller::from(entry.clone());
            let facts = Facts {
                remote_addr: connection.remote_addr,
                mfa: caller.mfa,
                ..Facts::at(self.now())
            };
            self.authorize_with(&unsealed, &caller, path, operation, &facts)?;
            work(Arc::clone(&unsealed)).await
        }
        .await;
        let answered = result.as_ref().ok().map(answer);
        let outcome = match (&result, &answered) {
            (Err(error), _) => crate::audit::Outcome::Failed(error),
            (Ok(_), answered) => crate::audit::Outcome::Answer(answered.as_ref()),
        };
        self.audit_response(&unsealed, trail, &event, outcome)
            .await?;
        result
    }

    /// Routes the policy endpoints; `None` when `rest` (a `sys/` path without `sys/`) is not one.
    pub(crate) async fn handle_policy(
        &self,
        unsealed: &Unsealed,
        rest: &str,
        request: &Request,
        caller: &Caller,
    ) -> Option<Result<Option<LogicalResponse>, EngineError>> {
        let operation = request.operation;
        let empty = Map::new();
        let data = request.data.as_ref().unwrap_or(&empty);
        let trimmed = rest.trim_end_matches('/');
        let answer = match trimmed {
            "policy" => match operation {
                Operation::Read | Operation::List => Ok(Some(self.list_policies(unsealed, true))),
                _ => Err(EngineError::MethodNotAllowed),
            },
            "policies/acl" => match operation {
                Operation::List => Ok(Some(self.list_policies(unsealed, false))),
                _ => Err(EngineError::MethodNotAllowed),
            },
            "capabilities-accessor" => match operation {
                Operation::Create | Operation::Update => self
                    .capabilities_by_accessor(unsealed, data, request)
                    .await
                    .map(Some),
                _ => Err(EngineError::MethodNotAllowed),
            },
            "capabilities" | "capabilities-self" => match operation {
                Operation::Create | Operation::Update => self
                    .capabilities(
                        unsealed,
                        trimmed == "capabilities-self",
                        data,
                        request,
                        caller,
                    )
                    .await
                    .map(Some),
                _ => Err(EngineError::MethodNotAllowed),
            },
            "policies/explain" => match operation {
                Operation::Create | Operation::Update => self
                    .explain(unsealed, data, request, caller)
                    .await
                    .map(Some),
                _ => Err(EngineError::MethodNotAllowed),
            },
            _ => {
                let (name, legacy) = if let Some(name) = trimmed.strip_prefix("policy/") {
                    (name, true)
                } else if let Some(name) = trimmed.strip_prefix("policies/acl/") {
                    (name, false)
                } else {
                    return None;
                };
                self.policy_endpoint(unsealed, name, legacy, operation, data)
                    .await
            }
        };
        Some(answer)
    }

    fn list_policies(&self, unsealed: &Unsealed, legacy: bool) -> LogicalResponse {
        let table = unsealed.policies.table();
        // Stored policies in order, then `root`, as Vault lists them.
        let mut names: Vec<String> = table
            .policies
            .keys()
            .filter(|name| *name != ROOT_POLICY)
            .cloned()
            .collect();
        names.push(ROOT_POLICY.into());
        if legacy {
            object(json!({"keys": names, "policies": names}))
        } else {
            LogicalResponse::list(names)
        }
    }

    async fn policy_endpoint(
        &self,
        unsealed: &Unsealed,
        raw_name: &str,
        legacy: bool,
        operation: Operation,
        data: &Map<String, Value>,
    ) -> Result<Option<LogicalResponse>, EngineError> {
        let name = policy_name(raw_name)?;
        let text_key = if legacy { "rules" } else { "policy" };
        match operation {
            Operation::Read => {
                let table = unsealed.policies.table();
                let (text, version, modified) = if name == ROOT_POLICY {
                    (String::new(), 0, None)
                } else {
                    match table.get(&name) {
                        Some(entry) => (entry.text.clone(), entry.version, entry.modified.clone()),
                        None => return Ok(None),
                    }
                };
                let mut answer = Map::new();
                answer.insert("name".into(), Value::String(name));
                answer.insert(text_key.into(), Value::String(text));
                answer.insert("version".into(), json!(version));
                answer.insert("cas_required".into(), Value::Bool(false));
                answer.insert(
                    "allow_slashes_in_identity_templates".into(),
                    Value::Bool(false),
                );
                answer.insert(
                    "allow_wildcards_in_identity_templates".into(),
                    Value::Bool(false),
                );
                if let Some(modified) = modified {
                    answer.insert("modified".into(), Value::String(modified));
                }
                Ok(Some(LogicalResponse::data(answer)))
            }
            Operation::Create | Operation::Update => {
                let mut warnings = Vec::new();
                let text = match text_field(data, "policy")?.filter(|text| !text.is_empty()) {
                    Some(text) => text,
                    None if legacy => match text_field(data, "rules")?
                        .filter(|text| !text.is_empty())
                    {
                        Some(text) => {
                            warnings
                                .push("'rules' is deprecated, please use 'policy' instead".into());
                            text
                        }
                        None => {
                            return Err(EngineError::InvalidRequest(
                                "'policy' parameter not supplied or empty".into(),
                            ));
                        }
                    },
                    None => {
                        return Err(EngineError::InvalidRequest(
                            "'policy' parameter not supplied or empty".into(),
                        ));
                    }
                };
                let cas = match data.get("cas") {
                    None | Some(Value::Null) => None,
                    Some(value) => Some(
                        value
                            .as_u64()
                            .or_else(|| value.as_str().and_then(|text| text.parse().ok()))
                            .ok_or_else(|| {
                                EngineError::InvalidRequest(
                                    "cas must be a non-negative integer".into(),
                                )
                            })?,
                    ),
                };
                self.write_policy(unsealed, &name, text, cas).await?;
                Ok(Some(LogicalResponse {
                    warnings,
                    ..LogicalResponse::no_content()
                }))
            }
            Operation::Delete => {
                self.delete_policy(unsealed, &name).await?;
                Ok(Some(LogicalResponse::no_content()))
            }
            _ => Err(EngineError::MethodNotAllowed),
        }
    }

    /// Parses, checks and stores a policy, then reloads the table. With `cas`, only when the
    /// stored version is `cas` (0: only when there is none).
    pub(crate) async fn write_policy(
        &self,
        unsealed: &Unsealed,
        name: &str,
        text: &str,
        cas: Option<u64>,
    ) -> Result<(), EngineError> {
        if name == ROOT_POLICY {
            return Err(EngineError::InvalidRequest(
                "cannot update \"root\" policy".into(),
            ));
        }
        let parsed = Policy::parse(name, text).map_err(|error| {
            EngineError::InvalidRequest(format!("failed to parse policy: {error}"))
        })?;
        parsed.check_time_zones(&resolve_zone).map_err(|error| {
            EngineError::InvalidRequest(format!("failed to parse policy: {error}"))
        })?;
        let key = format!("{POLICY_PREFIX}{name}");
        let current = unsealed.barrier.get(&key).await?;
        let current_version = match &current {
            Some(entry) => {
                serde_json::from_slice::<StoredPolicy>(&entry.value)
                    .map_err(|error| corrupt(&key, error))?
                    .version
            }
            None => 0,
        };
        if let Some(cas) = cas
            && cas != current_version
        {
            return Err(EngineError::InvalidRequest(
                "compare-and-swap parameter did not match existing policy version".into(),
            ));
        }
        let modified = Some(self.now().to_string());
        let stored = StoredPolicy {
            name: name.to_owned(),
            policy: text.to_owned(),
            version: current_version + 1,
            modified,
        };
        let value = serde_json::to_vec(&stored)
            .map_err(|error| EngineError::Internal(format!("encoding policy: {error}")))?;
        // Only over the version read: a concurrent write makes this one fail (retryable).
        let txn = custos_storage::Transaction::new()
            .require_unchanged(&key, current.map(|entry| entry.revision))
            .put(&key, value);
        unsealed.barrier.commit(txn).await?;
        reload(unsealed).await
    }

    async fn delete_policy(&self, unsealed: &Unsealed, name: &str) -> Result<(), EngineError> {
        match name {
            ROOT_POLICY => Err(EngineError::InvalidRequest(
                "cannot delete \"root\" policy".into(),
            )),
            DEFAULT_POLICY => Err(EngineError::InvalidRequest(
                "cannot delete default policy".into(),
            )),
            _ => {
                unsealed
                    .barrier
                    .delete(&format!("{POLICY_PREFIX}{name}"))
                    .await?;
                reload(unsealed).await
            }
        }
    }

    /// The caller named by a `token` body field, or the request's own caller. The named token
    /// is looked up as Vault does here: live (not expired, not being revoked), its bindings not
    /// checked (it is not the one making the request).
    async fn subject(
        &self,
        unsealed: &Unsealed,
        data: &Map<String, Value>,
        caller: &Caller,
        required: bool,
    ) -> Result<Caller, EngineError> {
        match text_field(data, "token")?.filter(|token| !token.is_empty()) {
            Some(token) => match self.live_token(unsealed, token).await? {
                Some((_, entry, _)) => Ok(entry.into()),
                None => Err(EngineError::InvalidRequest("invalid token".into())),
            },
            None if required => Err(EngineError::InvalidRequest("token must be supplied".into())),
            None => Ok(caller.clone()),
        }
    }

    /// `sys/capabilities-accessor`: the capabilities of the token an `accessor` names.
    async fn capabilities_by_accessor(
        &self,
        unsealed: &Unsealed,
        data: &Map<String, Value>,
        request: &Request,
    ) -> Result<LogicalResponse, EngineError> {
        let accessor = text_field(data, "accessor")?
            .filter(|accessor| !accessor.is_empty())
            .ok_or_else(|| EngineError::InvalidRequest("accessor must be supplied".into()))?;
        let now = self.now().as_second();
        let entry = match self.hash_for_accessor(unsealed, accessor).await? {
            Some(hash) => self
                .load_token(unsealed, &hash)
                .await?
                .map(|(entry, _)| entry)
                .filter(|entry| entry.revoking.is_none() && !entry.is_expired(now)),
            None => None,
        };
        let entry = entry.ok_or_else(|| EngineError::InvalidRequest("invalid accessor".into()))?;
        self.capabilities_of(unsealed, &entry.into(), data, request)
    }

    /// `sys/capabilities` (a token in the body) and `sys/capabilities-self`.
    async fn capabilities(
        &self,
        unsealed: &Unsealed,
        own: bool,
        data: &Map<String, Value>,
        request: &Request,
        caller: &Caller,
    ) -> Result<LogicalResponse, EngineError> {
        let subject = if own {
            caller.clone()
        } else {
            self.subject(unsealed, data, caller, true).await?
        };
        self.capabilities_of(unsealed, &subject, data, request)
    }

    /// The answer of the capabilities endpoints for `subject`'s token and the `path`/`paths`
    /// in `data` (also what `sys/capabilities-accessor` answers, once the accessor is resolved).
    pub(crate) fn capabilities_of(
        &self,
        unsealed: &Unsealed,
        subject: &Caller,
        data: &Map<String, Value>,
        request: &Request,
    ) -> Result<LogicalResponse, EngineError> {
        let paths = requested_paths(data)?;
        let set = unsealed.policies.table().set_for(&subject.policies);
        let facts = Facts {
            remote_addr: request.connection.remote_addr,
            mfa: subject.mfa,
            ..Facts::at(self.now())
        };
        let mut answer = Map::new();
        for path in &paths {
            let mut capabilities = set.capabilities(path, &facts);
            capabilities.sort_unstable();
            answer.insert(path.clone(), json!(capabilities));
        }
        if let [only] = paths.as_slice()
            && let Some(capabilities) = answer.get(only).cloned()
        {
            answer.insert("capabilities".into(), capabilities);
        }
        Ok(LogicalResponse::data(answer))
    }

    /// `sys/policies/explain` (custos only): which policy and rule decide an operation on a path
    /// for a token (the caller's own by default), and which condition failed.
    async fn explain(
        &self,
        unsealed: &Unsealed,
        data: &Map<String, Value>,
        request: &Request,
        caller: &Caller,
    ) -> Result<LogicalResponse, EngineError> {
        let subject = self.subject(unsealed, data, caller, false).await?;
        let path = text_field(data, "path")?
            .filter(|path| !path.is_empty())
            .ok_or_else(|| EngineError::InvalidRequest("path must be supplied".into()))?
            .trim_start_matches('/')
            .to_owned();
        crate::pipeline::validate_path(&path)?;
        let operation = operation_named(text_field(data, "operation")?.unwrap_or("read"))?;
        let parameters = match data.get("parameters") {
            None | Some(Value::Null) => None,
            Some(Value::Object(map)) => Some(map),
            Some(_) => {
                return Err(EngineError::InvalidRequest(
                    "parameters must be an object".into(),
                ));
            }
        };
        let facts = Facts {
            remote_addr: request.connection.remote_addr,
            mfa: subject.mfa,
            now: self.now(),
            parameters,
            wrap_ttl: None,
        };
        let set = unsealed.policies.table().set_for(&subject.policies);
        let acl_path = acl_path(&path, operation);
        let decision = set.evaluate(&acl_path, capability_for(operation), &facts);
        let sudo_required = needs_sudo(&acl_path);
        let allowed = decision.allowed && (!sudo_required || decision.sudo);
        let reason = if allowed {
            None
        } else if decision.allowed {
            Some("the path is root-protected and the matching rules do not grant sudo".to_owned())
        } else {
            decision.denied_reason.clone()
        };
        let matched = decision.matched.as_ref();
        let mut capabilities = decision.capabilities.clone();
        capabilities.sort_unstable();
        Ok(object(json!({
            "path": path,
            "operation": operation.capability(),
            "allowed": allowed,
            "root": decision.root,
            "policies": subject.policies,
            "policy": matched.map(|m| m.policy.to_string()),
            "pattern": matched.map(|m| m.pattern.to_string()),
            "matched_policies": matched.map(|m| m.policies.iter().map(ToString::to_string).collect::<Vec<_>>()),
            "capabilities": capabilities,
            "sudo_required": sudo_required,
            "sudo": decision.sudo,
            "failed_condition": decision.failed_condition,
            "max_ttl": decision.max_ttl,
            "reason": reason,
        })))
    }
}
