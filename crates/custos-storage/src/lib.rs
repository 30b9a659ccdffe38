//! The physical storage contract every backend implements.
//!
//! Storage is a sorted map from string keys (`/`-separated paths) to opaque byte values.
//! It knows nothing about encryption: the engine's barrier seals every value before it reaches
//! a backend. Every entry carries a [`Revision`], a number taken from one counter that grows with
//! every committed transaction, so a compare-and-swap on a revision can never be fooled by a key
//! that was deleted and written again (no ABA).
//!
//! Backends: [`MemoryStorage`] here, SQLite and PostgreSQL in their own crates. All of them run the
//! same conformance suite (`conformance_tests!`, feature `conformance`).

mod cache;
mod feed;
mod memory;
pub use cache::{CacheStats, CachedStorage};
pub use feed::Invalidation;
pub use memory::MemoryStorage;

#[cfg(feature = "conformance")]
pub mod conformance;

use std::fmt;

/// The revision at which an entry was last written. Revisions are positive, strictly increasing
/// across the whole store, and shared by every key written in one transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision(pub u64);

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One stored value with the revision that wrote it.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    pub value: Vec<u8>,
    pub revision: Revision,
}

impl fmt::Debug for Entry {
    // Values are ciphertext in production, but tests store plaintext: never print them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("value_len", &self.value.len())
            .field("revision", &self.revision)
            .finish()
    }
}

/// A precondition checked atomically with the writes of a [`Transaction`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    /// The key must not exist.
    Absent(String),
    /// The key must exist and have been last written at exactly this revision.
    Revision(String, Revision),
}

/// One write of a [`Transaction`].
#[derive(Clone, PartialEq, Eq)]
pub enum Op {
    Put(String, Vec<u8>),
    Delete(String),
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Put(key, value) => write!(f, "Put({key:?}, {} bytes)", value.len()),
            Op::Delete(key) => write!(f, "Delete({key:?})"),
        }
    }
}

/// Conditions and writes applied all-or-nothing: if any condition fails, nothing is written and
/// the commit answers [`StorageError::Conflict`]. Ops apply in order; a later op on the same key
/// wins. Deleting a missing key is not an error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transaction {
    pub conditions: Vec<Condition>,
    pub ops: Vec<Op>,
}

impl Transaction {
    pub fn new() -> Self {
        Self::default()
    }

    #[must_use]
    pub fn put(mut self, key: impl Into<String>, value: Vec<u8>) -> Self {
        self.ops.push(Op::Put(key.into(), value));
        self
    }

    #[must_use]
    pub fn delete(mut self, key: impl Into<String>) -> Self {
        self.ops.push(Op::Delete(key.into()));
        self
    }

    #[must_use]
    pub fn require_absent(mut self, key: impl Into<String>) -> Self {
        self.conditions.push(Condition::Absent(key.into()));
        self
    }

    #[must_use]
    pub fn require_revision(mut self, key: impl Into<String>, revision: Revision) -> Self {
        self.conditions
            .push(Condition::Revision(key.into(), revision));
        self
    }

    /// Require the key to be exactly as read: absent when `seen` is `None`, else at that revision.
    #[must_use]
    pub fn require_unchanged(self, key: impl Into<String>, seen: Option<Revision>) -> Self {
        match seen {
            None => self.require_absent(key),
            Some(revision) => self.require_revision(key, revision),
        }
    }
}

/// A page of keys from [`Storage::list`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListPage {
    /// Full keys (not stripped of the prefix), in ascending byte order.
    pub keys: Vec<String>,
    /// Pass as `after` to get the next page; `None` when this was the last page.
    pub next_after: Option<String>,
}

/// What went wrong, in terms the engine can act on without knowing the backend.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A transaction condition did not hold; nothing was written.
    #[error("storage conflict: a transaction precondition failed")]
    Conflict,
    /// The backend cannot be reached or refused the operation for a transient reason; retryable.
    #[error("storage unavailable: {message}")]
    Unavailable {
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// Stored data does not have the shape the backend wrote (truncated row, bad revision...).
    #[error("storage data is corrupt: {0}")]
    Corrupt(String),
    /// The caller passed something no backend accepts (empty key, oversized value, ...).
    #[error("invalid storage request: {0}")]
    Invalid(String),
}

