//! The conformance suite every [`Storage`] backend runs.
//!
//! A backend's integration test instantiates it once with a factory that makes a fresh, empty
//! store for every case:
//!
//! ```text
//! custos_storage::conformance_tests!(async || Arc::new(SqliteStorage::open_in_memory().unwrap()));
//! ```
//!
//! The macro expands to one `#[tokio::test]` per case, each calling the `case_*` function of the
//! same name here, so a failure names the behaviour that broke. The factory may return
//! `Arc<impl Storage>`, `Arc<dyn Storage>`, or an `Option` of either: `None` means the backend
//! is not available in this environment (no PostgreSQL URL), and the case prints why and passes.
//! The calling crate needs `tokio` with the `macros` and `rt-multi-thread` features.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::{Entry, ListPage, MAX_KEY_LEN, Revision, Storage, StorageError, Transaction};

/// A store together with what it lives in (a temporary directory, a scratch database), which
/// must outlive it. Fields drop in order, so the store closes its files or connections before
/// the guard removes them.
pub struct GuardedStorage<S, G> {
    pub storage: S,
    pub guard: G,
}

#[async_trait::async_trait]
impl<S: Storage, G: Send + Sync + 'static> Storage for GuardedStorage<S, G> {
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

/// What a conformance factory may return: a store, or `None` when the backend is unavailable.
pub trait ConformanceStorage {
    fn into_storage(self) -> Option<Arc<dyn Storage>>;
}

impl<S: Storage> ConformanceStorage for Arc<S> {
    fn into_storage(self) -> Option<Arc<dyn Storage>> {
        Some(self)
    }
}

impl ConformanceStorage for Arc<dyn Storage> {
    fn into_storage(self) -> Option<Arc<dyn Storage>> {
        Some(self)
    }
}

impl<S: ConformanceStorage> ConformanceStorage for Option<S> {
    fn into_storage(self) -> Option<Arc<dyn Storage>> {
        self.and_then(ConformanceStorage::into_storage)
    }
}

/// Expands to one `#[tokio::test]` per conformance case; see the [module docs](crate::conformance).
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::conformance_tests!(@cases "current_thread", $factory;
            case_get_missing_is_none,
            case_put_get_round_trips_values,
            case_overwrite_bumps_revision,
            case_revisions_increase_and_are_shared_by_one_transaction,
            case_delete_removes_and_missing_delete_is_ok,
            case_later_op_on_same_key_wins,
            case_large_transaction_shares_one_revision,
            case_list_by_prefix_is_sorted_and_exclusive,
            case_list_prefix_with_wildcard_characters_is_literal,
            case_list_pagination_visits_every_key_once,
            case_list_empty_prefix_lists_all,
            case_list_after_outside_prefix,
            case_list_with_the_largest_limit,
            case_failed_condition_applies_nothing,
            case_absent_condition,
            case_stale_revision_is_a_conflict,
            case_delete_and_recreate_defeats_old_revision,
            case_empty_transaction_checks_conditions,
            case_invalid_keys_are_rejected,
            case_unicode_keys_round_trip_in_byte_order
        );
        $crate::conformance_tests!(@cases "multi_thread", $factory;
            case_concurrent_cas_increments_exactly_once,
            case_concurrent_independent_puts_are_all_readable
        );
    };
    (@cases $flavor:tt, $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = $flavor)]
            async fn $case() {
                let factory = $factory;
                let made = factory().await;
                match $crate::conformance::ConformanceStorage::into_storage(made) {
                    Some(storage) => $crate::conformance::$case(storage).await,
                    None => println!("skipped: backend not available"),
                }
            }
        )*
    };
}

fn check<T>(result: Result<T, StorageError>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(err) => panic!("{what}: unexpected storage error: {err:?}"),
    }
}

fn assert_conflict<T: std::fmt::Debug>(result: Result<T, StorageError>, what: &str) {
    match result {
        Err(StorageError::Conflict) => {}
        other => panic!("{what}: expected Conflict, got {other:?}"),
    }
}

fn assert_invalid<T: std::fmt::Debug>(result: Result<T, StorageError>, what: &str) {
    match result {
        Err(StorageError::Invalid(_)) => {}
        other => panic!("{what}: expected Invalid, got {other:?}"),
    }
}

