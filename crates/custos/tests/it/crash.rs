//! Crash safety: SIGKILL at arbitrary points never loses an acknowledged write.
//!
//! The acknowledged write here is `sys/rotate`: each successful call durably adds one data key
//! term. A writer rotates in a loop, one call at a time, and counts acknowledgements; the server is
//! killed at a varying moment; after a restart the keyring must hold every acknowledged term (and
//! at most one more: the call in flight may have landed without being acknowledged).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::support::{self, TestPki, TestServer};

const ROUNDS: usize = 4;

async fn kill_loop(config: &std::path::Path, log: &std::path::Path, pki: &TestPki) {
    let mut server = TestServer::with_config(config, log);
    let client = pki.client(&server.address, None, false);
    let (keys, token) = support::init(&client, 1, 1).await;
    let mut term = 1u32;
    for round in 0..ROUNDS {
        let root = pki.unsealed_client(&server.address, &keys, &token).await;
        assert_eq!(root.key_status().await.unwrap().term, term, "round {round}");

        let acknowledged = Arc::new(AtomicU32::new(0));
        let writer = {
            let acknowledged = acknowledged.clone();
            tokio::spawn(async move {
                while root.rotate().await.is_ok() {
                    acknowledged.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        // Kill at a random point once writes flow: on a loaded machine the first write alone
        // (TLS handshake, an fsync) can take longer than the jitter.
        let first_ack = tokio::time::Instant::now() + Duration::from_secs(20);
        while acknowledged.load(Ordering::SeqCst) == 0 && tokio::time::Instant::now() < first_ack {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(support::jitter_ms(400))).await;
        server.kill();
        writer.await.unwrap();
        let acked = acknowledged.load(Ordering::SeqCst);
        assert!(
            acked > 0,
            "round {round}: no write was acknowledged before the kill"
        );

        server = TestServer::with_config(config, log);
        let root = pki.unsealed_client(&server.address, &keys, &token).await;
        let recovered = root.key_status().await.unwrap().term;
        let expected = term + acked;
        assert!(
            recovered == expected || recovered == expected + 1,
            "round {round}: {acked} acknowledged rotations from term {term}, found term {recovered}"
        );
        term = recovered;
        // Seal again so the next round starts the way a restarted node does.
        root.seal().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_never_loses_acknowledged_writes_sqlite() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let config = pki.write_config(dir.path(), false, &support::sqlite_storage(dir.path()));
    kill_loop(&config, &dir.path().join("server.log"), &pki).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_never_loses_acknowledged_writes_postgres() {
    let Some(database) =
        support::TestDatabase::create("sigkill_never_loses_acknowledged_writes_postgres").await
    else {
        return;
    };
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let config = pki.write_config(dir.path(), false, &support::postgres_storage(&database.url));
    kill_loop(&config, &dir.path().join("server.log"), &pki).await;
    database.drop_database().await;
}
