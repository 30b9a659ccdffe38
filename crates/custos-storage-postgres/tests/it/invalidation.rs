//! Cross-node cache invalidation: one node's writes reach another node's read cache through
//! LISTEN/NOTIFY, and a listener that loses its connection makes the cache start over.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

use std::sync::Arc;
use std::time::Duration;

use custos_storage::{CachedStorage, Storage};
use custos_storage_postgres::{Invalidation, PostgresStorage};

use crate::support::TestDatabase;

/// A node: a cached view of the database whose cache follows the database's notifications.
async fn cached_node(database: &TestDatabase) -> Arc<CachedStorage> {
    let storage = database.connect().await;
    let mut invalidations = storage.invalidations();
    let cached = Arc::new(CachedStorage::new(Arc::new(storage), 1 << 20));
    // The first message says the listener is up.
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(10), invalidations.recv())
            .await
            .unwrap(),
        Some(Invalidation::All { revision: None })
    );
    tokio::spawn(PostgresStorage::follow(invalidations, cached.clone()));
    cached
}

async fn eventually_reads(node: &CachedStorage, key: &str, expected: &[u8]) {
    for _ in 0..100 {
        if node
            .get(key)
            .await
            .unwrap()
            .is_some_and(|entry| entry.value == expected)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{key} never read {expected:?} through the cache");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_nodes_write_invalidates_this_nodes_cache() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let reader = cached_node(&database).await;
    let writer = database.connect().await;
    writer.put("shared/key", b"one".to_vec()).await.unwrap();
    eventually_reads(&reader, "shared/key", b"one").await;
    // Once the write's own notification has passed, the value stays cached…
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        reader.get("shared/key").await.unwrap().unwrap().value,
        b"one"
    );
    let hits_before = reader.stats().hits;
    assert_eq!(
        reader.get("shared/key").await.unwrap().unwrap().value,
        b"one"
    );
    assert!(
        reader.stats().hits > hits_before,
        "the second read should be a cache hit"
    );
    // …and another node's write still shows up.
    writer.put("shared/key", b"two".to_vec()).await.unwrap();
    eventually_reads(&reader, "shared/key", b"two").await;
    writer.delete("shared/key").await.unwrap();
    for _ in 0..100 {
        if reader.get("shared/key").await.unwrap().is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("a deleted key stayed in the cache");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_lost_its_connection_clears_the_cache() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let reader = cached_node(&database).await;
    let writer = database.connect().await;
    writer.put("k", b"one".to_vec()).await.unwrap();
    eventually_reads(&reader, "k", b"one").await;
    // Kill the listener's connection; a write made while it is down must not stay hidden.
    let admin = database.admin().await;
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = 'custos-listener' AND datname = $1",
            &[&database.name()],
        )
        .await
        .unwrap();
    writer.put("k", b"two".to_vec()).await.unwrap();
    eventually_reads(&reader, "k", b"two").await;
}
