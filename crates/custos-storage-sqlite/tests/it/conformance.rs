//! The shared storage conformance suite, once per store flavour.

use std::sync::Arc;

use custos_storage::Storage;
use custos_storage::conformance::GuardedStorage;
use custos_storage_sqlite::{SqliteOptions, SqliteStorage};

/// A SQLite store in its own temporary directory (the guard), removed after the store is closed.
pub(crate) type FileStorage = GuardedStorage<SqliteStorage, tempfile::TempDir>;

pub(crate) fn file_storage() -> FileStorage {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = SqliteStorage::open(&dir.path().join("custos.db"), SqliteOptions::default())
        .expect("open sqlite file");
    GuardedStorage {
        storage,
        guard: dir,
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
        custos_storage::CachedStorage::new(std::sync::Arc::new(super::file_storage()), 1 << 20)
    ));
}

mod sqlite_in_memory {
    custos_storage::conformance_tests!(async || std::sync::Arc::new(
        custos_storage_sqlite::SqliteStorage::open_in_memory().expect("open in memory")
    ));
}

mod sqlite_file {
    custos_storage::conformance_tests!(async || std::sync::Arc::new(super::file_storage()));
}

#[test]
fn factories_return_fresh_stores() {
    let _: Arc<dyn Storage> = Arc::new(file_storage());
}
