//! Unsealing: Shamir shares collected across calls, with Vault's progress and error rules.

use custos_engine::{Engine, EngineError, UnsealInput};
use zeroize::Zeroizing;

use crate::support::{Harness, foreign_share, invalid_unseal_key, unseal_all, unseal_one};

/// Every `k`-subset of `0..n`, as index lists.
fn subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
    fn go(start: usize, n: usize, k: usize, current: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if current.len() == k {
            out.push(current.clone());
            return;
        }
        for i in start..n {
            current.push(i);
            go(i + 1, n, k, current, out);
            current.pop();
        }
    }
    let mut out = Vec::new();
    go(0, n, k, &mut Vec::new(), &mut out);
    out
}

#[tokio::test]
async fn any_three_of_five_shares_unseal_counting_progress() {
    let h = Harness::new();
    let output = h.init(5, 3).await;
    let all = subsets(5, 3);
    assert_eq!(all.len(), 10);
    for subset in all {
        // Reverse every other subset so order does not matter either.
        let order: Vec<usize> = if subset[0] % 2 == 0 {
            subset.clone()
        } else {
            subset.iter().rev().copied().collect()
        };
        let first = unseal_one(&h.engine, &output.shares[order[0]])
            .await
            .unwrap();
        assert!(first.sealed, "{subset:?}");
        assert_eq!(first.progress, 1);
        assert_eq!(
            first.nonce.len(),
            36,
            "a nonce appears with the first share"
        );
        let second = unseal_one(&h.engine, &output.shares[order[1]])
            .await
            .unwrap();
        assert!(second.sealed);
        assert_eq!(second.progress, 2);
        assert_eq!(
            second.nonce, first.nonce,
            "the nonce is stable during one attempt"
        );
        let third = unseal_one(&h.engine, &output.shares[order[2]])
            .await
            .unwrap();
        assert!(!third.sealed, "{subset:?} did not unseal");
        assert_eq!(third.progress, 0);
        assert_eq!(third.nonce, "");
        assert!(
            h.engine
                .authenticate(
                    Some(&output.root_token),
                    &custos_engine::Connection::default()
                )
                .await
                .unwrap()
                .is_root(),
            "{subset:?}"
        );
        h.engine.seal(Some(&output.root_token)).await.unwrap();
        assert!(h.engine.is_sealed());
    }
}

#[tokio::test]
async fn unsealed_status_shows_the_cluster_and_active_time() {
    let h = Harness::new();
    h.init_unsealed(1, 1).await;
    let status = h.engine.seal_status().await.unwrap();
    assert!(!status.sealed);
    assert!(status.cluster_name.unwrap().starts_with("custos-cluster-"));
    assert_eq!(status.cluster_id.unwrap().len(), 36);
    assert_eq!(status.active_since, Some(h.clock_now()));
}

impl Harness {
    fn clock_now(&self) -> jiff::Timestamp {
        use custos_engine::Clock as _;
        self.clock.now()
    }
}

#[tokio::test]
async fn a_duplicate_share_does_not_advance_progress() {
    let h = Harness::new();
    let output = h.init(5, 3).await;
    let first = unseal_one(&h.engine, &output.shares[0]).await.unwrap();
    let again = unseal_one(&h.engine, &output.shares[0]).await.unwrap();
    assert_eq!(again.progress, 1);
    assert!(again.sealed);
    assert_eq!(again.nonce, first.nonce);
    unseal_one(&h.engine, &output.shares[1]).await.unwrap();
    let again = unseal_one(&h.engine, &output.shares[1]).await.unwrap();
    assert_eq!(again.progress, 2);
    assert!(again.sealed);
    let done = unseal_one(&h.engine, &output.shares[2]).await.unwrap();
    assert!(!done.sealed);
}

#[tokio::test]
async fn a_wrong_third_share_fails_resets_progress_and_good_shares_still_unseal() {
    let h = Harness::new();
    let output = h.init(5, 3).await;
    unseal_one(&h.engine, &output.shares[0]).await.unwrap();
    unseal_one(&h.engine, &output.shares[1]).await.unwrap();
    let bad = foreign_share(&[&output.shares[0], &output.shares[1]]);
    let message = invalid_unseal_key(unseal_one(&h.engine, &bad).await);
    assert!(
        message.starts_with("unable to retrieve stored keys"),
        "{message}"
    );
    let status = h.engine.seal_status().await.unwrap();
    assert!(status.sealed);
    assert_eq!(status.progress, 0);
    assert_eq!(status.nonce, "");
    assert!(matches!(
        h.engine
            .authenticate(
                Some(&output.root_token),
                &custos_engine::Connection::default()
            )
            .await,
        Err(EngineError::Sealed)
    ));
    let status = unseal_all(&h.engine, &output.shares[2..5]).await;
    assert!(!status.sealed);
}

