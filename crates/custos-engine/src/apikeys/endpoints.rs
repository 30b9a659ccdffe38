//! Managing keyrings and keys: create, read, list, update, delete, reroll, edit permissions and
//! roles, the engine's config, and analytics. Every change is one storage transaction, then the
//! index is updated from what was committed.

use std::collections::BTreeMap;

use custos_storage::Transaction;
use serde_json::{Map, Value};

use super::model::{
    self, Config, HashKind, HashPointer, KeyRecord, Keyring, decode, encode, invalid,
};
use super::state::{CODES, Code, Index, list_all};
use super::usage::ring_prefix;
use crate::EngineError;
use crate::logical::{LogicalResponse, MountStorage};

const KEYRING_FIELDS: &[&str] = &[
    "prefix",
    "description",
    "permissions",
    "roles",
    "ratelimits",
    "default_ttl",
    "environment",
];

const KEY_FIELDS: &[&str] = &[
    "name",
    "owner_id",
    "meta",
    "permissions",
    "roles",
    "expires_at",
    "ttl",
    "remaining",
    "refill",
    "ratelimits",
    "enabled",
    "environment",
];

/// Key ids: `key_` and 22 base62 characters (about 131 random bits).
const KEY_ID_RANDOM: usize = 22;

fn not_found(what: &str) -> EngineError {
    EngineError::NotFound(what.to_owned())
}

fn keyring_key(name: &str) -> String {
    format!("{}{name}", model::KEYRINGS)
}

fn key_key(id: &str) -> String {
    format!("{}{id}", model::KEYS)
}

fn usage_key(id: &str) -> String {
    format!("{}{id}", model::USAGE)
}

fn random_error(error: custos_crypto::CryptoError) -> EngineError {
    EngineError::Internal(format!("randomness: {error}"))
}

/// The hint shown for a key: its prefix and last four characters.
fn hint(key: &custos_core::ApiKey) -> String {
    let text = key.as_str();
    format!("{}_…{}", key.prefix(), &text[text.len() - 4..])
}

async fn read_keyring(
    storage: &MountStorage,
    name: &str,
) -> Result<Option<(Keyring, custos_storage::Revision)>, EngineError> {
    Ok(match storage.get(&keyring_key(name)).await? {
        Some(plain) => Some((decode(&plain.value, "keyring")?, plain.revision)),
        None => None,
    })
}

async fn read_key(
    storage: &MountStorage,
    ring: &str,
    id: &str,
) -> Result<(KeyRecord, custos_storage::Revision), EngineError> {
    let plain = storage
        .get(&key_key(id))
        .await?
        .ok_or_else(|| not_found("key"))?;
    let record: KeyRecord = decode(&plain.value, "API key record")?;
    if record.keyring != ring {
        return Err(not_found("key"));
    }
    Ok((record, plain.revision))
}

// ---- keyrings ----

