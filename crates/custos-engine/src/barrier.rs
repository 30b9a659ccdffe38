//! The barrier: every value the engine stores passes through here and is sealed with the
//! keyring's active data key, with its storage path as associated data.
//!
//! A `Barrier` only exists once the keyring has been opened with the root key, so code holding
//! one never needs to ask "are we sealed?". Keys under [`RAW_PREFIX`] belong to the seal itself
//! (seal configuration, the root-key-sealed keyring, the encryption counts) and cannot be
//! reached through the barrier.
//!
//! Sealing the engine calls [`Barrier::close`]: the keys are dropped (and zeroized), and a
//! request that still holds the barrier afterwards fails with [`EngineError::Sealed`] on its
//! next read, list or commit instead of using keys that should be gone.
//!
//! # Encryption budget
//!
//! AES-GCM with random 96-bit nonces must seal well under 2^32 values with one key. The barrier
//! counts encryptions per key term in storage, at `seal/encryptions/<term>` (the number
//! reserved so far, 8 bytes big-endian, in the clear: it is no secret). A node reserves a block
//! of counts with a compare-and-swap commit before using them, so the hot path pays one extra
//! commit per block, and with several nodes on one database the count is cluster-wide. Once a
//! term's count would pass [`crate::Limits::max_encryptions_per_key`], the barrier rotates to a
//! new term (or adopts the rotation another node made first); old terms keep decrypting.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use custos_crypto::{CryptoError, Keyring, RootKey};
use custos_storage::{
    Condition, Entry, ListPage, Op, Revision, Storage, StorageError, Transaction,
};
use zeroize::Zeroizing;

use crate::{Clock, EngineError, SystemClock};

/// Keys below this prefix are stored in the clear (or sealed by the root key) and are managed by
/// [`crate::seal`]; the barrier refuses them.
pub(crate) const RAW_PREFIX: &str = "seal/";
/// Where the keyring, sealed by the root key, is stored.
pub(crate) const KEYRING_KEY: &str = "seal/keyring";
/// Where the encryption count of each term is stored, followed by the term.
const ENCRYPTIONS_PREFIX: &str = "seal/encryptions/";
/// How often a reservation retries after losing a race before giving up with `Conflict`.
const MAX_RESERVE_ATTEMPTS: usize = 32;

fn encryptions_key(term: u32) -> String {
    format!("{ENCRYPTIONS_PREFIX}{term}")
}

fn decode_count(entry: &Entry) -> Result<u64, EngineError> {
    let bytes: [u8; 8] = entry.value.as_slice().try_into().map_err(|_| {
        EngineError::Internal(format!(
            "encryption count is corrupt: {} bytes instead of 8",
            entry.value.len()
        ))
    })?;
    Ok(u64::from_be_bytes(bytes))
}

/// How many encryptions a key term may take, and how many a node reserves at a time.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Budget {
    pub(crate) max_per_term: u64,
    pub(crate) block: u64,
}

impl Default for Budget {
    fn default() -> Self {
        let limits = crate::Limits::default();
        Budget {
            max_per_term: limits.max_encryptions_per_key,
            block: limits.encryption_block,
        }
    }
}

/// The counts this node has reserved and not used yet, for one term.
#[derive(Default)]
struct Reserved {
    term: u32,
    next: u64,
    end: u64,
}

/// The keys, while the barrier is open.
struct Keys {
    root_key: RootKey,
    keyring: Arc<Keyring>,
}

/// A decrypted value and the revision it was read at.
/// What [`Barrier::get_if_changed`] found.
#[derive(Debug)]
pub enum Fresh {
    /// Still at the revision the caller knew.
    Unchanged(Revision),
    /// Another value (or the first read): decrypted.
    Changed(Plain),
}

pub struct Plain {
    pub value: Zeroizing<Vec<u8>>,
    pub revision: Revision,
}

impl std::fmt::Debug for Plain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plain")
            .field("len", &self.value.len())
            .field("revision", &self.revision)
            .finish()
    }
}

/// Status of the active data key, as `sys/key-status` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    pub term: u32,
    pub installed_at: i64,
    pub encryptions: u64,
}

/// Encrypting access to storage. See the module documentation.
pub struct Barrier {
    storage: Arc<dyn Storage>,
    /// `None` once closed.
    keys: RwLock<Option<Keys>>,
    clock: Arc<dyn Clock>,
    budget: Budget,
    reserved: Mutex<Reserved>,
    /// Held while a block is reserved, so concurrent writers wait for one commit instead of
    /// each making their own.
    reserving: tokio::sync::Mutex<()>,
    /// Values sealed with the active term since this process loaded it.
    encryptions: AtomicU64,
}

