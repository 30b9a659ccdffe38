//! Several engines on one storage: the change feed keeps each engine's in-memory tables (mount
//! table, keyring) in step with what the others commit.

use std::time::Duration;

use custos_engine::logical::Operation;
use custos_engine::{Engine, EngineError, Invalidation, Request, Revision, UnsealInput};
use serde_json::json;

use crate::support::{Harness, put};

/// Another node on the same storage, unsealed, following a change feed the test drives.
async fn follower(harness: &Harness, share: &[u8]) -> Engine {
    let engine = harness.another_engine();
    engine.attach_change_feed();
    engine
        .apply_invalidation(&Invalidation::All { revision: None })
        .await;
    engine
        .unseal(UnsealInput::Key(zeroize::Zeroizing::new(share.to_vec())))
        .await
        .unwrap();
    // Tables start stale after unsealing; the first request reloads them.
    assert!(
        engine
            .handle(Request::new(Operation::Read, "sys/mounts"))
            .await
            .is_err()
    );
    engine
}

fn keys(keys: &[&str], revision: u64) -> Invalidation {
    Invalidation::Keys {
        keys: keys.iter().map(|key| (*key).to_owned()).collect(),
        revision: Some(Revision(revision)),
    }
}

async fn enable(engine: &Engine, token: &str, path: &str) {
    engine
        .handle(put(
            &format!("sys/mounts/{path}"),
            token,
            json!({"type": "kv"}),
        ))
        .await
        .unwrap();
}

