//! Sealing waits for requests in flight, and afterwards nothing reaches storage through the
//! keys it dropped.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use custos_engine::{Engine, EngineError, FakeClock, Limits};
use custos_storage::{
    Entry, ListPage, MemoryStorage, Revision, Storage, StorageError, Transaction,
};
use jiff::Timestamp;
use serde_json::json;
use tokio::sync::Notify;

use crate::support::{START_UNIX, get, put};

/// Storage whose next read under an armed prefix waits until the test releases it.
#[derive(Default)]
struct Gated {
    inner: MemoryStorage,
    armed: Mutex<Option<String>>,
    reading: Notify,
    release: Notify,
}

impl Gated {
    fn arm(&self, prefix: &str) {
        *self.armed.lock().unwrap() = Some(prefix.to_owned());
    }
}

#[async_trait::async_trait]
impl Storage for Gated {
    fn backend_name(&self) -> &'static str {
        "gated"
    }

    async fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        let gated = {
            let mut armed = self.armed.lock().unwrap();
            match armed.as_deref() {
                Some(prefix) if key.starts_with(prefix) => armed.take().is_some(),
                _ => false,
            }
        };
        if gated {
            self.reading.notify_one();
            self.release.notified().await;
        }
        self.inner.get(key).await
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

/// An unsealed engine over gated storage with a KV v1 mount at `kv/` holding `kv/app`.
async fn setup(limits: Limits) -> (Arc<Gated>, Engine, String) {
    let storage = Arc::new(Gated::default());
    let clock = Arc::new(FakeClock::new(Timestamp::from_second(START_UNIX).unwrap()));
    let engine = Engine::with_limits(storage.clone(), clock, limits);
    let root = engine.dev_init(None).await.unwrap().root_token.to_string();
    engine
        .mount(&root, "kv", "kv", &[("version", "1")])
        .await
        .unwrap();
    engine
        .handle(put("kv/app", &root, json!({"password": "hunter2"})))
        .await
        .unwrap();
    (storage, engine, root)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seal_waits_for_a_request_in_flight_and_new_requests_see_sealed_at_once() {
    let (storage, engine, root) = setup(Limits::default()).await;
    storage.arm("logical/");
    let slow = tokio::spawn({
        let engine = engine.clone();
        let root = root.clone();
        async move { engine.handle(get("kv/app", &root)).await }
    });
    storage.reading.notified().await;

    let seal = tokio::spawn({
        let engine = engine.clone();
        let root = root.clone();
        async move { engine.seal(Some(&root)).await }
    });
    // New requests are refused as soon as sealing begins…
    tokio::time::timeout(Duration::from_secs(30), async {
        while !engine.is_sealed() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    assert!(matches!(
        engine.handle(get("kv/app", &root)).await,
        Err(EngineError::Sealed)
    ));
    // …while the one in flight holds sealing back.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !seal.is_finished(),
        "seal must wait for the request in flight"
    );

    storage.release.notify_one();
    let answer = slow.await.unwrap().unwrap().unwrap();
    assert_eq!(answer.data.unwrap()["password"], "hunter2");
    tokio::time::timeout(Duration::from_secs(30), seal)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_still_running_after_the_wait_fails_sealed_instead_of_reading() {
    let limits = Limits {
        seal_drain_timeout: Duration::from_millis(100),
        ..Limits::default()
    };
    let (storage, engine, root) = setup(limits).await;
    storage.arm("logical/");
    let slow = tokio::spawn({
        let engine = engine.clone();
        let root = root.clone();
        async move { engine.handle(get("kv/app", &root)).await }
    });
    storage.reading.notified().await;
    // Sealing gives up waiting after its bound and returns while the read is still blocked.
    tokio::time::timeout(Duration::from_secs(30), engine.seal(Some(&root)))
        .await
        .unwrap()
        .unwrap();
    assert!(!slow.is_finished());
    // The read comes back from storage, but the barrier it holds has no keys any more.
    storage.release.notify_one();
    let late = slow.await.unwrap();
    assert!(matches!(late, Err(EngineError::Sealed)), "{late:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_still_running_after_the_wait_cannot_commit() {
    let limits = Limits {
        seal_drain_timeout: Duration::from_millis(100),
        ..Limits::default()
    };
    let (storage, engine, root) = setup(limits).await;
    // A KV v2 write reads its metadata before it commits: hold it there.
    engine
        .mount(&root, "secret", "kv", &[("version", "2")])
        .await
        .unwrap();
    storage.arm("logical/");
    let revisions_before = storage.inner.list("", None, 1000).await.unwrap().keys;
    let slow = tokio::spawn({
        let engine = engine.clone();
        let root = root.clone();
        async move {
            engine
                .handle(put("secret/data/app", &root, json!({"data": {"a": "b"}})))
                .await
        }
    });
    storage.reading.notified().await;
    tokio::time::timeout(Duration::from_secs(30), engine.seal(Some(&root)))
        .await
        .unwrap()
        .unwrap();
    storage.release.notify_one();
    let late = slow.await.unwrap();
    assert!(matches!(late, Err(EngineError::Sealed)), "{late:?}");
    let keys_after = storage.inner.list("", None, 1000).await.unwrap().keys;
    assert_eq!(
        keys_after, revisions_before,
        "nothing was written after seal"
    );
}
