//! The encryption budget of a data key is cluster-wide: two engines (two nodes) over one
//! PostgreSQL database, each behind its own read cache fed by LISTEN/NOTIFY as the server sets
//! it up, share one count per key term and rotate once per term between them.

use std::sync::Arc;

use custos_engine::logical::Operation;
use custos_engine::{Engine, Limits, Request, SystemClock, UnsealInput};
use custos_storage::{CachedStorage, Storage};
use custos_storage_postgres::{PostgresConfig, PostgresStorage};
use serde_json::json;

use crate::support::TestDatabase;

const MAX_PER_KEY: u64 = 20;
const BLOCK: u64 = 4;
const WRITES_PER_NODE: usize = 60;

async fn node(url: &str) -> Engine {
    let storage = PostgresStorage::connect(PostgresConfig::new(url))
        .await
        .unwrap();
    let invalidations = storage.invalidations();
    let cached = Arc::new(
        CachedStorage::new(Arc::new(storage), 1 << 20)
            .without_caching_misses_under(custos_engine::CREDENTIAL_PREFIXES),
    );
    tokio::spawn(PostgresStorage::follow(invalidations, cached.clone()));
    let limits = Limits {
        max_encryptions_per_key: MAX_PER_KEY,
        encryption_block: BLOCK,
        ..Limits::default()
    };
    Engine::with_limits(cached, Arc::new(SystemClock), limits)
}

fn write(path: String, token: &str, value: usize) -> Request {
    Request::new(Operation::Update, path)
        .token(token)
        .data(json!({ "v": value }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_encryption_count_per_key_and_one_rotation() {
    let Some(database) = TestDatabase::create("budget_postgres").await else {
        return;
    };
    let first = node(&database.url).await;
    let output = first.dev_init(None).await.unwrap();
    let root = output.root_token.to_string();
    first
        .mount(&root, "kv", "kv", &[("version", "1")])
        .await
        .unwrap();
    let second = node(&database.url).await;
    second
        .unseal(UnsealInput::Key(output.shares[0].clone()))
        .await
        .unwrap();

    let tasks: Vec<_> = [("a", first.clone()), ("b", second.clone())]
        .into_iter()
        .map(|(name, engine)| {
            let root = root.clone();
            tokio::spawn(async move {
                for i in 0..WRITES_PER_NODE {
                    engine
                        .handle(write(format!("kv/{name}{i}"), &root, i))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }

    // Every value opens on both nodes, whichever term sealed it.
    for engine in [&first, &second] {
        for name in ["a", "b"] {
            for i in 0..WRITES_PER_NODE {
                let answer = engine
                    .handle(Request::new(Operation::Read, format!("kv/{name}{i}")).token(&root))
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(answer.data.unwrap()["v"], i);
            }
        }
    }

    // Read the counts straight from the database.
    let raw = PostgresStorage::connect(PostgresConfig::new(&database.url))
        .await
        .unwrap();
    let last = first
        .key_status(Some(&root))
        .await
        .unwrap()
        .term
        .max(second.key_status(Some(&root)).await.unwrap().term);
    let mut counts = Vec::new();
    for term in 1..=last {
        let entry = raw
            .get(&format!("seal/encryptions/{term}"))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("term {term} has no count: it was skipped"));
        counts.push(u64::from_be_bytes(
            entry.value.as_slice().try_into().unwrap(),
        ));
    }
    // No term went past its budget, and none was rotated away early: each of the two nodes can
    // leave at most one unused block behind per term.
    assert!(
        counts.iter().all(|&count| count <= MAX_PER_KEY),
        "{counts:?}"
    );
    let (spent, current) = counts.split_at(counts.len() - 1);
    assert!(
        spent.iter().all(|&count| count >= MAX_PER_KEY - 2 * BLOCK),
        "{counts:?}"
    );
    assert!(current[0] >= 1, "{counts:?}");
    // At least the 2 + 1 + 120 values sealed in all, at most 20 per term.
    let sealed = 3 + 2 * WRITES_PER_NODE as u64;
    assert!(
        u64::from(last) >= sealed.div_ceil(MAX_PER_KEY),
        "term {last}"
    );
    drop((first, second, raw));
    database.drop_database().await;
}
