//! A read cache in front of any backend: `CachedStorage`.
//!
//! It caches what storage returns (for the engine: barrier ciphertext, so no plaintext is kept
//! here; decryption still happens per read, which AES-GCM makes cheap), including "absent", within
//! a byte budget. "Absent" is not cached under the prefixes given to
//! [`CachedStorage::without_caching_misses_under`]: where anyone can make the server look up
//! random keys (tokens, named by their hash), remembered misses would only evict real entries. Every commit invalidates the keys it names, whatever its outcome (an
//! `Unavailable` commit may have landed).
//!
//! Correctness under concurrent writers: a read remembers the cache generation before going to
//! storage, and fills the cache only if no commit finished in between. A reader that raced a
//! writer therefore never installs the value the writer replaced. Lists are not cached.
//!
//! It is only correct when this process sees every write. With several nodes on one PostgreSQL,
//! another node's writes invalidate it too: the binary feeds it the backend's change feed
//! ([`CachedStorage::apply`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::{Entry, Invalidation, ListPage, Op, Revision, Storage, StorageError, Transaction};

/// Fixed per-entry overhead counted against the budget besides key and value bytes.
const ENTRY_OVERHEAD: usize = 64;

#[derive(Default)]
struct Cache {
    /// `None` caches "no such key".
    entries: HashMap<String, Option<Entry>>,
    bytes: usize,
    /// Bumped by every commit, after its invalidations.
    generation: u64,
    /// Off while remote invalidations cannot be received.
    suspended: bool,
    hits: u64,
    misses: u64,
}

fn cost(key: &str, entry: &Option<Entry>) -> usize {
    key.len() + entry.as_ref().map_or(0, |entry| entry.value.len()) + ENTRY_OVERHEAD
}

impl Cache {
    fn remove(&mut self, key: &str) {
        if let Some(entry) = self.entries.remove(key) {
            self.bytes -= cost(key, &entry);
        }
    }

    fn insert(&mut self, key: String, entry: Option<Entry>, budget: usize) {
        let size = cost(&key, &entry);
        if size > budget / 4 {
            return; // one huge value must not flush everything else
        }
        self.remove(&key);
        if self.bytes + size > budget {
            // Evict about a quarter of the budget; the hash map's order is arbitrary enough.
            let target = budget - budget / 4;
            let victims: Vec<String> = self
                .entries
                .iter()
                .scan(self.bytes, |bytes, (key, entry)| {
                    if *bytes + size <= target {
                        None
                    } else {
                        *bytes -= cost(key, entry);
                        Some(key.clone())
                    }
                })
                .collect();
            for victim in victims {
                self.remove(&victim);
            }
        }
        self.bytes += size;
        self.entries.insert(key, entry);
    }
}

/// Counters for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub entries: usize,
    pub bytes: usize,
}

/// A caching wrapper; see the module documentation.
pub struct CachedStorage {
    inner: Arc<dyn Storage>,
    cache: Mutex<Cache>,
    budget: usize,
    /// Keys under these prefixes are cached only when present.
    uncached_miss_prefixes: Vec<String>,
}

impl CachedStorage {
    /// Caches up to about `budget_bytes` of keys and values in front of `inner`.
    pub fn new(inner: Arc<dyn Storage>, budget_bytes: usize) -> CachedStorage {
        CachedStorage {
            inner,
            cache: Mutex::new(Cache::default()),
            budget: budget_bytes.max(4 * ENTRY_OVERHEAD),
            uncached_miss_prefixes: Vec::new(),
        }
    }

    /// Does not remember "absent" for keys under any of `prefixes` (present values still are):
    /// for key spaces where a caller can make the server look up arbitrary keys.
    #[must_use]
    pub fn without_caching_misses_under<I>(mut self, prefixes: I) -> CachedStorage
    where
        I: IntoIterator,
        I::Item: Into<String>,
    {
        self.uncached_miss_prefixes
            .extend(prefixes.into_iter().map(Into::into));
        self
    }

    fn caches_miss(&self, key: &str) -> bool {
        !self
            .uncached_miss_prefixes
            .iter()
            .any(|prefix| key.starts_with(prefix.as_str()))
    }

    fn lock(&self) -> MutexGuard<'_, Cache> {
        // Every critical section leaves the map consistent before it can panic.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn stats(&self) -> CacheStats {
        let cache = self.lock();
        CacheStats {
            hits: cache.hits,
            misses: cache.misses,
            entries: cache.entries.len(),
            bytes: cache.bytes,
        }
    }

    /// Drops everything and (again) caches from now on.
    pub fn clear(&self) {
        let mut cache = self.lock();
        cache.entries.clear();
        cache.bytes = 0;
        cache.generation += 1;
        cache.suspended = false;
    }

    /// Drops everything and stops caching until [`CachedStorage::clear`]: for when remote
    /// invalidations can no longer be received. Reads go to storage meanwhile.
    pub fn suspend(&self) {
        let mut cache = self.lock();
        cache.entries.clear();
        cache.bytes = 0;
        cache.generation += 1;
        cache.suspended = true;
    }

    /// Applies one message of the change feed: the one place that knows what each means for
    /// the cache.
    pub fn apply(&self, invalidation: &Invalidation) {
        match invalidation {
            Invalidation::All { .. } => self.clear(),
            Invalidation::Lost => self.suspend(),
            Invalidation::Keys { keys, .. } => self.invalidate(keys.iter().map(String::as_str)),
        }
    }

    /// Forgets these keys (remote invalidations).
    pub fn invalidate<'a>(&self, keys: impl IntoIterator<Item = &'a str>) {
        let mut cache = self.lock();
        for key in keys {
            cache.remove(key);
        }
        cache.generation += 1;
    }
}

#[async_trait::async_trait]
impl Storage for CachedStorage {
    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }

    async fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        let generation = {
            let mut cache = self.lock();
            if let Some(entry) = cache.entries.get(key).cloned() {
                cache.hits += 1;
                return Ok(entry);
            }
            cache.misses += 1;
            cache.generation
        };
        let entry = self.inner.get(key).await?;
        if entry.is_none() && !self.caches_miss(key) {
            return Ok(entry);
        }
        let mut cache = self.lock();
        if cache.generation == generation && !cache.suspended {
            let budget = self.budget;
            cache.insert(key.to_owned(), entry.clone(), budget);
        }
        Ok(entry)
    }

    async fn get_uncached(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        self.inner.get_uncached(key).await
    }

    async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage, StorageError> {
        self.inner.list(prefix, after, limit).await
    }

    async fn commit(&self, txn: Transaction) -> Result<Revision, StorageError> {
        let keys: Vec<String> = txn
            .ops
            .iter()
            .map(|op| match op {
                Op::Put(key, _) | Op::Delete(key) => key.clone(),
            })
            .collect();
        let result = self.inner.commit(txn).await;
        self.invalidate(keys.iter().map(String::as_str));
        result
    }

    async fn ping(&self) -> Result<(), StorageError> {
        self.inner.ping().await
    }
}

#[cfg(test)]
mod tests;
