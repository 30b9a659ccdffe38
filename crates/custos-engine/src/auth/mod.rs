//! Auth methods: the `sys/auth` table, routing of `auth/<path>/...` to a method's backend, and
//! the login flow (no token, lockout, tune TTLs, token issued by the pipeline).
//!
//! The table has the mount table's shape ([`MountEntry`]) and is stored behind the barrier at
//! `core/auth`, changed only with a compare-and-swap, mirrored in memory and reloaded when
//! another node changes it (`mirror::TABLES`). Entry paths have no `auth/` prefix (`userpass/`),
//! as Vault lists them. `token/` is always there; it is the token store's and is never routed
//! to a backend here (`auth/token/...` is served by the token store).
//!
//! A method's data lives under `logical/<uuid>/`, the same prefix scheme as secrets engines
//! (UUIDs never collide), so disabling a method deletes exactly its keys; it also revokes the
//! tokens the method's logins issued (found by their creation path, `auth/<path>/...`).
//!
//! A backend names its login paths ([`LogicalBackend::unauthenticated_paths`]), which the route
//! table (`crate::routes`) must also declare public. Requests there need no token: they are audited with the caller `login`, checked against the login lockout
//! ([`lockout`]), and a failed answer (400 or 403) counts as a failed login. A successful
//! login's grant gets the method's tuned TTLs and becomes a token (wrapped when the request
//! asked for `X-Vault-Wrap-TTL`).

pub(crate) mod approle;
pub(crate) mod cert;
pub(crate) mod lockout;
pub(crate) mod role;
pub(crate) mod token_fields;
pub(crate) mod userpass;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::logical::{LogicalBackend, LogicalResponse, MountContext, Operation};
use crate::mounts::{MountConfig, MountEntry, MountTable, normalize_mount_path};
use crate::pipeline::{AuditEvent, Request, object};
use crate::{Engine, EngineError, TokenGrant, Unsealed};

pub use lockout::{LockoutPolicy, LoginLockout};

/// Where the auth table is stored.
pub(crate) const AUTH_PATH: &str = "core/auth";

const TOKEN_PATH: &str = "token/";

/// The auth method types custos knows, and the backend serving one. The token store (`token`)
/// has no backend here.
pub(crate) fn backend_for(kind: &str) -> Result<Arc<dyn LogicalBackend>, EngineError> {
    match kind {
        "userpass" => Ok(Arc::new(userpass::Userpass)),
        "approle" => Ok(Arc::new(approle::AppRole)),
        "cert" => Ok(Arc::new(cert::CertAuth)),
        other => Err(EngineError::InvalidRequest(format!(
            "plugin not found in the catalog: {other}"
        ))),
    }
}

/// The `token/` entry every table starts with.
fn token_entry() -> Result<MountEntry, EngineError> {
    let uuid = crate::random_id()?;
    Ok(MountEntry {
        path: TOKEN_PATH.into(),
        kind: "token".into(),
        description: "token based credentials".into(),
        accessor: format!("auth_token_{}", &uuid[..8]),
        uuid,
        options: BTreeMap::new(),
        config: MountConfig::default(),
        local: false,
        seal_wrap: false,
    })
}

/// Reads the auth table; a store that has none yet (initialised before auth methods existed,
/// or never unsealed since) gets one with the `token/` entry, written once with a
/// compare-and-swap so every node ends up with the same accessor.
pub(crate) async fn load_or_create(barrier: &crate::Barrier) -> Result<MountTable, EngineError> {
    let table = MountTable::load_at(barrier, AUTH_PATH).await?;
    if table.revision.is_some() {
        return Ok(table);
    }
    let mut table = MountTable::empty();
    table.entries.push(token_entry()?);
    if table.store_at(barrier, AUTH_PATH).await? {
        Ok(table)
    } else {
        // Another node wrote it first: use theirs.
        MountTable::load_at(barrier, AUTH_PATH).await
    }
}

/// Reloads the auth table from storage: another node may have changed it.
pub(crate) async fn reload(unsealed: &Unsealed) -> Result<(), EngineError> {
    let table = MountTable::load_at(&unsealed.barrier, AUTH_PATH).await?;
    if table.revision.is_some() {
        unsealed.set_auths(table);
    }
    Ok(())
}