#[tokio::test]
async fn a_share_repeating_an_x_coordinate_fails_and_resets_progress() {
    let h = Harness::new();
    let output = h.init(3, 2).await;
    unseal_one(&h.engine, &output.shares[0]).await.unwrap();
    // Same x-coordinate as share 0, different y bytes: not a duplicate, but not combinable.
    let mut twin = output.shares[0].to_vec();
    twin[0] ^= 0xff;
    let message = invalid_unseal_key(unseal_one(&h.engine, &twin).await);
    assert!(message.starts_with("invalid key:"), "{message}");
    let status = h.engine.seal_status().await.unwrap();
    assert!(status.sealed);
    assert_eq!(status.progress, 0);
    let status = unseal_all(&h.engine, &output.shares[1..3]).await;
    assert!(!status.sealed);
}

#[tokio::test]
async fn shares_of_another_cluster_do_not_unseal() {
    let (ours, theirs) = (Harness::new(), Harness::new());
    let our_output = ours.init(5, 3).await;
    let their_output = theirs.init(5, 3).await;
    unseal_one(&ours.engine, &their_output.shares[0])
        .await
        .unwrap();
    unseal_one(&ours.engine, &their_output.shares[1])
        .await
        .unwrap();
    let message = invalid_unseal_key(unseal_one(&ours.engine, &their_output.shares[2]).await);
    assert!(
        message.starts_with("unable to retrieve stored keys"),
        "{message}"
    );
    assert!(ours.engine.is_sealed());
    assert_eq!(ours.engine.seal_status().await.unwrap().progress, 0);
    // Their shares did not damage anything: ours still work.
    assert!(
        !unseal_all(&ours.engine, &our_output.shares[..3])
            .await
            .sealed
    );
}

async fn unseal_error_for_length(engine: &Engine, len: usize) -> String {
    let mut bytes = vec![7u8; len];
    if let Some(last) = bytes.last_mut() {
        *last = 1;
    }
    invalid_unseal_key(unseal_one(engine, &bytes).await)
}

#[tokio::test]
async fn keys_of_the_wrong_length_are_refused_with_vaults_messages() {
    let h = Harness::new();
    let output = h.init(3, 2).await;
    unseal_one(&h.engine, &output.shares[0]).await.unwrap();
    for len in [0, 1, 10, 15] {
        assert_eq!(
            unseal_error_for_length(&h.engine, len).await,
            "invalid key: key is shorter than minimum 16 bytes",
            "{len} bytes"
        );
    }
    for len in [16, 20, 32] {
        assert_eq!(
            unseal_error_for_length(&h.engine, len).await,
            format!("invalid key: unseal keys are 33 bytes, this one is {len}"),
        );
    }
    for len in [34, 64] {
        assert_eq!(
            unseal_error_for_length(&h.engine, len).await,
            "invalid key: key is longer than maximum 33 bytes",
            "{len} bytes"
        );
    }
    // A malformed key is refused before it is counted, and the progress so far survives.
    let status = h.engine.seal_status().await.unwrap();
    assert_eq!(status.progress, 1);
    assert!(
        !unseal_one(&h.engine, &output.shares[1])
            .await
            .unwrap()
            .sealed
    );
}

#[tokio::test]
async fn a_share_with_x_coordinate_zero_is_refused() {
    let h = Harness::new();
    h.init(3, 2).await;
    let mut bytes = vec![9u8; 33];
    bytes[32] = 0;
    let message = invalid_unseal_key(unseal_one(&h.engine, &bytes).await);
    assert!(message.starts_with("invalid key:"), "{message}");
    assert_eq!(h.engine.seal_status().await.unwrap().progress, 0);
}

#[tokio::test]
async fn reset_clears_progress_and_nonce() {
    let h = Harness::new();
    let output = h.init(5, 3).await;
    unseal_one(&h.engine, &output.shares[0]).await.unwrap();
    let before = unseal_one(&h.engine, &output.shares[1]).await.unwrap();
    assert_eq!(before.progress, 2);
    let status = h.engine.unseal(UnsealInput::Reset).await.unwrap();
    assert!(status.sealed);
    assert_eq!(status.progress, 0);
    assert_eq!(status.nonce, "");
    // After a reset the old shares count from zero again, with a fresh nonce.
    let after = unseal_one(&h.engine, &output.shares[1]).await.unwrap();
    assert_eq!(after.progress, 1);
    assert_ne!(after.nonce, before.nonce);
    unseal_one(&h.engine, &output.shares[2]).await.unwrap();
    assert!(
        !unseal_one(&h.engine, &output.shares[3])
            .await
            .unwrap()
            .sealed
    );
}

