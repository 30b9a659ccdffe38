//! The in-memory backend: a `BTreeMap` behind a mutex. Used by `--dev` and by engine tests.
//! Nothing survives the process, so "durable" here means "visible to every later read".

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Mutex;

use crate::{
    Condition, Entry, ListPage, Op, Revision, Storage, StorageError, Transaction, page_from,
    validate_key, validate_transaction,
};

#[derive(Default)]
struct Inner {
    entries: BTreeMap<String, Entry>,
    revision: u64,
}

/// Storage that lives in process memory.
#[derive(Default)]
pub struct MemoryStorage {
    inner: Mutex<Inner>,
}

impl MemoryStorage {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map half-updated: commits validate
        // every condition before the first write, and writes do not panic. So the data behind a
        // poisoned lock is consistent and we keep serving it.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait::async_trait]
impl Storage for MemoryStorage {
    fn backend_name(&self) -> &'static str {
        "memory"
    }

    async fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        validate_key(key)?;
        Ok(self.lock().entries.get(key).cloned())
    }

    async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage, StorageError> {
        let inner = self.lock();
        let start = match after {
            Some(after) if after >= prefix => Bound::Excluded(after.to_owned()),
            _ => Bound::Included(prefix.to_owned()),
        };
        let take = if limit == 0 {
            usize::MAX
        } else {
            limit.saturating_add(1)
        };
        let keys: Vec<String> = inner
            .entries
            .range((start, Bound::Unbounded))
            .map(|(key, _)| key)
            .take_while(|key| key.starts_with(prefix))
            .take(take)
            .cloned()
            .collect();
        Ok(page_from(keys, limit))
    }

    async fn commit(&self, txn: Transaction) -> Result<Revision, StorageError> {
        validate_transaction(&txn)?;
        let mut inner = self.lock();
        for condition in &txn.conditions {
            let holds = match condition {
                Condition::Absent(key) => !inner.entries.contains_key(key),
                Condition::Revision(key, revision) => inner
                    .entries
                    .get(key)
                    .is_some_and(|entry| entry.revision == *revision),
            };
            if !holds {
                return Err(StorageError::Conflict);
            }
        }
        if txn.ops.is_empty() {
            return Ok(Revision(inner.revision));
        }
        inner.revision += 1;
        let revision = Revision(inner.revision);
        for op in txn.ops {
            match op {
                Op::Put(key, value) => {
                    inner.entries.insert(key, Entry { value, revision });
                }
                Op::Delete(key) => {
                    inner.entries.remove(&key);
                }
            }
        }
        Ok(revision)
    }
}