/// One auth method as `sys/auth` lists it (Vault's shape).
fn auth_json(entry: &MountEntry) -> Value {
    let mut out = crate::sys::entry_json(entry);
    if let Some(Value::Object(config)) = out.get_mut("config") {
        config.insert("token_type".into(), json!("default-service"));
    }
    // Vault reports `null` for a method without options.
    let options = if entry.options.is_empty() {
        Value::Null
    } else {
        json!(entry.options)
    };
    out.insert("options".into(), options);
    if entry.kind != "token" {
        out.insert("deprecation_status".into(), json!("supported"));
    }
    Value::Object(out)
}

/// Whether `relative` (a path below a method's mount) is one of `patterns`: exact, or with a
/// trailing `*` matching any rest.
pub(crate) fn matches_any(patterns: &[&str], relative: &str) -> bool {
    patterns
        .iter()
        .any(|pattern| match pattern.strip_suffix('*') {
            Some(prefix) => relative.starts_with(prefix),
            None => relative.trim_end_matches('/') == *pattern,
        })
}

/// `auth/token` and everything under it belong to the token store.
fn is_token_store(rest: &str) -> bool {
    rest == "token" || rest.starts_with(TOKEN_PATH)
}

/// Applies the method's tuned TTLs to a login's grant: its default when the grant names none,
/// its maximum as a ceiling.
pub(crate) fn apply_mount_ttls(grant: &mut TokenGrant, config: &MountConfig) {
    if grant.ttl == 0 {
        grant.ttl = config.default_lease_ttl;
    }
    if config.max_lease_ttl != 0 && (grant.max_ttl == 0 || grant.max_ttl > config.max_lease_ttl) {
        grant.max_ttl = config.max_lease_ttl;
    }
    if grant.max_ttl != 0 && grant.ttl > grant.max_ttl {
        grant.ttl = grant.max_ttl;
    }
}

/// The auth method a request path is under, with its backend and the path below the method.
struct Method {
    entry: MountEntry,
    backend: Arc<dyn LogicalBackend>,
    relative: String,
}

impl Engine {
    /// The method serving `path` (`auth/<method path>/...`, never the token store's), if any.
    fn method_at(&self, unsealed: &Unsealed, path: &str) -> Result<Option<Method>, EngineError> {
        let Some(rest) = path
            .strip_prefix("auth/")
            .filter(|rest| !is_token_store(rest))
        else {
            return Ok(None);
        };
        let table = unsealed.auths();
        let Some(entry) = table.route(rest).filter(|entry| entry.kind != "token") else {
            return Ok(None);
        };
        Ok(Some(Method {
            backend: backend_for(&entry.kind)?,
            relative: rest
                .strip_prefix(&entry.path)
                .unwrap_or_default()
                .to_owned(),
            entry: entry.clone(),
        }))
    }

    /// Asks the auth method whose login issued `token` whether it may be renewed, and with
    /// which of its role's current TTLs (Vault's login renewal). Tokens that no method's login
    /// issued (`auth/token/create`, the root token) are not asked about.
    pub(crate) async fn login_renewal(
        &self,
        unsealed: &Unsealed,
        token: &crate::token::TokenEntry,
    ) -> Result<Option<crate::logical::RenewalLimits>, EngineError> {
        let Some(method) = self.method_at(unsealed, &token.path)? else {
            return Ok(None);
        };
        let ctx = self.method_context(unsealed, &method.entry);
        let login = crate::logical::LoginRenewal {
            path: method.relative,
            metadata: token.meta.clone().unwrap_or_default(),
            policies: token.policies.clone(),
        };
        method.backend.renew_login(&ctx, &login).await
    }

    /// What the method's backend needs to serve one request.
    /// The existence check of the auth method serving `request` (see
    /// [`crate::logical::LogicalBackend::exists`]); `None` when no method serves it.
    pub(crate) async fn auth_method_exists(
        &self,
        unsealed: &Unsealed,
        request: &Request,
    ) -> Result<Option<bool>, EngineError> {
        let Some(method) = self.method_at(unsealed, &request.path)? else {
            return Ok(None);
        };
        let context = self.method_context(unsealed, &method.entry);
        let probe = crate::logical::LogicalRequest {
            operation: request.operation,
            path: method.relative,
            data: None,
            query: request.query.clone(),
            merge_patch: request.merge_patch,
            connection: request.connection.clone(),
        };
        method.backend.exists(&context, &probe).await
    }

