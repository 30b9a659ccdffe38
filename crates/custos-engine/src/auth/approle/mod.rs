//! AppRole (`auth/approle/...`): machines log in with a role id and a secret id.
//!
//! Storage, relative to the mount:
//! - `hmac-key`: the mount's HMAC-SHA256 key, created on first use. Secret ids and role ids are
//!   stored only as keyed hashes under it, so a copy of the store does not reveal them.
//! - `role/<name>`: a [`Role`], with its role id and a random `uid` that names its secret ids
//!   (a role deleted and created again never inherits the old one's secret ids).
//! - `role-id/<hmac of the role id>`: the name of the role with that role id (login's index).
//! - `secret-id/<role uid>/<hmac of the secret id>`: a [`SecretId`] record, never the secret id.
//! - `accessor/<role uid>/<accessor>`: which secret id an accessor names.
//!
//! A secret id with a use limit is spent with a compare-and-swap on its record: two logins
//! racing for its last use cannot both succeed.

#[cfg(test)]
pub(crate) mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use custos_core::Cidr;
use custos_crypto::{KeyedHasher, constant_time_eq};
use custos_storage::Transaction;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::auth::role;
use crate::auth::token_fields::{
    TokenFields, cidr_list, cidrs_within, count, display_prefix, seconds, stored_cidrs, strings,
};
use crate::kv::{decode, format_time, list_children, parse_bool, unsupported};
use crate::logical::{
    LogicalBackend, LogicalRequest, LogicalResponse, LoginRenewal, MountContext, MountStorage,
    Operation, RenewalLimits,
};
use crate::{EngineError, Revision};

const HMAC_KEY: &str = "hmac-key";
const ROLE_PREFIX: &str = "role/";
const ROLE_ID_PREFIX: &str = "role-id/";
const SECRET_ID_PREFIX: &str = "secret-id/";
const ACCESSOR_PREFIX: &str = "accessor/";
/// Vault's answer to every failed login, whichever of the two ids was wrong.
pub(crate) const INVALID_CREDENTIALS: &str = "invalid role or secret ID";
/// Vault's limit on role ids and secret ids (stored only as hashes, so any length fits).
const MAX_INPUT_BYTES: usize = 4096;
/// Role names are storage keys: kept well below the storage key limit.
/// How often a login retries spending a use that another login changed under it.
const CAS_ATTEMPTS: usize = 16;
/// Deletes per transaction when a role's secret ids are purged or tidied.
const DELETE_BATCH: usize = 256;
const LIST_PAGE: usize = 1000;
/// Vault renders "never expires" as Go's zero time.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// A role: what its logins must present and the token they get.
#[derive(Clone, Serialize, Deserialize)]
struct Role {
    /// Random; names the folder of the role's secret ids.
    uid: String,
    role_id: String,
    bind_secret_id: bool,
    secret_id_bound_cidrs: Vec<String>,
    secret_id_num_uses: u64,
    secret_id_ttl: u64,
    local_secret_ids: bool,
    token: TokenFields,
}

/// What is kept about a secret id (never the secret id itself).
#[derive(Clone, Serialize, Deserialize)]
struct SecretId {
    accessor: String,
    /// Uses left; 0: unlimited.
    num_uses: u64,
    ttl: u64,
    creation_nanos: i128,
    /// 0: never expires.
    expiration_nanos: i128,
    last_updated_nanos: i128,
    metadata: BTreeMap<String, String>,
    cidr_list: Vec<String>,
    token_bound_cidrs: Vec<String>,
}

impl SecretId {
    fn expired(&self, now: Timestamp) -> bool {
        self.expiration_nanos != 0 && now.as_nanosecond() >= self.expiration_nanos
    }

    fn render(&self) -> Map<String, Value> {
        let time = |nanos: i128| {
            Timestamp::from_nanosecond(nanos).map_or_else(|_| ZERO_TIME.to_owned(), format_time)
        };
        let mut data = Map::new();
        data.insert("cidr_list".into(), strings(&self.cidr_list));
        data.insert("creation_time".into(), time(self.creation_nanos).into());
        data.insert(
            "expiration_time".into(),
            if self.expiration_nanos == 0 {
                ZERO_TIME.to_owned()
            } else {
                time(self.expiration_nanos)
            }
            .into(),
        );
        data.insert(
            "last_updated_time".into(),
            time(self.last_updated_nanos).into(),
        );
        data.insert("metadata".into(), json!(self.metadata));
        data.insert("secret_id_accessor".into(), self.accessor.clone().into());
        data.insert("secret_id_num_uses".into(), self.num_uses.into());
        data.insert("secret_id_ttl".into(), self.ttl.into());
        data.insert("token_bound_cidrs".into(), strings(&self.token_bound_cidrs));
        data
    }
}

#[derive(Serialize, Deserialize)]
struct RoleIdEntry {
    name: String,
}

#[derive(Serialize, Deserialize)]
struct AccessorEntry {
    secret_id_hmac: String,
}

/// The AppRole auth method.
pub(crate) struct AppRole;

