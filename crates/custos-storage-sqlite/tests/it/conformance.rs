//! The shared storage conformance suite, once per store flavour.

use std::sync::Arc;

use custos_storage::{Entry, ListPage, Revision, Storage, StorageError, Transaction};
use custos_storage_sqlite::{SqliteOptions, SqliteStorage};

/// A SQLite store in its own temporary directory, removed after the store is closed.
pub(crate) struct FileStorage {
    // Declared first so it is dropped (and the file closed) before the directory is removed.
    pub(crate) storage: SqliteStorage,
    pub(crate) _dir: tempfile::TempDir,
}

impl FileStorage {
    pub(crate) fn new() -> FileStorage {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = SqliteStorage::open(&dir.path().join("custos.db"), SqliteOptions::default())
            .expect("open sqlite file");
        FileStorage { storage, _dir: dir }
    }
}

#[async_trait::async_trait]
impl Storage for FileStorage {
    fn backend_name(&self) -> &'static str {
        self.storage.backend_name()
    }
    async fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        self.storage.get(key).await
    }
    async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage, StorageError> {
        self.storage.list(prefix, after, limit).await
    }
    async fn commit(&self, txn: Transaction) -> Result<Revision, StorageError> {
        self.storage.commit(txn).await
    }
}

mod memory {
    custos_storage::conformance_tests!(async || std::sync::Arc::new(
        custos_storage::MemoryStorage::new()
    ));
}

mod cached_memory {
    custos_storage::conformance_tests!(async || std::sync::Arc::new(
        custos_storage::CachedStorage::new(
            std::sync::Arc::new(custos_storage::MemoryStorage::new()),
            1 << 20,
        )
    ));
}

mod cached_sqlite_file {
    custos_storage::conformance_tests!(async || std::sync::Arc::new(
        custos_storage::CachedStorage::new(std::sync::Arc::new(super::FileStorage::new()), 1 << 20)
    ));
}

mod sqlite_in_memory {
    custos_storage::conformance_tests!(async || std::sync::Arc::new(
        custos_storage_sqlite::SqliteStorage::open_in_memory().expect("open in memory")
    ));
}

mod sqlite_file {
    custos_storage::conformance_tests!(async || std::sync::Arc::new(super::FileStorage::new()));
}

#[test]
fn factories_return_fresh_stores() {
    let _: Arc<dyn Storage> = Arc::new(FileStorage::new());
}