pub(crate) async fn write_keyring(
    index: &Index,
    name: &str,
    data: &Map<String, Value>,
    now: i64,
) -> Result<LogicalResponse, EngineError> {
    model::validate_name("keyring name", name)?;
    model::reject_unknown(data, KEYRING_FIELDS)?;
    let existing = read_keyring(&index.storage, name).await?;
    let revision = existing.as_ref().map(|(_, revision)| *revision);
    let mut keyring = match existing {
        Some((keyring, _)) => keyring,
        None => {
            let prefix = model::text(data, "prefix")?.ok_or_else(|| {
                invalid("prefix is missing: the prefix of this keyring's keys, e.g. acme_live")
            })?;
            Keyring {
                name: name.to_owned(),
                prefix,
                description: String::new(),
                permissions: Vec::new(),
                roles: BTreeMap::new(),
                ratelimits: Vec::new(),
                default_ttl: 0,
                environment: String::new(),
                created_at: now,
                updated_at: now,
            }
        }
    };
    if let Some(prefix) = model::text(data, "prefix")? {
        keyring.prefix = prefix;
    }
    custos_core::ApiKey::from_random(&keyring.prefix, &[0; 30]).map_err(|_| {
        invalid(format!(
            "invalid prefix {:?}: 1 to 32 characters of a-z, 0-9 and '_', starting with a letter and not ending in '_'",
            keyring.prefix
        ))
    })?;
    if let Some(description) = model::text(data, "description")? {
        keyring.description = description;
    }
    if let Some(permissions) = model::grants(data, "permissions")? {
        keyring.permissions = permissions;
    }
    if let Some(roles) = data.get("roles").filter(|roles| !roles.is_null()) {
        let roles = roles
            .as_object()
            .ok_or_else(|| invalid("roles must be an object: role name → list of permissions"))?;
        if roles.len() > model::MAX_ROLES {
            return Err(invalid(format!(
                "a keyring defines at most {} roles",
                model::MAX_ROLES
            )));
        }
        let mut parsed = BTreeMap::new();
        for (role, _) in roles {
            model::validate_name("role name", role)?;
            let permissions = model::grants(roles, role)?.unwrap_or_default();
            parsed.insert(role.clone(), permissions);
        }
        keyring.roles = parsed;
    }
    if let Some(limits) = model::ratelimits(data, "ratelimits")? {
        keyring.ratelimits = limits;
    }
    if let Some(ttl) = model::seconds(data, "default_ttl")? {
        keyring.default_ttl = ttl;
    }
    if let Some(environment) = model::text(data, "environment")? {
        keyring.environment = environment;
    }
    keyring.updated_at = now;
    let key = keyring_key(name);
    index
        .storage
        .commit(
            Transaction::new()
                .require_unchanged(key.clone(), revision)
                .put(key, encode(&keyring)?),
        )
        .await?;
    let answer = keyring.to_json();
    index.put_keyring(keyring);
    Ok(LogicalResponse::data(answer))
}

pub(crate) async fn read_keyring_answer(
    index: &Index,
    name: &str,
) -> Result<Option<LogicalResponse>, EngineError> {
    Ok(read_keyring(&index.storage, name)
        .await?
        .map(|(keyring, _)| LogicalResponse::data(keyring.to_json())))
}

pub(crate) async fn list_keyrings(index: &Index) -> Result<LogicalResponse, EngineError> {
    let names = list_all(&index.storage, model::KEYRINGS)
        .await?
        .iter()
        .filter_map(|key| key.strip_prefix(model::KEYRINGS))
        .map(str::to_owned)
        .collect();
    Ok(LogicalResponse::list(names))
}

/// Deletes a keyring and revokes every key it holds.
pub(crate) async fn delete_keyring(index: &Index, name: &str) -> Result<usize, EngineError> {
    // The keyring first: creating a key is conditional on it, so no key can be added meanwhile.
    if read_keyring(&index.storage, name).await?.is_some() {
        index.storage.delete(&keyring_key(name)).await?;
    }
    let mut revoked = 0;
    let records = keys_in_storage(&index.storage, |record| record.keyring == name).await?;
    for chunk in records.chunks(100) {
        let mut txn = Transaction::new();
        for record in chunk {
            txn = txn
                .delete(key_key(&record.id))
                .delete(record.hash_key())
                .delete(usage_key(&record.id));
        }
        index.storage.commit(txn).await?;
        revoked += chunk.len();
    }
    // Its analytics go with it: a keyring created later under the same name starts afresh.
    // (Only a valid name: `ring_prefix` of an empty one is the records of no keyring.)
    if model::validate_name("keyring name", name).is_ok() {
        let prefix = ring_prefix(name);
        loop {
            let page = index.storage.list(&prefix, None, 500).await?;
            if page.keys.is_empty() {
                break;
            }
            let mut txn = Transaction::new();
            for key in &page.keys {
                txn = txn.delete(key.as_str());
            }
            index.storage.commit(txn).await?;
        }
    }
    index.remove_keyring(name);
    tracing::info!(keyring = %name, revoked, "keyring deleted; its keys and analytics are gone");
    Ok(revoked)
}

