//! Tests of the read cache: hits, invalidation, budget, and the reader/writer race.

use std::sync::Arc;

use tokio::sync::Notify;

use super::*;
use crate::MemoryStorage;

/// Storage whose reads of `gated` wait for a signal after reading, so a test can slip a write in
/// between a read and the cache fill.
struct Gated {
    inner: MemoryStorage,
    reading: Notify,
    release: Notify,
}

#[async_trait::async_trait]
impl Storage for Gated {
    fn backend_name(&self) -> &'static str {
        "gated"
    }

    async fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        let entry = self.inner.get(key).await?;
        if key == "gated" {
            self.reading.notify_one();
            self.release.notified().await;
        }
        Ok(entry)
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
        self.inner.commit(txn).await
    }
}

#[tokio::test]
async fn repeated_reads_hit_the_cache_and_writes_invalidate() {
    let cached = CachedStorage::new(Arc::new(MemoryStorage::new()), 1 << 20);
    cached.put("a", b"1".to_vec()).await.unwrap();
    assert_eq!(cached.get("a").await.unwrap().unwrap().value, b"1");
    assert_eq!(cached.get("a").await.unwrap().unwrap().value, b"1");
    assert_eq!(cached.stats().hits, 1);
    cached.put("a", b"2".to_vec()).await.unwrap();
    assert_eq!(cached.get("a").await.unwrap().unwrap().value, b"2");
    cached.delete("a").await.unwrap();
    assert!(cached.get("a").await.unwrap().is_none());
    // "Absent" is cached too, and a later write replaces it.
    assert!(cached.get("a").await.unwrap().is_none());
    cached.put("a", b"3".to_vec()).await.unwrap();
    assert_eq!(cached.get("a").await.unwrap().unwrap().value, b"3");
}

#[tokio::test]
async fn a_failed_commit_still_invalidates() {
    let cached = CachedStorage::new(Arc::new(MemoryStorage::new()), 1 << 20);
    cached.put("a", b"1".to_vec()).await.unwrap();
    let _ = cached.get("a").await.unwrap();
    let entries_before = cached.stats().entries;
    let conflict = Transaction::new()
        .require_absent("a")
        .put("a", b"x".to_vec());
    assert!(matches!(
        cached.commit(conflict).await,
        Err(StorageError::Conflict)
    ));
    assert_eq!(cached.stats().entries, entries_before - 1);
    assert_eq!(cached.get("a").await.unwrap().unwrap().value, b"1");
}

#[tokio::test]
async fn a_reader_racing_a_writer_never_installs_the_old_value() {
    let gated = Arc::new(Gated {
        inner: MemoryStorage::new(),
        reading: Notify::new(),
        release: Notify::new(),
    });
    gated.inner.put("gated", b"old".to_vec()).await.unwrap();
    let cached = Arc::new(CachedStorage::new(gated.clone(), 1 << 20));

    let reader = {
        let cached = cached.clone();
        tokio::spawn(async move { cached.get("gated").await })
    };
    gated.reading.notified().await; // the reader holds "old", not yet in the cache
    cached.put("gated", b"new".to_vec()).await.unwrap();
    gated.release.notify_one();
    let raced = reader.await.unwrap().unwrap().unwrap();
    assert_eq!(
        raced.value, b"old",
        "a read concurrent with a write may see the old value"
    );

    // But the cache must not keep it: the next read sees the write.
    let next = {
        let cached = cached.clone();
        let gated = gated.clone();
        tokio::spawn(async move {
            gated.release.notify_one();
            cached.get("gated").await
        })
    };
    assert_eq!(next.await.unwrap().unwrap().unwrap().value, b"new");
}

#[tokio::test]
async fn the_byte_budget_is_kept() {
    let budget = 16 * 1024;
    let cached = CachedStorage::new(Arc::new(MemoryStorage::new()), budget);
    for index in 0..200 {
        let key = format!("k{index}");
        cached.put(&key, vec![7; 512]).await.unwrap();
        let _ = cached.get(&key).await.unwrap();
        assert!(cached.stats().bytes <= budget, "{:?}", cached.stats());
    }
    assert!(cached.stats().entries > 0);
    // Every value still reads correctly, cached or not.
    for index in 0..200 {
        assert_eq!(
            cached
                .get(&format!("k{index}"))
                .await
                .unwrap()
                .unwrap()
                .value
                .len(),
            512
        );
    }
    // A value larger than a quarter of the budget is served but not cached.
    cached.put("huge", vec![1; budget]).await.unwrap();
    assert_eq!(
        cached.get("huge").await.unwrap().unwrap().value.len(),
        budget
    );
    assert!(cached.stats().bytes <= budget);
}

