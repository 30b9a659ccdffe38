//! Request bodies: malformed JSON, wrong types, empty bodies and the size limit.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::support::{Server, fresh, req, sealed, state, unsealed};

#[tokio::test]
async fn malformed_json_is_400_failed_to_decode() {
    let server = fresh();
    for uri in ["/v1/sys/init", "/v1/sys/unseal"] {
        let reply = server.send(req(Method::PUT, uri).raw("{bad")).await;
        reply.assert_bad_request_starting("invalid_json", "failed to decode JSON input: ");
    }
}

#[tokio::test]
async fn wrong_field_types_for_init_are_400_failed_to_decode() {
    let server = fresh();
    for body in [
        json!({ "secret_shares": "x" }),
        json!({ "secret_shares": -1, "secret_threshold": 1 }),
        json!({ "secret_shares": 1.5 }),
        json!({ "secret_threshold": [] }),
        json!("init"),
    ] {
        let reply = server.put("/v1/sys/init", &body).await;
        reply.assert_bad_request_starting("invalid_json", "failed to decode JSON input: ");
    }
    assert_eq!(
        server.get("/v1/sys/init").await.json(),
        json!({ "initialized": false })
    );
}

#[tokio::test]
async fn an_empty_or_blank_body_reads_as_an_empty_object() {
    let server = fresh();
    let reply = server
        .send(req(Method::PUT, "/v1/sys/init").raw(" \n"))
        .await;
    // `{}` means zero shares.
    reply.assert_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        &["invalid seal configuration: shares must be at least one"],
    );
}

#[tokio::test]
async fn an_empty_body_to_put_seal_is_accepted() {
    let (server, init) = unsealed().await;
    let reply = server
        .send(req(Method::PUT, "/v1/sys/seal").token(&init.root_token))
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert!(reply.bytes.is_empty());
    assert!(server.state.engine.is_sealed());
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_with_a_json_error() {
    // sys/init and sys/unseal need no token, so they have a small fixed limit, whatever
    // listener.max_request_bytes says.
    let mut generous = state();
    generous.max_request_bytes = 1024 * 1024;
    let server = Server::new(generous);
    let big = format!(
        r#"{{"secret_shares":1,"secret_threshold":1,"pad":"{}"}}"#,
        "x".repeat(custos_server::SMALL_BODY_BYTES)
    );
    let message = format!(
        "request body is larger than the limit of {} bytes",
        custos_server::SMALL_BODY_BYTES
    );
    for uri in ["/v1/sys/init", "/v1/sys/unseal"] {
        let reply = server.send(req(Method::PUT, uri).raw(big.clone())).await;
        reply.assert_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            &[&message],
        );
    }
    // Nothing was initialised by the refused request.
    assert!(!server.state.engine.is_initialized().await.unwrap());
    // A body under the limit still works.
    let reply = server
        .put(
            "/v1/sys/init",
            &json!({ "secret_shares": 1, "secret_threshold": 1 }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn a_body_exactly_at_the_limit_is_accepted() {
    let server = fresh();
    let head = r#"{"secret_shares":1,"secret_threshold":1,"pad":""#;
    let pad = "x".repeat(custos_server::SMALL_BODY_BYTES - head.len() - 2);
    let body = format!("{head}{pad}\"}}");
    assert_eq!(body.len(), custos_server::SMALL_BODY_BYTES);
    let reply = server
        .send(req(Method::PUT, "/v1/sys/init").raw(body))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json());
}

#[tokio::test]
async fn a_wrong_content_type_is_still_read_as_json() {
    // Vault's CLI and many clients send no content type; the body is JSON regardless.
    let (server, init) = sealed().await;
    let body = serde_json::to_string(&json!({ "key": init.keys[0] })).unwrap();
    let reply = server
        .send(
            req(Method::PUT, "/v1/sys/unseal")
                .header("content-type", "text/plain")
                .raw(body),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["progress"], 1);
}