/// The endpoints, from the request path.
enum Route<'a> {
    Login,
    Roles,
    Role(&'a str),
    RoleId(&'a str),
    SecretId(&'a str),
    CustomSecretId(&'a str),
    SecretIdLookup(&'a str),
    SecretIdDestroy(&'a str),
    AccessorLookup(&'a str),
    AccessorDestroy(&'a str),
    Tidy,
    /// One setting of a role (`role/<name>/token-ttl`, ...).
    RoleField(&'a str, &'static FieldEndpoint),
}

/// Vault's one-field role endpoints: `role/<name>/<path>` reads, writes or (on delete) resets
/// one field of the role.
struct FieldEndpoint {
    path: &'static str,
    field: &'static str,
    /// Another name the body may use for the field.
    alias: Option<&'static str>,
    /// The value a delete restores.
    default: fn() -> Value,
    writable: bool,
}

static FIELD_ENDPOINTS: [FieldEndpoint; 11] = {
    const fn endpoint(
        path: &'static str,
        field: &'static str,
        alias: Option<&'static str>,
        default: fn() -> Value,
    ) -> FieldEndpoint {
        FieldEndpoint {
            path,
            field,
            alias,
            default,
            writable: true,
        }
    }
    fn zero() -> Value {
        Value::from(0)
    }
    fn empty() -> Value {
        Value::Array(Vec::new())
    }
    fn yes() -> Value {
        Value::Bool(true)
    }
    fn no() -> Value {
        Value::Bool(false)
    }
    [
        endpoint("policies", "token_policies", Some("policies"), empty),
        endpoint("secret-id-num-uses", "secret_id_num_uses", None, zero),
        endpoint("secret-id-ttl", "secret_id_ttl", None, zero),
        endpoint("token-num-uses", "token_num_uses", None, zero),
        endpoint("token-ttl", "token_ttl", None, zero),
        endpoint("token-max-ttl", "token_max_ttl", None, zero),
        endpoint("period", "token_period", Some("period"), zero),
        endpoint("bind-secret-id", "bind_secret_id", None, yes),
        endpoint(
            "secret-id-bound-cidrs",
            "secret_id_bound_cidrs",
            None,
            empty,
        ),
        endpoint("token-bound-cidrs", "token_bound_cidrs", None, empty),
        FieldEndpoint {
            path: "local-secret-ids",
            field: "local_secret_ids",
            alias: None,
            default: no,
            writable: false,
        },
    ]
};

/// Role names are case-insensitive, as Vault's: `role/Web/...` is `role/web/...`.
fn lowercase_role_name(path: &str) -> String {
    match path.strip_prefix("role/") {
        Some(rest) => {
            let (name, tail) = rest
                .split_once('/')
                .map_or((rest, None), |(name, tail)| (name, Some(tail)));
            match tail {
                Some(tail) => format!("role/{}/{tail}", name.to_lowercase()),
                None => format!("role/{}", name.to_lowercase()),
            }
        }
        None => path.to_owned(),
    }
}

fn route(path: &str) -> Option<Route<'_>> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    Some(match segments.as_slice() {
        ["login"] => Route::Login,
        ["role"] => Route::Roles,
        ["role", name] => Route::Role(name),
        ["role", name, "role-id"] => Route::RoleId(name),
        ["role", name, "secret-id"] => Route::SecretId(name),
        ["role", name, "custom-secret-id"] => Route::CustomSecretId(name),
        ["role", name, "secret-id", "lookup"] => Route::SecretIdLookup(name),
        ["role", name, "secret-id", "destroy"] => Route::SecretIdDestroy(name),
        ["role", name, "secret-id-accessor", "lookup"] => Route::AccessorLookup(name),
        ["role", name, "secret-id-accessor", "destroy"] => Route::AccessorDestroy(name),
        ["tidy", "secret-id"] => Route::Tidy,
        ["role", name, field] => Route::RoleField(
            name,
            FIELD_ENDPOINTS
                .iter()
                .find(|endpoint| endpoint.path == *field)?,
        ),
        _ => return None,
    })
}

#[async_trait::async_trait]
impl LogicalBackend for AppRole {
    /// `role/<name>` exists when the role does (Vault's existence check: creating a role needs
    /// `create`, changing one `update`).
    async fn exists(
        &self,
        ctx: &MountContext,
        request: &LogicalRequest,
    ) -> Result<Option<bool>, EngineError> {
        let path = lowercase_role_name(&request.path);
        match route(&path) {
            Some(Route::Role(name)) => Ok(Some(ctx.storage.get(&role_key(name)).await?.is_some())),
            _ => Ok(None),
        }
    }

    async fn handle(
        &self,
        ctx: &MountContext,
        request: LogicalRequest,
    ) -> Result<Option<LogicalResponse>, EngineError> {
        use Operation::{Create, Delete, List, Read, Update};
        let path = lowercase_role_name(&request.path);
        let Some(route) = route(&path) else {
            return Ok(None);
        };
        let operation = request.operation;
        let storage = &ctx.storage;
        match (route, operation) {
            (Route::Login, Create | Update) => login(ctx, &request).await.map(Some),
            (Route::Roles, List) => list_children(storage, ROLE_PREFIX).await,
            (Route::Role(name), Read) => read_role(storage, name).await,
            (Route::Role(name), Create | Update) => {
                let empty = Map::new();
                let data = request.data.as_ref().unwrap_or(&empty);
                write_role(ctx, name, data, false).await
            }
            (Route::RoleField(name, endpoint), Read) => {
                read_role_field(storage, name, endpoint).await
            }
            (Route::RoleField(name, endpoint), Create | Update) if endpoint.writable => {
                let value = std::iter::once(endpoint.field)
                    .chain(endpoint.alias)
                    .find_map(|field| request.field(field))
                    .ok_or_else(|| invalid(format!("missing {}", endpoint.field)))?;
                let data = Map::from_iter([(endpoint.field.to_owned(), value)]);
                write_role(ctx, name, &data, true).await
            }
            (Route::RoleField(name, endpoint), Delete) if endpoint.writable => {
                let data = Map::from_iter([(endpoint.field.to_owned(), (endpoint.default)())]);
                write_role(ctx, name, &data, true).await
            }
            (Route::Role(name), Delete) => delete_role(storage, name).await,
            (Route::RoleId(name), Read) => read_role_id(storage, name).await,
            (Route::RoleId(name), Create | Update) => write_role_id(storage, name, &request).await,
            (Route::SecretId(name), Create | Update) => {
                generate_secret_id(ctx, name, &request, None).await
            }
            (Route::SecretId(name), List) => list_accessors(storage, name).await,
            (Route::CustomSecretId(name), Create | Update) => {
                let secret_id = match request.field("secret_id") {
                    Some(Value::String(secret_id)) if !secret_id.is_empty() => secret_id,
                    Some(Value::String(_)) | None => {
                        return Err(invalid("missing secret_id"));
                    }
                    Some(_) => return Err(invalid("secret_id must be a string")),
                };
                generate_secret_id(ctx, name, &request, Some(secret_id)).await
            }
            (Route::SecretIdLookup(name), Create | Update) => {
                lookup_secret_id(ctx, name, &request).await
            }
            (Route::SecretIdDestroy(name), Create | Update | Delete) => {
                destroy_secret_id(storage, name, &request).await
            }
            (Route::AccessorLookup(name), Create | Update) => {
                lookup_accessor(ctx, name, &request).await
            }
            (Route::AccessorDestroy(name), Create | Update | Delete) => {
                destroy_accessor(storage, name, &request).await
            }
            (Route::Tidy, Create | Update) => tidy(ctx).await.map(Some),
            (_, operation) => Err(unsupported(operation, &request.path)),
        }
    }

    fn unauthenticated_paths(&self) -> &'static [&'static str] {
        &["login"]
    }

    /// Failed logins are counted per role id (whatever was sent, known or not).
    fn login_subject(&self, request: &LogicalRequest) -> String {
        match request.field("role_id") {
            Some(Value::String(role_id)) => format!("role_id:{role_id}"),
            _ => "role_id:".into(),
        }
    }

    /// As Vault: a token whose role was deleted is not renewed; otherwise the role's current
    /// TTLs apply.
    async fn renew_login(
        &self,
        ctx: &MountContext,
        login: &LoginRenewal,
    ) -> Result<Option<RenewalLimits>, EngineError> {
        let name = role::login_metadata(login, "role_name");
        if name.is_empty() {
            return Err(invalid("failed to fetch role_name during renewal"));
        }
        let Some((role, _)) = load_role(&ctx.storage, name).await? else {
            return Err(invalid(format!(
                "role {name:?} does not exist during renewal"
            )));
        };
        Ok(Some(role::current_limits(&role.token)))
    }
}

fn invalid(message: impl Into<String>) -> EngineError {
    EngineError::InvalidRequest(message.into())
}

fn role_not_found(name: &str) -> EngineError {
    EngineError::NotFound(format!("role {name:?}"))
}

fn internal(what: &str, error: impl std::fmt::Display) -> EngineError {
    EngineError::Internal(format!("approle {what}: {error}"))
}

fn encode(value: &impl Serialize) -> Result<Vec<u8>, EngineError> {
    serde_json::to_vec(value).map_err(|error| internal("encoding", error))
}

/// Encodes a record a client shaped (a role, a secret id with its metadata), held to the
/// mount's value size limit.
fn encode_limited(
    value: &impl Serialize,
    what: &str,
    max_value_bytes: usize,
) -> Result<Vec<u8>, EngineError> {
    let bytes = encode(value)?;
    if bytes.len() > max_value_bytes {
        return Err(invalid(format!(
            "the {what} is too large: {} bytes once encoded, the limit is {max_value_bytes} bytes",
            bytes.len()
        )));
    }
    Ok(bytes)
}

fn check_role_name(name: &str) -> Result<(), EngineError> {
    role::check_role_name("role", name)
}

fn role_key(name: &str) -> String {
    format!("{ROLE_PREFIX}{name}")
}

fn role_id_key(hasher: &KeyedHasher, role_id: &str) -> String {
    format!("{ROLE_ID_PREFIX}{}", hasher.hash_hex(role_id.as_bytes()))
}

fn secret_id_key(role: &Role, secret_id_hmac: &str) -> String {
    format!("{SECRET_ID_PREFIX}{}/{secret_id_hmac}", role.uid)
}

fn accessor_key(role: &Role, accessor: &str) -> String {
    format!("{ACCESSOR_PREFIX}{}/{accessor}", role.uid)
}

/// The mount's HMAC key; created (once, even under races) when `create` is set.
async fn hasher(storage: &MountStorage, create: bool) -> Result<Option<KeyedHasher>, EngineError> {
    let load =
        |bytes: &[u8]| KeyedHasher::from_bytes(bytes).map_err(|error| internal("key", error));
    if let Some(plain) = storage.get(HMAC_KEY).await? {
        return load(&plain.value).map(Some);
    }
    if !create {
        return Ok(None);
    }
    let hasher = KeyedHasher::generate().map_err(|error| internal("key", error))?;
    let txn = Transaction::new()
        .require_absent(HMAC_KEY)
        .put(HMAC_KEY, hasher.to_bytes().to_vec());
    match storage.commit(txn).await {
        Ok(_) => Ok(Some(hasher)),
        // Another request created it first: use theirs.
        Err(EngineError::Conflict) => match storage.get(HMAC_KEY).await? {
            Some(plain) => load(&plain.value).map(Some),
            None => Err(EngineError::Conflict),
        },
        Err(error) => Err(error),
    }
}

async fn load_role(
    storage: &MountStorage,
    name: &str,
) -> Result<Option<(Role, Revision)>, EngineError> {
    if check_role_name(name).is_err() {
        return Ok(None);
    }
    let key = role_key(name);
    match storage.get(&key).await? {
        Some(plain) => Ok(Some((decode(&key, &plain.value)?, plain.revision))),
        None => Ok(None),
    }
}

async fn read_role(
    storage: &MountStorage,
    name: &str,
) -> Result<Option<LogicalResponse>, EngineError> {
    let Some((role, _)) = load_role(storage, name).await? else {
        return Ok(None);
    };
    let mut data = Map::new();
    data.insert("bind_secret_id".into(), role.bind_secret_id.into());
    data.insert("local_secret_ids".into(), role.local_secret_ids.into());
    data.insert(
        "secret_id_bound_cidrs".into(),
        if role.secret_id_bound_cidrs.is_empty() {
            Value::Null
        } else {
            strings(&role.secret_id_bound_cidrs)
        },
    );
    data.insert("secret_id_num_uses".into(), role.secret_id_num_uses.into());
    data.insert("secret_id_ttl".into(), role.secret_id_ttl.into());
    role.token.render(&mut data);
    Ok(Some(LogicalResponse::data(data)))
}

async fn read_role_field(
    storage: &MountStorage,
    name: &str,
    endpoint: &FieldEndpoint,
) -> Result<Option<LogicalResponse>, EngineError> {
    let Some(answer) = read_role(storage, name).await? else {
        return Ok(None);
    };
    let value = answer
        .data
        .and_then(|mut data| data.remove(endpoint.field))
        .unwrap_or(Value::Null);
    Ok(Some(LogicalResponse::data(Map::from_iter([(
        endpoint.field.to_owned(),
        value,
    )]))))
}

/// A role id from the body: a non-empty string of at most 4096 bytes.
fn role_id_field(value: &Value) -> Result<String, EngineError> {
    match value {
        Value::String(role_id) if role_id.is_empty() => Err(invalid("missing role_id")),
        Value::String(role_id) if role_id.len() > MAX_INPUT_BYTES => Err(invalid(format!(
            "role_id is longer than the maximum of {MAX_INPUT_BYTES} bytes"
        ))),
        Value::String(role_id) => Ok(role_id.clone()),
        _ => Err(invalid("role_id must be a string")),
    }
}

/// Creates or updates a role from the fields in `data`; with `must_exist`, a missing role is
/// not created (the one-field endpoints).
async fn write_role(
    ctx: &MountContext,
    name: &str,
    data: &Map<String, Value>,
    must_exist: bool,
) -> Result<Option<LogicalResponse>, EngineError> {
    check_role_name(name)?;
    let storage = &ctx.storage;
    let existing = load_role(storage, name).await?;
    if must_exist && existing.is_none() {
        return Err(role_not_found(name));
    }
    let seen = existing.as_ref().map(|(_, revision)| *revision);
    let creating = existing.is_none();
    let previous_role_id = existing.as_ref().map(|(role, _)| role.role_id.clone());
    let mut role = match existing {
        Some((role, _)) => role,
        None => Role {
            uid: crate::random_id()?,
            role_id: crate::random_id()?,
            bind_secret_id: true,
            secret_id_bound_cidrs: Vec::new(),
            secret_id_num_uses: 0,
            secret_id_ttl: 0,
            local_secret_ids: false,
            token: TokenFields::default(),
        },
    };
    if let Some(value) = data.get("bind_secret_id") {
        role.bind_secret_id = parse_bool("bind_secret_id", value)?;
    }
    if let Some(value) = data
        .get("secret_id_bound_cidrs")
        .or_else(|| data.get("bound_cidr_list"))
    {
        role.secret_id_bound_cidrs = cidr_list("secret_id_bound_cidrs", value)?
            .iter()
            .map(Cidr::to_string)
            .collect();
    }
    if let Some(value) = data.get("secret_id_num_uses") {
        role.secret_id_num_uses = count("secret_id_num_uses", value)?;
    }
    if let Some(value) = data.get("secret_id_ttl") {
        role.secret_id_ttl = seconds("secret_id_ttl", value)?;
    }
    if let Some(value) = data.get("local_secret_ids") {
        let local = parse_bool("local_secret_ids", value)?;
        if !creating && local != role.local_secret_ids {
            return Err(invalid(
                "local_secret_ids can only be modified during role creation",
            ));
        }
        role.local_secret_ids = local;
    }
    role.token.update(data)?;
    if let Some(value) = data.get("role_id") {
        role.role_id = role_id_field(value)?;
    }
    if !role.bind_secret_id
        && role.secret_id_bound_cidrs.is_empty()
        && role.token.bound_cidrs.is_empty()
    {
        return Err(invalid(
            "at least one constraint should be enabled on the role: bind_secret_id, secret_id_bound_cidrs or token_bound_cidrs",
        ));
    }
    let hasher = hasher(storage, true)
        .await?
        .ok_or_else(|| internal("key", "missing after creation"))?;
    let key = role_key(name);
    let txn = Transaction::new()
        .require_unchanged(key.clone(), seen)
        .put(key, encode_limited(&role, "role", ctx.max_value_bytes)?);
    let txn = index_role_id(storage, &hasher, name, &role, previous_role_id, txn).await?;
    storage.commit(txn).await?;
    Ok(Some(LogicalResponse::no_content()))
}

/// Adds the role-id index changes to `txn`: the new id's entry (which must be free) and the
/// removal of the previous one.
async fn index_role_id(
    storage: &MountStorage,
    hasher: &KeyedHasher,
    name: &str,
    role: &Role,
    previous_role_id: Option<String>,
    mut txn: Transaction,
) -> Result<Transaction, EngineError> {
    if previous_role_id.as_deref() == Some(role.role_id.as_str()) {
        return Ok(txn);
    }
    let new_index = role_id_key(hasher, &role.role_id);
    if storage.get(&new_index).await?.is_some() {
        return Err(invalid("role_id already in use"));
    }
    txn = txn.require_absent(new_index.clone()).put(
        new_index,
        encode(&RoleIdEntry {
            name: name.to_owned(),
        })?,
    );
    if let Some(previous) = previous_role_id {
        txn = txn.delete(role_id_key(hasher, &previous));
    }
    Ok(txn)
}

async fn delete_role(
    storage: &MountStorage,
    name: &str,
) -> Result<Option<LogicalResponse>, EngineError> {
    let Some((role, revision)) = load_role(storage, name).await? else {
        return Ok(Some(LogicalResponse::no_content()));
    };
    let key = role_key(name);
    let mut txn = Transaction::new()
        .require_revision(key.clone(), revision)
        .delete(key);
    if let Some(hasher) = hasher(storage, false).await? {
        txn = txn.delete(role_id_key(&hasher, &role.role_id));
    }
    storage.commit(txn).await?;
    // The role is gone, so its secret ids can no longer log in; remove them now (a failure
    // here leaves only unreachable records, which tidy removes).
    delete_prefix(storage, &format!("{SECRET_ID_PREFIX}{}/", role.uid)).await?;
    delete_prefix(storage, &format!("{ACCESSOR_PREFIX}{}/", role.uid)).await?;
    Ok(Some(LogicalResponse::no_content()))
}

/// Every key under `prefix`.
async fn keys_under(storage: &MountStorage, prefix: &str) -> Result<Vec<String>, EngineError> {
    let mut keys = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = storage.list(prefix, after.as_deref(), LIST_PAGE).await?;
        keys.extend(page.keys.into_iter().filter(|key| key.starts_with(prefix)));
        match page.next_after {
            Some(next) => after = Some(next),
            None => return Ok(keys),
        }
    }
}

async fn delete_keys(storage: &MountStorage, keys: &[String]) -> Result<(), EngineError> {
    for batch in keys.chunks(DELETE_BATCH) {
        let txn = batch
            .iter()
            .fold(Transaction::new(), |txn, key| txn.delete(key.clone()));
        storage.commit(txn).await?;
    }
    Ok(())
}

async fn delete_prefix(storage: &MountStorage, prefix: &str) -> Result<(), EngineError> {
    let keys = keys_under(storage, prefix).await?;
    delete_keys(storage, &keys).await
}

async fn read_role_id(
    storage: &MountStorage,
    name: &str,
) -> Result<Option<LogicalResponse>, EngineError> {
    let Some((role, _)) = load_role(storage, name).await? else {
        return Ok(None);
    };
    let mut data = Map::new();
    data.insert("role_id".into(), role.role_id.into());
    Ok(Some(LogicalResponse::data(data)))
}

async fn write_role_id(
    storage: &MountStorage,
    name: &str,
    request: &LogicalRequest,
) -> Result<Option<LogicalResponse>, EngineError> {
    let role_id = role_id_field(
        &request
            .field("role_id")
            .ok_or_else(|| invalid("missing role_id"))?,
    )?;
    let Some((mut role, revision)) = load_role(storage, name).await? else {
        return Err(role_not_found(name));
    };
    let previous = std::mem::replace(&mut role.role_id, role_id);
    let hasher = hasher(storage, true)
        .await?
        .ok_or_else(|| internal("key", "missing after creation"))?;
    let key = role_key(name);
    let txn = Transaction::new()
        .require_revision(key.clone(), revision)
        .put(key, encode(&role)?);
    let txn = index_role_id(storage, &hasher, name, &role, Some(previous), txn).await?;
    storage.commit(txn).await?;
    Ok(Some(LogicalResponse::no_content()))
}

/// Parses a numeric field (`count`, `seconds`), naming it in errors.
type FieldParser = fn(&str, &Value) -> Result<u64, EngineError>;

/// A secret id's own `num_uses` or `ttl` (parsed by `parse`), which may only narrow the role's
/// `limit` (0: none); absent, the role's value.
fn within_role_limit(
    value: Option<Value>,
    (name, parse): (&str, FieldParser),
    limit: u64,
    too_high: &str,
) -> Result<u64, EngineError> {
    let Some(value) = value else {
        return Ok(limit);
    };
    let own = parse(name, &value)?;
    if limit > 0 && (own == 0 || own > limit) {
        return Err(invalid(too_high));
    }
    Ok(own)
}

/// Secret-id metadata: a JSON object of strings, given as an object or as a string holding
/// one, or as `key=value` pairs separated by commas.
fn parse_metadata(value: &Value) -> Result<BTreeMap<String, String>, EngineError> {
    let bad = |why: &str| invalid(format!("failed to parse metadata: {why}"));
    let from_object = |object: &Map<String, Value>| {
        object
            .iter()
            .map(|(key, value)| match value {
                Value::String(text) => Ok((key.clone(), text.clone())),
                _ => Err(bad("values must be strings")),
            })
            .collect::<Result<BTreeMap<_, _>, _>>()
    };
    match value {
        Value::Null => Ok(BTreeMap::new()),
        Value::Object(object) => from_object(object),
        Value::String(text) if text.trim().is_empty() => Ok(BTreeMap::new()),
        Value::String(text) if text.trim_start().starts_with('{') => {
            match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(object)) => from_object(&object),
                _ => Err(bad("invalid JSON object")),
            }
        }
        Value::String(text) => text
            .split(',')
            .map(|pair| match pair.split_once('=') {
                Some((key, value)) if !key.trim().is_empty() => {
                    Ok((key.trim().to_owned(), value.trim().to_owned()))
                }
                _ => Err(bad("invalid <key,value> format")),
            })
            .collect(),
        _ => Err(bad("expected a JSON object of strings")),
    }
}