/// Every stored key record matching `keep` (a scan of the mount's keys).
async fn keys_in_storage(
    storage: &MountStorage,
    keep: impl Fn(&KeyRecord) -> bool,
) -> Result<Vec<KeyRecord>, EngineError> {
    let mut out = Vec::new();
    for key in list_all(storage, model::KEYS).await? {
        if let Some(plain) = storage.get(&key).await? {
            let record: KeyRecord = decode(&plain.value, "API key record")?;
            if keep(&record) {
                out.push(record);
            }
        }
    }
    Ok(out)
}

// ---- keys ----

/// Applies the attribute fields of a create or update request to a record.
fn apply_attributes(
    record: &mut KeyRecord,
    keyring: &Keyring,
    data: &Map<String, Value>,
    now: i64,
) -> Result<(), EngineError> {
    if let Some(name) = model::text(data, "name")? {
        record.name = name;
    }
    if let Some(owner) = model::text(data, "owner_id")? {
        record.owner_id = owner;
    }
    if let Some(meta) = model::meta(data)? {
        record.meta = meta;
    } else if data.get("meta").is_some_and(Value::is_null) {
        record.meta = Map::new();
    }
    if let Some(permissions) = model::grants(data, "permissions")? {
        record.permissions = permissions;
    }
    if let Some(roles) = model::string_list(data, "roles")? {
        record.roles = checked_roles(keyring, roles)?;
    }
    match (data.get("expires_at"), model::seconds(data, "ttl")?) {
        (Some(_), Some(_)) => return Err(invalid("give expires_at or ttl, not both")),
        (Some(Value::Null), None) => record.expires_at = None,
        (Some(_), None) => record.expires_at = model::time(data, "expires_at")?,
        (None, Some(0)) => record.expires_at = None,
        (None, Some(ttl)) => {
            record.expires_at = Some(now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)));
        }
        (None, None) => {}
    }
    if data.contains_key("remaining") {
        record.remaining =
            model::unsigned(data, "remaining")?.map(|left| i64::try_from(left).unwrap_or(i64::MAX));
        record.remaining_epoch += 1;
    }
    if let Some(refill) = model::refill(data)? {
        record.refill = refill;
    }
    if let Some(refill) = &record.refill
        && record.remaining.is_none()
    {
        // A refill needs a count to refill: it starts full.
        record.remaining = Some(i64::try_from(refill.amount).unwrap_or(i64::MAX));
        record.remaining_epoch += 1;
    }
    if let Some(limits) = model::ratelimits(data, "ratelimits")? {
        record.ratelimits = limits;
    }
    if let Some(enabled) = model::boolean(data, "enabled")? {
        record.enabled = enabled;
    }
    if let Some(environment) = model::text(data, "environment")? {
        record.environment = environment;
    }
    Ok(())
}

fn checked_roles(keyring: &Keyring, roles: Vec<String>) -> Result<Vec<String>, EngineError> {
    if let Some(unknown) = roles.iter().find(|role| !keyring.roles.contains_key(*role)) {
        return Err(invalid(format!(
            "keyring {:?} defines no role {unknown:?}",
            keyring.name
        )));
    }
    let mut roles = roles;
    roles.sort();
    roles.dedup();
    Ok(roles)
}

/// The hash an imported key is known by: `{"value": ..., "variant": "sha256_hex"|"sha256_base64"}`.
fn imported_hash(value: &Value) -> Result<[u8; 32], EngineError> {
    use base64::Engine as _;
    let item = value.as_object().ok_or_else(|| {
        invalid("hash must be {\"value\": ..., \"variant\": \"sha256_hex\"|\"sha256_base64\"}")
    })?;
    let text = model::text(item, "value")?.ok_or_else(|| invalid("hash.value is missing"))?;
    let variant = model::text(item, "variant")?.unwrap_or_else(|| "sha256_hex".into());
    let bytes = match variant.as_str() {
        "sha256_hex" => hex::decode(text.trim()).ok(),
        "sha256_base64" => base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .ok(),
        _ => {
            return Err(invalid(
                "hash.variant must be \"sha256_hex\" or \"sha256_base64\"",
            ));
        }
    };
    bytes
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or_else(|| invalid("hash.value is not a SHA-256 digest in the given variant"))
}

