//! `GET|PUT|POST /v1/sys/init` and `GET /v1/sys/seal-status`.

use axum::http::{Method, StatusCode};
use base64::Engine as _;
use serde_json::json;

use crate::support::{fresh, req, sorted};

const SEAL_STATUS_FIELDS: &[&str] = &[
    "type",
    "initialized",
    "sealed",
    "t",
    "n",
    "progress",
    "nonce",
    "recovery_seal",
    "version",
    "custos_version",
    "build_date",
    "migration",
    "storage_type",
];

#[tokio::test]
async fn seal_status_before_init_has_vaults_fields() {
    let server = fresh();
    let reply = server.get("/v1/sys/seal-status").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.keys(), sorted(SEAL_STATUS_FIELDS));
    assert_eq!(
        reply.json(),
        json!({
            "type": "shamir",
            "initialized": false,
            "sealed": true,
            "t": 0,
            "n": 0,
            "progress": 0,
            "nonce": "",
            "recovery_seal": false,
            "version": custos_api::VAULT_COMPATIBLE_VERSION,
            "custos_version": custos_api::VERSION,
            "build_date": "",
            "migration": false,
            "storage_type": "memory",
        })
    );
}

#[tokio::test]
async fn seal_status_after_init_is_sealed_with_the_split() {
    let server = fresh();
    server.init(5, 3).await;
    let reply = server.get("/v1/sys/seal-status").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.keys(), sorted(SEAL_STATUS_FIELDS));
    let body = reply.json();
    assert_eq!(body["initialized"], true);
    assert_eq!(body["sealed"], true);
    assert_eq!((body["t"].as_u64(), body["n"].as_u64()), (Some(3), Some(5)));
    assert_eq!(body["progress"], 0);
}

#[tokio::test]
async fn seal_status_when_unsealed_adds_the_cluster() {
    let server = fresh();
    server.init_unsealed(1, 1).await;
    let reply = server.get("/v1/sys/seal-status").await;
    let mut fields = SEAL_STATUS_FIELDS.to_vec();
    fields.extend(["cluster_name", "cluster_id"]);
    assert_eq!(reply.keys(), sorted(&fields));
    assert_eq!(reply.json()["sealed"], false);
}

#[tokio::test]
async fn get_init_reports_whether_initialised() {
    let server = fresh();
    let reply = server.get("/v1/sys/init").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json(), json!({ "initialized": false }));
    server.init(1, 1).await;
    let reply = server.get("/v1/sys/init").await;
    assert_eq!(reply.json(), json!({ "initialized": true }));
}

#[tokio::test]
async fn put_init_returns_hex_and_base64_keys_and_a_root_token() {
    let server = fresh();
    let reply = server
        .put(
            "/v1/sys/init",
            &json!({ "secret_shares": 5, "secret_threshold": 3 }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.keys(), sorted(&["keys", "keys_base64", "root_token"]));
    let body = reply.json();
    let keys = body["keys"].as_array().unwrap();
    let keys_base64 = body["keys_base64"].as_array().unwrap();
    assert_eq!((keys.len(), keys_base64.len()), (5, 5));
    for (hex_key, b64_key) in keys.iter().zip(keys_base64) {
        let hex_key = hex_key.as_str().unwrap();
        assert_eq!(hex_key.len(), 66);
        assert!(
            hex_key
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        let from_hex = hex::decode(hex_key).unwrap();
        let from_b64 = base64::engine::general_purpose::STANDARD
            .decode(b64_key.as_str().unwrap())
            .unwrap();
        assert_eq!(from_hex, from_b64, "both encodings carry the same share");
    }
    assert!(
        body["root_token"]
            .as_str()
            .unwrap()
            .starts_with("custos_token_")
    );
}

#[tokio::test]
async fn post_init_works_like_put() {
    let server = fresh();
    let reply = server
        .send(
            req(Method::POST, "/v1/sys/init")
                .json(&json!({ "secret_shares": 1, "secret_threshold": 1 })),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["keys"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_second_init_is_400_already_initialised() {
    let server = fresh();
    server.init(1, 1).await;
    let reply = server
        .put(
            "/v1/sys/init",
            &json!({ "secret_shares": 1, "secret_threshold": 1 }),
        )
        .await;
    reply.assert_error(
        StatusCode::BAD_REQUEST,
        "already_initialized",
        &["Vault is already initialized"],
    );
}

#[tokio::test]
async fn init_validation_errors_are_400_with_vaults_messages() {
    let server = fresh();
    let cases = [
        (
            json!({}),
            "invalid seal configuration: shares must be at least one",
        ),
        (
            json!({ "secret_shares": 3, "secret_threshold": 1 }),
            "invalid seal configuration: threshold must be greater than one for multiple shares",
        ),
        (
            json!({ "secret_shares": 2, "secret_threshold": 3 }),
            "invalid seal configuration: threshold cannot be larger than shares",
        ),
        (
            json!({ "secret_shares": 256, "secret_threshold": 2 }),
            "invalid seal configuration: shares must be less than 256",
        ),
    ];
    for (body, message) in cases {
        let reply = server.put("/v1/sys/init", &body).await;
        reply.assert_error(StatusCode::BAD_REQUEST, "invalid_request", &[message]);
    }
    assert_eq!(
        server.get("/v1/sys/init").await.json(),
        json!({ "initialized": false })
    );
}

#[tokio::test]
async fn init_with_pgp_keys_or_recovery_shares_is_refused() {
    let server = fresh();
    for body in [
        json!({ "secret_shares": 1, "secret_threshold": 1, "pgp_keys": ["abc"] }),
        json!({ "secret_shares": 1, "secret_threshold": 1, "root_token_pgp_key": "abc" }),
        json!({ "secret_shares": 1, "secret_threshold": 1, "recovery_shares": 1 }),
        json!({ "secret_shares": 1, "secret_threshold": 1, "stored_shares": 1 }),
    ] {
        let reply = server.put("/v1/sys/init", &body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(reply.header("x-custos-error-code"), Some("invalid_request"));
    }
    assert_eq!(
        server.get("/v1/sys/init").await.json(),
        json!({ "initialized": false })
    );
}

#[tokio::test]
async fn init_accepts_go_style_nulls_and_unknown_fields() {
    let server = fresh();
    let reply = server
        .put(
            "/v1/sys/init",
            &json!({
                "secret_shares": 1,
                "secret_threshold": 1,
                "pgp_keys": null,
                "root_token_pgp_key": null,
                "something_new": true,
            }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json());
}