async fn generate_secret_id(
    ctx: &MountContext,
    name: &str,
    request: &LogicalRequest,
    custom: Option<String>,
) -> Result<Option<LogicalResponse>, EngineError> {
    let storage = &ctx.storage;
    let Some((role, revision)) = load_role(storage, name).await? else {
        return Err(role_not_found(name));
    };
    if !role.bind_secret_id {
        return Err(invalid("bind_secret_id is not set on the role"));
    }
    let field = |name: &str| request.field(name);
    let cidrs = match field("cidr_list") {
        Some(value) => cidr_list("cidr_list", &value)?,
        None => Vec::new(),
    };
    let role_cidrs = stored_cidrs(&role.secret_id_bound_cidrs)?;
    if !cidrs_within(&cidrs, &role_cidrs) {
        return Err(invalid(format!(
            "failed to verify subset relationship between CIDR blocks on the role {:?} and CIDR blocks on the secret ID {:?}",
            role.secret_id_bound_cidrs,
            cidrs.iter().map(Cidr::to_string).collect::<Vec<_>>()
        )));
    }
    let token_cidrs = match field("token_bound_cidrs") {
        Some(value) => cidr_list("token_bound_cidrs", &value)?,
        None => Vec::new(),
    };
    if !cidrs_within(&token_cidrs, &stored_cidrs(&role.token.bound_cidrs)?) {
        return Err(invalid(format!(
            "failed to verify subset relationship between the token CIDR blocks on the role {:?} and on the secret ID {:?}",
            role.token.bound_cidrs,
            token_cidrs.iter().map(Cidr::to_string).collect::<Vec<_>>()
        )));
    }
    let num_uses = within_role_limit(
        field("num_uses"),
        ("num_uses", count),
        role.secret_id_num_uses,
        "num_uses cannot be higher than the role's secret_id_num_uses",
    )?;
    let ttl = within_role_limit(
        field("ttl"),
        ("ttl", seconds),
        role.secret_id_ttl,
        "ttl cannot be longer than the role's secret_id_ttl",
    )?;
    let metadata = match field("metadata") {
        Some(value) => parse_metadata(&value)?,
        None => BTreeMap::new(),
    };
    let secret_id = match custom {
        Some(secret_id) if secret_id.len() > MAX_INPUT_BYTES => {
            return Err(invalid(format!(
                "secret_id is longer than the maximum of {MAX_INPUT_BYTES} bytes"
            )));
        }
        Some(secret_id) => secret_id,
        None => crate::random_id()?,
    };
    let hasher = hasher(storage, true)
        .await?
        .ok_or_else(|| internal("key", "missing after creation"))?;
    let secret_id_hmac = hasher.hash_hex(secret_id.as_bytes());
    let key = secret_id_key(&role, &secret_id_hmac);
    if storage.get(&key).await?.is_some() {
        return Err(invalid("SecretID is already registered"));
    }
    let accessor = crate::random_id()?;
    let now = ctx.now.as_nanosecond();
    let expiration_nanos = if ttl == 0 {
        0
    } else {
        now.saturating_add(i128::from(ttl) * 1_000_000_000)
    };
    let entry = SecretId {
        accessor: accessor.clone(),
        num_uses,
        ttl,
        creation_nanos: now,
        expiration_nanos,
        last_updated_nanos: now,
        metadata,
        cidr_list: cidrs.iter().map(Cidr::to_string).collect(),
        token_bound_cidrs: token_cidrs.iter().map(Cidr::to_string).collect(),
    };
    let accessor_key = accessor_key(&role, &accessor);
    // The role must still be the one read: a secret id is never added to a deleted role.
    let txn = Transaction::new()
        .require_revision(role_key(name), revision)
        .require_absent(key.clone())
        .require_absent(accessor_key.clone())
        .put(
            key,
            encode_limited(&entry, "secret ID", ctx.max_value_bytes)?,
        )
        .put(accessor_key, encode(&AccessorEntry { secret_id_hmac })?);
    storage.commit(txn).await?;
    let mut data = Map::new();
    data.insert("secret_id".into(), secret_id.into());
    data.insert("secret_id_accessor".into(), accessor.into());
    data.insert("secret_id_num_uses".into(), num_uses.into());
    data.insert("secret_id_ttl".into(), ttl.into());
    Ok(Some(LogicalResponse::data(data)))
}

