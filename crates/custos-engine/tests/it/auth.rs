//! Authentication with the root token, and sealing (which needs it).

use custos_engine::EngineError;

use crate::support::{Harness, unseal_all};

#[tokio::test]
async fn root_token_authenticates_as_root_after_unseal() {
    let h = Harness::new();
    let output = h.init_unsealed(3, 2).await;
    let caller = h
        .engine
        .authenticate(
            Some(&output.root_token),
            &custos_engine::Connection::default(),
        )
        .await
        .unwrap();
    assert!(caller.is_root());
    assert_eq!(caller.policies, ["root"]);
    assert_eq!(caller.display_name, "root");
}

#[tokio::test]
async fn wrong_empty_or_missing_tokens_are_permission_denied() {
    let h = Harness::new();
    let output = h.init_unsealed(3, 2).await;
    let mut near_miss = output.root_token.to_string();
    near_miss.pop();
    near_miss.push('!');
    let with_space = format!(" {}", output.root_token.as_str());
    for token in [
        Some("s.wrong"),
        Some(""),
        Some(near_miss.as_str()),
        Some(with_space.as_str()),
        Some(&output.root_token[..10]),
        None,
    ] {
        let result = h
            .engine
            .authenticate(token, &custos_engine::Connection::default())
            .await;
        assert!(
            matches!(result, Err(EngineError::PermissionDenied)),
            "{token:?}: {result:?}"
        );
    }
}

#[tokio::test]
async fn the_root_token_is_refused_while_sealed() {
    let h = Harness::new();
    let output = h.init(3, 2).await;
    let result = h
        .engine
        .authenticate(
            Some(&output.root_token),
            &custos_engine::Connection::default(),
        )
        .await;
    assert!(matches!(result, Err(EngineError::Sealed)), "{result:?}");
    // Sealed wins over a bad token: nothing about tokens is revealed while sealed.
    let result = h
        .engine
        .authenticate(None, &custos_engine::Connection::default())
        .await;
    assert!(matches!(result, Err(EngineError::Sealed)), "{result:?}");
}

#[tokio::test]
async fn seal_with_a_wrong_token_is_denied_and_stays_unsealed() {
    let h = Harness::new();
    let output = h.init_unsealed(3, 2).await;
    for token in [Some("s.wrong"), Some(""), None] {
        let result = h.engine.seal(token).await;
        assert!(
            matches!(result, Err(EngineError::PermissionDenied)),
            "{token:?}: {result:?}"
        );
        assert!(!h.engine.is_sealed());
    }
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
async fn seal_with_the_root_token_seals_and_unsealing_again_works() {
    let h = Harness::new();
    let output = h.init_unsealed(3, 2).await;
    h.engine.seal(Some(&output.root_token)).await.unwrap();
    assert!(h.engine.is_sealed());
    let status = h.engine.seal_status().await.unwrap();
    assert!(status.sealed);
    assert!(status.initialized);
    assert_eq!(status.progress, 0);
    assert_eq!(status.active_since, None);
    assert!(matches!(
        h.engine
            .authenticate(
                Some(&output.root_token),
                &custos_engine::Connection::default()
            )
            .await,
        Err(EngineError::Sealed)
    ));
    // Different shares this time.
    let status = unseal_all(&h.engine, &output.shares[1..3]).await;
    assert!(!status.sealed);
    assert!(
        h.engine
            .authenticate(
                Some(&output.root_token),
                &custos_engine::Connection::default()
            )
            .await
            .unwrap()
            .is_root()
    );
}

#[tokio::test]
async fn sealing_discards_shares_pending_from_before() {
    let h = Harness::new();
    let output = h.init_unsealed(3, 2).await;
    h.engine.seal(Some(&output.root_token)).await.unwrap();
    let status = crate::support::unseal_one(&h.engine, &output.shares[0])
        .await
        .unwrap();
    assert_eq!(
        status.progress, 1,
        "no share survives from the previous unseal"
    );
}

#[tokio::test]
async fn sealing_a_sealed_engine_is_ok_without_a_token() {
    let h = Harness::new();
    let output = h.init(3, 2).await;
    h.engine.seal(None).await.unwrap();
    h.engine.seal(Some("s.wrong")).await.unwrap();
    h.engine.seal(Some(&output.root_token)).await.unwrap();
    assert!(h.engine.is_sealed());
}

#[tokio::test]
async fn clones_share_one_seal_state() {
    let h = Harness::new();
    let output = h.init_unsealed(3, 2).await;
    let clone = h.engine.clone();
    clone.seal(Some(&output.root_token)).await.unwrap();
    assert!(h.engine.is_sealed());
}

#[tokio::test]
async fn key_status_and_rotate_need_the_root_token() {
    let h = Harness::new();
    let output = h.init(3, 2).await;
    assert!(matches!(
        h.engine.key_status(Some(&output.root_token)).await,
        Err(EngineError::Sealed)
    ));
    assert!(matches!(
        h.engine.rotate(Some(&output.root_token)).await,
        Err(EngineError::Sealed)
    ));
    unseal_all(&h.engine, &output.shares[..2]).await;
    for token in [None, Some(""), Some("s.wrong")] {
        assert!(matches!(
            h.engine.key_status(token).await,
            Err(EngineError::PermissionDenied)
        ));
        assert!(matches!(
            h.engine.rotate(token).await,
            Err(EngineError::PermissionDenied)
        ));
    }
    // The refused rotations did not rotate.
    assert_eq!(
        h.engine
            .key_status(Some(&output.root_token))
            .await
            .unwrap()
            .term,
        1
    );
}
