//! Logical requests: what a secrets engine mounted at a path receives and answers.
//!
//! The HTTP layer turns `/v1/<path>` into a [`LogicalRequest`]; the engine's pipeline
//! authenticates, authorises and audits it, finds the mount with the longest matching prefix,
//! and hands the request (with the path made relative to the mount) to that mount's
//! [`LogicalBackend`]. Backends see only their own [`MountStorage`]: a barrier view under
//! `logical/<mount uuid>/`, so one mount can never read another's data.

use std::collections::BTreeMap;
use std::sync::Arc;

use custos_storage::{ListPage, Revision, Transaction};
use jiff::Timestamp;
use serde_json::{Map, Value};

use crate::{Barrier, EngineError, Plain};

/// What the caller wants to do, from the HTTP method (and `?list=true`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// GET
    Read,
    /// LIST, or GET with `?list=true`
    List,
    /// PUT/POST on a path with no current value. Backends that cannot tell treat it as `Update`.
    Create,
    /// PUT/POST
    Update,
    /// PATCH
    Patch,
    /// DELETE
    Delete,
}

impl Operation {
    /// The policy capability this operation needs (`create read update patch delete list`).
    pub fn capability(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::List => "list",
            Operation::Create => "create",
            Operation::Update => "update",
            Operation::Patch => "patch",
            Operation::Delete => "delete",
        }
    }
}

/// A request as a mounted backend sees it.
#[derive(Clone, Debug)]
pub struct LogicalRequest {
    pub operation: Operation,
    /// The path below the mount, without a leading slash (`data/app/db` for `secret/data/app/db`
    /// on a mount at `secret/`). Already validated: no empty segments, no `.`/`..` segments.
    pub path: String,
    /// The JSON object body (`None` when the request had none).
    pub data: Option<Map<String, Value>>,
    /// Query parameters (`version`, `list`, ...), decoded.
    pub query: BTreeMap<String, String>,
    /// True when the body was sent as `application/merge-patch+json`.
    pub merge_patch: bool,
    /// The connection's facts (address, client certificate): what login methods check.
    pub connection: crate::Connection,
}

impl LogicalRequest {
    /// A field from the body, else from the query string (Vault reads both for GET parameters).
    pub fn field(&self, name: &str) -> Option<Value> {
        self.data
            .as_ref()
            .and_then(|data| data.get(name).cloned())
            .or_else(|| {
                self.query
                    .get(name)
                    .map(|value| Value::String(value.clone()))
            })
    }
}

/// A backend's answer. `data: None` renders as `204 No Content` (unless `missing`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogicalResponse {
    pub data: Option<Map<String, Value>>,
    pub warnings: Vec<String>,
    /// The answer describes something that is not there (a deleted or destroyed KV version):
    /// rendered as 404 *with* this body, as Vault does. With `data` `None` it is rendered as 404
    /// with an empty body, or, when there are `warnings`, 404 with a body whose data is null.
    pub missing: bool,
    /// Set when the response was wrapped: `data` is then `None` and the client gets this.
    pub wrap_info: Option<WrapInfo>,
    /// Vault's `lease_duration` in seconds: how long a client may cache the answer (KV v1 reads
    /// set it; 0 elsewhere).
    pub lease_duration: u64,
    /// Set by an auth method's login: the token to create. The pipeline issues it (as a child
    /// of nobody) and answers with [`LogicalResponse::auth`] instead; a backend never creates
    /// tokens itself.
    pub grant: Option<crate::TokenGrant>,
    /// Vault's `auth` block: the token a login or `auth/token/create` issued.
    pub auth: Option<crate::IssuedToken>,
}

/// Vault's `wrap_info`: the single-use token that unwraps a response.
#[derive(Clone, PartialEq, Eq)]
pub struct WrapInfo {
    pub token: String,
    pub accessor: String,
    pub ttl: u64,
    pub creation_time: String,
    pub creation_path: String,
}

impl std::fmt::Debug for WrapInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WrapInfo")
            .field("accessor", &self.accessor)
            .field("ttl", &self.ttl)
            .field("creation_path", &self.creation_path)
            .finish_non_exhaustive()
    }
}

impl LogicalResponse {
    pub fn data(data: Map<String, Value>) -> Self {
        LogicalResponse {
            data: Some(data),
            warnings: Vec::new(),
            missing: false,
            wrap_info: None,
            lease_duration: 0,
            grant: None,
            auth: None,
        }
    }