/// A string field that must be present and non-empty.
fn required_string(request: &LogicalRequest, field: &str) -> Result<String, EngineError> {
    match request.field(field) {
        Some(Value::String(text)) if !text.is_empty() => Ok(text),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            Err(invalid(format!("missing {field}")))
        }
        Some(_) => Err(invalid(format!("{field} must be a string"))),
    }
}

/// A secret id's record, found by the secret id: its key, record and revision. The record is
/// found by the secret id's keyed hash, so how long the lookup takes says nothing about the
/// secret id to anyone without the mount's key.
async fn find_secret_id(
    storage: &MountStorage,
    role: &Role,
    secret_id: &str,
) -> Result<Option<(String, SecretId, Revision)>, EngineError> {
    let Some(hasher) = hasher(storage, false).await? else {
        return Ok(None);
    };
    let key = secret_id_key(role, &hasher.hash_hex(secret_id.as_bytes()));
    match storage.get(&key).await? {
        Some(plain) => {
            let entry = decode(&key, &plain.value)?;
            Ok(Some((key, entry, plain.revision)))
        }
        None => Ok(None),
    }
}

/// Removes a secret id's record and its accessor.
async fn remove_secret_id(
    storage: &MountStorage,
    role: &Role,
    key: &str,
    entry: &SecretId,
) -> Result<(), EngineError> {
    storage
        .commit(
            Transaction::new()
                .delete(key)
                .delete(accessor_key(role, &entry.accessor)),
        )
        .await?;
    Ok(())
}