    fn method_context(&self, unsealed: &Unsealed, entry: &MountEntry) -> MountContext {
        MountContext {
            storage: crate::logical::MountStorage::new(unsealed.barrier.clone(), &entry.uuid),
            mount_path: format!("auth/{}", entry.path),
            options: entry.options.clone(),
            config: entry.config.clone(),
            now: self.now(),
            max_value_bytes: self.inner.limits.max_value_bytes,
            mount_uuid: entry.uuid.clone(),
            states: unsealed.mount_states.clone(),
            feed_lost: self.inner.follower.deaf() || crate::index::reading_fresh(),
        }
    }

    /// Serves `request` if it is a login (a method's unauthenticated path): `Ok(Err(request))`
    /// hands it back otherwise, for the authenticated pipeline.
    pub(crate) async fn try_login(
        &self,
        unsealed: &Unsealed,
        request: Request,
    ) -> Result<Result<Option<LogicalResponse>, Request>, EngineError> {
        // A method whose backend cannot be built has no login paths; the authenticated
        // pipeline reports the problem to a caller with a token.
        let Ok(Some(method)) = self.method_at(unsealed, &request.path) else {
            return Ok(Err(request));
        };
        // A login path is one the backend names and the route table declares public: a
        // backend cannot make a path skip authentication on its own (`crate::routes`).
        if !matches_any(method.backend.unauthenticated_paths(), &method.relative)
            || !crate::routes::login_declared(&method.entry.kind, &method.relative)
        {
            return Ok(Err(request));
        }
        // A login carries no token to check first, so the path is checked here.
        crate::pipeline::validate_path(&request.path)?;
        let wrap_ttl = request
            .wrap_ttl
            .map(crate::wrapping::check_ttl)
            .transpose()?;
        let request_id = request.request_id.clone();
        let path = request.path.clone();
        let operation = request.operation;
        // The login's credentials (passwords, secret ids) are hashed like every string.
        let trail = self
            .audit_request(unsealed, &AuditEvent::of_request(&request, "login"))
            .await?;
        let result = async {
            let answer = self.login(unsealed, method, request).await?;
            // `X-Vault-Wrap-TTL` on a login wraps the token, as in Vault.
            match (wrap_ttl, answer) {
                (Some(ttl), Some(answer)) if answer.auth.is_some() => {
                    self.wrap(unsealed, answer, ttl, &path).await.map(Some)
                }
                (_, answer) => Ok(answer),
            }
        }
        .await;
        let event = AuditEvent::new(&request_id, operation, &path, "login");
        self.audit_response(unsealed, trail, &event, crate::audit::Outcome::of(&result))
            .await?;
        result.map(Ok)
    }

    /// A login: the lockout first, then the method, then the token for its grant.
    async fn login(
        &self,
        unsealed: &Unsealed,
        method: Method,
        request: Request,
    ) -> Result<Option<LogicalResponse>, EngineError> {
        let path = request.path.clone();
        let context = self.method_context(unsealed, &method.entry);
        let request = crate::pipeline::to_logical(request, &context.mount_path);
        let subject = method.backend.login_subject(&request);
        let connection = request.connection.clone();
        let attempt = lockout::Attempt {
            address: request.connection.remote_addr,
            accessor: &method.entry.accessor,
            subject: &subject,
        };
        let policy = self.inner.limits.login_lockout;
        self.inner.lockout.check(&policy, self.now(), &attempt)?;
        let result = method.backend.handle(&context, request).await;
        match &result {
            // Wrong credentials, and malformed attempts, count as failures; storage trouble
            // does not.
            Err(EngineError::InvalidRequest(_) | EngineError::PermissionDenied) => {
                self.inner.lockout.failure(&policy, self.now(), &attempt);
            }
            Ok(Some(answer)) if answer.grant.is_some() => self.inner.lockout.success(&attempt),
            _ => {}
        }
        let Some(mut answer) = result? else {
            return Ok(None);
        };
        if let Some(grant) = &mut answer.grant {
            // As Vault: only `sys/generate-root` (and init) make root tokens.
            if grant.policies.iter().any(|policy| policy == "root") {
                return Err(EngineError::InvalidRequest(
                    "auth methods cannot create root tokens".into(),
                ));
            }
            apply_mount_ttls(grant, &method.entry.config);
            self.inner.inventory.record_login(
                &crate::inventory::LoginCredential {
                    method_type: &method.entry.kind,
                    mount: &method.entry.path,
                    grant,
                    connection: &connection,
                },
                self.now().as_second(),
            );
        }
        self.issue_granted(unsealed, answer, &path).await.map(Some)
    }

