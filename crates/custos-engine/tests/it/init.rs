//! `init`: Vault's validation rules and messages, exactly-once, and what it hands back.

use custos_engine::EngineError;

use crate::support::{Harness, invalid_request, params};

async fn init_error(shares: u32, threshold: u32) -> String {
    let h = Harness::new();
    let message = invalid_request(h.engine.init(params(shares, threshold)).await);
    // A refused init writes nothing.
    assert!(!h.engine.is_initialized().await.unwrap());
    message
}

#[tokio::test]
async fn zero_shares_is_refused_with_vaults_message() {
    assert_eq!(
        init_error(0, 0).await,
        "invalid seal configuration: shares must be at least one"
    );
}

#[tokio::test]
async fn zero_threshold_is_refused_with_vaults_message() {
    assert_eq!(
        init_error(3, 0).await,
        "invalid seal configuration: threshold must be at least one"
    );
}

#[tokio::test]
async fn threshold_above_shares_is_refused_with_vaults_message() {
    assert_eq!(
        init_error(3, 4).await,
        "invalid seal configuration: threshold cannot be larger than shares"
    );
}

#[tokio::test]
async fn threshold_one_with_several_shares_is_refused_with_vaults_message() {
    assert_eq!(
        init_error(3, 1).await,
        "invalid seal configuration: threshold must be greater than one for multiple shares"
    );
}

#[tokio::test]
async fn shares_above_255_are_refused_with_vaults_message() {
    assert_eq!(
        init_error(256, 2).await,
        "invalid seal configuration: shares must be less than 256"
    );
}

#[tokio::test]
async fn doubly_invalid_splits_get_the_message_vault_checks_first() {
    // Vault's `SealConfig.Validate` checks "threshold 1 with several shares" before the bounds,
    // and the threshold bound before "threshold above shares".
    assert_eq!(
        init_error(256, 1).await,
        "invalid seal configuration: threshold must be greater than one for multiple shares"
    );
    assert_eq!(
        init_error(255, 256).await,
        "invalid seal configuration: threshold must be less than 256"
    );
    assert_eq!(
        init_error(300, 300).await,
        "invalid seal configuration: shares must be less than 256"
    );
}

#[tokio::test]
async fn the_largest_split_is_accepted() {
    let h = Harness::new();
    let output = h.init(255, 255).await;
    assert_eq!(output.shares.len(), 255);
}

#[tokio::test]
async fn init_twice_is_already_initialised() {
    let h = Harness::new();
    h.init(1, 1).await;
    let again = h.engine.init(params(1, 1)).await;
    assert!(
        matches!(again, Err(EngineError::AlreadyInitialized)),
        "{again:?}"
    );
}

#[tokio::test]
async fn init_on_another_engine_over_initialised_storage_is_already_initialised() {
    let h = Harness::new();
    h.init(1, 1).await;
    let again = h.another_engine().init(params(1, 1)).await;
    assert!(
        matches!(again, Err(EngineError::AlreadyInitialized)),
        "{again:?}"
    );
}

#[tokio::test]
async fn of_two_concurrent_inits_exactly_one_succeeds() {
    let h = Harness::new();
    let (a, b) = tokio::join!(h.engine.init(params(3, 2)), h.engine.init(params(3, 2)));
    let ok = [a.is_ok(), b.is_ok()];
    assert_eq!(ok.iter().filter(|ok| **ok).count(), 1, "{a:?} {b:?}");
    for result in [a, b] {
        if let Err(error) = result {
            assert!(
                matches!(error, EngineError::AlreadyInitialized),
                "{error:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_two_concurrent_inits_on_two_engines_exactly_one_succeeds() {
    let h = Harness::new();
    let other = h.another_engine();
    let first = h.engine.clone();
    let a = tokio::spawn(async move { first.init(crate::support::params(3, 2)).await });
    let b = tokio::spawn(async move { other.init(crate::support::params(3, 2)).await });
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    assert_eq!(
        usize::from(a.is_ok()) + usize::from(b.is_ok()),
        1,
        "{a:?} {b:?}"
    );
    for result in [a, b] {
        if let Err(error) = result {
            assert!(
                matches!(error, EngineError::AlreadyInitialized),
                "{error:?}"
            );
        }
    }
}

#[tokio::test]
async fn after_init_the_engine_is_sealed_with_the_requested_split() {
    let h = Harness::new();
    h.init(5, 3).await;
    let status = h.engine.seal_status().await.unwrap();
    assert!(status.initialized);
    assert!(status.sealed);
    assert_eq!(status.threshold, 3);
    assert_eq!(status.shares, 5);
    assert_eq!(status.progress, 0);
    assert_eq!(status.nonce, "");
    // Cluster identity is only shown once unsealed.
    assert_eq!(status.cluster_name, None);
    assert_eq!(status.cluster_id, None);
    assert_eq!(status.active_since, None);
}

#[tokio::test]
async fn init_returns_n_distinct_33_byte_shares_and_a_root_token() {
    let h = Harness::new();
    let output = h.init(5, 3).await;
    assert_eq!(output.shares.len(), 5);
    for share in &output.shares {
        assert_eq!(share.len(), 33);
        assert_ne!(share[32], 0, "x-coordinate 0 would reveal the secret");
    }
    let mut xs: Vec<u8> = output.shares.iter().map(|share| share[32]).collect();
    xs.sort_unstable();
    xs.dedup();
    assert_eq!(xs.len(), 5, "x-coordinates must be distinct");
    assert!(output.root_token.starts_with("custos_token_"));
    assert_eq!(output.root_token.len(), "custos_token_".len() + 36);
}

#[tokio::test]
async fn two_inits_produce_different_secrets() {
    let (a, b) = (Harness::new(), Harness::new());
    let (a, b) = (a.init(1, 1).await, b.init(1, 1).await);
    assert_ne!(a.shares[0], b.shares[0]);
    assert_ne!(a.root_token, b.root_token);
}

#[tokio::test]
async fn init_with_an_empty_root_token_id_is_refused() {
    let h = Harness::new();
    let mut request = params(1, 1);
    request.root_token = Some(zeroize::Zeroizing::new(String::new()));
    let message = invalid_request(h.engine.init(request).await);
    assert_eq!(message, "root token id is empty");
    assert!(!h.engine.is_initialized().await.unwrap());
}

#[tokio::test]
async fn dev_init_with_a_custom_root_token_is_unsealed_and_the_token_works() {
    let h = Harness::new();
    let token = zeroize::Zeroizing::new("dev-root".to_owned());
    let output = h.engine.dev_init(Some(token)).await.unwrap();
    assert_eq!(output.root_token.as_str(), "dev-root");
    assert_eq!(output.shares.len(), 1);
    assert!(!h.engine.is_sealed());
    let caller = h
        .engine
        .authenticate(Some("dev-root"), &custos_engine::Connection::default())
        .await
        .unwrap();
    assert!(caller.is_root());
    assert_eq!(caller.display_name, "root");
}

#[tokio::test]
async fn dev_init_without_a_token_generates_one() {
    let h = Harness::new();
    let output = h.engine.dev_init(None).await.unwrap();
    assert!(output.root_token.starts_with("custos_token_"));
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
async fn root_tokens_are_checksummed_custos_tokens() {
    let harness = crate::support::Harness::new();
    let output = harness.init(1, 1).await;
    let token = custos_core::ApiKey::parse(&output.root_token).unwrap();
    assert!(token.is_custos_token());
}
