//! A sealed server answers 503 to everything but the seal life cycle endpoints.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::support::{SEALED, fresh, req, sealed, unsealed};

#[tokio::test]
async fn protected_and_unknown_paths_are_503_sealed() {
    let (server, init) = sealed().await;
    for (method, uri) in [
        (Method::GET, "/v1/sys/key-status"),
        (Method::PUT, "/v1/sys/rotate"),
        (Method::POST, "/v1/sys/rotate"),
        (Method::PUT, "/v1/sys/rotate/keyring"),
        (Method::GET, "/v1/sys/leader"),
        (Method::GET, "/v1/secret/data/foo"),
        (Method::PUT, "/v1/secret/data/foo"),
        (Method::GET, "/v1/sys/mounts"),
    ] {
        // With or without the (valid) root token: nothing can be checked while sealed.
        for token in [None, Some(init.root_token.as_str())] {
            let mut request = req(method.clone(), uri);
            if let Some(token) = token {
                request = request.token(token);
            }
            let reply = server.send(request).await;
            assert_eq!(
                reply.status,
                StatusCode::SERVICE_UNAVAILABLE,
                "{method} {uri}"
            );
            reply.assert_error(StatusCode::SERVICE_UNAVAILABLE, "sealed", &[SEALED]);
        }
    }
}

#[tokio::test]
async fn unknown_paths_before_init_are_503_sealed() {
    let server = fresh();
    let reply = server.get("/v1/secret/data/foo").await;
    reply.assert_error(StatusCode::SERVICE_UNAVAILABLE, "sealed", &[SEALED]);
}

#[tokio::test]
async fn the_seal_life_cycle_endpoints_answer_while_sealed() {
    let (server, init) = sealed().await;
    assert_eq!(
        server.get("/v1/sys/health").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(server.get("/v1/sys/health").await.json()["sealed"], true);
    assert_eq!(
        server.get("/v1/sys/seal-status").await.status,
        StatusCode::OK
    );
    assert_eq!(
        server.get("/v1/sys/init").await.json(),
        json!({ "initialized": true })
    );
    let reply = server.unseal(&init.keys[0]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["progress"], 1);
}

#[tokio::test]
async fn sealing_a_sealed_server_is_204_without_a_token() {
    // Vault's SealWithRequest returns early when already sealed, before any token check.
    let (server, _) = sealed().await;
    let reply = server.send(req(Method::PUT, "/v1/sys/seal")).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn put_seal_with_the_root_token_seals_and_the_server_then_refuses() {
    let (server, init) = unsealed().await;
    let reply = server
        .send(req(Method::POST, "/v1/sys/seal").token(&init.root_token))
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let reply = server
        .send(req(Method::GET, "/v1/sys/key-status").token(&init.root_token))
        .await;
    reply.assert_error(StatusCode::SERVICE_UNAVAILABLE, "sealed", &[SEALED]);
    assert_eq!(
        server.get("/v1/sys/health").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // And it unseals again.
    server.unseal(&init.keys[1]).await;
    assert_eq!(server.unseal(&init.keys[2]).await.json()["sealed"], false);
    assert_eq!(server.get("/v1/sys/health").await.status, StatusCode::OK);
}

#[tokio::test]
async fn put_seal_with_a_wrong_token_is_403_and_stays_unsealed() {
    let (server, _) = unsealed().await;
    for request in [
        req(Method::PUT, "/v1/sys/seal"),
        req(Method::PUT, "/v1/sys/seal").token("s.wrong"),
    ] {
        let reply = server.send(request).await;
        reply.assert_error(
            StatusCode::FORBIDDEN,
            "permission_denied",
            &["permission denied"],
        );
    }
    assert!(!server.state.engine.is_sealed());
}

#[tokio::test]
async fn leader_when_unsealed_names_this_node() {
    let (server, _) = unsealed().await;
    let reply = server.get("/v1/sys/leader").await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    assert_eq!(body["ha_enabled"], false);
    assert_eq!(body["is_self"], true);
    assert_eq!(body["leader_address"], "");
    assert_eq!(body["leader_cluster_address"], "");
    assert!(
        body["active_time"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .is_ok()
    );
}