async fn lookup_secret_id(
    ctx: &MountContext,
    name: &str,
    request: &LogicalRequest,
) -> Result<Option<LogicalResponse>, EngineError> {
    let secret_id = required_string(request, "secret_id")?;
    let Some((role, _)) = load_role(&ctx.storage, name).await? else {
        return Err(role_not_found(name));
    };
    match find_secret_id(&ctx.storage, &role, &secret_id).await? {
        Some((key, entry, _)) if entry.expired(ctx.now) => {
            remove_secret_id(&ctx.storage, &role, &key, &entry).await?;
            Ok(Some(LogicalResponse::no_content()))
        }
        Some((_, entry, _)) => Ok(Some(LogicalResponse::data(entry.render()))),
        // Vault answers 204 for a secret id it does not know.
        None => Ok(Some(LogicalResponse::no_content())),
    }
}

async fn destroy_secret_id(
    storage: &MountStorage,
    name: &str,
    request: &LogicalRequest,
) -> Result<Option<LogicalResponse>, EngineError> {
    let secret_id = required_string(request, "secret_id")?;
    let Some((role, _)) = load_role(storage, name).await? else {
        return Err(role_not_found(name));
    };
    if let Some((key, entry, _)) = find_secret_id(storage, &role, &secret_id).await? {
        remove_secret_id(storage, &role, &key, &entry).await?;
    }
    Ok(Some(LogicalResponse::no_content()))
}

