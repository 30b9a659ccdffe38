//! The encryption budget of a data key: counted in storage, rotated before the limit, across
//! restarts and nodes.

use custos_engine::{Engine, Limits};
use custos_storage::Storage;
use serde_json::json;

use crate::support::{Harness, put, read_data, unseal_all};

fn tiny(max: u64, block: u64) -> Limits {
    Limits {
        max_encryptions_per_key: max,
        encryption_block: block,
        ..Limits::default()
    }
}

async fn term(engine: &Engine, root: &str) -> u32 {
    engine.key_status(Some(root)).await.unwrap().term
}

/// The counts stored for terms 1..=`last`, which must each stay within `max`.
async fn stored_counts(harness: &Harness, last: u32) -> Vec<u64> {
    let mut counts = Vec::new();
    for term in 1..=last {
        let entry = harness
            .storage
            .get(&format!("seal/encryptions/{term}"))
            .await
            .unwrap();
        counts.push(entry.map_or(0, |entry| {
            u64::from_be_bytes(entry.value.as_slice().try_into().unwrap())
        }));
    }
    counts
}

async fn setup(limits: Limits) -> (Harness, String) {
    let (harness, _) = Harness::with(limits);
    let root = harness.init_unsealed(1, 1).await.root_token.to_string();
    harness
        .engine
        .mount(&root, "kv", "kv", &[("version", "1")])
        .await
        .unwrap();
    (harness, root)
}

#[tokio::test]
async fn the_data_key_rotates_by_itself_before_its_limit_and_old_terms_still_decrypt() {
    let (harness, root) = setup(tiny(10, 3)).await;
    assert_eq!(term(&harness.engine, &root).await, 1);
    for i in 0..40 {
        harness
            .engine
            .handle(put(&format!("kv/k{i}"), &root, json!({ "i": i })))
            .await
            .unwrap();
    }
    // At least 43 values sealed (init, the mount table, 40 writes) at 10 per key.
    let last = term(&harness.engine, &root).await;
    assert!(last >= 5, "term {last}");
    let counts = stored_counts(&harness, last).await;
    assert!(counts.iter().all(|&count| count <= 10), "{counts:?}");
    assert!(
        counts[..counts.len() - 1].iter().all(|&count| count >= 8),
        "terms are used nearly to their limit before rotating: {counts:?}"
    );
    for i in 0..40 {
        let data = read_data(&harness.engine, &format!("kv/k{i}"), &root).await;
        assert_eq!(data["i"], i);
    }
}

#[tokio::test]
async fn the_count_survives_a_restart_over_the_same_storage() {
    let limits = tiny(10, 2);
    let (harness, _) = Harness::with(limits);
    let output = harness.init_unsealed(1, 1).await;
    let root = output.root_token.to_string();
    harness
        .engine
        .mount(&root, "kv", "kv", &[("version", "1")])
        .await
        .unwrap();
    for i in 0..3 {
        harness
            .engine
            .handle(put(&format!("kv/before{i}"), &root, json!({ "i": i })))
            .await
            .unwrap();
    }
    assert_eq!(term(&harness.engine, &root).await, 1);
    let used_before = stored_counts(&harness, 1).await[0];
    assert!(used_before >= 6, "{used_before}");
    harness.engine.seal(Some(&root)).await.unwrap();

    let engine = harness.restarted_with(limits);
    unseal_all(&engine, &output.shares).await;
    let mut writes = 0;
    while term(&engine, &root).await == 1 {
        writes += 1;
        assert!(writes <= 10, "no rotation after 10 writes");
        engine
            .handle(put(
                &format!("kv/after{writes}"),
                &root,
                json!({ "n": writes }),
            ))
            .await
            .unwrap();
    }
    // Had the count restarted from zero, term 1 would have taken 10 more values.
    assert!(writes <= 10 - 6 + 1, "{writes} writes before rotating");
    for i in 0..3 {
        assert_eq!(
            read_data(&engine, &format!("kv/before{i}"), &root).await["i"],
            i
        );
    }
    assert!(
        stored_counts(&harness, 2)
            .await
            .iter()
            .all(|&count| count <= 10)
    );
}

#[tokio::test]
async fn a_rotation_by_one_node_is_adopted_by_the_others() {
    let limits = tiny(10, 2);
    let (harness, _) = Harness::with(limits);
    let output = harness.init_unsealed(1, 1).await;
    let root = output.root_token.to_string();
    harness
        .engine
        .mount(&root, "kv", "kv", &[("version", "1")])
        .await
        .unwrap();
    let other = harness.restarted_with(limits);
    unseal_all(&other, &output.shares).await;
    assert_eq!(term(&other, &root).await, 1);

    // The first node spends the budget of term 1 and rotates to term 2.
    let mut i = 0;
    while term(&harness.engine, &root).await == 1 {
        i += 1;
        assert!(i <= 10);
        harness
            .engine
            .handle(put(&format!("kv/a{i}"), &root, json!({ "i": i })))
            .await
            .unwrap();
    }
    assert_eq!(term(&harness.engine, &root).await, 2);

    // The other node still has term 1 loaded; its next block finds term 1 spent and adopts
    // term 2 instead of rotating once more.
    for j in 0..3 {
        other
            .handle(put(&format!("kv/b{j}"), &root, json!({ "j": j })))
            .await
            .unwrap();
    }
    assert_eq!(term(&other, &root).await, 2);
    assert_eq!(read_data(&other, &format!("kv/a{i}"), &root).await["i"], i);
    assert_eq!(read_data(&harness.engine, "kv/b2", &root).await["j"], 2);
    assert!(
        stored_counts(&harness, 2)
            .await
            .iter()
            .all(|&count| count <= 10)
    );
}
