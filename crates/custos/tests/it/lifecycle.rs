//! Init → unseal → seal → unseal → restart over TLS, with SQLite on disk.

use custos_client::ClientError;

use crate::support::{self, TestPki, TestServer};

fn is_sealed_error(error: &ClientError) -> bool {
    matches!(error, ClientError::Api { status: 503, code: Some(code), .. } if code == "sealed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_restart_and_stays_sealed_until_unsealed() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let config = pki.write_config(dir.path(), false, &support::sqlite_storage(dir.path()));
    let log = dir.path().join("server.log");
    let mut server = TestServer::with_config(&config, &log);
    assert!(
        server.address.starts_with("https://127.0.0.1:"),
        "{}",
        server.address
    );
    let anonymous = pki.client(&server.address, None, false);

    let status = anonymous.seal_status().await.unwrap();
    assert!(!status.initialized && status.sealed);
    let (code, health) = anonymous.health().await.unwrap();
    assert_eq!((code, health.initialized), (501, false));

    let (keys, root_token) = support::init(&anonymous, 5, 3).await;
    assert_eq!(keys.len(), 5);
    let (code, _) = anonymous.health().await.unwrap();
    assert_eq!(code, 503, "initialised but sealed");

    // Two shares are not enough; the third unseals.
    assert_eq!(anonymous.unseal(&keys[4]).await.unwrap().progress, 1);
    assert_eq!(anonymous.unseal(&keys[0]).await.unwrap().progress, 2);
    assert!(!anonymous.unseal(&keys[2]).await.unwrap().sealed);
    assert_eq!(anonymous.health().await.unwrap().0, 200);

    let root = pki.client(&server.address, Some(&root_token), false);
    root.rotate().await.unwrap();
    assert_eq!(root.key_status().await.unwrap().term, 2);

    // Seal: nothing but status answers; unseal with another set of shares.
    root.seal().await.unwrap();
    assert!(is_sealed_error(&root.key_status().await.unwrap_err()));
    support::unseal(&anonymous, &keys[1..4]).await;
    assert_eq!(root.key_status().await.unwrap().term, 2);

    // A clean stop, then a restart on the same database: sealed until unsealed again.
    assert!(server.terminate().success(), "SIGTERM should exit cleanly");
    drop(server);
    let server = TestServer::with_config(&config, &log);
    let anonymous = pki.client(&server.address, None, false);
    let root = pki.client(&server.address, Some(&root_token), false);
    let status = anonymous.seal_status().await.unwrap();
    assert!(status.initialized && status.sealed);
    assert_eq!((status.t, status.n), (3, 5));
    assert!(is_sealed_error(&root.key_status().await.unwrap_err()));
    support::unseal(
        &anonymous,
        &[keys[3].clone(), keys[1].clone(), keys[0].clone()],
    )
    .await;
    assert_eq!(
        root.key_status().await.unwrap().term,
        2,
        "rotation was kept"
    );

    // A wrong token is refused once unsealed.
    let stranger = pki.client(&server.address, Some("not-a-token"), false);
    match stranger.key_status().await.unwrap_err() {
        ClientError::Api { status, .. } => assert_eq!(status, 403),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_unseal_keys_do_not_unseal() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let config = pki.write_config(dir.path(), false, &support::sqlite_storage(dir.path()));
    let server = TestServer::with_config(&config, &dir.path().join("server.log"));
    let client = pki.client(&server.address, None, false);
    let (keys, _) = support::init(&client, 3, 2).await;
    client.unseal(&keys[0]).await.unwrap();
    let forged = "ab".repeat(33);
    match client.unseal(&forged).await.unwrap_err() {
        ClientError::Api { status, errors, .. } => {
            assert_eq!(status, 400);
            assert!(errors[0].contains("invalid key"), "{errors:?}");
        }
        other => panic!("unexpected {other:?}"),
    }
    let status = client.seal_status().await.unwrap();
    assert!(status.sealed);
    assert_eq!(status.progress, 0, "a failed attempt starts over");
    match client.unseal("abcd").await.unwrap_err() {
        ClientError::Api { status, errors, .. } => {
            assert_eq!(status, 400);
            assert!(
                errors[0].contains("shorter than minimum 16 bytes"),
                "{errors:?}"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// `PUT sys/unseal` with a raw JSON body: the status and the decoded answer.
async fn unseal_raw(
    client: &custos_client::Client,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let (status, _, bytes) = client
        .raw(
            custos_client::http::Method::PUT,
            "sys/unseal",
            Some(serde_json::to_vec(&body).unwrap()),
        )
        .await
        .unwrap();
    (status.as_u16(), serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unseal_share_for_a_reset_round_is_refused_and_changes_nothing() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let config = pki.write_config(dir.path(), false, support::MEMORY_STORAGE);
    let server = TestServer::with_config(&config, &dir.path().join("server.log"));
    let client = pki.client(&server.address, None, false);
    let (keys, _) = support::init(&client, 3, 2).await;

    // The operator starts a round and notes its nonce…
    let (status, answer) =
        unseal_raw(&client, serde_json::json!({"key": keys[0], "nonce": ""})).await;
    assert_eq!(status, 200, "{answer}");
    let nonce = answer["nonce"].as_str().unwrap().to_owned();
    assert!(!nonce.is_empty());
    assert_eq!(client.seal_status().await.unwrap().nonce, nonce);
    // …someone else resets it…
    client.unseal_reset().await.unwrap();
    // …and the operator's next share, naming the old round, is refused with a clear message.
    let (status, answer) =
        unseal_raw(&client, serde_json::json!({"key": keys[1], "nonce": nonce})).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["errors"][0]
            .as_str()
            .unwrap()
            .contains("unseal nonce does not match the current round"),
        "{answer}"
    );
    let status = client.seal_status().await.unwrap();
    assert!(status.sealed);
    assert_eq!(status.progress, 0, "the refused share was not taken");
    // A reset naming a past round is refused too.
    let (status, _) = unseal_raw(&client, serde_json::json!({"reset": true, "nonce": nonce})).await;
    assert_eq!(status, 400);

    // Starting again works, with or without nonces (bao sends none).
    let (_, answer) = unseal_raw(&client, serde_json::json!({"key": keys[1]})).await;
    let nonce = answer["nonce"].as_str().unwrap().to_owned();
    let (status, answer) =
        unseal_raw(&client, serde_json::json!({"key": keys[2], "nonce": nonce})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["sealed"], false);
}