    /// Routes an authenticated request under `auth/<path>/` to its method (never the token
    /// store's `auth/token/`): `Ok(Err(request))` hands it back when it is not under `auth/`.
    pub(crate) async fn route_auth(
        &self,
        unsealed: &Unsealed,
        request: Request,
    ) -> Result<Result<Option<LogicalResponse>, Request>, EngineError> {
        let under_methods = request
            .path
            .strip_prefix("auth/")
            .is_some_and(|rest| !is_token_store(rest));
        if !under_methods {
            return Ok(Err(request));
        }
        let Some(method) = self.method_at(unsealed, &request.path)? else {
            return Err(EngineError::NoRoute(request.path));
        };
        let context = self.method_context(unsealed, &method.entry);
        let request = crate::pipeline::to_logical(request, &context.mount_path);
        method.backend.handle(&context, request).await.map(Ok)
    }

    /// `sys/auth`, `sys/auth/<path>`, `sys/auth/<path>/tune`. `rest` is below `sys/`.
    pub(crate) async fn handle_sys_auth(
        &self,
        unsealed: &Unsealed,
        rest: &str,
        operation: Operation,
        data: &Map<String, Value>,
    ) -> Option<Result<Option<LogicalResponse>, EngineError>> {
        if rest == "auth" {
            return Some(match operation {
                Operation::Read => Ok(Some(self.list_auths(unsealed))),
                _ => Err(EngineError::MethodNotAllowed),
            });
        }
        let path = rest.strip_prefix("auth/")?;
        if let Some(path) = path.strip_suffix("/tune") {
            return Some(match operation {
                Operation::Read => self.read_auth_tune(unsealed, path).map(Some),
                Operation::Create | Operation::Update => self
                    .tune_auth(unsealed, path, data)
                    .await
                    .map(|()| Some(LogicalResponse::no_content())),
                _ => Err(EngineError::MethodNotAllowed),
            });
        }
        Some(match operation {
            Operation::Read => normalize_mount_path(path).and_then(|path| {
                let table = unsealed.auths();
                table
                    .find(&path)
                    .map(|entry| Some(object(auth_json(entry))))
                    .ok_or_else(|| EngineError::InvalidRequest(format!("No auth engine at {path}")))
            }),
            Operation::Create | Operation::Update => self
                .enable_auth(unsealed, path, data)
                .await
                .map(|()| Some(LogicalResponse::no_content())),
            Operation::Delete => self
                .disable_auth(unsealed, path)
                .await
                .map(|()| Some(LogicalResponse::no_content())),
            _ => Err(EngineError::MethodNotAllowed),
        })
    }

    fn list_auths(&self, unsealed: &Unsealed) -> LogicalResponse {
        let table = unsealed.auths();
        let mut data = Map::new();
        for entry in &table.entries {
            data.insert(entry.path.clone(), auth_json(entry));
        }
        LogicalResponse::data(data)
    }

    fn read_auth_tune(
        &self,
        unsealed: &Unsealed,
        path: &str,
    ) -> Result<LogicalResponse, EngineError> {
        let path = normalize_mount_path(path)?;
        let table = unsealed.auths();
        let entry = table.find(&path).ok_or_else(|| {
            EngineError::InvalidRequest(format!("cannot fetch sysview for path \"auth/{path}\""))
        })?;
        let mut data = crate::sys::tune_json(entry);
        data.insert("token_type".into(), json!("default-service"));
        Ok(LogicalResponse::data(data))
    }

    async fn enable_auth(
        &self,
        unsealed: &Unsealed,
        path: &str,
        data: &Map<String, Value>,
    ) -> Result<(), EngineError> {
        let path = normalize_mount_path(path)?;
        let kind = crate::sys::string_field(data, "type")?
            .filter(|kind| !kind.is_empty())
            .ok_or_else(|| EngineError::InvalidRequest("missing type".into()))?;
        // Refuse unknown types (and a second token store) before touching the table.
        backend_for(&kind)?;
        let description = crate::sys::string_field(data, "description")?.unwrap_or_default();
        let config = crate::sys::config_field(data, MountConfig::default())?;
        let uuid = crate::random_id()?;
        let entry = MountEntry {
            accessor: format!("auth_{kind}_{}", &uuid[..8]),
            uuid,
            path: path.clone(),
            kind,
            description,
            options: crate::sys::options_field(data)?,
            config,
            local: crate::sys::bool_field(data, "local")?.unwrap_or(false),
            seal_wrap: crate::sys::bool_field(data, "seal_wrap")?.unwrap_or(false),
        };
        self.update_auths(unsealed, |table| {
            if let Some(existing) = table.entries.iter().find(|existing| {
                path.starts_with(&existing.path) || existing.path.starts_with(&path)
            }) {
                return Err(EngineError::InvalidRequest(format!(
                    "path is already in use at {}",
                    existing.path
                )));
            }
            table.entries.push(entry.clone());
            Ok(())
        })
        .await?;
        tracing::info!(path = %path, kind = %entry.kind, "auth method enabled");
        Ok(())
    }