/// A new key, or an imported one: `(record, key shown once)`.
fn new_record(
    index: &Index,
    keyring: &Keyring,
    data: &Map<String, Value>,
    now: i64,
) -> Result<(KeyRecord, Option<custos_core::ApiKey>), EngineError> {
    let id = format!(
        "key_{}",
        custos_crypto::random_base62(KEY_ID_RANDOM).map_err(random_error)?
    );
    let (hash, hash_kind, hint_text, key) = match data.get("hash").filter(|hash| !hash.is_null()) {
        Some(value) => (
            hex::encode(imported_hash(value)?),
            HashKind::Sha256,
            String::new(),
            None,
        ),
        None => {
            let mut random = [0u8; 30];
            custos_crypto::fill_random(&mut random).map_err(random_error)?;
            let key = custos_core::ApiKey::from_random(&keyring.prefix, &random)
                .map_err(|_| invalid("the keyring's prefix is not valid"))?;
            (
                hex::encode(index.hasher.sign(key.as_str().as_bytes())),
                HashKind::Hmac,
                hint(&key),
                Some(key),
            )
        }
    };
    let mut record = KeyRecord {
        id,
        keyring: keyring.name.clone(),
        hash,
        hash_kind,
        hint: hint_text,
        name: String::new(),
        owner_id: String::new(),
        meta: Map::new(),
        permissions: keyring.permissions.clone(),
        roles: Vec::new(),
        expires_at: (keyring.default_ttl > 0)
            .then(|| now.saturating_add(i64::try_from(keyring.default_ttl).unwrap_or(i64::MAX))),
        remaining: None,
        remaining_epoch: 0,
        refill: None,
        ratelimits: keyring.ratelimits.clone(),
        enabled: true,
        environment: keyring.environment.clone(),
        created_at: now,
        updated_at: now,
        grace_until: None,
        rerolled_to: None,
    };
    apply_attributes(&mut record, keyring, data, now)?;
    Ok((record, key))
}

fn created_answer(record: &KeyRecord, key: Option<&custos_core::ApiKey>) -> LogicalResponse {
    let mut answer = record.to_json();
    if let Some(key) = key {
        answer.insert("key".into(), key.as_str().into());
    }
    LogicalResponse::data(answer)
}

pub(crate) async fn create_key(
    index: &Index,
    ring: &str,
    data: &Map<String, Value>,
    now: i64,
) -> Result<LogicalResponse, EngineError> {
    let mut allowed = KEY_FIELDS.to_vec();
    allowed.push("hash");
    model::reject_unknown(data, &allowed)?;
    let (keyring, ring_revision) = read_keyring(&index.storage, ring)
        .await?
        .ok_or_else(|| not_found("keyring"))?;
    let (record, key) = new_record(index, &keyring, data, now)?;
    let txn = Transaction::new()
        .require_revision(keyring_key(ring), ring_revision)
        .require_absent(key_key(&record.id))
        .require_absent(record.hash_key())
        .put(key_key(&record.id), encode(&record)?)
        .put(
            record.hash_key(),
            encode(&HashPointer {
                id: record.id.clone(),
            })?,
        );
    match index.storage.commit(txn).await {
        Ok(_) => {}
        Err(EngineError::Conflict) if record.hash_kind == HashKind::Sha256 => {
            return Err(invalid("a key with this hash exists already"));
        }
        Err(error) => return Err(error),
    }
    let answer = created_answer(&record, key.as_ref());
    index.put_key(record, None);
    Ok(answer)
}

/// A key as `GET` shows it: the record with what this node knows of its use.
fn key_answer(index: &Index, record: &KeyRecord) -> LogicalResponse {
    let mut answer = record.to_json();
    if let Some(entry) = index.by_id(&record.id) {
        let live = entry.lock();
        answer.insert("remaining".into(), serde_json::json!(live.remaining));
        answer.insert(
            "last_used_at".into(),
            live.last_used_at.map_or(Value::Null, model::time_json),
        );
    } else {
        answer.insert("last_used_at".into(), Value::Null);
    }
    LogicalResponse::data(answer)
}

