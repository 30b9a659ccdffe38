//! Behaviour only the SQLite backend has: files, schema versions, group commit.

use std::sync::Arc;

use custos_storage::{Storage, StorageError, Transaction};
use custos_storage_sqlite::{SqliteOptions, SqliteStorage};

fn open(path: &std::path::Path) -> SqliteStorage {
    SqliteStorage::open(path, SqliteOptions::default()).expect("open sqlite file")
}

#[tokio::test]
async fn data_survives_close_and_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("custos.db");
    let storage = open(&path);
    let first = storage.put("a", b"one".to_vec()).await.expect("put");
    let second = storage.put("b", b"two".to_vec()).await.expect("put");
    storage.delete("a").await.expect("delete");
    drop(storage);

    let storage = open(&path);
    assert_eq!(storage.get("a").await.expect("get"), None);
    let entry = storage.get("b").await.expect("get").expect("b survives");
    assert_eq!(entry.value, b"two");
    assert_eq!(entry.revision, second);
    // The revision counter survives too: no revision is handed out twice.
    let third = storage.put("c", Vec::new()).await.expect("put");
    assert!(third > second && second > first);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_commits_share_transactions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = Arc::new(open(&dir.path().join("custos.db")));
    let before = storage.stats();
    // Hold the writer busy with one commit while 64 more queue up behind it.
    let barrier = Arc::new(tokio::sync::Barrier::new(64));
    let mut tasks = Vec::new();
    for task in 0..64 {
        let storage = Arc::clone(&storage);
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            storage
                .put(&format!("group/{task:02}"), vec![1; 64])
                .await
                .expect("put")
        }));
    }
    let mut revisions = Vec::new();
    for task in tasks {
        revisions.push(task.await.expect("task"));
    }
    revisions.sort();
    revisions.dedup();
    assert_eq!(revisions.len(), 64, "every commit has its own revision");
    let stats = storage.stats();
    let transactions = stats.transactions - before.transactions;
    assert_eq!(stats.commits - before.commits, 64);
    assert!(
        transactions < 64,
        "64 concurrent commits took {transactions} SQLite transactions: no group commit"
    );
    let page = storage.list("group/", None, 0).await.expect("list");
    assert_eq!(page.keys.len(), 64);
}

#[tokio::test]
async fn a_conflict_in_a_group_rolls_back_only_that_request() {
    let dir = tempfile::tempdir().expect("temp dir");
    let storage = Arc::new(open(&dir.path().join("custos.db")));
    let base = storage.put("shared", b"0".to_vec()).await.expect("put");
    // Two CAS requests on the same revision sent together: exactly one wins.
    let first = storage.commit(
        Transaction::new()
            .require_revision("shared", base)
            .put("shared", b"first".to_vec())
            .put("first-marker", Vec::new()),
    );
    let second = storage.commit(
        Transaction::new()
            .require_revision("shared", base)
            .put("shared", b"second".to_vec())
            .put("second-marker", Vec::new()),
    );
    let (first, second) = tokio::join!(first, second);
    let wins = [first.is_ok(), second.is_ok()];
    assert_eq!(
        wins.iter().filter(|won| **won).count(),
        1,
        "{first:?} {second:?}"
    );
    let loser = if wins[0] { second } else { first };
    assert!(matches!(loser, Err(StorageError::Conflict)), "{loser:?}");
    let winner_marker = if wins[0] {
        "first-marker"
    } else {
        "second-marker"
    };
    let loser_marker = if wins[0] {
        "second-marker"
    } else {
        "first-marker"
    };
    assert!(storage.get(winner_marker).await.expect("get").is_some());
    assert!(storage.get(loser_marker).await.expect("get").is_none());
}

fn raw(path: &std::path::Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).expect("raw connection")
}

