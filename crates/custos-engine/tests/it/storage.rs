//! What reaches storage: no secret in the clear, a fixed layout, and corruption failing closed.

use custos_engine::EngineError;
use custos_storage::Storage;

use crate::support::{Harness, unseal_all, unseal_one};

/// Every (key, value) in the store.
async fn dump(h: &Harness) -> Vec<(String, Vec<u8>)> {
    let page = h.storage.list("", None, 0).await.unwrap();
    assert_eq!(page.next_after, None);
    let mut out = Vec::new();
    for key in page.keys {
        let entry = h.storage.get(&key).await.unwrap().unwrap();
        out.push((key, entry.value));
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[tokio::test]
async fn storage_never_holds_the_root_token_or_a_share_in_the_clear() {
    let h = Harness::new();
    let output = h.init_unsealed(5, 3).await;
    h.engine.rotate(Some(&output.root_token)).await.unwrap();
    let entries = dump(&h).await;
    assert!(!entries.is_empty());
    let token = output.root_token.as_bytes();
    let token_hex = hex_lower(token);
    for (key, value) in &entries {
        assert!(!contains(key.as_bytes(), token), "root token in key {key}");
        assert!(!contains(value, token), "root token in the value of {key}");
        assert!(
            !contains(value, token_hex.as_bytes()),
            "hex root token in {key}"
        );
        for share in &output.shares {
            // The y bytes are the secret part; the trailing x-coordinate is not.
            assert!(
                !contains(value, &share[..32]),
                "a share in the value of {key}"
            );
        }
    }
}

#[tokio::test]
async fn a_custom_root_token_is_not_stored_in_the_clear_either() {
    let h = Harness::new();
    let token = "a-very-recognisable-dev-root-token";
    h.engine
        .dev_init(Some(zeroize::Zeroizing::new(token.into())))
        .await
        .unwrap();
    for (key, value) in dump(&h).await {
        assert!(!key.contains(token), "{key}");
        assert!(
            !contains(&value, token.as_bytes()),
            "root token in the value of {key}"
        );
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[tokio::test]
async fn the_storage_layout_is_the_documented_one() {
    let h = Harness::new();
    h.init(3, 2).await;
    let keys: Vec<String> = dump(&h).await.into_iter().map(|(key, _)| key).collect();
    assert_eq!(keys.len(), 6, "{keys:?}");
    assert!(keys.contains(&"seal/config".to_owned()));
    assert!(keys.contains(&"seal/keyring".to_owned()));
    // The encryption count of term 1: init sealed three values with it (token key, root token,
    // the root token's accessor index entry).
    let count = h.storage.get("seal/encryptions/1").await.unwrap().unwrap();
    assert_eq!(count.value, 3u64.to_be_bytes());
    assert_eq!(
        keys.iter()
            .filter(|k| k.starts_with("sys/token/accessor/"))
            .count(),
        1,
        "{keys:?}"
    );
    assert!(keys.contains(&"core/token-hmac-key".to_owned()));
    let tokens: Vec<&String> = keys
        .iter()
        .filter(|k| k.starts_with("sys/token/id/"))
        .collect();
    assert_eq!(tokens.len(), 1, "{keys:?}");
    let hash = &tokens[0]["sys/token/id/".len()..];
    assert_eq!(hash.len(), 64, "{hash}");
    assert!(
        hash.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{hash}"
    );
}

#[tokio::test]
async fn the_seal_config_is_plain_json_without_secrets() {
    let h = Harness::new();
    h.init(5, 3).await;
    let entry = h.storage.get("seal/config").await.unwrap().unwrap();
    let config: serde_json::Value = serde_json::from_slice(&entry.value).unwrap();
    assert_eq!(config["type"], "shamir");
    assert_eq!(config["secret_shares"], 5);
    assert_eq!(config["secret_threshold"], 3);
    assert_eq!(config["version"], 1);
}

#[tokio::test]
async fn barrier_values_are_not_json_in_the_clear() {
    let h = Harness::new();
    h.init(1, 1).await;
    for (key, value) in dump(&h).await {
        if key.starts_with("sys/token/id/") {
            assert!(
                serde_json::from_slice::<serde_json::Value>(&value).is_err(),
                "{key}"
            );
            assert!(!contains(&value, b"policies"), "{key}");
        }
    }
}

#[tokio::test]
async fn a_garbage_keyring_makes_unseal_fail_without_unsealing() {
    let h = Harness::new();
    let output = h.init(3, 2).await;
    h.storage
        .put("seal/keyring", b"garbage".to_vec())
        .await
        .unwrap();
    unseal_one(&h.engine, &output.shares[0]).await.unwrap();
    let result = unseal_one(&h.engine, &output.shares[1]).await;
    assert!(result.is_err(), "{result:?}");
    assert!(h.engine.is_sealed());
    let status = h.engine.seal_status().await.unwrap();
    assert!(status.sealed);
    assert_eq!(status.progress, 0);
}

#[tokio::test]
async fn a_missing_keyring_makes_unseal_an_internal_error() {
    let h = Harness::new();
    let output = h.init(1, 1).await;
    h.storage.delete("seal/keyring").await.unwrap();
    let result = unseal_all_result(&h, &output.shares[0]).await;
    assert!(
        matches!(result, Err(EngineError::Internal(_))),
        "{result:?}"
    );
    assert!(h.engine.is_sealed());
}

async fn unseal_all_result(
    h: &Harness,
    share: &[u8],
) -> Result<custos_engine::SealStatus, EngineError> {
    unseal_one(&h.engine, share).await
}

#[tokio::test]
async fn a_tampered_token_entry_fails_closed() {
    let h = Harness::new();
    let output = h.init(1, 1).await;
    let keys = h.storage.list("sys/token/id/", None, 0).await.unwrap().keys;
    let mut value = h.storage.get(&keys[0]).await.unwrap().unwrap().value;
    let last = value.len() - 1;
    value[last] ^= 1;
    h.storage.put(&keys[0], value).await.unwrap();
    unseal_all(&h.engine, &output.shares).await;
    let result = h
        .engine
        .authenticate(
            Some(&output.root_token),
            &custos_engine::Connection::default(),
        )
        .await;
    assert!(
        matches!(result, Err(EngineError::Internal(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_token_entry_moved_to_another_path_does_not_open() {
    let h = Harness::new();
    let output = h.init(1, 1).await;
    let keys = h.storage.list("sys/token/id/", None, 0).await.unwrap().keys;
    let value = h.storage.get(&keys[0]).await.unwrap().unwrap().value;
    // The path is associated data: the same blob under another key is rejected.
    let moved = format!("sys/token/id/{}", "0".repeat(64));
    h.storage.put(&moved, value).await.unwrap();
    h.storage.delete(&keys[0]).await.unwrap();
    unseal_all(&h.engine, &output.shares).await;
    let result = h
        .engine
        .authenticate(
            Some(&output.root_token),
            &custos_engine::Connection::default(),
        )
        .await;
    assert!(
        matches!(result, Err(EngineError::PermissionDenied)),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_garbage_seal_config_makes_seal_status_an_internal_error() {
    let h = Harness::new();
    h.init(3, 2).await;
    h.storage
        .put("seal/config", b"{not json".to_vec())
        .await
        .unwrap();
    // The engine that ran init caches the configuration; a restarted one reads storage.
    let restarted = h.another_engine();
    let result = restarted.seal_status().await;
    assert!(
        matches!(result, Err(EngineError::Internal(_))),
        "{result:?}"
    );
    let result = restarted.is_initialized().await;
    assert!(
        matches!(result, Err(EngineError::Internal(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_seal_config_of_an_unknown_version_is_an_internal_error() {
    let h = Harness::new();
    h.init(3, 2).await;
    let entry = h.storage.get("seal/config").await.unwrap().unwrap();
    let mut config: serde_json::Value = serde_json::from_slice(&entry.value).unwrap();
    config["version"] = 2.into();
    h.storage
        .put("seal/config", serde_json::to_vec(&config).unwrap())
        .await
        .unwrap();
    let result = h.another_engine().seal_status().await;
    match result {
        Err(EngineError::Internal(message)) => assert!(message.contains("version 2"), "{message}"),
        other => panic!("expected Internal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_seal_config_with_a_bad_threshold_is_an_internal_error() {
    let h = Harness::new();
    h.init(3, 2).await;
    let entry = h.storage.get("seal/config").await.unwrap().unwrap();
    let mut config: serde_json::Value = serde_json::from_slice(&entry.value).unwrap();
    config["secret_threshold"] = 4.into();
    h.storage
        .put("seal/config", serde_json::to_vec(&config).unwrap())
        .await
        .unwrap();
    let result = h.another_engine().seal_status().await;
    assert!(
        matches!(result, Err(EngineError::Internal(_))),
        "{result:?}"
    );
}