pub(crate) async fn read_key_answer(
    index: &Index,
    ring: &str,
    id: &str,
) -> Result<Option<LogicalResponse>, EngineError> {
    match read_key(&index.storage, ring, id).await {
        Ok((record, _)) => Ok(Some(key_answer(index, &record))),
        Err(EngineError::NotFound(_)) => Ok(None),
        Err(error) => Err(error),
    }
}

pub(crate) async fn update_key(
    index: &Index,
    ring: &str,
    id: &str,
    data: &Map<String, Value>,
    now: i64,
) -> Result<LogicalResponse, EngineError> {
    model::reject_unknown(data, KEY_FIELDS)?;
    let (keyring, _) = read_keyring(&index.storage, ring)
        .await?
        .ok_or_else(|| not_found("keyring"))?;
    let (mut record, revision) = read_key(&index.storage, ring, id).await?;
    apply_attributes(&mut record, &keyring, data, now)?;
    store_key(index, record, revision, now).await
}

async fn store_key(
    index: &Index,
    mut record: KeyRecord,
    revision: custos_storage::Revision,
    now: i64,
) -> Result<LogicalResponse, EngineError> {
    record.updated_at = now;
    index
        .storage
        .commit(
            Transaction::new()
                .require_revision(key_key(&record.id), revision)
                .put(key_key(&record.id), encode(&record)?),
        )
        .await?;
    let answer = key_answer(index, &record);
    index.put_key(record, None);
    // The answer reflects the update (a new `remaining` resets the live count).
    let answer = match index.by_id(&answer_id(&answer)) {
        Some(entry) => {
            let mut data = answer.data.unwrap_or_default();
            data.insert(
                "remaining".into(),
                serde_json::json!(entry.lock().remaining),
            );
            LogicalResponse::data(data)
        }
        None => answer,
    };
    Ok(answer)
}

