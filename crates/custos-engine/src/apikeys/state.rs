//! The in-memory index of one `apikeys` mount: keyed hash → key, with each key's live usage.
//!
//! Built from storage once per unsealing (on the mount's first request, or right after unseal),
//! then kept current by every change this node makes and, with several nodes, by the change
//! feed ([`Index::apply_change`]). Verification reads it and nothing else: no storage read, no
//! storage write, and no lock shared by all requests: the hash table is split in
//! [`SHARDS`] read-mostly shards, and each key has its own small mutex for its counters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use custos_core::permission::Grants;
use custos_core::ratelimit::Window;
use custos_crypto::PreparedHmac;

use super::model::{self, Config, HashKind, HashPointer, KeyRecord, Keyring, UsageRecord, decode};
use crate::EngineError;
use crate::logical::MountStorage;

/// Shards of the hash table.
pub(crate) const SHARDS: usize = 64;

/// How many key records the index build reads at once.
const BUILD_CONCURRENCY: usize = 16;
/// Keys listed per storage page while building.
const BUILD_PAGE: usize = 1000;

/// The outcome codes of a verification, in the order analytics count them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Code {
    Valid,
    NotFound,
    Expired,
    Disabled,
    UsageExceeded,
    RateLimited,
    InsufficientPermissions,
    /// Not a verification outcome: the key was reported leaked and revoked (analytics only).
    Leaked,
}

pub(crate) const CODES: usize = 8;

