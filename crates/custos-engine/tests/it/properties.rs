//! Property: for any valid split and any sequence of its shares, the engine unseals exactly
//! when at least the threshold of distinct shares has been submitted.

use proptest::prelude::*;

use crate::support::{Harness, unseal_one};

/// A valid (shares, threshold) pair and a submission sequence of share indices, possibly with
/// repeats and possibly shorter than the threshold.
fn scenario() -> impl Strategy<Value = (u32, u32, Vec<usize>)> {
    (1u32..=6)
        .prop_flat_map(|n| {
            let thresholds = if n == 1 { 1..=1 } else { 2..=n };
            (Just(n), thresholds)
        })
        .prop_flat_map(|(n, t)| {
            let picks = proptest::collection::vec(0..n as usize, 0..=(2 * n as usize));
            (Just(n), Just(t), picks)
        })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn unseals_iff_threshold_distinct_shares_were_submitted((n, t, picks) in scenario()) {
        runtime().block_on(async {
            let h = Harness::new();
            let output = h.init(n, t).await;
            let mut distinct = std::collections::BTreeSet::new();
            for &index in &picks {
                let status = unseal_one(&h.engine, &output.shares[index]).await.unwrap();
                if h.engine.is_sealed() {
                    distinct.insert(index);
                    prop_assert_eq!(status.progress as usize, distinct.len());
                    prop_assert!(distinct.len() < t as usize);
                } else {
                    // Unsealed: it happened exactly when the t-th distinct share arrived.
                    distinct.insert(index);
                    prop_assert!(distinct.len() >= t as usize);
                    prop_assert!(!status.sealed);
                }
            }
            let expected_unsealed = distinct.len() >= t as usize;
            prop_assert_eq!(!h.engine.is_sealed(), expected_unsealed);
            if expected_unsealed {
                prop_assert!(h.engine.authenticate(Some(&output.root_token), &custos_engine::Connection::default()).await.is_ok());
            } else {
                let status = h.engine.seal_status().await.unwrap();
                prop_assert_eq!(status.progress as usize, distinct.len());
            }
            Ok(())
        })?;
    }
}