fn answer_id(answer: &LogicalResponse) -> String {
    answer
        .data
        .as_ref()
        .and_then(|data| data.get("key_id"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Revokes one key: its record, hash pointer and usage go in one commit, and the index drops
/// it at once.
pub(crate) async fn delete_key(index: &Index, ring: &str, id: &str) -> Result<(), EngineError> {
    let (record, revision) = match read_key(&index.storage, ring, id).await {
        Ok(found) => found,
        // Deleting what is not there succeeds, as in Vault.
        Err(EngineError::NotFound(_)) => return Ok(()),
        Err(error) => return Err(error),
    };
    revoke_record(index, &record, Some(revision)).await
}

pub(crate) async fn revoke_record(
    index: &Index,
    record: &KeyRecord,
    revision: Option<custos_storage::Revision>,
) -> Result<(), EngineError> {
    let mut txn = Transaction::new();
    if let Some(revision) = revision {
        txn = txn.require_revision(key_key(&record.id), revision);
    }
    index
        .storage
        .commit(
            txn.delete(key_key(&record.id))
                .delete(record.hash_key())
                .delete(usage_key(&record.id)),
        )
        .await?;
    index.remove(&record.id);
    Ok(())
}

pub(crate) async fn list_keys(
    index: &Index,
    ring: &str,
    query: &BTreeMap<String, String>,
) -> Result<Option<LogicalResponse>, EngineError> {
    if read_keyring(&index.storage, ring).await?.is_none() {
        return Ok(None);
    }
    let owner = query.get("owner_id").filter(|owner| !owner.is_empty());
    let limit = match query.get("limit") {
        Some(limit) => limit
            .parse::<usize>()
            .ok()
            .filter(|limit| (1..=1000).contains(limit))
            .ok_or_else(|| invalid("limit must be between 1 and 1000"))?,
        None => 1000,
    };
    let after = query.get("after").filter(|after| !after.is_empty());
    // From the index, which holds every key of the mount (a storage scan would read every
    // key of every keyring for each page).
    let mut records: Vec<std::sync::Arc<super::state::Compiled>> = index
        .keys_of(ring)
        .iter()
        .map(|entry| entry.lock().compiled.clone())
        .filter(|compiled| {
            owner.is_none_or(|owner| *owner == compiled.record.owner_id)
                && after.is_none_or(|after| compiled.record.id.as_str() > after.as_str())
        })
        .collect();
    records.sort_by(|a, b| a.record.id.cmp(&b.record.id));
    let more = records.len() > limit;
    records.truncate(limit);
    let next_after = more
        .then(|| records.last().map(|last| last.record.id.clone()))
        .flatten();
    let mut ids = Vec::with_capacity(records.len());
    let mut info = Map::new();
    for compiled in &records {
        let record = &compiled.record;
        info.insert(
            record.id.clone(),
            serde_json::json!({
                "name": record.name,
                "owner_id": record.owner_id,
                "hint": record.hint,
                "enabled": record.enabled,
                "expires_at": record.expires_at.map_or(Value::Null, model::time_json),
            }),
        );
        ids.push(record.id.clone());
    }
    let mut answer = LogicalResponse::list(ids);
    if let Some(data) = answer.data.as_mut() {
        data.insert("key_info".into(), Value::Object(info));
        if let Some(next) = next_after {
            data.insert("next_after".into(), Value::String(next));
        }
    }
    Ok(Some(answer))
}

/// `reroll`: a new key and id with the same attributes and what is left of its uses; the old
/// key keeps working until `grace_until` (at once gone without a grace).
pub(crate) async fn reroll_key(
    index: &Index,
    ring: &str,
    id: &str,
    data: &Map<String, Value>,
    now: i64,
) -> Result<LogicalResponse, EngineError> {
    model::reject_unknown(data, &["grace"])?;
    let grace = model::seconds(data, "grace")?.unwrap_or(0);
    let (keyring, ring_revision) = read_keyring(&index.storage, ring)
        .await?
        .ok_or_else(|| not_found("keyring"))?;
    let (mut old, revision) = read_key(&index.storage, ring, id).await?;
    if old.rerolled_to.is_some() {
        return Err(invalid(format!(
            "key {id} was rerolled already (to {})",
            old.rerolled_to.as_deref().unwrap_or_default()
        )));
    }
    if old.hash_kind == HashKind::Sha256 {
        // An imported key can be rerolled too: its successor is a custos key.
    }
    let (fresh, key) = new_record(index, &keyring, &Map::new(), now)?;
    let remaining = index
        .by_id(id)
        .map_or(old.remaining, |entry| entry.lock().remaining);
    let new = KeyRecord {
        id: fresh.id.clone(),
        hash: fresh.hash.clone(),
        hash_kind: fresh.hash_kind,
        hint: fresh.hint.clone(),
        remaining,
        remaining_epoch: 0,
        created_at: now,
        updated_at: now,
        grace_until: None,
        rerolled_to: None,
        ..old.clone()
    };
    let mut txn = Transaction::new()
        .require_revision(keyring_key(ring), ring_revision)
        .require_revision(key_key(id), revision)
        .require_absent(key_key(&new.id))
        .require_absent(new.hash_key())
        .put(key_key(&new.id), encode(&new)?)
        .put(new.hash_key(), encode(&HashPointer { id: new.id.clone() })?);
    if grace == 0 {
        txn = txn
            .delete(key_key(id))
            .delete(old.hash_key())
            .delete(usage_key(id));
    } else {
        old.grace_until = Some(now.saturating_add(i64::try_from(grace).unwrap_or(i64::MAX)));
        old.rerolled_to = Some(new.id.clone());
        old.updated_at = now;
        txn = txn.put(key_key(id), encode(&old)?);
    }
    index.storage.commit(txn).await?;
    let mut answer = created_answer(&new, key.as_ref());
    if let Some(data) = answer.data.as_mut() {
        data.insert("previous_key_id".into(), id.into());
        data.insert(
            "previous_grace_until".into(),
            old.grace_until.map_or(Value::Null, model::time_json),
        );
    }
    index.put_key(new, None);
    if grace == 0 {
        index.remove(id);
    } else {
        index.put_key(old, None);
    }
    Ok(answer)
}

/// `permissions` and `roles`: `{set: [...]}` replaces, `{add: [...], remove: [...]}` edits.
pub(crate) async fn edit_list(
    index: &Index,
    ring: &str,
    id: &str,
    which: &str,
    data: &Map<String, Value>,
    now: i64,
) -> Result<LogicalResponse, EngineError> {
    model::reject_unknown(data, &["add", "remove", "set"])?;
    let (keyring, _) = read_keyring(&index.storage, ring)
        .await?
        .ok_or_else(|| not_found("keyring"))?;
    let (mut record, revision) = read_key(&index.storage, ring, id).await?;
    let check = |list: Vec<String>| -> Result<Vec<String>, EngineError> {
        if which == "roles" {
            checked_roles(&keyring, list)
        } else {
            model::normalize_grants(list)
        }
    };
    let current = if which == "roles" {
        &mut record.roles
    } else {
        &mut record.permissions
    };
    let set = model::string_list(data, "set")?;
    let add = model::string_list(data, "add")?;
    let remove = model::string_list(data, "remove")?;
    if set.is_none() && add.is_none() && remove.is_none() {
        return Err(invalid(format!("give {which} to set, add or remove")));
    }
    let mut next = match set {
        Some(set) => set,
        None => current.clone(),
    };
    next.extend(add.unwrap_or_default());
    if let Some(remove) = remove {
        next.retain(|item| !remove.contains(item));
    }
    let next = check(next)?;
    if next.len() > model::MAX_PERMISSIONS {
        return Err(invalid(format!(
            "a key holds at most {} {which}",
            model::MAX_PERMISSIONS
        )));
    }
    *current = next;
    store_key(index, record, revision, now).await
}

// ---- config ----

pub(crate) async fn write_config(
    index: &Index,
    data: &Map<String, Value>,
) -> Result<LogicalResponse, EngineError> {
    model::reject_unknown(data, &["analytics_retention"])?;
    let mut config = index.config();
    if let Some(retention) = model::seconds(data, "analytics_retention")? {
        if retention < 3600 {
            return Err(invalid("analytics_retention must be at least 1h"));
        }
        config.analytics_retention = retention;
    }
    index
        .storage
        .put(model::CONFIG_KEY, encode(&config)?)
        .await?;
    index.set_config(config.clone());
    Ok(config_answer(&config))
}

pub(crate) fn config_answer(config: &Config) -> LogicalResponse {
    let mut data = Map::new();
    data.insert(
        "analytics_retention".into(),
        config.analytics_retention.into(),
    );
    LogicalResponse::data(data)
}

// ---- analytics ----

/// A time in a query: RFC 3339, unix seconds, or a duration back from now (`24h`).
fn query_time(
    query: &BTreeMap<String, String>,
    name: &str,
    now: i64,
) -> Result<Option<i64>, EngineError> {
    let Some(text) = query.get(name).filter(|text| !text.is_empty()) else {
        return Ok(None);
    };
    if let Ok(seconds) = text.parse::<i64>() {
        return Ok(Some(seconds));
    }
    if let Ok(time) = text.parse::<jiff::Timestamp>() {
        return Ok(Some(time.as_second()));
    }
    if let Ok(nanos) = crate::kv::parse_go_duration(text) {
        return Ok(Some(
            now - i64::try_from(nanos / 1_000_000_000).unwrap_or(0),
        ));
    }
    Err(invalid(format!(
        "{name} must be an RFC 3339 time, unix seconds or a duration back from now"
    )))
}

pub(crate) async fn analytics(
    index: &Index,
    ring: &str,
    query: &BTreeMap<String, String>,
    now: i64,
) -> Result<Option<LogicalResponse>, EngineError> {
    if read_keyring(&index.storage, ring).await?.is_none() {
        return Ok(None);
    }
    let group_by = match query.get("group_by").map(String::as_str) {
        None | Some("") | Some("hour") => 3600,
        Some("day") => 86_400,
        Some(_) => return Err(invalid("group_by must be hour or day")),
    };
    let until = query_time(query, "until", now)?.unwrap_or(now);
    let since = query_time(query, "since", now)?.unwrap_or(until - 86_400);
    if since > until {
        return Err(invalid("since is after until"));
    }
    let key_id = query.get("key_id").filter(|id| !id.is_empty());
    // What verifications counted and not yet wrote is written first, so the answer is current.
    index.flush().await?;
    let prefix = ring_prefix(ring);
    let first_hour = super::state::hour_of(since);
    let mut after = Some(format!("{prefix}{:012}", (first_hour - 1).max(0)));
    if first_hour <= 0 {
        after = None;
    }
    let mut buckets: BTreeMap<i64, [u64; CODES]> = BTreeMap::new();
    let mut totals = [0u64; CODES];
    let mut per_key: BTreeMap<String, u64> = BTreeMap::new();
    'pages: loop {
        let page = index.storage.list(&prefix, after.as_deref(), 500).await?;
        for key in &page.keys {
            let Some(hour) = key
                .strip_prefix(&prefix)
                .and_then(|hour| hour.parse::<i64>().ok())
            else {
                continue;
            };
            if hour > until {
                break 'pages;
            }
            if hour < first_hour {
                continue;
            }
            let Some(plain) = index.storage.get(key).await? else {
                continue;
            };
            let record: model::HourRecord = decode(&plain.value, "API key analytics")?;
            let bucket = hour.div_euclid(group_by) * group_by;
            for (id, codes) in &record.keys {
                if key_id.is_some_and(|wanted| wanted != id) {
                    continue;
                }
                for code in Code::ALL {
                    let n = codes.get(code.as_str()).copied().unwrap_or(0);
                    buckets.entry(bucket).or_insert([0; CODES])[code.index()] += n;
                    totals[code.index()] += n;
                    if !id.is_empty() {
                        *per_key.entry(id.clone()).or_insert(0) += n;
                    }
                }
            }
        }
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let codes_json = |codes: &[u64; CODES]| {
        let mut out = Map::new();
        out.insert("total".into(), codes.iter().sum::<u64>().into());
        for code in Code::ALL {
            if codes[code.index()] > 0 {
                out.insert(code.as_str().into(), codes[code.index()].into());
            }
        }
        out
    };
    let buckets: Vec<Value> = buckets
        .iter()
        .map(|(time, codes)| {
            let mut out = codes_json(codes);
            out.insert("time".into(), model::time_json(*time));
            Value::Object(out)
        })
        .collect();
    let mut top: Vec<(String, u64)> = per_key.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top.truncate(10);
    let top: Vec<Value> = top
        .into_iter()
        .map(|(id, total)| {
            let name = index
                .by_id(&id)
                .map(|entry| entry.lock().compiled.record.name.clone())
                .unwrap_or_default();
            serde_json::json!({"key_id": id, "name": name, "total": total})
        })
        .collect();
    let last_used_at = match key_id {
        Some(id) => index.by_id(id).and_then(|entry| entry.lock().last_used_at),
        None => index
            .keys_of(ring)
            .iter()
            .filter_map(|entry| entry.lock().last_used_at)
            .max(),
    };
    let mut data = Map::new();
    data.insert("keyring".into(), ring.into());
    data.insert(
        "group_by".into(),
        if group_by == 3600 { "hour" } else { "day" }.into(),
    );
    data.insert("since".into(), model::time_json(since));
    data.insert("until".into(), model::time_json(until));
    data.insert("buckets".into(), Value::Array(buckets));
    data.insert("totals".into(), Value::Object(codes_json(&totals)));
    data.insert("top_keys".into(), Value::Array(top));
    data.insert(
        "last_used_at".into(),
        last_used_at.map_or(Value::Null, model::time_json),
    );
    Ok(Some(LogicalResponse::data(data)))
}
