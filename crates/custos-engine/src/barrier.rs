//! The barrier: every value the engine stores passes through here and is sealed with the
//! keyring's active data key, with its storage path as associated data.
//!
//! A `Barrier` only exists once the keyring has been opened with the root key, so code holding
//! one never needs to ask "are we sealed?". Keys under [`RAW_PREFIX`] belong to the seal itself
//! (seal configuration, the root-key-sealed keyring) and cannot be reached through the barrier.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use custos_crypto::{CryptoError, Keyring, RootKey};
use custos_storage::{Condition, ListPage, Op, Revision, Storage, Transaction};
use zeroize::Zeroizing;

use crate::EngineError;

/// Keys below this prefix are stored in the clear (or sealed by the root key) and are managed by
/// [`crate::seal`]; the barrier refuses them.
pub(crate) const RAW_PREFIX: &str = "seal/";
/// Where the keyring, sealed by the root key, is stored.
pub(crate) const KEYRING_KEY: &str = "seal/keyring";

/// A decrypted value and the revision it was read at.
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
    root_key: RootKey,
    keyring: RwLock<Arc<Keyring>>,
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
            root_key,
            keyring: RwLock::new(Arc::new(keyring)),
            encryptions: AtomicU64::new(0),
        }
    }

    fn keyring(&self) -> Arc<Keyring> {
        self.keyring
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn install(&self, keyring: Keyring) {
        let mut slot = self
            .keyring
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if keyring.active_term() > slot.active_term() {
            self.encryptions.store(0, Ordering::Relaxed);
        }
        if keyring.active_term() >= slot.active_term() {
            *slot = Arc::new(keyring);
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
        let keyring = self
            .root_key
            .open_keyring(&entry.value)
            .map_err(|error| crypto_failure(KEYRING_KEY, error))?;
        self.install(keyring);
        Ok(())
    }

    /// Seals one value for `path` with the active term, without writing it.
    pub(crate) fn seal_value(&self, path: &str, plaintext: &[u8]) -> Result<Vec<u8>, EngineError> {
        check_path(path)?;
        let blob = self
            .keyring()
            .seal(path, plaintext)
            .map_err(|error| EngineError::Internal(format!("sealing failed: {error}")))?;
        self.encryptions.fetch_add(1, Ordering::Relaxed);
        Ok(blob)
    }

    async fn open_value(&self, path: &str, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, EngineError> {
        match self.keyring().open(path, blob) {
            Err(CryptoError::UnknownTerm(term)) => {
                tracing::info!(term, "unknown key term, reloading keyring");
                self.reload_keyring().await?;
                self.keyring()
                    .open(path, blob)
                    .map_err(|error| crypto_failure(path, error))
            }
            other => other.map_err(|error| crypto_failure(path, error)),
        }
    }

    /// Reads and decrypts one value.
    pub async fn get(&self, path: &str) -> Result<Option<Plain>, EngineError> {
        check_path(path)?;
        let entry = if crate::index::reading_fresh() {
            self.storage.get_uncached(path).await?
        } else {
            self.storage.get(path).await?
        };
        let Some(entry) = entry else {
            return Ok(None);
        };
        let value = self.open_value(path, &entry.value).await?;
        Ok(Some(Plain {
            value,
            revision: entry.revision,
        }))
    }

    /// Lists keys under `prefix` (never reaching reserved keys).
    pub async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage, EngineError> {
        check_path(prefix)?;
        let mut page = self.storage.list(prefix, after, limit).await?;
        page.keys.retain(|key| !key.starts_with(RAW_PREFIX));
        Ok(page)
    }

    /// Seals the values of `txn` and commits it atomically.
    pub async fn commit(&self, txn: Transaction) -> Result<Revision, EngineError> {
        let sealed = self.seal_transaction(txn)?;
        let revision = self.storage.commit(sealed).await?;
        crate::index::record(revision);
        Ok(revision)
    }

    /// Turns a plaintext transaction into the sealed one the storage receives.
    pub(crate) fn seal_transaction(&self, txn: Transaction) -> Result<Transaction, EngineError> {
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
                    let blob = self.seal_value(&key, &plaintext)?;
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
        // Rotate from what storage holds, not from memory: another node may have rotated already.
        let entry = self.storage.get(KEYRING_KEY).await?;
        let entry =
            entry.ok_or_else(|| EngineError::Internal("keyring missing from storage".into()))?;
        let current = self
            .root_key
            .open_keyring(&entry.value)
            .map_err(|error| crypto_failure(KEYRING_KEY, error))?;
        let rotated = current
            .rotate(now_unix)
            .map_err(|error| EngineError::Internal(format!("rotation failed: {error}")))?;
        let sealed = self
            .root_key
            .seal_keyring(&rotated)
            .map_err(|error| EngineError::Internal(format!("sealing keyring failed: {error}")))?;
        let txn = Transaction::new()
            .require_revision(KEYRING_KEY, entry.revision)
            .put(KEYRING_KEY, sealed);
        match self.storage.commit(txn).await {
            Ok(revision) => crate::index::record(revision),
            // A concurrent rotation won: adopt its keyring. The caller still sees a rotation.
            Err(custos_storage::StorageError::Conflict) => {
                self.reload_keyring().await?;
                return Ok(self.key_info());
            }
            Err(error) => return Err(error.into()),
        }
        tracing::info!(term = rotated.active_term(), "data key rotated");
        self.install(rotated);
        Ok(self.key_info())
    }

    /// The active term, when it was installed and how often it was used by this process.
    pub fn key_info(&self) -> KeyInfo {
        let keyring = self.keyring();
        let term = keyring.active_term();
        KeyInfo {
            term,
            installed_at: keyring.installed_at(term).unwrap_or_default(),
            encryptions: self.encryptions.load(Ordering::Relaxed),
        }
    }
}