    /// Disables a method: out of the table first (no new login, nothing new lands under its
    /// prefix), then the tokens its logins issued are revoked (with their children), then its
    /// data is deleted.
    async fn disable_auth(&self, unsealed: &Unsealed, path: &str) -> Result<(), EngineError> {
        let path = normalize_mount_path(path)?;
        if path == TOKEN_PATH {
            return Err(EngineError::InvalidRequest(
                "token credential backend cannot be disabled".into(),
            ));
        }
        let mut removed = None;
        self.update_auths(unsealed, |table| {
            removed = table
                .entries
                .iter()
                .position(|entry| entry.path == path)
                .map(|index| table.entries.remove(index));
            Ok(())
        })
        .await?;
        // As Vault: disabling a path where nothing is enabled succeeds.
        let Some(entry) = removed else {
            return Ok(());
        };
        let revoked = self
            .revoke_tokens_under(unsealed, &format!("auth/{path}"))
            .await?;
        crate::sys::delete_mount_data(&unsealed.barrier, &entry.uuid).await?;
        tracing::info!(path = %path, revoked, "auth method disabled, its tokens revoked and its data deleted");
        Ok(())
    }

    /// Revokes, with their children, the live tokens created under `prefix` (a method's
    /// `auth/<path>/`). A scan of every token: disabling a method is rare, and the store keeps
    /// no index by creation path.
    async fn revoke_tokens_under(
        &self,
        unsealed: &Unsealed,
        prefix: &str,
    ) -> Result<u64, EngineError> {
        let mut revoked = 0;
        let mut pages = unsealed.barrier.pages(crate::token::TOKEN_PREFIX, 128);
        while let Some(keys) = pages.next_page().await? {
            for key in &keys {
                let Some(hash) = key.strip_prefix(crate::token::TOKEN_PREFIX) else {
                    continue;
                };
                let Some((entry, _)) = self.load_token(unsealed, hash).await? else {
                    continue;
                };
                if entry.path.starts_with(prefix)
                    && entry.revoking.is_none()
                    && self
                        .revoke_token(unsealed, hash, crate::token::Revocation::Tree)
                        .await?
                {
                    revoked += 1;
                }
            }
        }
        Ok(revoked)
    }

    /// `sys/auth/<path>/tune`: `default_lease_ttl`, `max_lease_ttl`, `description` (and the
    /// other settings `sys/mounts/<path>/tune` takes).
    async fn tune_auth(
        &self,
        unsealed: &Unsealed,
        path: &str,
        data: &Map<String, Value>,
    ) -> Result<(), EngineError> {
        let path = normalize_mount_path(path)?;
        let description = crate::sys::string_field(data, "description")?;
        self.update_auths(unsealed, |table| {
            let entry = table
                .entries
                .iter_mut()
                .find(|entry| entry.path == path)
                .ok_or_else(|| {
                    EngineError::InvalidRequest(format!(
                        "cannot fetch sysview for path \"auth/{path}\""
                    ))
                })?;
            crate::sys::tune_entry(entry, data, description.as_deref())
        })
        .await
    }

    /// Applies `change` to the stored auth table with a compare-and-swap, retrying on races.
    async fn update_auths(
        &self,
        unsealed: &Unsealed,
        mut change: impl FnMut(&mut MountTable) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        for _ in 0..16 {
            let mut table = load_or_create(&unsealed.barrier).await?;
            change(&mut table)?;
            if table.store_at(&unsealed.barrier, AUTH_PATH).await? {
                unsealed.set_auths(table);
                return Ok(());
            }
        }
        Err(EngineError::Conflict)
    }

    /// Enables an auth method as the root token would (tests, dev set-up).
    pub async fn enable_auth_method(
        &self,
        token: &str,
        path: &str,
        kind: &str,
    ) -> Result<(), EngineError> {
        let request = Request::new(Operation::Update, format!("sys/auth/{path}"))
            .token(token)
            .data(json!({ "type": kind }));
        self.handle(request).await.map(drop)
    }
}

#[cfg(test)]
mod tests;