#[tokio::test]
async fn a_corrupt_row_is_reported_not_panicked_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("custos.db");
    let storage = open(&path);
    storage.put("good", b"x".to_vec()).await.expect("put");
    {
        let connection = raw(&path);
        connection
            .execute(
                "INSERT INTO entries (key, value, revision) VALUES ('negative', x'00', -5), \
                 ('text-revision', x'00', 'seven'), ('text-value', 'plain', 3), ('zero', x'', 0)",
                [],
            )
            .expect("write bad rows");
        connection
            .execute(
                "INSERT INTO entries (key, value, revision) VALUES (CAST(x'ff61' AS TEXT), x'00', 4)",
                [],
            )
            .expect("write a non-UTF-8 key");
    }
    for key in ["negative", "text-revision", "text-value", "zero"] {
        let result = storage.get(key).await;
        assert!(
            matches!(result, Err(StorageError::Corrupt(_))),
            "{key}: {result:?}"
        );
    }
    // Conditions read only the revision, so a bad revision fails them and a bad value does not.
    for key in ["negative", "text-revision", "zero"] {
        let result = storage
            .commit(
                Transaction::new()
                    .require_absent(key)
                    .put("other", Vec::new()),
            )
            .await;
        assert!(
            matches!(result, Err(StorageError::Corrupt(_))),
            "{key}: {result:?}"
        );
    }
    assert_eq!(storage.get("other").await.expect("get"), None);
    let result = storage.list("", None, 0).await;
    assert!(
        matches!(result, Err(StorageError::Corrupt(_))),
        "{result:?}"
    );
    // The rest of the store keeps working.
    assert_eq!(
        storage
            .get("good")
            .await
            .expect("get")
            .map(|entry| entry.value),
        Some(b"x".to_vec())
    );
    storage
        .put("after", Vec::new())
        .await
        .expect("put after corruption");
}

#[tokio::test]
async fn a_corrupt_revision_counter_fails_commits_cleanly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("custos.db");
    let storage = open(&path);
    storage.put("a", Vec::new()).await.expect("put");
    raw(&path)
        .execute("UPDATE meta SET value = -1 WHERE name = 'revision'", [])
        .expect("break counter");
    let result = storage.put("b", Vec::new()).await;
    assert!(
        matches!(result, Err(StorageError::Corrupt(_))),
        "{result:?}"
    );
    assert_eq!(storage.get("b").await.expect("get"), None);
}

#[test]
fn a_file_that_is_not_sqlite_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("custos.db");
    std::fs::write(&path, vec![b'x'; 8192]).expect("write junk");
    let err = SqliteStorage::open(&path, SqliteOptions::default()).expect_err("junk opens");
    assert!(matches!(err, StorageError::Corrupt(_)), "{err:?}");
    assert!(err.to_string().contains("not a SQLite database"), "{err}");
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("custos.db");
    drop(open(&path));
    raw(&path)
        .pragma_update(None, "user_version", 99)
        .expect("bump version");
    let err = SqliteStorage::open(&path, SqliteOptions::default()).expect_err("newer schema opens");
    assert!(matches!(err, StorageError::Invalid(_)), "{err:?}");
    assert!(err.to_string().contains("newer"), "{err}");
}

#[test]
fn a_foreign_sqlite_database_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("other.db");
    raw(&path)
        .execute("CREATE TABLE users (id INTEGER)", [])
        .expect("foreign table");
    let err = SqliteStorage::open(&path, SqliteOptions::default()).expect_err("foreign db opens");
    assert!(matches!(err, StorageError::Invalid(_)), "{err:?}");
}

#[test]
fn the_schema_is_versioned() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("custos.db");
    drop(open(&path));
    // Reopening an up-to-date file migrates nothing.
    drop(open(&path));
    let connection = raw(&path);
    let version: i64 = connection
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .expect("user_version");
    assert_eq!(version, 1);
    let mode: String = connection
        .pragma_query_value(None, "journal_mode", |row| row.get(0))
        .expect("journal_mode");
    assert_eq!(mode, "wal");
}

#[cfg(unix)]
#[test]
fn a_new_database_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("custos.db");
    drop(open(&path));
    let mode = std::fs::metadata(&path)
        .expect("metadata")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
}