/// A secret id's record, found by its accessor.
async fn find_by_accessor(
    storage: &MountStorage,
    role: &Role,
    accessor: &str,
) -> Result<(String, SecretId), EngineError> {
    let not_found = || EngineError::NotFound(format!("secret_id_accessor {accessor:?}"));
    if accessor.contains('/') || accessor.len() > MAX_INPUT_BYTES {
        return Err(not_found());
    }
    let index_key = accessor_key(role, accessor);
    let Some(plain) = storage.get(&index_key).await? else {
        return Err(not_found());
    };
    let index: AccessorEntry = decode(&index_key, &plain.value)?;
    let key = secret_id_key(role, &index.secret_id_hmac);
    match storage.get(&key).await? {
        Some(plain) => {
            let entry = decode(&key, &plain.value)?;
            Ok((key, entry))
        }
        None => {
            // An accessor whose secret id is gone names nothing: drop it.
            storage.delete(&index_key).await?;
            Err(not_found())
        }
    }
}

async fn lookup_accessor(
    ctx: &MountContext,
    name: &str,
    request: &LogicalRequest,
) -> Result<Option<LogicalResponse>, EngineError> {
    let accessor = required_string(request, "secret_id_accessor")?;
    let Some((role, _)) = load_role(&ctx.storage, name).await? else {
        return Err(role_not_found(name));
    };
    let (key, entry) = find_by_accessor(&ctx.storage, &role, &accessor).await?;
    if entry.expired(ctx.now) {
        remove_secret_id(&ctx.storage, &role, &key, &entry).await?;
        return Err(EngineError::NotFound(format!(
            "secret_id_accessor {accessor:?}"
        )));
    }
    Ok(Some(LogicalResponse::data(entry.render())))
}