    /// A login's answer: no data, a token to issue.
    pub fn login(grant: crate::TokenGrant) -> Self {
        LogicalResponse {
            grant: Some(grant),
            ..LogicalResponse::default()
        }
    }

    pub fn no_content() -> Self {
        LogicalResponse::default()
    }

    /// Vault's list answer: `{"keys": [...]}`; folders end with `/`.
    pub fn list(keys: Vec<String>) -> Self {
        let mut data = Map::new();
        data.insert(
            "keys".into(),
            Value::Array(keys.into_iter().map(Value::String).collect()),
        );
        LogicalResponse::data(data)
    }
}

/// A mount's private slice of the barrier: every key is prefixed with `logical/<uuid>/`.
#[derive(Clone, Debug)]
pub struct MountStorage {
    barrier: Arc<Barrier>,
    prefix: String,
}

impl MountStorage {
    pub fn new(barrier: Arc<Barrier>, mount_uuid: &str) -> MountStorage {
        MountStorage {
            barrier,
            prefix: format!("logical/{mount_uuid}/"),
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    pub async fn get(&self, key: &str) -> Result<Option<Plain>, EngineError> {
        self.barrier.get(&self.key(key)).await
    }

    /// Keys under `prefix` (relative to the mount), in byte order, paginated as
    /// [`custos_storage::Storage::list`].
    pub async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage, EngineError> {
        let after = after.map(|after| self.key(after));
        let mut page = self
            .barrier
            .list(&self.key(prefix), after.as_deref(), limit)
            .await?;
        let strip = self.prefix.len();
        for key in &mut page.keys {
            key.drain(..strip);
        }
        if let Some(next) = &mut page.next_after {
            next.drain(..strip.min(next.len()));
        }
        Ok(page)
    }

    /// Commits a transaction whose keys are relative to the mount.
    pub async fn commit(&self, txn: Transaction) -> Result<Revision, EngineError> {
        let prefixed = Transaction {
            conditions: txn
                .conditions
                .into_iter()
                .map(|condition| match condition {
                    custos_storage::Condition::Absent(key) => {
                        custos_storage::Condition::Absent(self.key(&key))
                    }
                    custos_storage::Condition::Revision(key, revision) => {
                        custos_storage::Condition::Revision(self.key(&key), revision)
                    }
                })
                .collect(),
            ops: txn
                .ops
                .into_iter()
                .map(|op| match op {
                    custos_storage::Op::Put(key, value) => {
                        custos_storage::Op::Put(self.key(&key), value)
                    }
                    custos_storage::Op::Delete(key) => custos_storage::Op::Delete(self.key(&key)),
                })
                .collect(),
        };
        self.barrier.commit(prefixed).await
    }

    pub async fn put(&self, key: &str, value: Vec<u8>) -> Result<Revision, EngineError> {
        self.commit(Transaction::new().put(key, value)).await
    }

    pub async fn delete(&self, key: &str) -> Result<Revision, EngineError> {
        self.commit(Transaction::new().delete(key)).await
    }
}

/// What a backend knows about the request beyond its path and body.
#[derive(Clone, Debug)]
pub struct MountContext {
    pub storage: MountStorage,
    /// The mount's path with its trailing slash, e.g. `secret/`.
    pub mount_path: String,
    /// The mount's options (`version` for kv).
    pub options: BTreeMap<String, String>,
    /// The mount's tunable settings (`default_lease_ttl`, ...).
    pub config: crate::MountConfig,
    pub now: Timestamp,
    /// The largest value a request may store, in bytes (after JSON encoding).
    pub max_value_bytes: usize,
    /// The mount's uuid (its storage lives under `logical/<uuid>/`).
    pub mount_uuid: String,
    /// Node-local state of stateful engines, by mount uuid (the API-key index).
    pub states: Arc<MountStates>,
    /// Other nodes share this storage and the change feed that reports their changes is down:
    /// in-memory copies may be stale, so engines that keep some read storage instead.
    pub feed_lost: bool,
}

/// Node-local state that a stateful secrets engine keeps per mount for as long as the engine is
/// unsealed (the API-key engine's index), by mount uuid. Each engine keeps its own type.
#[derive(Default)]
pub struct MountStates {
    by_mount:
        std::sync::RwLock<std::collections::HashMap<String, Arc<dyn std::any::Any + Send + Sync>>>,
}

impl std::fmt::Debug for MountStates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MountStates").finish_non_exhaustive()
    }
}