async fn value_of(storage: &dyn Storage, key: &str) -> Option<Vec<u8>> {
    check(storage.get(key).await, key).map(|entry| entry.value)
}

async fn revision_of(storage: &dyn Storage, key: &str) -> Option<Revision> {
    check(storage.get(key).await, key).map(|entry| entry.revision)
}

/// Lists every key under `prefix` by following pages of `limit`.
async fn list_all(storage: &dyn Storage, prefix: &str, limit: usize) -> Vec<String> {
    let mut keys = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = check(
            storage.list(prefix, after.as_deref(), limit).await,
            "list page",
        );
        if limit > 0 {
            assert!(page.keys.len() <= limit, "page longer than the limit");
        }
        keys.extend(page.keys);
        match page.next_after {
            Some(next) => after = Some(next),
            None => return keys,
        }
    }
}

pub async fn case_get_missing_is_none(storage: Arc<dyn Storage>) {
    assert_eq!(check(storage.get("missing/key").await, "get"), None);
    storage.put("other", b"x".to_vec()).await.ok();
    assert_eq!(check(storage.get("missing/key").await, "get"), None);
}

pub async fn case_put_get_round_trips_values(storage: Arc<dyn Storage>) {
    let binary: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    let mebibyte: Vec<u8> = (0..1024 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    let values: [(&str, Vec<u8>); 4] = [
        ("plain", b"hello".to_vec()),
        ("empty", Vec::new()),
        ("binary", binary),
        ("big", mebibyte),
    ];
    for (key, value) in &values {
        let revision = check(storage.put(key, value.clone()).await, "put");
        let entry = check(storage.get(key).await, "get").expect("a value just written");
        assert_eq!(entry.value.len(), value.len(), "{key}: length");
        assert!(entry.value == *value, "{key}: value differs");
        assert_eq!(entry.revision, revision, "{key}: revision");
    }
}

pub async fn case_overwrite_bumps_revision(storage: Arc<dyn Storage>) {
    let first = check(storage.put("k", b"one".to_vec()).await, "put one");
    let second = check(storage.put("k", b"two".to_vec()).await, "put two");
    assert!(second > first, "{second} must be after {first}");
    let entry = check(storage.get("k").await, "get").expect("present");
    assert_eq!(entry.value, b"two");
    assert_eq!(entry.revision, second);
}

pub async fn case_revisions_increase_and_are_shared_by_one_transaction(storage: Arc<dyn Storage>) {
    let mut last = Revision(0);
    for i in 0..10 {
        let revision = check(storage.put(&format!("seq/{i}"), vec![i]).await, "put");
        assert!(revision > last, "revision {revision} after {last}");
        assert!(revision.0 > 0, "revisions are positive");
        last = revision;
    }
    let txn = Transaction::new()
        .put("multi/a", b"a".to_vec())
        .put("multi/b", b"b".to_vec())
        .put("multi/c", b"c".to_vec());
    let shared = check(storage.commit(txn).await, "multi commit");
    assert!(shared > last);
    for key in ["multi/a", "multi/b", "multi/c"] {
        assert_eq!(revision_of(&*storage, key).await, Some(shared), "{key}");
    }
    let deleted = check(storage.delete("seq/0").await, "delete");
    assert!(deleted > shared, "a delete takes a new revision too");
}

pub async fn case_delete_removes_and_missing_delete_is_ok(storage: Arc<dyn Storage>) {
    check(storage.put("doomed", b"x".to_vec()).await, "put");
    check(storage.put("kept", b"y".to_vec()).await, "put");
    check(storage.delete("doomed").await, "delete");
    assert_eq!(value_of(&*storage, "doomed").await, None);
    assert_eq!(value_of(&*storage, "kept").await, Some(b"y".to_vec()));
    check(storage.delete("doomed").await, "delete again");
    check(storage.delete("never/existed").await, "delete missing");
    let page = check(storage.list("", None, 0).await, "list");
    assert_eq!(page.keys, vec!["kept".to_owned()]);
}

pub async fn case_later_op_on_same_key_wins(storage: Arc<dyn Storage>) {
    let txn = Transaction::new()
        .put("k1", b"first".to_vec())
        .put("k1", b"second".to_vec())
        .put("k2", b"gone".to_vec())
        .delete("k2")
        .delete("k3")
        .put("k3", b"back".to_vec());
    check(storage.commit(txn).await, "commit");
    assert_eq!(value_of(&*storage, "k1").await, Some(b"second".to_vec()));
    assert_eq!(value_of(&*storage, "k2").await, None);
    assert_eq!(value_of(&*storage, "k3").await, Some(b"back".to_vec()));
}

pub async fn case_large_transaction_shares_one_revision(storage: Arc<dyn Storage>) {
    let mut txn = Transaction::new();
    for i in 0..1000u32 {
        txn = txn.put(format!("bulk/{i:04}"), i.to_be_bytes().to_vec());
    }
    let revision = check(storage.commit(txn).await, "bulk commit");
    let keys = list_all(&*storage, "bulk/", 0).await;
    assert_eq!(keys.len(), 1000);
    for i in [0u32, 1, 500, 999] {
        let entry = check(storage.get(&format!("bulk/{i:04}")).await, "get").expect("present");
        assert_eq!(entry.revision, revision);
        assert_eq!(entry.value, i.to_be_bytes());
    }
    let mut txn = Transaction::new().require_absent("bulk/0500");
    for i in 0..1000u32 {
        txn = txn.delete(format!("bulk/{i:04}"));
    }
    assert_conflict(
        storage.commit(txn).await,
        "bulk delete with a failing condition",
    );
    assert_eq!(list_all(&*storage, "bulk/", 0).await.len(), 1000);
}

pub async fn case_list_by_prefix_is_sorted_and_exclusive(storage: Arc<dyn Storage>) {
    for key in [
        "a/c", "a0", "a/b", "ab", "a/b/c", "a", "b/a", "a/", "a/a", "a.", "`",
    ] {
        check(storage.put(key, key.as_bytes().to_vec()).await, key);
    }
    let page = check(storage.list("a/", None, 0).await, "list a/");
    assert_eq!(page.keys, ["a/", "a/a", "a/b", "a/b/c", "a/c"]);
    assert_eq!(page.next_after, None);
    let page = check(storage.list("a/b", None, 0).await, "list a/b");
    assert_eq!(page.keys, ["a/b", "a/b/c"]);
    let page = check(storage.list("a", None, 0).await, "list a");
    assert_eq!(
        page.keys,
        ["a", "a.", "a/", "a/a", "a/b", "a/b/c", "a/c", "a0", "ab"]
    );
    let page = check(storage.list("c", None, 0).await, "list c");
    assert!(page.keys.is_empty());
    assert_eq!(page.next_after, None);
}

pub async fn case_list_prefix_with_wildcard_characters_is_literal(storage: Arc<dyn Storage>) {
    for key in [
        "a%b", "a%", "axb", "a_b", "a_", "ayb", "a\\b", "a\\", "a\\\\",
    ] {
        check(storage.put(key, Vec::new()).await, key);
    }
    let page = check(storage.list("a%", None, 0).await, "list a%");
    assert_eq!(page.keys, ["a%", "a%b"]);
    let page = check(storage.list("a_", None, 0).await, "list a_");
    assert_eq!(page.keys, ["a_", "a_b"]);
    let page = check(storage.list("a\\", None, 0).await, "list a\\");
    assert_eq!(page.keys, ["a\\", "a\\\\", "a\\b"]);
}

pub async fn case_list_pagination_visits_every_key_once(storage: Arc<dyn Storage>) {
    let mut expected = Vec::new();
    for i in 0..250 {
        let key = format!("page/{i:04}");
        expected.push(key.clone());
    }
    // Write in a few multi-key transactions, out of order, with neighbours outside the prefix.
    for chunk in expected.chunks(50).rev() {
        let mut txn = Transaction::new();
        for key in chunk.iter().rev() {
            txn = txn.put(key.clone(), Vec::new());
        }
        check(storage.commit(txn).await, "commit chunk");
    }
    check(storage.put("page", Vec::new()).await, "neighbour");
    check(storage.put("page0", Vec::new()).await, "neighbour");
    check(storage.put("pagf/1", Vec::new()).await, "neighbour");

    let paged = list_all(&*storage, "page/", 7).await;
    assert_eq!(paged.len(), 250);
    assert_eq!(paged, expected, "every key exactly once, in order");

    let first = check(storage.list("page/", None, 7).await, "first page");
    assert_eq!(first.keys.len(), 7);
    assert_eq!(first.next_after.as_deref(), Some("page/0006"));
    // A limit that divides the count exactly ends with an empty or a final page, never a loop.
    assert_eq!(list_all(&*storage, "page/", 50).await.len(), 250);
    assert_eq!(list_all(&*storage, "page/", 250).await.len(), 250);
    assert_eq!(list_all(&*storage, "page/", 1000).await.len(), 250);
    let last = check(
        storage.list("page/", Some("page/0249"), 7).await,
        "past end",
    );
    assert!(last.keys.is_empty());
    assert_eq!(last.next_after, None);
}

pub async fn case_list_empty_prefix_lists_all(storage: Arc<dyn Storage>) {
    let keys = ["z", "a", "m/n", "\u{7f}", "!"];
    for key in keys {
        check(storage.put(key, Vec::new()).await, key);
    }
    let mut expected: Vec<String> = keys.iter().map(|key| (*key).to_owned()).collect();
    expected.sort();
    let page = check(storage.list("", None, 0).await, "list all");
    assert_eq!(page.keys, expected);
    assert_eq!(list_all(&*storage, "", 2).await, expected);
}

pub async fn case_list_after_outside_prefix(storage: Arc<dyn Storage>) {
    for key in ["p/1", "p/2", "p/3", "q"] {
        check(storage.put(key, Vec::new()).await, key);
    }
    let before = check(
        storage.list("p/", Some("a"), 0).await,
        "after before prefix",
    );
    assert_eq!(before.keys, ["p/1", "p/2", "p/3"]);
    let within = check(
        storage.list("p/", Some("p/15"), 0).await,
        "after between keys",
    );
    assert_eq!(within.keys, ["p/2", "p/3"]);
    let beyond = check(storage.list("p/", Some("p0"), 0).await, "after past prefix");
    assert!(beyond.keys.is_empty());
}

pub async fn case_list_with_the_largest_limit(storage: Arc<dyn Storage>) {
    for key in ["l/1", "l/2"] {
        check(storage.put(key, Vec::new()).await, key);
    }
    let page = check(
        storage.list("l/", None, usize::MAX).await,
        "usize::MAX limit",
    );
    assert_eq!(page.keys, ["l/1", "l/2"]);
    assert_eq!(page.next_after, None);
    let page = check(storage.list("l/", None, 1).await, "limit 1");
    assert_eq!(page.keys, ["l/1"]);
    assert_eq!(page.next_after.as_deref(), Some("l/1"));
}

pub async fn case_failed_condition_applies_nothing(storage: Arc<dyn Storage>) {
    let base = check(storage.put("existing", b"old".to_vec()).await, "put");
    let txn = Transaction::new()
        .require_revision("existing", base)
        .require_absent("existing")
        .put("existing", b"new".to_vec())
        .put("fresh", b"new".to_vec())
        .delete("existing");
    assert_conflict(storage.commit(txn).await, "one failing condition");
    assert_eq!(value_of(&*storage, "existing").await, Some(b"old".to_vec()));
    assert_eq!(revision_of(&*storage, "existing").await, Some(base));
    assert_eq!(value_of(&*storage, "fresh").await, None);

    let txn = Transaction::new()
        .require_revision("missing", base)
        .put("fresh", b"new".to_vec());
    assert_conflict(storage.commit(txn).await, "revision of a missing key");
    assert_eq!(value_of(&*storage, "fresh").await, None);

    // The store still works, and the failed commits did not disturb the revision order.
    let after = check(
        storage.put("fresh", b"ok".to_vec()).await,
        "put after conflicts",
    );
    assert!(after > base);
}

pub async fn case_absent_condition(storage: Arc<dyn Storage>) {
    let created = check(
        storage
            .commit(
                Transaction::new()
                    .require_absent("lock")
                    .put("lock", b"me".to_vec()),
            )
            .await,
        "create when absent",
    );
    assert_conflict(
        storage
            .commit(
                Transaction::new()
                    .require_absent("lock")
                    .put("lock", b"you".to_vec()),
            )
            .await,
        "create when present",
    );
    let entry = check(storage.get("lock").await, "get").expect("present");
    assert_eq!(entry.value, b"me");
    assert_eq!(entry.revision, created);
    check(storage.delete("lock").await, "delete");
    check(
        storage
            .commit(
                Transaction::new()
                    .require_absent("lock")
                    .put("lock", b"you".to_vec()),
            )
            .await,
        "create after delete",
    );
    assert_eq!(value_of(&*storage, "lock").await, Some(b"you".to_vec()));
}

pub async fn case_stale_revision_is_a_conflict(storage: Arc<dyn Storage>) {
    let first = check(storage.put("cas", b"1".to_vec()).await, "put");
    let second = check(
        storage
            .commit(
                Transaction::new()
                    .require_revision("cas", first)
                    .put("cas", b"2".to_vec()),
            )
            .await,
        "cas with current revision",
    );
    assert!(second > first);
    assert_conflict(
        storage
            .commit(
                Transaction::new()
                    .require_revision("cas", first)
                    .put("cas", b"3".to_vec()),
            )
            .await,
        "cas with stale revision",
    );
    assert_conflict(
        storage
            .commit(
                Transaction::new()
                    .require_revision("cas", Revision(second.0 + 1000))
                    .put("cas", b"3".to_vec()),
            )
            .await,
        "cas with future revision",
    );
    assert_eq!(value_of(&*storage, "cas").await, Some(b"2".to_vec()));
    check(
        storage
            .commit(
                Transaction::new()
                    .require_unchanged("cas", Some(second))
                    .require_unchanged("nothing", None)
                    .delete("cas"),
            )
            .await,
        "require_unchanged",
    );
    assert_eq!(value_of(&*storage, "cas").await, None);
}

pub async fn case_delete_and_recreate_defeats_old_revision(storage: Arc<dyn Storage>) {
    let original = check(storage.put("aba", b"A".to_vec()).await, "put A");
    check(storage.delete("aba").await, "delete");
    let recreated = check(storage.put("aba", b"A".to_vec()).await, "put A again");
    assert_ne!(recreated, original, "a recreated key gets a new revision");
    assert_conflict(
        storage
            .commit(
                Transaction::new()
                    .require_revision("aba", original)
                    .put("aba", b"B".to_vec()),
            )
            .await,
        "cas against the revision before the delete",
    );
    assert_eq!(value_of(&*storage, "aba").await, Some(b"A".to_vec()));
}

pub async fn case_empty_transaction_checks_conditions(storage: Arc<dyn Storage>) {
    let written = check(storage.put("here", b"x".to_vec()).await, "put");
    let current = check(
        storage
            .commit(
                Transaction::new()
                    .require_revision("here", written)
                    .require_absent("not-here"),
            )
            .await,
        "empty txn whose conditions hold",
    );
    assert!(
        current >= written,
        "current revision {current} >= {written}"
    );
    assert_conflict(
        storage
            .commit(Transaction::new().require_absent("here"))
            .await,
        "empty txn whose condition fails",
    );
    check(storage.commit(Transaction::new()).await, "fully empty txn");
    let next = check(storage.put("there", b"y".to_vec()).await, "put");
    assert!(next > written);
}

pub async fn case_invalid_keys_are_rejected(storage: Arc<dyn Storage>) {
    let too_long = "k".repeat(MAX_KEY_LEN + 1);
    for key in ["", "with\0nul", too_long.as_str()] {
        assert_invalid(storage.get(key).await, "get");
        assert_invalid(storage.put(key, b"x".to_vec()).await, "put");
        assert_invalid(storage.delete(key).await, "delete");
        assert_invalid(
            storage
                .commit(Transaction::new().require_absent(key).put("ok", Vec::new()))
                .await,
            "condition",
        );
        assert_invalid(
            storage
                .commit(
                    Transaction::new()
                        .put("ok", Vec::new())
                        .put(key, Vec::new()),
                )
                .await,
            "second op",
        );
    }
    assert_eq!(
        value_of(&*storage, "ok").await,
        None,
        "an invalid txn writes nothing"
    );
    let longest = "k".repeat(MAX_KEY_LEN);
    check(storage.put(&longest, b"x".to_vec()).await, "longest key");
    assert_eq!(value_of(&*storage, &longest).await, Some(b"x".to_vec()));
}

pub async fn case_unicode_keys_round_trip_in_byte_order(storage: Arc<dyn Storage>) {
    let keys = [
        "u/z",
        "u/é",
        "u/日本",
        "u/\u{ffff}",
        "u/😀",
        "u/Z",
        "u/\u{10ffff}",
        "u/e\u{301}",
    ];
    for (i, key) in keys.iter().enumerate() {
        check(storage.put(key, vec![i as u8]).await, key);
    }
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(value_of(&*storage, key).await, Some(vec![i as u8]), "{key}");
    }
    let mut expected: Vec<String> = keys.iter().map(|key| (*key).to_owned()).collect();
    expected.sort(); // Rust orders `str` by bytes, which is the contract.
    assert_eq!(list_all(&*storage, "u/", 3).await, expected);
    let page = check(storage.list("u/\u{ffff}", None, 0).await, "list");
    assert_eq!(page.keys, ["u/\u{ffff}"]);
    let page = check(storage.list("u/\u{10ffff}", None, 0).await, "list");
    assert_eq!(page.keys, ["u/\u{10ffff}"]);
    let page = check(storage.list("u/e", None, 0).await, "list");
    assert_eq!(page.keys, ["u/e\u{301}"]);
}