async fn destroy_accessor(
    storage: &MountStorage,
    name: &str,
    request: &LogicalRequest,
) -> Result<Option<LogicalResponse>, EngineError> {
    let accessor = required_string(request, "secret_id_accessor")?;
    let Some((role, _)) = load_role(storage, name).await? else {
        return Err(role_not_found(name));
    };
    let (key, entry) = find_by_accessor(storage, &role, &accessor).await?;
    remove_secret_id(storage, &role, &key, &entry).await?;
    Ok(Some(LogicalResponse::no_content()))
}

async fn list_accessors(
    storage: &MountStorage,
    name: &str,
) -> Result<Option<LogicalResponse>, EngineError> {
    let Some((role, _)) = load_role(storage, name).await? else {
        return Err(role_not_found(name));
    };
    list_children(storage, &format!("{ACCESSOR_PREFIX}{}/", role.uid)).await
}

/// Whether `address` passes `blocks` (no blocks: any address, even an unknown one).
fn address_allowed(blocks: &[Cidr], address: Option<IpAddr>) -> bool {
    blocks.is_empty() || address.is_some_and(|address| Cidr::any_contains(blocks, address))
}

fn address_text(address: Option<IpAddr>) -> String {
    address.map_or_else(|| "unknown".to_owned(), |address| address.to_string())
}

async fn login(
    ctx: &MountContext,
    request: &LogicalRequest,
) -> Result<LogicalResponse, EngineError> {
    let storage = &ctx.storage;
    let role_id = required_string(request, "role_id")?;
    let secret_id = match request.field("secret_id") {
        Some(Value::String(secret_id)) if !secret_id.is_empty() => Some(secret_id),
        Some(Value::String(_) | Value::Null) | None => None,
        Some(_) => return Err(invalid("secret_id must be a string")),
    };
    let refused = || invalid(INVALID_CREDENTIALS);
    // Whether the role id is known is told to nobody: a missing secret id is reported the same
    // way for a known and an unknown role id (only a role without secret ids admits none).
    let (name, role) = match (
        find_role_by_id(storage, &role_id).await?,
        secret_id.is_some(),
    ) {
        (Some((name, role)), _) if !role.bind_secret_id => (name, role),
        (_, false) => return Err(invalid("missing secret_id")),
        (Some(found), true) => found,
        (None, true) => return Err(refused()),
    };
    let address = request.connection.remote_addr;
    let role_cidrs = stored_cidrs(&role.secret_id_bound_cidrs)?;
    let check_role_cidrs = || {
        if address_allowed(&role_cidrs, address) {
            Ok(())
        } else {
            Err(invalid(format!(
                "source address {:?} unauthorized by CIDR restrictions on the role",
                address_text(address)
            )))
        }
    };
    let mut metadata = BTreeMap::new();
    let mut token_cidrs = Vec::new();
    let mut secret_id_accessor = None;
    match secret_id {
        Some(secret_id) if role.bind_secret_id => {
            let entry = spend_secret_id(ctx, &role, &secret_id, address, &check_role_cidrs).await?;
            metadata = entry.metadata;
            token_cidrs = entry.token_bound_cidrs;
            secret_id_accessor = Some(entry.accessor);
        }
        // Without a secret id the role id and the address are the whole credential: a refusal
        // for the address must not tell that the role id was right.
        _ => check_role_cidrs().map_err(|_| refused())?,
    }
    metadata.insert("role_name".into(), name);
    let mut grant = role.token.grant(display_prefix(&ctx.mount_path))?;
    if !token_cidrs.is_empty() {
        grant.bound_cidrs = stored_cidrs(&token_cidrs)?;
    }
    grant.metadata = metadata;
    grant.secret_id_accessor = secret_id_accessor;
    Ok(LogicalResponse::login(grant))
}