impl std::fmt::Debug for Barrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Barrier")
            .field("backend", &self.storage.backend_name())
            .finish_non_exhaustive()
    }
}

fn check_path(path: &str) -> Result<(), EngineError> {
    if path.starts_with(RAW_PREFIX) {
        return Err(EngineError::Internal(format!(
            "barrier access to reserved key {path:?}"
        )));
    }
    Ok(())
}

fn crypto_failure(path: &str, error: CryptoError) -> EngineError {
    // Failing authentication means the stored bytes were altered, moved or truncated.
    // That is never "not found": fail closed and let the operator see it in the logs.
    EngineError::Internal(format!("stored entry {path:?} cannot be opened: {error}"))
}

impl Barrier {
    pub(crate) fn new(storage: Arc<dyn Storage>, root_key: RootKey, keyring: Keyring) -> Self {
        Barrier {
            storage,
            keys: RwLock::new(Some(Keys {
                root_key,
                keyring: Arc::new(keyring),
            })),
            clock: Arc::new(SystemClock),
            budget: Budget::default(),
            reserved: Mutex::new(Reserved::default()),
            reserving: tokio::sync::Mutex::new(()),
            encryptions: AtomicU64::new(0),
        }
    }

    /// Sets the encryption budget and the clock automatic rotations are dated with.
    pub(crate) fn with_budget(mut self, budget: Budget, clock: Arc<dyn Clock>) -> Self {
        self.budget = Budget {
            max_per_term: budget.max_per_term.max(1),
            block: budget.block.clamp(1, budget.max_per_term.max(1)),
        };
        self.clock = clock;
        self
    }

    fn read_keys(&self) -> std::sync::RwLockReadGuard<'_, Option<Keys>> {
        // Every write is a single assignment; a panic cannot leave the slot half-set.
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn keyring(&self) -> Result<Arc<Keyring>, EngineError> {
        self.read_keys()
            .as_ref()
            .map(|keys| keys.keyring.clone())
            .ok_or(EngineError::Sealed)
    }

    fn ensure_open(&self) -> Result<(), EngineError> {
        self.read_keys()
            .as_ref()
            .map(drop)
            .ok_or(EngineError::Sealed)
    }

    /// Opens a root-key-sealed keyring read from storage.
    fn open_keyring(&self, sealed: &[u8]) -> Result<Keyring, EngineError> {
        let keys = self.read_keys();
        let keys = keys.as_ref().ok_or(EngineError::Sealed)?;
        keys.root_key
            .open_keyring(sealed)
            .map_err(|error| crypto_failure(KEYRING_KEY, error))
    }

    /// Seals a keyring with the root key, for storage.
    fn seal_keyring(&self, keyring: &Keyring) -> Result<Vec<u8>, EngineError> {
        let keys = self.read_keys();
        let keys = keys.as_ref().ok_or(EngineError::Sealed)?;
        keys.root_key
            .seal_keyring(keyring)
            .map_err(|error| EngineError::Internal(format!("sealing keyring failed: {error}")))
    }

    /// Drops the keys (zeroized with them): from now on every read, list and commit through
    /// this barrier fails with [`EngineError::Sealed`]. Called when the engine seals.
    pub(crate) fn close(&self) {
        let keys = self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        drop(keys);
    }

    fn install(&self, keyring: Keyring) {
        let mut slot = self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(keys) = slot.as_mut() else {
            return; // closed meanwhile: stay closed
        };
        if keyring.active_term() > keys.keyring.active_term() {
            self.encryptions.store(0, Ordering::Relaxed);
        }
        if keyring.active_term() >= keys.keyring.active_term() {
            keys.keyring = Arc::new(keyring);
        }
    }

    /// Reloads the keyring from storage: another node may have rotated it.
    pub(crate) async fn reload_keyring(&self) -> Result<(), EngineError> {
        let entry = if crate::index::reading_fresh() {
            self.storage.get_uncached(KEYRING_KEY).await?
        } else {
            self.storage.get(KEYRING_KEY).await?
        };
        let entry =
            entry.ok_or_else(|| EngineError::Internal("keyring missing from storage".into()))?;
        let keyring = self.open_keyring(&entry.value)?;
        self.install(keyring);
        Ok(())
    }

    /// Takes `count` encryptions from this node's reservation for `term`, if it has them.
    fn take_reserved(&self, term: u32, count: u64) -> bool {
        let mut reserved = self
            .reserved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if reserved.term == term && reserved.end.saturating_sub(reserved.next) >= count {
            reserved.next += count;
            return true;
        }
        false
    }

