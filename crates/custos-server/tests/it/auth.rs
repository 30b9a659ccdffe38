//! Tokens over HTTP: `X-Vault-Token` and `Authorization: Bearer`, unknown paths and methods.

use axum::http::{Method, StatusCode};

use crate::support::{req, unsealed};

#[tokio::test]
async fn key_status_without_or_with_a_wrong_token_is_403() {
    let (server, init) = unsealed().await;
    let near_miss = format!("{}x", init.root_token);
    for request in [
        req(Method::GET, "/v1/sys/key-status"),
        req(Method::GET, "/v1/sys/key-status").token("s.wrong"),
        req(Method::GET, "/v1/sys/key-status").token(&near_miss),
        req(Method::GET, "/v1/sys/key-status").header("authorization", "Bearer s.wrong"),
        req(Method::GET, "/v1/sys/key-status").header("authorization", "Bearer "),
        // Not a bearer credential: ignored, as Vault does.
        req(Method::GET, "/v1/sys/key-status")
            .header("authorization", &format!("Basic {}", init.root_token)),
    ] {
        let reply = server.send(request).await;
        reply.assert_error(
            StatusCode::FORBIDDEN,
            "permission_denied",
            &["permission denied"],
        );
    }
}

#[tokio::test]
async fn bearer_authorization_works_like_x_vault_token() {
    let (server, init) = unsealed().await;
    let vault = server
        .send(req(Method::GET, "/v1/sys/key-status").token(&init.root_token))
        .await;
    let bearer = server
        .send(
            req(Method::GET, "/v1/sys/key-status")
                .header("authorization", &format!("Bearer {}", init.root_token)),
        )
        .await;
    assert_eq!(vault.status, StatusCode::OK);
    assert_eq!(bearer.status, StatusCode::OK);
    assert_eq!(vault.json()["term"], bearer.json()["term"]);
}

#[tokio::test]
async fn x_vault_token_takes_precedence_over_bearer() {
    let (server, init) = unsealed().await;
    let reply = server
        .send(
            req(Method::GET, "/v1/sys/key-status")
                .token("s.wrong")
                .header("authorization", &format!("Bearer {}", init.root_token)),
        )
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    // A blank X-Vault-Token falls through to the bearer token.
    let reply = server
        .send(
            req(Method::GET, "/v1/sys/key-status")
                .token(" ")
                .header("authorization", &format!("Bearer {}", init.root_token)),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn unknown_api_paths_are_404_naming_the_route_for_a_valid_token() {
    let (server, init) = unsealed().await;
    for (uri, route) in [
        ("/v1/secret/data/foo", "secret/data/foo"),
        ("/v1/sys/nope", "sys/nope"),
    ] {
        let reply = server
            .send(req(Method::GET, uri).token(&init.root_token))
            .await;
        let message = format!("no handler for route {route:?}. route entry not found.");
        reply.assert_error(StatusCode::NOT_FOUND, "not_found", &[message.as_str()]);
    }
}

#[tokio::test]
async fn unknown_api_paths_are_403_without_a_valid_token() {
    // As Vault: the route table cannot be probed anonymously.
    let (server, _) = unsealed().await;
    for token in [None, Some("not-a-token")] {
        let mut request = req(Method::GET, "/v1/secret/data/foo");
        if let Some(token) = token {
            request = request.token(token);
        }
        let reply = server.send(request).await;
        reply.assert_error(
            StatusCode::FORBIDDEN,
            "permission_denied",
            &["permission denied"],
        );
    }
}

#[tokio::test]
async fn paths_outside_the_api_are_404_with_an_empty_error_list() {
    let (server, init) = unsealed().await;
    for uri in ["/v2/sys/health", "/"] {
        let reply = server
            .send(req(Method::GET, uri).token(&init.root_token))
            .await;
        reply.assert_error(StatusCode::NOT_FOUND, "not_found", &[]);
    }
}

#[tokio::test]
async fn a_wrong_method_is_405() {
    let (server, _) = unsealed().await;
    for (method, uri) in [
        (Method::DELETE, "/v1/sys/health"),
        (Method::POST, "/v1/sys/health"),
        (Method::PUT, "/v1/sys/seal-status"),
        (Method::GET, "/v1/sys/unseal"),
        (Method::GET, "/v1/sys/rotate"),
        (Method::DELETE, "/v1/sys/key-status"),
    ] {
        let reply = server.send(req(method.clone(), uri)).await;
        assert_eq!(
            reply.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {uri}"
        );
    }
}
