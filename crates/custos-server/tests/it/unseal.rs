//! `PUT|POST /v1/sys/unseal`: hex and base64 keys, reset, and Vault's error messages.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::support::{fresh, req, sealed};

#[tokio::test]
async fn hex_keys_unseal_with_progress_reported_on_the_way() {
    let (server, init) = sealed().await;
    let reply = server.unseal(&init.keys[0]).await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    assert_eq!(body["type"], "shamir");
    assert_eq!(body["sealed"], true);
    assert_eq!(body["progress"], 1);
    assert_eq!((body["t"].as_u64(), body["n"].as_u64()), (Some(2), Some(3)));
    assert_eq!(body["nonce"].as_str().unwrap().len(), 36);

    let reply = server.unseal(&init.keys[2]).await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    assert_eq!(body["sealed"], false);
    assert_eq!(body["progress"], 0);
    assert_eq!(body["nonce"], "");
}

#[tokio::test]
async fn base64_keys_unseal() {
    let (server, init) = sealed().await;
    server.unseal(&init.keys_base64[1]).await;
    let reply = server.unseal(&init.keys_base64[2]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["sealed"], false);
}

#[tokio::test]
async fn hex_and_base64_keys_mix_and_surrounding_whitespace_is_ignored() {
    let (server, init) = sealed().await;
    server.unseal(&format!("  {}\n", init.keys[0])).await;
    let reply = server.unseal(&init.keys_base64[1]).await;
    assert_eq!(reply.json()["sealed"], false);
}

#[tokio::test]
async fn post_unseal_works_like_put() {
    let (server, init) = sealed().await;
    for key in &init.keys[..2] {
        let reply = server
            .send(req(Method::POST, "/v1/sys/unseal").json(&json!({ "key": key })))
            .await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    assert!(!server.state.engine.is_sealed());
}

#[tokio::test]
async fn reset_clears_progress() {
    let (server, init) = sealed().await;
    assert_eq!(server.unseal(&init.keys[0]).await.json()["progress"], 1);
    let reply = server
        .put("/v1/sys/unseal", &json!({ "reset": true }))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    assert_eq!(body["sealed"], true);
    assert_eq!(body["progress"], 0);
    assert_eq!(body["nonce"], "");
    // The first key counts as 1 again, not as a completion.
    assert_eq!(server.unseal(&init.keys[1]).await.json()["progress"], 1);
}

#[tokio::test]
async fn reset_wins_over_a_key_in_the_same_request() {
    let (server, init) = sealed().await;
    server.unseal(&init.keys[0]).await;
    let reply = server
        .put(
            "/v1/sys/unseal",
            &json!({ "reset": true, "key": init.keys[1] }),
        )
        .await;
    assert_eq!(reply.json()["progress"], 0);
    assert_eq!(reply.json()["sealed"], true);
}

#[tokio::test]
async fn missing_key_is_400_with_vaults_message() {
    let (server, _) = sealed().await;
    let message = "'key' must be specified in request body as JSON, or 'reset' set to true";
    for body in [
        json!({}),
        json!({ "key": "" }),
        json!({ "key": null }),
        json!({ "reset": false }),
    ] {
        let reply = server.put("/v1/sys/unseal", &body).await;
        reply.assert_error(StatusCode::BAD_REQUEST, "invalid_request", &[message]);
    }
}

#[tokio::test]
async fn a_key_that_is_neither_hex_nor_base64_is_400() {
    let (server, _) = sealed().await;
    let reply = server.unseal("zz!").await;
    reply.assert_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        &["'key' must be a valid hex or base64 string"],
    );
}

