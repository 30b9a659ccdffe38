//! Restart: a new engine over the same storage finds the cluster sealed and unseals it.

use custos_engine::EngineError;

use crate::support::{Harness, params, unseal_all};

#[tokio::test]
async fn a_restarted_engine_is_initialised_sealed_and_unseals_with_the_same_shares() {
    let h = Harness::new();
    let output = h.init_unsealed(5, 3).await;
    let cluster_id = h.engine.seal_status().await.unwrap().cluster_id;

    let restarted = h.another_engine();
    let status = restarted.seal_status().await.unwrap();
    assert!(status.initialized);
    assert!(status.sealed);
    assert_eq!(
        (status.threshold, status.shares, status.progress),
        (3, 5, 0)
    );
    assert!(matches!(
        restarted
            .authenticate(
                Some(&output.root_token),
                &custos_engine::Connection::default()
            )
            .await,
        Err(EngineError::Sealed)
    ));

    let status = unseal_all(&restarted, &output.shares[2..5]).await;
    assert!(!status.sealed);
    assert_eq!(
        status.cluster_id, cluster_id,
        "the cluster identity is persistent"
    );
    assert!(
        restarted
            .authenticate(
                Some(&output.root_token),
                &custos_engine::Connection::default()
            )
            .await
            .unwrap()
            .is_root()
    );
    assert!(matches!(
        restarted
            .authenticate(Some("s.wrong"), &custos_engine::Connection::default())
            .await,
        Err(EngineError::PermissionDenied)
    ));
}

#[tokio::test]
async fn a_restarted_engine_refuses_a_second_init() {
    let h = Harness::new();
    h.init(3, 2).await;
    let restarted = h.another_engine();
    let result = restarted.init(params(1, 1)).await;
    assert!(
        matches!(result, Err(EngineError::AlreadyInitialized)),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_custom_dev_root_token_survives_a_restart() {
    let h = Harness::new();
    let output = h
        .engine
        .dev_init(Some(zeroize::Zeroizing::new("my-root".into())))
        .await
        .unwrap();
    let restarted = h.another_engine();
    unseal_all(&restarted, &output.shares).await;
    assert!(
        restarted
            .authenticate(Some("my-root"), &custos_engine::Connection::default())
            .await
            .unwrap()
            .is_root()
    );
}