const CAS_TASKS: usize = 64;
const CAS_INCREMENTS: usize = 20;

fn parse_counter(value: &[u8]) -> u64 {
    let bytes: [u8; 8] = value.try_into().expect("counter is 8 bytes");
    u64::from_be_bytes(bytes)
}

pub async fn case_concurrent_cas_increments_exactly_once(storage: Arc<dyn Storage>) {
    let key = "counter";
    check(storage.put(key, 0u64.to_be_bytes().to_vec()).await, "init");
    let successes = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CAS_TASKS {
        let storage = Arc::clone(&storage);
        let successes = Arc::clone(&successes);
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            while done < CAS_INCREMENTS {
                let entry = check(storage.get(key).await, "read counter").expect("counter exists");
                let next = parse_counter(&entry.value) + 1;
                let txn = Transaction::new()
                    .require_revision(key, entry.revision)
                    .put(key, next.to_be_bytes().to_vec());
                match storage.commit(txn).await {
                    Ok(_) => {
                        done += 1;
                        successes.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(StorageError::Conflict) => tokio::task::yield_now().await,
                    Err(err) => panic!("increment failed: {err:?}"),
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("task finished");
    }
    let total = (CAS_TASKS * CAS_INCREMENTS) as u64;
    let value = value_of(&*storage, key).await.expect("counter exists");
    assert_eq!(parse_counter(&value), total, "every increment applied once");
    assert_eq!(successes.load(Ordering::SeqCst) as u64, total);
}

pub async fn case_concurrent_independent_puts_are_all_readable(storage: Arc<dyn Storage>) {
    let mut tasks = Vec::new();
    for task in 0..64usize {
        let storage = Arc::clone(&storage);
        tasks.push(tokio::spawn(async move {
            let mut revisions = Vec::new();
            for i in 0..10usize {
                let key = format!("par/{task:02}/{i}");
                revisions.push(check(
                    storage.put(&key, key.as_bytes().to_vec()).await,
                    "put",
                ));
            }
            revisions
        }));
    }
    let mut revisions = BTreeSet::new();
    for task in tasks {
        for revision in task.await.expect("task finished") {
            assert!(
                revisions.insert(revision),
                "revision {revision} handed out twice"
            );
        }
    }
    let keys = list_all(&*storage, "par/", 100).await;
    assert_eq!(keys.len(), 640);
    for key in keys {
        assert_eq!(
            value_of(&*storage, &key).await,
            Some(key.as_bytes().to_vec())
        );
    }
}