#[tokio::test]
async fn reset_with_nothing_pending_is_harmless() {
    let h = Harness::new();
    h.init(3, 2).await;
    let status = h.engine.unseal(UnsealInput::Reset).await.unwrap();
    assert!(status.sealed);
    assert_eq!(status.progress, 0);
}

#[tokio::test]
async fn unseal_when_already_unsealed_just_reports_status() {
    let h = Harness::new();
    let output = h.init_unsealed(3, 2).await;
    // Even garbage is not looked at once unsealed, as in Vault.
    let status = unseal_one(&h.engine, &[1u8; 3]).await.unwrap();
    assert!(!status.sealed);
    let status = h.engine.unseal(UnsealInput::Reset).await.unwrap();
    assert!(!status.sealed);
    assert!(
        h.engine
            .authenticate(
                Some(&output.root_token),
                &custos_engine::Connection::default()
            )
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn concurrent_shares_are_all_counted() {
    let h = Harness::new();
    let output = h.init(5, 3).await;
    let [a, b, c] = [0, 1, 2].map(|i| Zeroizing::new(output.shares[i].to_vec()));
    let (ra, rb, rc) = tokio::join!(
        unseal_one(&h.engine, &a),
        unseal_one(&h.engine, &b),
        unseal_one(&h.engine, &c)
    );
    let statuses = [ra.unwrap(), rb.unwrap(), rc.unwrap()];
    assert_eq!(statuses.iter().filter(|s| !s.sealed).count(), 1);
    assert!(!h.engine.is_sealed());
}

fn stale_nonce(result: Result<custos_engine::SealStatus, EngineError>) {
    match result {
        Err(EngineError::InvalidRequest(message)) => {
            assert_eq!(message, custos_engine::STALE_UNSEAL_NONCE);
            assert!(message.contains("progress was reset by someone else; start again"));
        }
        other => panic!("expected the stale-nonce refusal, got {other:?}"),
    }
}

fn share(bytes: &[u8]) -> UnsealInput {
    UnsealInput::Key(Zeroizing::new(bytes.to_vec()))
}

#[tokio::test]
async fn a_share_naming_the_current_round_counts() {
    let harness = Harness::new();
    let output = harness.init(3, 3).await;
    // At the start of a round the nonce is empty: naming it is naming "no round yet".
    let first = harness
        .engine
        .unseal_in_round(share(&output.shares[0]), Some(""))
        .await
        .unwrap();
    assert_eq!(first.progress, 1);
    assert!(!first.nonce.is_empty());
    let second = harness
        .engine
        .unseal_in_round(share(&output.shares[1]), Some(&first.nonce))
        .await
        .unwrap();
    assert_eq!(
        (second.progress, second.nonce.as_str()),
        (2, first.nonce.as_str())
    );
    let last = harness
        .engine
        .unseal_in_round(share(&output.shares[2]), Some(&first.nonce))
        .await
        .unwrap();
    assert!(!last.sealed);
}

#[tokio::test]
async fn a_share_for_a_round_someone_reset_is_refused_and_changes_nothing() {
    let harness = Harness::new();
    let output = harness.init(3, 2).await;
    let round = unseal_one(&harness.engine, &output.shares[0])
        .await
        .unwrap();
    // Someone else resets, and starts a round of their own with a bogus share.
    harness.engine.unseal(UnsealInput::Reset).await.unwrap();
    let bogus = foreign_share(&[&output.shares[0], &output.shares[1]]);
    let theirs = unseal_one(&harness.engine, &bogus).await.unwrap();
    assert_ne!(theirs.nonce, round.nonce);

    // The operator's next share names their own round: refused, and their round's progress
    // is not disturbed further (the bogus round is untouched too).
    stale_nonce(
        harness
            .engine
            .unseal_in_round(share(&output.shares[1]), Some(&round.nonce))
            .await,
    );
    let status = harness.engine.seal_status().await.unwrap();
    assert_eq!((status.progress, status.nonce), (1, theirs.nonce.clone()));
    // A reset naming a past round is refused as well; naming the current one works.
    stale_nonce(
        harness
            .engine
            .unseal_in_round(UnsealInput::Reset, Some(&round.nonce))
            .await,
    );
    assert_eq!(harness.engine.seal_status().await.unwrap().progress, 1);
    let reset = harness
        .engine
        .unseal_in_round(UnsealInput::Reset, Some(&theirs.nonce))
        .await
        .unwrap();
    assert_eq!((reset.progress, reset.nonce.as_str()), (0, ""));
    // With no round in progress, naming any round is naming a past one.
    stale_nonce(
        harness
            .engine
            .unseal_in_round(share(&output.shares[1]), Some(&round.nonce))
            .await,
    );
    // Without a nonce (the `bao operator unseal` way) it all works as before.
    let status = unseal_all(&harness.engine, &output.shares[..2]).await;
    assert!(!status.sealed);
}