async fn routes(engine: &Engine, token: &str, path: &str) -> bool {
    match engine
        .handle(Request::new(Operation::Read, format!("{path}/x")).token(token))
        .await
    {
        Ok(_) => true,
        Err(EngineError::NoRoute(_)) => false,
        Err(other) => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_mount_change_notified_by_the_feed_is_served_by_the_next_request() {
    let harness = Harness::new();
    let output = harness.init_unsealed(1, 1).await;
    let token = output.root_token.to_string();
    let other = follower(&harness, &output.shares[0]).await;

    enable(&harness.engine, &token, "team").await;
    // Without a notification the follower's copy is what it loaded at unseal.
    assert!(!routes(&other, &token, "team").await);
    other.apply_invalidation(&keys(&["logical/x/y"], 5)).await;
    assert!(
        !routes(&other, &token, "team").await,
        "an unrelated key reloads nothing"
    );
    other.apply_invalidation(&keys(&["core/mounts"], 6)).await;
    assert!(routes(&other, &token, "team").await);

    // Disabled elsewhere: gone from the follower once notified.
    harness
        .engine
        .handle(Request::new(Operation::Delete, "sys/mounts/team").token(&token))
        .await
        .unwrap();
    other.apply_invalidation(&keys(&["core/mounts"], 7)).await;
    assert!(!routes(&other, &token, "team").await);
}

#[tokio::test]
async fn a_lost_feed_makes_every_request_read_the_tables_from_storage() {
    let harness = Harness::new();
    let output = harness.init_unsealed(1, 1).await;
    let token = output.root_token.to_string();
    let other = follower(&harness, &output.shares[0]).await;
    enable(&harness.engine, &token, "team").await;
    other.apply_invalidation(&keys(&["core/mounts"], 6)).await;
    assert!(routes(&other, &token, "team").await);

    other.apply_invalidation(&Invalidation::Lost).await;
    assert!(other.is_change_feed_lost());
    harness
        .engine
        .handle(Request::new(Operation::Delete, "sys/mounts/team").token(&token))
        .await
        .unwrap();
    // No notification came, yet the disabled mount is not served.
    assert!(!routes(&other, &token, "team").await);
    enable(&harness.engine, &token, "later").await;
    assert!(routes(&other, &token, "later").await);

    // Back: a reconnection marks everything stale once.
    other
        .apply_invalidation(&Invalidation::All { revision: None })
        .await;
    assert!(!other.is_change_feed_lost());
    assert!(routes(&other, &token, "later").await);
}

#[tokio::test]
async fn a_rotation_elsewhere_is_picked_up_through_the_feed_and_by_reconcile() {
    let harness = Harness::new();
    let output = harness.init_unsealed(1, 1).await;
    let token = output.root_token.to_string();
    let other = follower(&harness, &output.shares[0]).await;
    harness.engine.rotate(Some(&token)).await.unwrap();
    assert_eq!(other.key_status(Some(&token)).await.unwrap().term, 1);
    other.apply_invalidation(&keys(&["seal/keyring"], 9)).await;
    assert_eq!(other.key_status(Some(&token)).await.unwrap().term, 2);

    // A missed notification is caught by the periodic reconcile.
    harness.engine.rotate(Some(&token)).await.unwrap();
    enable(&harness.engine, &token, "missed").await;
    assert_eq!(other.key_status(Some(&token)).await.unwrap().term, 2);
    other.reconcile();
    assert_eq!(other.key_status(Some(&token)).await.unwrap().term, 3);
    assert!(routes(&other, &token, "missed").await);
}

#[tokio::test]
async fn waiting_for_an_index_ends_when_the_feed_reports_it_or_times_out() {
    let harness = Harness::new();
    let output = harness.init_unsealed(1, 1).await;
    let other = follower(&harness, &output.shares[0]).await;
    let reached = other.applied_index();
    other
        .wait_for_index(reached, Duration::from_millis(10))
        .await
        .unwrap();
    let ahead = Revision(reached.0 + 10);
    assert!(matches!(
        other.wait_for_index(ahead, Duration::from_millis(50)).await,
        Err(EngineError::IndexNotReached)
    ));
    let waiter = {
        let other = other.clone();
        tokio::spawn(async move { other.wait_for_index(ahead, Duration::from_secs(10)).await })
    };
    other.apply_invalidation(&keys(&["a"], ahead.0)).await;
    waiter.await.unwrap().unwrap();
    assert_eq!(other.applied_index(), ahead);
    // A node without a feed never waits: it made every write itself.
    harness
        .engine
        .wait_for_index(Revision(u64::MAX), Duration::from_millis(10))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_fresh_read_reloads_the_tables_without_waiting_for_a_notification() {
    let harness = Harness::new();
    let output = harness.init_unsealed(1, 1).await;
    let token = output.root_token.to_string();
    let other = follower(&harness, &output.shares[0]).await;
    enable(&harness.engine, &token, "team").await;
    assert!(!routes(&other, &token, "team").await);
    assert!(custos_engine::read_fresh(routes(&other, &token, "team")).await);
}

/// Whether `engine` knows an auth method at `path` (logins there are served without a token).
async fn logs_in(engine: &Engine, path: &str) -> bool {
    let request = Request::new(Operation::Update, format!("auth/{path}/login/nobody"))
        .data(json!({"password": "x"}));
    match engine.handle(request).await {
        // A login that ran: the user does not exist.
        Err(EngineError::InvalidRequest(message)) => {
            assert_eq!(message, "invalid username or password");
            true
        }
        // Not a login path on this node: an anonymous request is refused.
        Err(EngineError::PermissionDenied) => false,
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn an_auth_method_enabled_elsewhere_is_served_once_notified() {
    let harness = Harness::new();
    let output = harness.init_unsealed(1, 1).await;
    let token = output.root_token.to_string();
    let other = follower(&harness, &output.shares[0]).await;

    harness
        .engine
        .handle(put("sys/auth/people", &token, json!({"type": "userpass"})))
        .await
        .unwrap();
    assert!(!logs_in(&other, "people").await);
    other.apply_invalidation(&keys(&["core/mounts"], 9)).await;
    assert!(
        !logs_in(&other, "people").await,
        "the mount table is another table"
    );
    other.apply_invalidation(&keys(&["core/auth"], 10)).await;
    assert!(logs_in(&other, "people").await);

    harness
        .engine
        .handle(Request::new(Operation::Delete, "sys/auth/people").token(&token))
        .await
        .unwrap();
    other.apply_invalidation(&keys(&["core/auth"], 11)).await;
    assert!(!logs_in(&other, "people").await);
}