#[tokio::test]
async fn keys_of_the_wrong_length_are_400_with_vaults_messages() {
    let (server, init) = sealed().await;
    server.unseal(&init.keys[0]).await;
    let reply = server.unseal("abcd").await;
    reply.assert_error(
        StatusCode::BAD_REQUEST,
        "invalid_unseal_key",
        &["invalid key: key is shorter than minimum 16 bytes"],
    );
    let reply = server.unseal(&"ab".repeat(34)).await;
    reply.assert_error(
        StatusCode::BAD_REQUEST,
        "invalid_unseal_key",
        &["invalid key: key is longer than maximum 33 bytes"],
    );
    let reply = server.unseal(&"ab".repeat(32)).await;
    reply.assert_error(
        StatusCode::BAD_REQUEST,
        "invalid_unseal_key",
        &["invalid key: unseal keys are 33 bytes, this one is 32"],
    );
    // None of these counted or reset anything.
    let reply = server.get("/v1/sys/seal-status").await;
    assert_eq!(reply.json()["progress"], 1);
}

#[tokio::test]
async fn a_key_of_the_wrong_json_type_is_a_json_decoding_error() {
    let (server, _) = sealed().await;
    for body in [
        json!({ "key": 5 }),
        json!({ "reset": "yes" }),
        json!("key"),
        json!(5),
    ] {
        let reply = server.put("/v1/sys/unseal", &body).await;
        reply.assert_bad_request_starting("invalid_json", "failed to decode JSON input");
    }
}

#[tokio::test]
async fn a_json_array_body_is_refused() {
    // serde alone would read a struct from a sequence; Vault accepts only objects.
    let (server, init) = sealed().await;
    let reply = server.put("/v1/sys/unseal", &json!([init.keys[0]])).await;
    reply.assert_bad_request_starting("invalid_json", "failed to decode JSON input");
    assert_eq!(
        server.get("/v1/sys/seal-status").await.json()["progress"],
        0
    );
}

#[tokio::test]
async fn keys_of_another_cluster_are_400_and_reset_progress() {
    let (ours, _) = sealed().await;
    let (_, theirs) = sealed().await;
    ours.unseal(&theirs.keys[0]).await;
    let reply = ours.unseal(&theirs.keys[1]).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        reply.header("x-custos-error-code"),
        Some("invalid_unseal_key")
    );
    let body = ours.get("/v1/sys/seal-status").await.json();
    assert_eq!(
        (body["sealed"].as_bool(), body["progress"].as_u64()),
        (Some(true), Some(0))
    );
}

#[tokio::test]
async fn unseal_before_init_is_400_not_initialised() {
    let server = fresh();
    let reply = server.unseal(&"ab".repeat(33)).await;
    reply.assert_error(
        StatusCode::BAD_REQUEST,
        "not_initialized",
        &["Vault is not initialized"],
    );
}

#[tokio::test]
async fn unseal_when_unsealed_reports_unsealed() {
    let (server, init) = sealed().await;
    server.unseal(&init.keys[0]).await;
    server.unseal(&init.keys[1]).await;
    let reply = server.unseal(&init.keys[2]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["sealed"], false);
}

#[tokio::test]
async fn a_share_naming_a_past_round_is_a_clear_400_and_changes_nothing() {
    let (server, init) = sealed().await;
    let nonce = server.unseal(&init.keys[0]).await.json()["nonce"]
        .as_str()
        .unwrap()
        .to_owned();
    let reply = server
        .send(req(Method::PUT, "/v1/sys/unseal").json(&json!({"reset": true})))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    for body in [
        json!({"key": init.keys[1], "nonce": nonce}),
        json!({"reset": true, "nonce": nonce}),
    ] {
        let reply = server
            .send(req(Method::PUT, "/v1/sys/unseal").json(&body))
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(reply.header("x-custos-error-code"), Some("invalid_request"));
        assert_eq!(
            reply.json()["errors"][0],
            "unseal nonce does not match the current round: progress was reset by someone else; start again"
        );
    }
    let reply = server.send(req(Method::GET, "/v1/sys/seal-status")).await;
    assert_eq!(reply.json()["progress"], 0);
    // The nonce of the round in progress is accepted.
    let nonce = server.unseal(&init.keys[1]).await.json()["nonce"]
        .as_str()
        .unwrap()
        .to_owned();
    let reply = server
        .send(
            req(Method::PUT, "/v1/sys/unseal").json(&json!({"key": init.keys[2], "nonce": nonce})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["sealed"], false);
}