#[tokio::test]
async fn remote_invalidation_and_clear() {
    let inner = Arc::new(MemoryStorage::new());
    let cached = CachedStorage::new(inner.clone(), 1 << 20);
    cached.put("a", b"1".to_vec()).await.unwrap();
    let _ = cached.get("a").await.unwrap();
    // Another node writes behind this cache's back…
    inner.put("a", b"2".to_vec()).await.unwrap();
    assert_eq!(cached.get("a").await.unwrap().unwrap().value, b"1");
    // …and its notification arrives.
    cached.invalidate(["a"]);
    assert_eq!(cached.get("a").await.unwrap().unwrap().value, b"2");
    inner.put("a", b"3".to_vec()).await.unwrap();
    cached.clear();
    assert_eq!(cached.get("a").await.unwrap().unwrap().value, b"3");
    assert_eq!(cached.stats().entries, 1);
}

#[tokio::test]
async fn a_suspended_cache_reads_through_until_cleared() {
    let inner = Arc::new(MemoryStorage::new());
    let cached = CachedStorage::new(inner.clone(), 1 << 20);
    cached.put("a", b"1".to_vec()).await.unwrap();
    let _ = cached.get("a").await.unwrap();
    cached.suspend();
    inner.put("a", b"2".to_vec()).await.unwrap();
    assert_eq!(cached.get("a").await.unwrap().unwrap().value, b"2");
    inner.put("a", b"3".to_vec()).await.unwrap();
    assert_eq!(
        cached.get("a").await.unwrap().unwrap().value,
        b"3",
        "nothing cached while suspended"
    );
    assert_eq!(cached.stats().entries, 0);
    cached.clear();
    let _ = cached.get("a").await.unwrap();
    assert_eq!(cached.stats().entries, 1);
}

#[tokio::test]
async fn uncached_reads_see_a_write_the_cache_has_not_been_told_about() {
    let inner = Arc::new(MemoryStorage::new());
    let cache = CachedStorage::new(inner.clone(), 1 << 20);
    inner.put("k", b"one".to_vec()).await.unwrap();
    assert_eq!(cache.get("k").await.unwrap().unwrap().value, b"one");
    // Another node writes; its notification has not arrived yet.
    inner.put("k", b"two".to_vec()).await.unwrap();
    assert_eq!(cache.get("k").await.unwrap().unwrap().value, b"one");
    assert_eq!(
        cache.get_uncached("k").await.unwrap().unwrap().value,
        b"two"
    );
}

#[tokio::test]
async fn the_change_feed_drops_keys_suspends_and_clears() {
    let inner = Arc::new(MemoryStorage::new());
    let cache = CachedStorage::new(inner.clone(), 1 << 20);
    inner.put("k", b"one".to_vec()).await.unwrap();
    cache.get("k").await.unwrap();
    inner.put("k", b"two".to_vec()).await.unwrap();
    cache.apply(&Invalidation::Keys {
        keys: vec!["k".into()],
        revision: None,
    });
    assert_eq!(cache.get("k").await.unwrap().unwrap().value, b"two");
    cache.apply(&Invalidation::Lost);
    cache.get("k").await.unwrap();
    assert_eq!(
        cache.stats().entries,
        0,
        "nothing is cached while the feed is lost"
    );
    cache.apply(&Invalidation::All { revision: None });
    cache.get("k").await.unwrap();
    assert_eq!(cache.stats().entries, 1);
}

#[tokio::test]
async fn misses_under_listed_prefixes_are_not_cached() {
    let cached = CachedStorage::new(Arc::new(MemoryStorage::new()), 1 << 20)
        .without_caching_misses_under(["sys/token/id/", "sys/wrapping/token/"]);
    // Random lookups under a listed prefix leave nothing behind…
    for i in 0..100 {
        assert!(
            cached
                .get(&format!("sys/token/id/{i:064x}"))
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            cached
                .get(&format!("sys/wrapping/token/{i}"))
                .await
                .unwrap()
                .is_none()
        );
    }
    assert_eq!(cached.stats().entries, 0);
    assert_eq!(cached.stats().bytes, 0);
    // …present values under them are still cached…
    cached
        .put("sys/token/id/live", b"entry".to_vec())
        .await
        .unwrap();
    let _ = cached.get("sys/token/id/live").await.unwrap();
    assert_eq!(
        cached
            .get("sys/token/id/live")
            .await
            .unwrap()
            .unwrap()
            .value,
        b"entry"
    );
    assert_eq!(cached.stats().entries, 1);
    assert_eq!(cached.stats().hits, 1);
    // …and misses elsewhere are cached as before.
    assert!(cached.get("logical/x").await.unwrap().is_none());
    assert!(cached.get("logical/x").await.unwrap().is_none());
    assert_eq!(cached.stats().entries, 2);
    assert_eq!(cached.stats().hits, 2);
    // A prefix is a prefix, not a substring.
    assert!(cached.get("other/sys/token/id/x").await.unwrap().is_none());
    assert_eq!(cached.stats().entries, 3);
}