/// The role with this role id, with its name.
async fn find_role_by_id(
    storage: &MountStorage,
    role_id: &str,
) -> Result<Option<(String, Role)>, EngineError> {
    let Some(hasher) = hasher(storage, false).await? else {
        return Ok(None);
    };
    let Some(plain) = storage.get(&role_id_key(&hasher, role_id)).await? else {
        return Ok(None);
    };
    let index: RoleIdEntry = decode(ROLE_ID_PREFIX, &plain.value)?;
    let Some((role, _)) = load_role(storage, &index.name).await? else {
        return Ok(None);
    };
    // The index is keyed by a hash of the role id; compare the id itself too, in constant time.
    if !constant_time_eq(role.role_id.as_bytes(), role_id.as_bytes()) {
        return Ok(None);
    }
    Ok(Some((index.name, role)))
}

/// Checks a secret id (known, not expired, used from an allowed address) and spends one of its
/// uses, answering its record as it was before. The use is spent by a compare-and-swap, so
/// concurrent logins never spend more uses than there are; the last use deletes the record.
async fn spend_secret_id(
    ctx: &MountContext,
    role: &Role,
    secret_id: &str,
    address: Option<IpAddr>,
    check_role_cidrs: &(dyn Fn() -> Result<(), EngineError> + Send + Sync),
) -> Result<SecretId, EngineError> {
    let storage = &ctx.storage;
    let refused = || invalid(INVALID_CREDENTIALS);
    for _ in 0..CAS_ATTEMPTS {
        let Some((key, entry, revision)) = find_secret_id(storage, role, secret_id).await? else {
            return Err(refused());
        };
        if entry.expired(ctx.now) {
            remove_secret_id(storage, role, &key, &entry).await?;
            return Err(refused());
        }
        if !address_allowed(&stored_cidrs(&entry.cidr_list)?, address) {
            return Err(invalid(format!(
                "source address {:?} unauthorized through CIDR restrictions on the secret ID",
                address_text(address)
            )));
        }
        check_role_cidrs()?;
        let txn = match entry.num_uses {
            0 => return Ok(entry),
            1 => Transaction::new()
                .require_revision(key.clone(), revision)
                .delete(key)
                .delete(accessor_key(role, &entry.accessor)),
            left => {
                let mut spent = entry.clone();
                spent.num_uses = left - 1;
                spent.last_updated_nanos = ctx.now.as_nanosecond();
                Transaction::new()
                    .require_revision(key.clone(), revision)
                    .put(key, encode(&spent)?)
            }
        };
        match storage.commit(txn).await {
            Ok(_) => return Ok(entry),
            Err(EngineError::Conflict) => continue,
            Err(error) => return Err(error),
        }
    }
    Err(EngineError::Conflict)
}

/// Removes expired secret ids, secret ids of deleted roles, and accessors that name nothing.
async fn tidy(ctx: &MountContext) -> Result<LogicalResponse, EngineError> {
    let storage = &ctx.storage;
    let mut live_roles = BTreeSet::new();
    for key in keys_under(storage, ROLE_PREFIX).await? {
        if let Some(plain) = storage.get(&key).await? {
            let role: Role = decode(&key, &plain.value)?;
            live_roles.insert(role.uid);
        }
    }
    let uid_of = |key: &str, prefix: &str| {
        key.strip_prefix(prefix)
            .and_then(|rest| rest.split_once('/'))
            .map(|(uid, rest)| (uid.to_owned(), rest.to_owned()))
    };
    let mut doomed = Vec::new();
    let mut kept_secret_ids = BTreeSet::new();
    let mut secret_ids_removed = 0u64;
    for key in keys_under(storage, SECRET_ID_PREFIX).await? {
        let Some((uid, hmac)) = uid_of(&key, SECRET_ID_PREFIX) else {
            continue;
        };
        let remove = if live_roles.contains(&uid) {
            match storage.get(&key).await? {
                Some(plain) => decode::<SecretId>(&key, &plain.value)?.expired(ctx.now),
                None => false,
            }
        } else {
            true
        };
        if remove {
            doomed.push(key);
            secret_ids_removed += 1;
        } else {
            kept_secret_ids.insert((uid, hmac));
        }
    }
    let mut accessors_removed = 0u64;
    for key in keys_under(storage, ACCESSOR_PREFIX).await? {
        let Some((uid, _)) = uid_of(&key, ACCESSOR_PREFIX) else {
            continue;
        };
        let names_kept = match storage.get(&key).await? {
            Some(plain) => {
                let index: AccessorEntry = decode(&key, &plain.value)?;
                kept_secret_ids.contains(&(uid, index.secret_id_hmac))
            }
            None => true,
        };
        if !names_kept {
            doomed.push(key);
            accessors_removed += 1;
        }
    }
    delete_keys(storage, &doomed).await?;
    let mut data = Map::new();
    data.insert("secret_ids_removed".into(), secret_ids_removed.into());
    data.insert("accessors_removed".into(), accessors_removed.into());
    Ok(LogicalResponse::data(data))
}