impl Code {
    pub(crate) const ALL: [Code; CODES] = [
        Code::Valid,
        Code::NotFound,
        Code::Expired,
        Code::Disabled,
        Code::UsageExceeded,
        Code::RateLimited,
        Code::InsufficientPermissions,
        Code::Leaked,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Code::Valid => "VALID",
            Code::NotFound => "NOT_FOUND",
            Code::Expired => "EXPIRED",
            Code::Disabled => "DISABLED",
            Code::UsageExceeded => "USAGE_EXCEEDED",
            Code::RateLimited => "RATE_LIMITED",
            Code::InsufficientPermissions => "INSUFFICIENT_PERMISSIONS",
            Code::Leaked => "LEAKED",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Verification counts of one hour.
pub(crate) type HourCounts = (i64, [u64; CODES]);

/// Adds one outcome to a short list of hourly counts (almost always one hour long).
pub(crate) fn count(counts: &mut Vec<HourCounts>, hour: i64, code: Code) {
    match counts.iter_mut().find(|(at, _)| *at == hour) {
        Some((_, codes)) => codes[code.index()] += 1,
        None => {
            let mut codes = [0; CODES];
            codes[code.index()] = 1;
            counts.push((hour, codes));
        }
    }
}

/// The start of the hour `unix` falls in.
pub(crate) fn hour_of(unix: i64) -> i64 {
    unix.div_euclid(3600) * 3600
}

/// A key's attributes as verification needs them: the record and its grants, compiled once.
pub(crate) struct Compiled {
    pub(crate) record: KeyRecord,
    pub(crate) grants: Grants,
}

impl Compiled {
    /// The key's own permissions plus those of its roles (as the keyring defines them now).
    pub(crate) fn new(record: KeyRecord, keyring: Option<&Keyring>) -> Compiled {
        let mut all: Vec<&str> = record.permissions.iter().map(String::as_str).collect();
        if let Some(keyring) = keyring {
            for role in &record.roles {
                if let Some(permissions) = keyring.roles.get(role) {
                    all.extend(permissions.iter().map(String::as_str));
                }
            }
        }
        let grants = Grants::new(all);
        Compiled { record, grants }
    }
}

/// The live, node-local part of a key.
pub(crate) struct Live {
    pub(crate) compiled: Arc<Compiled>,
    /// Uses left as this node sees them: the stored count minus what this node spent since.
    pub(crate) remaining: Option<i64>,
    /// The record's `remaining_epoch` that `remaining` counts against.
    pub(crate) epoch: u64,
    /// The refill boundary last applied (unix seconds).
    pub(crate) last_refill_at: i64,
    /// A refill happened here since the last flush: the flush writes the count, not a delta.
    pub(crate) refilled: bool,
    /// Uses spent here and not yet written.
    pub(crate) unflushed: u64,
    pub(crate) last_used_at: Option<i64>,
    /// `last_used_at` changed since the last flush.
    pub(crate) used: bool,
    /// One window per rate limit of the record, by position.
    pub(crate) windows: Vec<Window>,
    /// Verification counts not yet written to analytics.
    pub(crate) counts: Vec<HourCounts>,
    /// The key is gone (revoked, its keyring deleted): verifications find nothing.
    pub(crate) removed: bool,
}

/// One key in the index.
pub(crate) struct Entry {
    pub(crate) id: String,
    pub(crate) live: Mutex<Live>,
    /// Queued for the next flush.
    pub(crate) dirty: AtomicBool,
}

impl Entry {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The index of one mount.
pub(crate) struct Index {
    pub(crate) storage: MountStorage,
    pub(crate) hasher: PreparedHmac,
    shards: Vec<RwLock<HashMap<[u8; 32], Arc<Entry>>>>,
    /// Keys imported by their SHA-256 (rarely any; consulted only when there are).
    imported: RwLock<HashMap<[u8; 32], Arc<Entry>>>,
    imported_count: AtomicUsize,
    by_id: RwLock<HashMap<String, Arc<Entry>>>,
    keyrings: RwLock<HashMap<String, Arc<Keyring>>>,
    config: RwLock<Config>,
    /// Keys with something to flush.
    pub(crate) dirty: Mutex<Vec<Arc<Entry>>>,
    /// Verification counts that belong to no key (`NOT_FOUND`), by keyring (`""`: none named).
    pub(crate) unattributed: Vec<Mutex<HashMap<String, Vec<HourCounts>>>>,
    /// Hourly counts a flush could not write, for the next one.
    pub(crate) unwritten_hours: Mutex<super::usage::RingHours>,
    /// Rerolled keys still in their grace period: (end of grace, key id).
    graced: Mutex<Vec<(i64, String)>>,
    /// When expired analytics were last looked for (unix seconds).
    last_retention_sweep: std::sync::atomic::AtomicI64,
}

fn shard_of(hash: &[u8; 32]) -> usize {
    usize::from(hash[0]) % SHARDS
}

fn hash_bytes(hex_text: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(hex_text).ok()?;
    bytes.try_into().ok()
}

impl Index {
    fn empty(storage: MountStorage, hasher: PreparedHmac) -> Index {
        Index {
            storage,
            hasher,
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            imported: RwLock::default(),
            imported_count: AtomicUsize::new(0),
            by_id: RwLock::default(),
            keyrings: RwLock::default(),
            config: RwLock::default(),
            dirty: Mutex::default(),
            unattributed: (0..16).map(|_| Mutex::default()).collect(),
            unwritten_hours: Mutex::default(),
            graced: Mutex::default(),
            last_retention_sweep: std::sync::atomic::AtomicI64::new(i64::MIN),
        }
    }

    /// Reads the whole mount from storage.
    pub(crate) async fn build(storage: MountStorage) -> Result<Index, EngineError> {
        let started = std::time::Instant::now();
        let hasher = load_hmac_key(&storage).await?;
        let index = Index::empty(storage, hasher);
        if let Some(config) = index.storage.get(model::CONFIG_KEY).await? {
            *write(&index.config) = decode(&config.value, "apikeys config")?;
        }
        for key in list_all(&index.storage, model::KEYRINGS).await? {
            if let Some(plain) = index.storage.get(&key).await? {
                let keyring: Keyring = decode(&plain.value, "keyring")?;
                write(&index.keyrings).insert(keyring.name.clone(), Arc::new(keyring));
            }
        }
        let index = Arc::new(index);
        let mut after: Option<String> = None;
        let mut loaded = 0usize;
        loop {
            let page = index
                .storage
                .list(model::KEYS, after.as_deref(), BUILD_PAGE)
                .await?;
            let mut tasks = tokio::task::JoinSet::new();
            for chunk in page
                .keys
                .chunks(page.keys.len().div_ceil(BUILD_CONCURRENCY).max(1))
            {
                let chunk = chunk.to_vec();
                let index = index.clone();
                tasks.spawn(async move {
                    for key in chunk {
                        let id = key.strip_prefix(model::KEYS).unwrap_or(&key).to_owned();
                        index.reload_key(&id).await?;
                    }
                    Ok::<(), EngineError>(())
                });
            }
            while let Some(done) = tasks.join_next().await {
                done.map_err(|error| EngineError::Internal(format!("index build: {error}")))??;
            }
            loaded += page.keys.len();
            match page.next_after {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        tracing::info!(
            keys = loaded,
            millis = started.elapsed().as_millis() as u64,
            "API key index built"
        );
        Arc::try_unwrap(index)
            .map_err(|_| EngineError::Internal("index build: a task outlived the build".into()))
    }

    /// Reads every keyring and key again (the change feed reconnected: anything may have
    /// changed), keeping the live counters of keys that are still there.
    pub(crate) async fn reload_all(&self) -> Result<(), EngineError> {
        let mut rings = std::collections::HashSet::new();
        for key in list_all(&self.storage, model::KEYRINGS).await? {
            if let Some(plain) = self.storage.get(&key).await? {
                let keyring: Keyring = decode(&plain.value, "keyring")?;
                rings.insert(keyring.name.clone());
                self.put_keyring(keyring);
            }
        }
        let gone: Vec<String> = read(&self.keyrings)
            .keys()
            .filter(|name| !rings.contains(*name))
            .cloned()
            .collect();
        for name in gone {
            self.remove_keyring(&name);
        }
        let mut ids = std::collections::HashSet::new();
        for key in list_all(&self.storage, model::KEYS).await? {
            let id = key.strip_prefix(model::KEYS).unwrap_or(&key).to_owned();
            self.reload_key(&id).await?;
            ids.insert(id);
        }
        let stale: Vec<String> = read(&self.by_id)
            .keys()
            .filter(|id| !ids.contains(*id))
            .cloned()
            .collect();
        for id in stale {
            self.remove(&id);
        }
        Ok(())
    }

    /// Whether the hourly look for expired analytics is due (and claims it).
    pub(crate) fn retention_sweep_due(&self, now: i64, every: i64) -> bool {
        let last = self.last_retention_sweep.load(Ordering::Acquire);
        last.saturating_add(every) <= now
            && self
                .last_retention_sweep
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    /// Deletes rerolled keys whose grace period ended.
    pub(crate) async fn expire_graced(&self, now: i64) -> Result<usize, EngineError> {
        let due: Vec<String> = {
            let mut graced = lock(&self.graced);
            let (due, keep): (Vec<_>, Vec<_>) = graced.drain(..).partition(|(at, _)| *at <= now);
            *graced = keep;
            due.into_iter().map(|(_, id)| id).collect()
        };
        let mut expired = 0;
        for id in due {
            let Some(plain) = self.storage.get(&format!("{}{id}", model::KEYS)).await? else {
                continue;
            };
            let record: KeyRecord = decode(&plain.value, "API key record")?;
            if record.grace_until.is_none_or(|at| at > now) {
                continue;
            }
            let txn = custos_storage::Transaction::new()
                .require_revision(format!("{}{id}", model::KEYS), plain.revision)
                .delete(format!("{}{id}", model::KEYS))
                .delete(record.hash_key())
                .delete(format!("{}{id}", model::USAGE));
            match self.storage.commit(txn).await {
                Ok(_) => {
                    self.remove(&id);
                    expired += 1;
                }
                // Changed meanwhile (another node expired it, or it was updated): left alone.
                Err(EngineError::Conflict) => {}
                Err(error) => {
                    lock(&self.graced).push((now, id));
                    return Err(error);
                }
            }
        }
        Ok(expired)
    }

    pub(crate) fn config(&self) -> Config {
        read(&self.config).clone()
    }

    pub(crate) fn set_config(&self, config: Config) {
        *write(&self.config) = config;
    }

    pub(crate) fn keyring(&self, name: &str) -> Option<Arc<Keyring>> {
        read(&self.keyrings).get(name).cloned()
    }

    pub(crate) fn has_imported(&self) -> bool {
        self.imported_count.load(Ordering::Relaxed) > 0
    }

    /// The key whose HMAC is `hash`.
    pub(crate) fn find(&self, hash: &[u8; 32]) -> Option<Arc<Entry>> {
        read(&self.shards[shard_of(hash)]).get(hash).cloned()
    }

    /// The imported key whose SHA-256 is `hash`.
    pub(crate) fn find_imported(&self, hash: &[u8; 32]) -> Option<Arc<Entry>> {
        read(&self.imported).get(hash).cloned()
    }

    pub(crate) fn by_id(&self, id: &str) -> Option<Arc<Entry>> {
        read(&self.by_id).get(id).cloned()
    }

    /// Every key of a keyring (a scan: keyring changes are rare).
    pub(crate) fn keys_of(&self, keyring: &str) -> Vec<Arc<Entry>> {
        read(&self.by_id)
            .values()
            .filter(|entry| entry.lock().compiled.record.keyring == keyring)
            .cloned()
            .collect()
    }

    /// Queues a key for the next flush (once per flush).
    pub(crate) fn mark_dirty(&self, entry: &Arc<Entry>) {
        if !entry.dirty.swap(true, Ordering::AcqRel) {
            lock(&self.dirty).push(entry.clone());
        }
    }

    /// Counts a verification that found no key: under the keyring it named only when that
    /// keyring exists, so a caller cannot make a stored record for every name it sends.
    pub(crate) fn count_unattributed(&self, keyring: &str, key: &str, now: i64) {
        let keyring = if self.keyring(keyring).is_some() {
            keyring
        } else {
            ""
        };
        // Any spread will do: the shards only keep concurrent misses off one lock.
        let shard = key.bytes().rev().take(4).fold(0usize, |acc, byte| {
            acc.wrapping_mul(31).wrapping_add(usize::from(byte))
        }) % self.unattributed.len();
        let mut counts = lock(&self.unattributed[shard]);
        let list = counts.entry(keyring.to_owned()).or_default();
        count(list, hour_of(now), Code::NotFound);
    }

    /// Installs a keyring and recompiles its keys' grants (roles may have changed).
    pub(crate) fn put_keyring(&self, keyring: Keyring) {
        let name = keyring.name.clone();
        let keyring = Arc::new(keyring);
        write(&self.keyrings).insert(name.clone(), keyring.clone());
        for entry in self.keys_of(&name) {
            let mut live = entry.lock();
            let record = live.compiled.record.clone();
            live.compiled = Arc::new(Compiled::new(record, Some(&keyring)));
        }
    }

    pub(crate) fn remove_keyring(&self, name: &str) {
        write(&self.keyrings).remove(name);
        for entry in self.keys_of(name) {
            self.remove(&entry.id);
        }
    }

    /// Installs a key record, keeping the live counters of a key already indexed. `usage`
    /// is the stored usage, when it was read.
    pub(crate) fn put_key(&self, record: KeyRecord, usage: Option<UsageRecord>) {
        let Some(hash) = hash_bytes(&record.hash) else {
            tracing::warn!(key_id = %record.id, "API key record with a malformed hash ignored");
            return;
        };
        let Some(keyring) = self.keyring(&record.keyring) else {
            // A key whose keyring is gone (deleted while the key was written elsewhere) is
            // revoked with it.
            self.remove(&record.id);
            return;
        };
        if let Some(until) = record.grace_until {
            lock(&self.graced).push((until, record.id.clone()));
        }
        let compiled = Arc::new(Compiled::new(record, Some(&keyring)));
        let record = &compiled.record;
        let existing = self.by_id(&record.id);
        match existing {
            Some(entry) => {
                let mut live = entry.lock();
                let old = live.compiled.clone();
                if old.record.ratelimits != record.ratelimits {
                    live.windows = vec![Window::default(); record.ratelimits.len()];
                }
                if old.record.remaining_epoch != record.remaining_epoch {
                    live.epoch = record.remaining_epoch;
                    live.remaining = record.remaining;
                    live.unflushed = 0;
                    live.refilled = false;
                }
                if let Some(usage) = usage {
                    apply_usage(&mut live, &usage);
                }
                live.compiled = compiled.clone();
                live.removed = false;
            }
            None => {
                let mut live = Live {
                    compiled: compiled.clone(),
                    remaining: record.remaining,
                    epoch: record.remaining_epoch,
                    last_refill_at: record.created_at,
                    refilled: false,
                    unflushed: 0,
                    last_used_at: None,
                    used: false,
                    windows: vec![Window::default(); record.ratelimits.len()],
                    counts: Vec::new(),
                    removed: false,
                };
                if let Some(usage) = usage {
                    apply_usage(&mut live, &usage);
                }
                let entry = Arc::new(Entry {
                    id: record.id.clone(),
                    live: Mutex::new(live),
                    dirty: AtomicBool::new(false),
                });
                write(&self.by_id).insert(record.id.clone(), entry.clone());
                match record.hash_kind {
                    HashKind::Hmac => {
                        write(&self.shards[shard_of(&hash)]).insert(hash, entry);
                    }
                    HashKind::Sha256 => {
                        if write(&self.imported).insert(hash, entry).is_none() {
                            self.imported_count.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }
    }

    /// Takes a key out of the index: it stops verifying at once. Its unflushed analytics are
    /// kept for the next flush.
    pub(crate) fn remove(&self, id: &str) {
        let Some(entry) = write(&self.by_id).remove(id) else {
            return;
        };
        let (hash, kind) = {
            let mut live = entry.lock();
            live.removed = true;
            (
                hash_bytes(&live.compiled.record.hash),
                live.compiled.record.hash_kind,
            )
        };
        if let Some(hash) = hash {
            match kind {
                HashKind::Hmac => {
                    write(&self.shards[shard_of(&hash)]).remove(&hash);
                }
                HashKind::Sha256 => {
                    if write(&self.imported).remove(&hash).is_some() {
                        self.imported_count.fetch_sub(1, Ordering::Relaxed);
                    }
                }
            }
        }
        self.mark_dirty(&entry);
    }

    /// Reads one key (record and usage) from storage and installs it, or removes it when gone.
    pub(crate) async fn reload_key(&self, id: &str) -> Result<(), EngineError> {
        let record = self.storage.get(&format!("{}{id}", model::KEYS)).await?;
        let Some(record) = record else {
            self.remove(id);
            return Ok(());
        };
        let record: KeyRecord = decode(&record.value, "API key record")?;
        let usage = match self.storage.get(&format!("{}{id}", model::USAGE)).await? {
            Some(usage) => Some(decode::<UsageRecord>(&usage.value, "API key usage")?),
            None => None,
        };
        self.put_key(record, usage);
        Ok(())
    }

    /// Brings the index up to date with one storage key another node (or this one) changed,
    /// given relative to the mount.
    pub(crate) async fn apply_change(&self, key: &str) -> Result<(), EngineError> {
        if let Some(id) = key.strip_prefix(model::KEYS) {
            return self.reload_key(id).await;
        }
        if let Some(id) = key.strip_prefix(model::USAGE) {
            let Some(entry) = self.by_id(id) else {
                return Ok(());
            };
            if let Some(usage) = self.storage.get(key).await? {
                let usage: UsageRecord = decode(&usage.value, "API key usage")?;
                apply_usage(&mut entry.lock(), &usage);
            }
            return Ok(());
        }
        if let Some(name) = key.strip_prefix(model::KEYRINGS) {
            match self.storage.get(key).await? {
                Some(plain) => self.put_keyring(decode(&plain.value, "keyring")?),
                None => self.remove_keyring(name),
            }
            return Ok(());
        }
        if key == model::CONFIG_KEY
            && let Some(plain) = self.storage.get(key).await?
        {
            self.set_config(decode(&plain.value, "apikeys config")?);
        }
        Ok(())
    }

    /// Looks a hash up in storage, past the index: used while the change feed is down, when a
    /// key created on another node may not be indexed yet.
    pub(crate) async fn find_in_storage(
        &self,
        kind: HashKind,
        hash: &[u8; 32],
    ) -> Result<Option<Arc<Entry>>, EngineError> {
        let pointer = self
            .storage
            .get(&model::hash_key(kind, &hex::encode(hash)))
            .await?;
        let Some(pointer) = pointer else {
            return Ok(None);
        };
        let pointer: HashPointer = decode(&pointer.value, "API key hash pointer")?;
        self.reload_key(&pointer.id).await?;
        Ok(self.by_id(&pointer.id))
    }
}

/// Folds a stored usage record into the live counters: the stored count minus what this node
/// spent and has not written yet.
fn apply_usage(live: &mut Live, usage: &UsageRecord) {
    if usage.epoch != live.compiled.record.remaining_epoch {
        return;
    }
    if usage.last_refill_at > live.last_refill_at {
        live.last_refill_at = usage.last_refill_at;
        live.refilled = false;
        live.unflushed = 0;
    }
    if !live.refilled {
        live.remaining = usage
            .remaining
            .map(|stored| stored.saturating_sub(i64::try_from(live.unflushed).unwrap_or(i64::MAX)));
    }
    if usage.last_used_at > live.last_used_at {
        live.last_used_at = usage.last_used_at;
    }
}

/// Every key under `prefix`, all pages.
pub(crate) async fn list_all(
    storage: &MountStorage,
    prefix: &str,
) -> Result<Vec<String>, EngineError> {
    let mut keys = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = storage.list(prefix, after.as_deref(), BUILD_PAGE).await?;
        keys.extend(page.keys);
        match page.next_after {
            Some(next) => after = Some(next),
            None => return Ok(keys),
        }
    }
}

/// Reads the mount's HMAC key, creating it on first use.
async fn load_hmac_key(storage: &MountStorage) -> Result<PreparedHmac, EngineError> {
    loop {
        if let Some(plain) = storage.get(model::HMAC_KEY).await? {
            if plain.value.len() != 32 {
                return Err(EngineError::Internal(
                    "the API key HMAC key is corrupt".into(),
                ));
            }
            return Ok(PreparedHmac::new(&plain.value));
        }
        let mut key = zeroize::Zeroizing::new(vec![0u8; 32]);
        custos_crypto::fill_random(&mut key)
            .map_err(|error| EngineError::Internal(format!("randomness: {error}")))?;
        match storage
            .commit(
                custos_storage::Transaction::new()
                    .require_absent(model::HMAC_KEY)
                    .put(model::HMAC_KEY, key.to_vec()),
            )
            .await
        {
            Ok(_) => return Ok(PreparedHmac::new(&key)),
            // Another node made it first: read theirs.
            Err(EngineError::Conflict) => continue,
            Err(error) => return Err(error),
        }
    }
}
