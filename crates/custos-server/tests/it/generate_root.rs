//! `sys/generate-root/*` over HTTP: Vault's shapes, no token needed, a generated OTP shown once,
//! the encoded token as unpadded base64, and the seal life cycle's guard and body limit.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{Method, StatusCode};
use base64::Engine as _;
use custos_core::Cidr;
use custos_server::{PeerInfo, RateLimiter};
use serde_json::json;

use crate::support::{Server, req, sorted, state, unsealed};

const STATUS_KEYS: &[&str] = &[
    "nonce",
    "started",
    "progress",
    "required",
    "complete",
    "encoded_token",
    "encoded_root_token",
    "pgp_fingerprint",
    "otp",
    "otp_length",
];

#[tokio::test]
async fn a_quorum_generates_a_root_token_without_any_token() {
    let (server, init) = unsealed().await;
    let idle = server.get("/v1/sys/generate-root/attempt").await;
    assert_eq!(idle.status, StatusCode::OK);
    assert_eq!(idle.keys(), sorted(STATUS_KEYS));
    let body = idle.json();
    assert_eq!(body["started"], false);
    assert_eq!(body["required"], 2);
    assert_eq!(body["otp_length"], custos_engine::OTP_LENGTH);

    // No OTP given: the server makes one and shows it in this answer only.
    let started = server
        .put("/v1/sys/generate-root/attempt", &json!({}))
        .await;
    assert_eq!(started.status, StatusCode::OK, "{}", started.json());
    let started = started.json();
    let otp = started["otp"].as_str().unwrap().to_owned();
    assert_eq!(otp.len(), custos_engine::OTP_LENGTH);
    let nonce = started["nonce"].as_str().unwrap().to_owned();
    assert_eq!(started["started"], true);
    let status = server.get("/v1/sys/generate-root/attempt").await.json();
    assert_eq!(status["otp"], "");
    assert_eq!(status["nonce"], nonce.as_str());

    let first = server
        .put(
            "/v1/sys/generate-root/update",
            &json!({ "key": init.keys[0], "nonce": nonce }),
        )
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.json());
    assert_eq!(first.json()["progress"], 1);
    assert_eq!(first.json()["complete"], false);
    let done = server
        .put(
            "/v1/sys/generate-root/update",
            &json!({ "key": init.keys_base64[2], "nonce": nonce }),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.json());
    let done = done.json();
    assert_eq!(done["complete"], true);
    let encoded = done["encoded_token"].as_str().unwrap();
    assert_eq!(done["encoded_root_token"], encoded);
    assert!(!encoded.ends_with('='), "unpadded, as Vault encodes it");
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(encoded)
        .unwrap();
    let token =
        String::from_utf8(custos_engine::xor_with_otp(&bytes, otp.as_bytes()).unwrap()).unwrap();
    let lookup = server
        .send(req(Method::GET, "/v1/auth/token/lookup-self").token(&token))
        .await;
    assert_eq!(lookup.status, StatusCode::OK);
    assert_eq!(lookup.json()["data"]["policies"], json!(["root"]));
}

#[tokio::test]
async fn mistakes_are_400_with_vaults_messages() {
    let (server, init) = unsealed().await;
    let reply = server
        .put(
            "/v1/sys/generate-root/update",
            &json!({ "key": init.keys[0], "nonce": "x" }),
        )
        .await;
    reply.assert_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        &["no root generation in progress"],
    );
    let reply = server
        .put("/v1/sys/generate-root/attempt", &json!({ "otp": "short" }))
        .await;
    reply.assert_bad_request_starting("invalid_request", "OTP string has incorrect length");
    let reply = server
        .put(
            "/v1/sys/generate-root/attempt",
            &json!({ "pgp_key": "abc" }),
        )
        .await;
    reply.assert_bad_request_starting("invalid_request", "PGP-encrypted root tokens");
    let started = server
        .put("/v1/sys/generate-root/attempt", &json!({}))
        .await;
    let nonce = started.json()["nonce"].as_str().unwrap().to_owned();
    let reply = server
        .put("/v1/sys/generate-root/attempt", &json!({}))
        .await;
    reply.assert_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        &["root generation already in progress"],
    );
    let reply = server
        .put("/v1/sys/generate-root/update", &json!({ "nonce": nonce }))
        .await;
    reply.assert_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        &["'key' must be specified in request body as JSON"],
    );
    let reply = server
        .put(
            "/v1/sys/generate-root/update",
            &json!({ "key": init.keys[0], "nonce": "wrong" }),
        )
        .await;
    reply.assert_bad_request_starting("invalid_request", "incorrect nonce supplied");
    let reply = server
        .put(
            "/v1/sys/generate-root/update",
            &json!({ "key": "%%%", "nonce": nonce }),
        )
        .await;
    reply.assert_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        &["'key' must be a valid hex or base64 string"],
    );
    // Cancel: 204, then nothing is in progress.
    let reply = server
        .send(req(Method::DELETE, "/v1/sys/generate-root/attempt"))
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(
        server.get("/v1/sys/generate-root/attempt").await.json()["started"],
        false
    );
}

#[tokio::test]
async fn a_sealed_server_answers_503() {
    let (server, _init) = crate::support::sealed().await;
    let reply = server.get("/v1/sys/generate-root/attempt").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn the_guard_and_the_body_limit_apply() {
    let mut state = state();
    state.seal_allowed_networks = Some(Arc::new(vec!["10.0.0.0/8".parse::<Cidr>().unwrap()]));
    state.unseal_rate_limit = Arc::new(RateLimiter::new(2));
    let server = Server::new(state);
    let _ = server.init_unsealed(1, 1).await;
    let from = |address: &str| PeerInfo {
        remote_addr: SocketAddr::new(address.parse().unwrap(), 40000),
        certificates: None,
    };
    let reply = server
        .send(req(Method::GET, "/v1/sys/generate-root/attempt").extension(from("192.0.2.1")))
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    for _ in 0..2 {
        let reply = server
            .send(req(Method::GET, "/v1/sys/generate-root/attempt").extension(from("10.0.0.5")))
            .await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    let reply = server
        .send(req(Method::GET, "/v1/sys/generate-root/attempt").extension(from("10.0.0.5")))
        .await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    let big = json!({ "otp": "x".repeat(custos_server::SMALL_BODY_BYTES) });
    let reply = server.put("/v1/sys/generate-root/attempt", &big).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
}
