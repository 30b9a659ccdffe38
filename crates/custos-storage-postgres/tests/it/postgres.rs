//! Behaviour only the PostgreSQL backend has: migrations, locking, pool recovery, corrupt rows.

use std::sync::Arc;
use std::time::Duration;

use custos_storage::{Storage, StorageError, Transaction};
use custos_storage_postgres::{PostgresConfig, PostgresStorage};

use crate::support::{TestDatabase, scratch_storage};

#[tokio::test]
async fn an_unreachable_server_is_unavailable() {
    // Nothing listens on port 1, so the connection is refused right away.
    let config = PostgresConfig {
        url: "postgres://custos@127.0.0.1:1/custos".into(),
        max_connections: 2,
        connect_timeout: Duration::from_secs(2),
        listen_url: None,
    };
    let err = PostgresStorage::connect(config)
        .await
        .expect_err("connected to port 1");
    assert!(err.is_retryable(), "{err:?}");
}

#[tokio::test]
async fn a_malformed_url_is_invalid() {
    let err = PostgresStorage::connect(PostgresConfig::new("postgres://h:notaport/db"))
        .await
        .expect_err("malformed url accepted");
    assert!(matches!(err, StorageError::Invalid(_)), "{err:?}");
}

#[tokio::test]
async fn data_survives_reconnect() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let storage = database.connect().await;
    let revision = storage.put("kept", b"value".to_vec()).await.expect("put");
    drop(storage);
    let storage = database.connect().await;
    let entry = storage
        .get("kept")
        .await
        .expect("get")
        .expect("kept survives");
    assert_eq!(entry.value, b"value");
    assert_eq!(entry.revision, revision);
    let next = storage.put("next", Vec::new()).await.expect("put");
    assert!(next > revision);
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_starting_together_migrate_once() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let mut nodes = Vec::new();
    for _ in 0..4 {
        let config = database.config();
        nodes.push(tokio::spawn(PostgresStorage::connect(config)));
    }
    for node in nodes {
        let storage = node.await.expect("task").expect("connect");
        storage.put("ok", Vec::new()).await.expect("put");
    }
    let client = database.raw_client().await;
    let versions: i64 = client
        .query_one("SELECT count(*) FROM custos_schema", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(versions, 1);
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    drop(database.connect().await);
    database
        .raw_client()
        .await
        .batch_execute("INSERT INTO custos_schema (version) VALUES (99)")
        .await
        .expect("bump version");
    let err = PostgresStorage::connect(database.config())
        .await
        .expect_err("newer schema accepted");
    assert!(matches!(err, StorageError::Invalid(_)), "{err:?}");
    assert!(err.to_string().contains("newer"), "{err}");
}

#[tokio::test]
async fn a_corrupt_row_is_reported_not_panicked_on() {
    let Some(scratch) = scratch_storage().await else {
        return;
    };
    scratch.put("good", b"x".to_vec()).await.expect("put");
    scratch
        .guard
        .raw_client()
        .await
        .batch_execute(
            "ALTER TABLE custos_entries DROP CONSTRAINT custos_entries_revision_check;
             INSERT INTO custos_entries (key, value, revision) VALUES ('negative', '\\x00', -5);",
        )
        .await
        .expect("write a bad row");
    let result = scratch.get("negative").await;
    assert!(
        matches!(result, Err(StorageError::Corrupt(_))),
        "{result:?}"
    );
    let result = scratch
        .commit(
            Transaction::new()
                .require_absent("negative")
                .put("other", Vec::new()),
        )
        .await;
    assert!(
        matches!(result, Err(StorageError::Corrupt(_))),
        "{result:?}"
    );
    assert_eq!(scratch.get("other").await.expect("get"), None);
    assert_eq!(
        scratch
            .get("good")
            .await
            .expect("get")
            .map(|entry| entry.value),
        Some(b"x".to_vec())
    );
}

#[tokio::test]
async fn prefix_listing_uses_the_primary_key_index() {
    let Some(scratch) = scratch_storage().await else {
        return;
    };
    let client = scratch.guard.raw_client().await;
    client
        .batch_execute("SET enable_seqscan = off")
        .await
        .expect("set");
    let plan = client
        .query(
            "EXPLAIN SELECT key FROM custos_entries WHERE key >= $1 AND key < $2 \
             ORDER BY key LIMIT $3",
            &[&"a/", &"a0", &Some(8i64)],
        )
        .await
        .expect("explain");
    let plan: Vec<String> = plan.iter().map(|row| row.get(0)).collect();
    let plan = plan.join("\n");
    assert!(plan.contains("custos_entries_pkey"), "{plan}");
    assert!(plan.contains("Index Cond"), "{plan}");
}

#[tokio::test(flavor = "multi_thread")]
async fn racing_creates_of_an_absent_key_let_exactly_one_win() {
    let Some(scratch) = scratch_storage().await else {
        return;
    };
    let storage = Arc::new(scratch);
    for round in 0..5 {
        let key = format!("race/{round}");
        let barrier = Arc::new(tokio::sync::Barrier::new(16));
        let mut tasks = Vec::new();
        for task in 0..16u8 {
            let storage = Arc::clone(&storage);
            let barrier = Arc::clone(&barrier);
            let key = key.clone();
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                storage
                    .commit(
                        Transaction::new()
                            .require_absent(&key)
                            .put(&key, vec![task]),
                    )
                    .await
            }));
        }
        let mut wins = 0;
        for task in tasks {
            match task.await.expect("task") {
                Ok(_) => wins += 1,
                Err(StorageError::Conflict) => {}
                Err(err) => panic!("unexpected error: {err:?}"),
            }
        }
        assert_eq!(wins, 1, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pool_recovers_when_connections_are_killed() {
    let Some(scratch) = scratch_storage().await else {
        return;
    };
    // Warm the pool with a few connections.
    let (a, b, c, d) = tokio::join!(
        scratch.put("warm/0", Vec::new()),
        scratch.put("warm/1", Vec::new()),
        scratch.put("warm/2", Vec::new()),
        scratch.put("warm/3", Vec::new()),
    );
    for result in [a, b, c, d] {
        result.expect("put");
    }
    // What a server restart does to every open connection. Dead connections are noticed and
    // replaced, and a request that met one is retried on another, so callers see no error.
    for round in 0..3 {
        let admin = scratch.guard.admin().await;
        let killed: i64 = admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&scratch.guard.name()],
            )
            .await
            .expect("terminate")
            .get(0);
        assert!(killed > 0, "round {round}: no connection was open");
        match round {
            0 => assert!(
                scratch
                    .get("warm/0")
                    .await
                    .expect("get after kill")
                    .is_some()
            ),
            1 => {
                scratch
                    .put("killed/put", Vec::new())
                    .await
                    .expect("put after kill");
            }
            _ => assert_eq!(
                scratch
                    .list("warm/", None, 0)
                    .await
                    .expect("list after kill")
                    .keys
                    .len(),
                4
            ),
        }
    }
    for i in 0..8 {
        scratch
            .put(&format!("after/{i}"), Vec::new())
            .await
            .expect("put after recovery");
    }
}