    /// Reserves `count` encryptions and returns the keyring to spend them with: its active term
    /// is the one they were counted against. Rotates once the term's budget is spent.
    async fn reserve(&self, count: u64) -> Result<Arc<Keyring>, EngineError> {
        if count > self.budget.max_per_term {
            return Err(EngineError::Internal(format!(
                "one commit seals {count} values, more than the {} one key may seal",
                self.budget.max_per_term
            )));
        }
        let keyring = self.keyring()?;
        if count == 0 || self.take_reserved(keyring.active_term(), count) {
            return Ok(keyring);
        }
        let _reserving = self.reserving.lock().await;
        for _ in 0..MAX_RESERVE_ATTEMPTS {
            // Whoever held the lock before may have reserved or rotated already.
            let keyring = self.keyring()?;
            let term = keyring.active_term();
            if self.take_reserved(term, count) {
                return Ok(keyring);
            }
            let key = encryptions_key(term);
            let entry = self.storage.get(&key).await?;
            let used = entry.as_ref().map(decode_count).transpose()?.unwrap_or(0);
            let left = self.budget.max_per_term.saturating_sub(used);
            if left < count {
                tracing::info!(
                    term,
                    used,
                    limit = self.budget.max_per_term,
                    "data key reached its encryption limit, rotating"
                );
                self.rotate_from(Some(term)).await?;
                continue;
            }
            let block = self.budget.block.max(count).min(left);
            let txn = match &entry {
                Some(entry) => Transaction::new().require_revision(&key, entry.revision),
                None => Transaction::new().require_absent(&key),
            }
            .put(&key, (used + block).to_be_bytes().to_vec());
            match self.storage.commit(txn).await {
                Ok(_) => {}
                // Another node reserved first: read its count and try again.
                Err(StorageError::Conflict) => continue,
                Err(error) => return Err(error.into()),
            }
            *self
                .reserved
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Reserved {
                term,
                next: used + count,
                end: used + block,
            };
            return Ok(keyring);
        }
        Err(EngineError::Conflict)
    }