impl StorageError {
    pub fn unavailable(
        message: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        StorageError::Unavailable {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, StorageError::Unavailable { .. })
    }
}

/// The largest key any backend accepts, in bytes.
pub const MAX_KEY_LEN: usize = 4096;

/// Checks a key the way every backend must: non-empty, at most [`MAX_KEY_LEN`] bytes, no NUL.
pub fn validate_key(key: &str) -> Result<(), StorageError> {
    if key.is_empty() {
        return Err(StorageError::Invalid("empty key".into()));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(StorageError::Invalid(format!(
            "key is {} bytes, the limit is {MAX_KEY_LEN}",
            key.len()
        )));
    }
    if key.contains('\0') {
        return Err(StorageError::Invalid("key contains a NUL byte".into()));
    }
    Ok(())
}

/// Checks every key a transaction names.
pub fn validate_transaction(txn: &Transaction) -> Result<(), StorageError> {
    for condition in &txn.conditions {
        match condition {
            Condition::Absent(key) | Condition::Revision(key, _) => validate_key(key)?,
        }
    }
    for op in &txn.ops {
        match op {
            Op::Put(key, _) | Op::Delete(key) => validate_key(key)?,
        }
    }
    Ok(())
}

/// A durable, sorted key-value store with atomic multi-key transactions.
///
/// A successful `commit` is durable: once it returns `Ok`, the writes survive a crash of the
/// process (and, for backends that promise it, of the machine).
#[async_trait::async_trait]
pub trait Storage: Send + Sync + 'static {
    /// A short name for logs and metrics: `"memory"`, `"sqlite"`, `"postgres"`.
    fn backend_name(&self) -> &'static str;

    /// Reads one key.
    async fn get(&self, key: &str) -> Result<Option<Entry>, StorageError>;

    /// Reads one key from the backend itself, past any cache in front of it (a read that must
    /// see every commit acknowledged so far, even one whose invalidation is still in flight).
    async fn get_uncached(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        self.get(key).await
    }

    /// Lists keys that start with `prefix`, in ascending byte order, strictly after `after` when
    /// given, at most `limit` of them (`limit` 0 means no limit).
    async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage, StorageError>;

    /// Applies a transaction atomically and durably; returns the revision of its writes.
    /// A transaction with no ops checks its conditions and returns the current revision.
    async fn commit(&self, txn: Transaction) -> Result<Revision, StorageError>;

    /// Writes one key unconditionally.
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<Revision, StorageError> {
        self.commit(Transaction::new().put(key, value)).await
    }

    /// Deletes one key; deleting a missing key succeeds.
    async fn delete(&self, key: &str) -> Result<Revision, StorageError> {
        self.commit(Transaction::new().delete(key)).await
    }

    /// Checks that the backend answers; used by health checks and readiness.
    async fn ping(&self) -> Result<(), StorageError> {
        self.get("core/ping").await.map(|_| ())
    }
}

/// The smallest string greater than every string that starts with `prefix`, or `None` when no
/// such string exists (the prefix is empty or made only of `char::MAX`). UTF-8 preserves code
/// point order, so bumping the last code point gives the exclusive byte-order bound, which
/// backends that list with a key range use as its end.
pub fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = u32::from(last) + 1;
        if next == 0xD800 {
            next = 0xE000; // Skip the surrogates, which are not chars.
        }
        if let Some(next) = char::from_u32(next) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Computes the page boundary for backends that list by fetching `limit + 1` keys.
pub fn page_from(mut keys: Vec<String>, limit: usize) -> ListPage {
    if limit > 0 && keys.len() > limit {
        keys.truncate(limit);
        let next_after = keys.last().cloned();
        ListPage { keys, next_after }
    } else {
        ListPage {
            keys,
            next_after: None,
        }
    }
}

#[cfg(test)]
mod tests;
