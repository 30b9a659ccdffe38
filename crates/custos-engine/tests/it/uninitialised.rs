//! Before init: status says so, unseal and authentication refuse.

use custos_engine::EngineError;

use crate::support::{Harness, unseal_one};

#[tokio::test]
async fn fresh_engine_reports_not_initialised_and_sealed() {
    let h = Harness::new();
    let status = h.engine.seal_status().await.unwrap();
    assert!(!status.initialized);
    assert!(status.sealed);
    assert_eq!(
        (status.threshold, status.shares, status.progress),
        (0, 0, 0)
    );
    assert_eq!(status.nonce, "");
    assert_eq!(status.storage_type, "memory");
    assert_eq!(status.cluster_name, None);
    assert!(!h.engine.is_initialized().await.unwrap());
}

#[tokio::test]
async fn unseal_before_init_is_not_initialised() {
    let h = Harness::new();
    let result = unseal_one(&h.engine, &[1u8; 33]).await;
    assert!(
        matches!(result, Err(EngineError::NotInitialized)),
        "{result:?}"
    );
}

#[tokio::test]
async fn authenticate_before_init_is_sealed() {
    let h = Harness::new();
    let result = h
        .engine
        .authenticate(Some("s.anything"), &custos_engine::Connection::default())
        .await;
    assert!(matches!(result, Err(EngineError::Sealed)), "{result:?}");
}

#[tokio::test]
async fn seal_before_init_is_a_no_op() {
    let h = Harness::new();
    h.engine.seal(None).await.unwrap();
    assert!(h.engine.is_sealed());
}