    /// Seals one value for `path` with `keyring`'s active term, without writing it.
    fn seal_value(
        &self,
        keyring: &Keyring,
        path: &str,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, EngineError> {
        check_path(path)?;
        let blob = keyring
            .seal(path, plaintext)
            .map_err(|error| EngineError::Internal(format!("sealing failed: {error}")))?;
        self.encryptions.fetch_add(1, Ordering::Relaxed);
        Ok(blob)
    }

    async fn open_value(&self, path: &str, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, EngineError> {
        match self.keyring()?.open(path, blob) {
            Err(CryptoError::UnknownTerm(term)) => {
                tracing::info!(term, "unknown key term, reloading keyring");
                self.reload_keyring().await?;
                self.keyring()?
                    .open(path, blob)
                    .map_err(|error| crypto_failure(path, error))
            }
            other => other.map_err(|error| crypto_failure(path, error)),
        }
    }

    /// Reads and decrypts one value.
    pub async fn get(&self, path: &str) -> Result<Option<Plain>, EngineError> {
        let Some(entry) = self.read_sealed(path).await? else {
            return Ok(None);
        };
        let value = self.open_value(path, &entry.value).await?;
        Ok(Some(Plain {
            value,
            revision: entry.revision,
        }))
    }

    /// Reads one value as stored (sealed), past the read cache for a read-your-writes request.
    async fn read_sealed(&self, path: &str) -> Result<Option<custos_storage::Entry>, EngineError> {
        check_path(path)?;
        self.ensure_open()?;
        Ok(if crate::index::reading_fresh() {
            self.storage.get_uncached(path).await?
        } else {
            self.storage.get(path).await?
        })
    }

    /// Reads one value, decrypting it only when its revision is not `known`: a caller that kept
    /// what it decoded from the value at `known` may use it again. Revisions come from one
    /// store-wide counter, so an unchanged revision means an unchanged value.
    pub async fn get_if_changed(
        &self,
        path: &str,
        known: Option<Revision>,
    ) -> Result<Option<Fresh>, EngineError> {
        let Some(entry) = self.read_sealed(path).await? else {
            return Ok(None);
        };
        if known == Some(entry.revision) {
            return Ok(Some(Fresh::Unchanged(entry.revision)));
        }
        let value = self.open_value(path, &entry.value).await?;
        Ok(Some(Fresh::Changed(Plain {
            value,
            revision: entry.revision,
        })))
    }

    /// Lists keys under `prefix` (never reaching reserved keys).
    pub async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage, EngineError> {
        check_path(prefix)?;
        self.ensure_open()?;
        let mut page = self.storage.list(prefix, after, limit).await?;
        page.keys.retain(|key| !key.starts_with(RAW_PREFIX));
        Ok(page)
    }

    /// Walks the keys under `prefix` a page of at most `limit` keys at a time, for the loops
    /// that visit every key without holding them all.
    pub(crate) fn pages<'a>(&'a self, prefix: &'a str, limit: usize) -> KeyPages<'a> {
        KeyPages {
            barrier: self,
            prefix,
            limit,
            after: None,
            done: false,
        }
    }

    /// Seals the values of `txn` and commits it atomically.
    pub async fn commit(&self, txn: Transaction) -> Result<Revision, EngineError> {
        let puts = txn
            .ops
            .iter()
            .filter(|op| matches!(op, Op::Put(..)))
            .count();
        let keyring = self
            .reserve(u64::try_from(puts).unwrap_or(u64::MAX))
            .await?;
        let sealed = self.seal_transaction_with(&keyring, txn)?;
        let revision = self.storage.commit(sealed).await?;
        crate::index::record(revision);
        Ok(revision)
    }

    /// Reads the JSON table stored at `key` and the revision it was read at; `None` when
    /// nothing is stored there. Undecodable JSON is an internal error naming the key.
    pub(crate) async fn get_table<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<(T, Revision)>, EngineError> {
        let Some(plain) = self.get(key).await? else {
            return Ok(None);
        };
        let table = serde_json::from_slice(&plain.value)
            .map_err(|error| EngineError::Internal(format!("table {key} is corrupt: {error}")))?;
        Ok(Some((table, plain.revision)))
    }

    /// Writes `table` as JSON at `key` if the key is still at `revision` (absent, for `None`),
    /// with `extra`'s operations in the same commit: the new revision, or `None` when another
    /// writer changed it first (read it again and retry).
    pub(crate) async fn put_table_if_unchanged<T: serde::Serialize>(
        &self,
        key: &str,
        table: &T,
        revision: Option<Revision>,
        extra: Transaction,
    ) -> Result<Option<Revision>, EngineError> {
        let bytes = serde_json::to_vec(table)
            .map_err(|error| EngineError::Internal(format!("encoding table {key}: {error}")))?;
        let mut txn = Transaction::new()
            .require_unchanged(key, revision)
            .put(key, bytes);
        txn.ops.extend(extra.ops);
        match self.commit(txn).await {
            Ok(revision) => Ok(Some(revision)),
            Err(EngineError::Conflict) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Turns init's plaintext transaction into the sealed one the storage receives, with the
    /// first term's encryption count. The count is written unconditionally: the keyring is new,
    /// so whatever a count left over from an earlier store says is about another key.
    pub(crate) fn seal_genesis(&self, txn: Transaction) -> Result<Transaction, EngineError> {
        let keyring = self.keyring()?;
        let puts = txn
            .ops
            .iter()
            .filter(|op| matches!(op, Op::Put(..)))
            .count();
        let key = encryptions_key(keyring.active_term());
        let mut sealed = self.seal_transaction_with(&keyring, txn)?;
        let count = u64::try_from(puts).unwrap_or(u64::MAX);
        sealed.ops.push(Op::Put(key, count.to_be_bytes().to_vec()));
        Ok(sealed)
    }

    /// Seals the values of `txn` with `keyring`'s active term.
    fn seal_transaction_with(
        &self,
        keyring: &Keyring,
        txn: Transaction,
    ) -> Result<Transaction, EngineError> {
        for condition in &txn.conditions {
            match condition {
                Condition::Absent(key) | Condition::Revision(key, _) => check_path(key)?,
            }
        }
        let mut ops = Vec::with_capacity(txn.ops.len());
        for op in txn.ops {
            ops.push(match op {
                Op::Put(key, plaintext) => {
                    let plaintext = Zeroizing::new(plaintext);
                    let blob = self.seal_value(keyring, &key, &plaintext)?;
                    Op::Put(key, blob)
                }
                Op::Delete(key) => {
                    check_path(&key)?;
                    Op::Delete(key)
                }
            });
        }
        Ok(Transaction {
            conditions: txn.conditions,
            ops,
        })
    }

    pub async fn put(&self, path: &str, value: Vec<u8>) -> Result<Revision, EngineError> {
        self.commit(Transaction::new().put(path, value)).await
    }

    pub async fn delete(&self, path: &str) -> Result<Revision, EngineError> {
        self.commit(Transaction::new().delete(path)).await
    }

    /// Adds a new data key term and makes it active. Older terms keep decrypting.
    pub async fn rotate(&self, now_unix: i64) -> Result<KeyInfo, EngineError> {
        self.rotate_at(None, now_unix).await?;
        self.key_info()
    }

    /// Rotates on behalf of the encryption budget: `from` is the term whose budget is spent.
    async fn rotate_from(&self, from: Option<u32>) -> Result<(), EngineError> {
        self.rotate_at(from, self.clock.now().as_second()).await
    }

    /// Rotates from what storage holds, not from memory: another node may have rotated already.
    /// With `only_past` set, a stored keyring whose active term is newer is adopted instead.
    async fn rotate_at(&self, only_past: Option<u32>, now_unix: i64) -> Result<(), EngineError> {
        let entry = self.storage.get(KEYRING_KEY).await?;
        let entry =
            entry.ok_or_else(|| EngineError::Internal("keyring missing from storage".into()))?;
        let current = self.open_keyring(&entry.value)?;
        if only_past.is_some_and(|term| current.active_term() > term) {
            self.install(current);
            return Ok(());
        }
        let rotated = current
            .rotate(now_unix)
            .map_err(|error| EngineError::Internal(format!("rotation failed: {error}")))?;
        let sealed = self.seal_keyring(&rotated)?;
        let txn = Transaction::new()
            .require_revision(KEYRING_KEY, entry.revision)
            .put(KEYRING_KEY, sealed);
        match self.storage.commit(txn).await {
            Ok(revision) => crate::index::record(revision),
            // A concurrent rotation won: adopt its keyring. The caller still sees a rotation.
            Err(StorageError::Conflict) => return self.reload_keyring().await,
            Err(error) => return Err(error.into()),
        }
        tracing::info!(term = rotated.active_term(), "data key rotated");
        self.install(rotated);
        Ok(())
    }

    /// The active term, when it was installed and how often it was used by this process.
    pub fn key_info(&self) -> Result<KeyInfo, EngineError> {
        let keyring = self.keyring()?;
        let term = keyring.active_term();
        Ok(KeyInfo {
            term,
            installed_at: keyring.installed_at(term).unwrap_or_default(),
            encryptions: self.encryptions.load(Ordering::Relaxed),
        })
    }
}

/// The keys under a prefix, page by page ([`Barrier::pages`]). Keys written behind the walk
/// may or may not be seen; none is seen twice.
pub(crate) struct KeyPages<'a> {
    barrier: &'a Barrier,
    prefix: &'a str,
    limit: usize,
    after: Option<String>,
    done: bool,
}

impl KeyPages<'_> {
    /// The next page of keys (full keys, prefix included), or `None` after the last.
    pub(crate) async fn next_page(&mut self) -> Result<Option<Vec<String>>, EngineError> {
        if self.done {
            return Ok(None);
        }
        let page = self
            .barrier
            .list(self.prefix, self.after.as_deref(), self.limit)
            .await?;
        match page.next_after {
            Some(next) => self.after = Some(next),
            None => self.done = true,
        }
        Ok(Some(page.keys))
    }
}

#[cfg(test)]
mod pages_tests {
    use std::sync::Arc;

    use custos_crypto::{Keyring, RootKey};
    use custos_storage::{MemoryStorage, Transaction};

    use super::Barrier;

    #[tokio::test]
    async fn pages_visit_every_key_under_the_prefix_once() {
        let barrier = Barrier::new(
            Arc::new(MemoryStorage::new()),
            RootKey::generate().expect("root key"),
            Keyring::generate(0).expect("keyring"),
        );
        let mut txn = Transaction::new().put("other/x", b"x".to_vec());
        for n in 0..7 {
            txn = txn.put(format!("items/{n}"), b"v".to_vec());
        }
        barrier.commit(txn).await.expect("commit");

        let mut pages = barrier.pages("items/", 3);
        let mut sizes = Vec::new();
        let mut keys = Vec::new();
        while let Some(page) = pages.next_page().await.expect("page") {
            sizes.push(page.len());
            keys.extend(page);
        }
        assert_eq!(sizes, [3, 3, 1]);
        let expected: Vec<String> = (0..7).map(|n| format!("items/{n}")).collect();
        assert_eq!(keys, expected);
        assert!(pages.next_page().await.expect("after the end").is_none());

        let mut empty = barrier.pages("none/", 3);
        assert_eq!(empty.next_page().await.expect("page"), Some(Vec::new()));
        assert_eq!(empty.next_page().await.expect("page"), None);
    }
}
