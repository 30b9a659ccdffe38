//! Data key rotation: terms, install times from the clock, and rotation shared through storage.

use custos_engine::KeyInfo;
use jiff::SignedDuration;

use crate::support::{Harness, START_UNIX, unseal_all};

#[tokio::test]
async fn the_first_term_is_installed_at_init_time() {
    let h = Harness::new();
    let output = h.init(1, 1).await;
    h.clock.advance(SignedDuration::from_secs(3600));
    unseal_all(&h.engine, &output.shares).await;
    let info = h.engine.key_status(Some(&output.root_token)).await.unwrap();
    assert_eq!(info.term, 1);
    assert_eq!(info.installed_at, START_UNIX);
}

#[tokio::test]
async fn rotate_advances_the_term_and_records_the_clock() {
    let h = Harness::new();
    let output = h.init_unsealed(1, 1).await;
    let token = Some(output.root_token.as_str());
    h.clock.advance(SignedDuration::from_secs(60));
    let second = h.engine.rotate(token).await.unwrap();
    assert_eq!(second.term, 2);
    assert_eq!(second.installed_at, START_UNIX + 60);
    assert_eq!(second.encryptions, 0, "a new term starts uncounted");
    assert_eq!(h.engine.key_status(token).await.unwrap(), second);

    h.clock.advance(SignedDuration::from_secs(60));
    let third = h.engine.rotate(token).await.unwrap();
    assert_eq!(third.term, 3);
    assert_eq!(third.installed_at, START_UNIX + 120);
    assert_eq!(h.engine.key_status(token).await.unwrap(), third);
}

#[tokio::test]
async fn rotation_survives_a_restart() {
    let h = Harness::new();
    let output = h.init_unsealed(3, 2).await;
    let token = Some(output.root_token.as_str());
    h.clock.advance(SignedDuration::from_secs(10));
    h.engine.rotate(token).await.unwrap();
    h.clock.advance(SignedDuration::from_secs(10));
    let latest = h.engine.rotate(token).await.unwrap();

    let restarted = h.another_engine();
    unseal_all(&restarted, &output.shares[..2]).await;
    let info = restarted.key_status(token).await.unwrap();
    assert_eq!((info.term, info.installed_at), (3, latest.installed_at));
    // Entries sealed with term 1 (the token) still open after the rotations.
    assert!(
        restarted
            .authenticate(token, &custos_engine::Connection::default())
            .await
            .unwrap()
            .is_root()
    );
}

#[tokio::test]
async fn a_second_engine_rotates_from_storage_not_from_its_memory() {
    let h = Harness::new();
    let output = h.init_unsealed(3, 2).await;
    let token = Some(output.root_token.as_str());
    let b = h.another_engine();
    unseal_all(&b, &output.shares[..2]).await;
    assert_eq!(b.key_status(token).await.unwrap().term, 1);

    assert_eq!(h.engine.rotate(token).await.unwrap().term, 2);
    // B follows no change feed here, so it has not reloaded its keyring and still reports the
    // term it had. With PostgreSQL the feed makes it reload (see `follow.rs`).
    let stale: KeyInfo = b.key_status(token).await.unwrap();
    assert_eq!(stale.term, 1);

    // B rotates what storage holds (term 2), so the result is term 3, not a second term 2.
    assert_eq!(b.rotate(token).await.unwrap().term, 3);
    assert_eq!(b.key_status(token).await.unwrap().term, 3);
    // And A, rotating again, builds on B's term 3.
    assert_eq!(h.engine.rotate(token).await.unwrap().term, 4);

    // A third engine unsealed now sees the latest term, and every term still decrypts.
    let c = h.another_engine();
    unseal_all(&c, &output.shares[1..3]).await;
    assert_eq!(c.key_status(token).await.unwrap().term, 4);
    assert!(
        c.authenticate(token, &custos_engine::Connection::default())
            .await
            .unwrap()
            .is_root()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_rotations_on_two_engines_never_lose_a_term() {
    let h = Harness::new();
    let output = h.init_unsealed(1, 1).await;
    let b = h.another_engine();
    unseal_all(&b, &output.shares).await;
    let (ta, tb) = (output.root_token.to_string(), output.root_token.to_string());
    let (a, bb) = (h.engine.clone(), b.clone());
    let ra = tokio::spawn(async move { a.rotate(Some(&ta)).await });
    let rb = tokio::spawn(async move { bb.rotate(Some(&tb)).await });
    let (ra, rb) = (ra.await.unwrap().unwrap(), rb.await.unwrap().unwrap());
    // Either both committed one after the other (2 and 3), or one lost the race and adopted
    // the winner's keyring (both 2). Never a term beyond 3, never a term below 2.
    let terms = [ra.term, rb.term];
    assert!(terms.iter().all(|t| (2..=3).contains(t)), "{terms:?}");
    // Whatever happened, storage holds a keyring every engine can open.
    let c = h.another_engine();
    unseal_all(&c, &output.shares).await;
    let stored = c.key_status(Some(&output.root_token)).await.unwrap().term;
    assert_eq!(stored, *terms.iter().max().unwrap());
}
