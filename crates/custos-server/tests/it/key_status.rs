//! `GET /v1/sys/key-status` and `PUT /v1/sys/rotate`.

use axum::http::{Method, StatusCode};

use crate::support::{req, sorted, unsealed};

#[tokio::test]
async fn key_status_has_the_fields_at_the_top_level_and_under_data() {
    let (server, init) = unsealed().await;
    let before = jiff::Timestamp::now();
    let reply = server
        .send(req(Method::GET, "/v1/sys/key-status").token(&init.root_token))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.keys(),
        sorted(&[
            "request_id",
            "lease_id",
            "renewable",
            "lease_duration",
            "data",
            "wrap_info",
            "warnings",
            "auth",
            "term",
            "install_time",
            "encryptions",
        ])
    );
    let body = reply.json();
    assert_eq!(body["request_id"], reply.header("x-request-id").unwrap());
    assert_eq!(body["lease_id"], "");
    assert_eq!(body["renewable"], false);
    assert_eq!(body["lease_duration"], 0);
    assert!(body["wrap_info"].is_null() && body["warnings"].is_null() && body["auth"].is_null());
    let mut data_keys: Vec<&String> = body["data"].as_object().unwrap().keys().collect();
    data_keys.sort();
    assert_eq!(data_keys, ["encryptions", "install_time", "term"]);
    for field in ["term", "install_time", "encryptions"] {
        assert_eq!(body[field], body["data"][field], "{field}");
    }
    assert_eq!(body["term"], 1);
    assert!(body["encryptions"].is_u64());
    let installed: jiff::Timestamp = body["install_time"].as_str().unwrap().parse().unwrap();
    let age = before.as_second() - installed.as_second();
    assert!(
        (0..=60).contains(&age),
        "installed {installed}, now {before}"
    );
}

#[tokio::test]
async fn request_ids_differ_between_requests() {
    let (server, init) = unsealed().await;
    let a = server
        .send(req(Method::GET, "/v1/sys/key-status").token(&init.root_token))
        .await;
    let b = server
        .send(req(Method::GET, "/v1/sys/key-status").token(&init.root_token))
        .await;
    assert_ne!(a.header("x-request-id"), b.header("x-request-id"));
    assert_ne!(a.json()["request_id"], b.json()["request_id"]);
}

#[tokio::test]
async fn rotate_is_204_and_advances_the_term() {
    let (server, init) = unsealed().await;
    let reply = server
        .send(req(Method::PUT, "/v1/sys/rotate").token(&init.root_token))
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert!(reply.bytes.is_empty());
    let status = server
        .send(req(Method::GET, "/v1/sys/key-status").token(&init.root_token))
        .await
        .json();
    assert_eq!(status["term"], 2);
    assert_eq!(status["data"]["term"], 2);

    // POST and the newer `sys/rotate/keyring` path rotate too.
    for (method, uri) in [
        (Method::POST, "/v1/sys/rotate"),
        (Method::PUT, "/v1/sys/rotate/keyring"),
    ] {
        let reply = server.send(req(method, uri).token(&init.root_token)).await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT);
    }
    let status = server
        .send(req(Method::GET, "/v1/sys/key-status").token(&init.root_token))
        .await
        .json();
    assert_eq!(status["term"], 4);
}

#[tokio::test]
async fn rotate_without_a_valid_token_is_403_and_does_not_rotate() {
    let (server, init) = unsealed().await;
    for request in [
        req(Method::PUT, "/v1/sys/rotate"),
        req(Method::PUT, "/v1/sys/rotate").token("s.wrong"),
    ] {
        let reply = server.send(request).await;
        reply.assert_error(
            StatusCode::FORBIDDEN,
            "permission_denied",
            &["permission denied"],
        );
    }
    let status = server
        .send(req(Method::GET, "/v1/sys/key-status").token(&init.root_token))
        .await
        .json();
    assert_eq!(status["term"], 1);
}