impl MountStates {
    /// The state of mount `uuid`, made by `make` the first time.
    pub fn get_or_insert_with<T: std::any::Any + Send + Sync>(
        &self,
        uuid: &str,
        make: impl FnOnce() -> T,
    ) -> Result<Arc<T>, EngineError> {
        if let Some(state) = self.get::<T>(uuid) {
            return Ok(state);
        }
        let mut by_mount = self
            .by_mount
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let state = by_mount
            .entry(uuid.to_owned())
            .or_insert_with(|| Arc::new(make()))
            .clone();
        state.downcast::<T>().map_err(|_| {
            EngineError::Internal(format!("mount {uuid} holds the state of another engine"))
        })
    }

    /// The state of mount `uuid`, if it has one of this type.
    pub fn get<T: std::any::Any + Send + Sync>(&self, uuid: &str) -> Option<Arc<T>> {
        let state = self
            .by_mount
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(uuid)
            .cloned()?;
        state.downcast::<T>().ok()
    }

    /// Every mount's state of this type.
    pub fn all<T: std::any::Any + Send + Sync>(&self) -> Vec<(String, Arc<T>)> {
        self.by_mount
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter_map(|(uuid, state)| {
                state
                    .clone()
                    .downcast::<T>()
                    .ok()
                    .map(|state| (uuid.clone(), state))
            })
            .collect()
    }

    /// Forgets a mount's state (the mount was disabled).
    pub fn remove(&self, uuid: &str) {
        self.by_mount
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(uuid);
    }
}

/// A token one of an auth method's logins issued, as the method sees it when the token is to
/// be renewed (Vault's login renewal).
#[derive(Clone, Debug)]
pub struct LoginRenewal {
    /// The login path below the mount (`login`, `login/alice`).
    pub path: String,
    /// The metadata the login gave the token (`role_name`, `username`, `cert_name`, ...).
    pub metadata: BTreeMap<String, String>,
    /// The token's policies (with `default` when it has it).
    pub policies: Vec<String>,
}

/// The token settings of a login's role or user as they are now, applied to a renewal as Vault
/// does; 0: not set (the token's own settings apply).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RenewalLimits {
    pub ttl: u64,
    pub max_ttl: u64,
    pub period: u64,
}

/// Whether two policy lists grant the same, as Vault compares them on renewal: as sets,
/// ignoring `default` (which the token store adds on its own).
pub(crate) fn equivalent_policies(a: &[String], b: &[String]) -> bool {
    let set = |list: &[String]| -> std::collections::BTreeSet<String> {
        list.iter()
            .map(|policy| policy.trim().to_lowercase())
            .filter(|policy| !policy.is_empty() && policy != "default")
            .collect()
    };
    set(a) == set(b)
}

/// A secrets engine that can be mounted (kv v1, kv v2, later transit, apikeys, ...).
#[async_trait::async_trait]
pub trait LogicalBackend: Send + Sync + 'static {
    /// Handles one request. `Ok(None)` means "no such path" and becomes 404 with empty errors,
    /// as Vault answers a read of a missing secret.
    async fn handle(
        &self,
        ctx: &MountContext,
        request: LogicalRequest,
    ) -> Result<Option<LogicalResponse>, EngineError>;

    /// Vault's existence check, asked before a write is authorised: whether something exists at
    /// the request's path. A write where nothing exists needs the `create` capability, one that
    /// replaces something needs `update`. `None` (the default): the backend does not tell them
    /// apart, and every write needs `update`.
    async fn exists(
        &self,
        _ctx: &MountContext,
        _request: &LogicalRequest,
    ) -> Result<Option<bool>, EngineError> {
        Ok(None)
    }

    /// Paths (relative to the mount) served without a token: an auth method's login paths.
    /// A trailing `*` matches any rest (`login/*`). Secrets engines have none.
    fn unauthenticated_paths(&self) -> &'static [&'static str] {
        &[]
    }

    /// Whom a login request tries to log in as (a user name, a role id): failed logins are
    /// counted per auth mount and subject (the login lockout). The default is the request's
    /// path (`login/alice`).
    fn login_subject(&self, request: &LogicalRequest) -> String {
        request.path.clone()
    }

    /// Asked before a token this method's login issued is renewed. `Err` refuses the renewal
    /// (the role or user is gone, or its policies changed); `Ok(Some(limits))` renews with the
    /// role's current TTLs. The default (secrets engines, methods without roles) allows it
    /// unchanged.
    async fn renew_login(
        &self,
        _ctx: &MountContext,
        _login: &LoginRenewal,
    ) -> Result<Option<RenewalLimits>, EngineError> {
        Ok(None)
    }
}
