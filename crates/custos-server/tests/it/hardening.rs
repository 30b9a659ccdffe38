//! Hardening of the HTTP layer without a socket: tokens and the seal are checked before a body
//! is read, bodies are bounded (per endpoint, in shape, and in total), and the seal life cycle
//! endpoints are limited to given networks and rates.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::http::{Method, StatusCode};
use custos_core::Cidr;
use custos_server::{BodyBudget, PeerInfo, RateLimiter};
use serde_json::json;

use crate::support::{Req, Server, fresh, req, sealed, state, unsealed};

/// A body that sends a few bytes and then nothing, ever: reading it to the end hangs.
struct Stalling {
    first: Option<Bytes>,
}

impl HttpBody for Stalling {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        match self.first.take() {
            Some(bytes) => Poll::Ready(Some(Ok(hyper::body::Frame::data(bytes)))),
            None => Poll::Pending,
        }
    }
}

fn stalling(declared: u64) -> (Body, String) {
    (
        Body::new(Stalling {
            first: Some(Bytes::from_static(b"{\"data\": {\"a\": \"")),
        }),
        declared.to_string(),
    )
}

/// Sends a request whose body never completes, declaring `declared` bytes; the answer must come
/// without reading the body to its end.
async fn send_stalling(server: &Server, request: Req, declared: u64) -> crate::support::Reply {
    let (body, length) = stalling(declared);
    let request = request.header("content-length", &length).raw(body);
    tokio::time::timeout(Duration::from_secs(10), server.send(request))
        .await
        .expect("answered before the body was read")
}

fn from(address: &str) -> PeerInfo {
    PeerInfo {
        remote_addr: SocketAddr::new(address.parse().unwrap(), 40000),
        certificates: None,
    }
}

#[tokio::test]
async fn a_write_without_a_valid_token_is_refused_before_its_body_is_read() {
    let (server, _init) = unsealed().await;
    for token in [None, Some("custos_token_wrong")] {
        let mut request = req(Method::PUT, "/v1/secret/data/app");
        if let Some(token) = token {
            request = request.token(token);
        }
        let reply = send_stalling(&server, request, 1024 * 1024).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN);
        assert_eq!(
            reply.header("x-custos-error-code"),
            Some("permission_denied")
        );
    }
}

#[tokio::test]
async fn a_small_write_without_a_valid_token_is_refused_by_the_engine() {
    let (server, _init) = unsealed().await;
    for token in [None, Some("custos_token_wrong")] {
        let mut request = req(Method::PUT, "/v1/secret/data/app").json(&json!({ "data": {} }));
        if let Some(token) = token {
            request = request.token(token);
        }
        let reply = server.send(request).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN);
    }
    // Chunked (no declared length) is checked before reading, like a large body.
    let (body, _) = stalling(0);
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        server.send(req(Method::PUT, "/v1/secret/data/app").raw(body)),
    )
    .await
    .expect("answered before the body was read");
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_write_to_a_sealed_server_is_refused_before_its_body_is_read() {
    let (server, init) = sealed().await;
    let request = req(Method::PUT, "/v1/secret/data/app").token(&init.root_token);
    let reply = send_stalling(&server, request, 1024).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    for uri in ["/v1/sys/leaks", "/v1/sys/wrapping/unwrap"] {
        let reply = send_stalling(&server, req(Method::PUT, uri), 1024).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{uri}");
    }
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_413_before_the_body_is_read() {
    let (server, init) = unsealed().await;
    let limit = server.state.max_request_bytes as u64;
    let request = req(Method::PUT, "/v1/secret/data/app").token(&init.root_token);
    let reply = send_stalling(&server, request, limit + 1).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    for (uri, limit) in [
        ("/v1/sys/init", custos_server::SMALL_BODY_BYTES),
        ("/v1/sys/unseal", custos_server::SMALL_BODY_BYTES),
        ("/v1/sys/wrapping/unwrap", custos_server::SMALL_BODY_BYTES),
        ("/v1/sys/wrapping/lookup", custos_server::SMALL_BODY_BYTES),
        ("/v1/sys/leaks", custos_server::LEAKS_BODY_BYTES),
    ] {
        let reply = send_stalling(&server, req(Method::PUT, uri), limit as u64 + 1).await;
        assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "{uri}");
    }
}

async fn mount_kv(server: &Server, token: &str) {
    let reply = server
        .send(
            req(Method::POST, "/v1/sys/mounts/secret")
                .token(token)
                .json(&json!({ "type": "kv", "options": { "version": "2" } })),
        )
        .await;
    assert!(
        reply.status.is_success(),
        "{}",
        String::from_utf8_lossy(&reply.bytes)
    );
}

#[tokio::test]
async fn the_default_body_limit_fits_the_largest_secret_and_no_more() {
    assert_eq!(
        custos_server::DEFAULT_MAX_REQUEST_BYTES,
        1024 * 1024 + 64 * 1024
    );
    let (server, init) = unsealed().await;
    mount_kv(&server, &init.root_token).await;
    let big = json!({ "data": { "blob": "x".repeat(1024 * 1024 - 64) } });
    let reply = server
        .send(
            req(Method::PUT, "/v1/secret/data/big")
                .token(&init.root_token)
                .json(&big),
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&reply.bytes)
    );
    let too_big =
        json!({ "data": { "blob": "x".repeat(custos_server::DEFAULT_MAX_REQUEST_BYTES) } });
    let reply = server
        .send(
            req(Method::PUT, "/v1/secret/data/big")
                .token(&init.root_token)
                .json(&too_big),
        )
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn deep_or_key_heavy_json_is_400_before_parsing() {
    let (server, init) = unsealed().await;
    mount_kv(&server, &init.root_token).await;
    let depth = custos_server::MAX_JSON_DEPTH;
    let deep = format!("{{\"data\": {}1{}}}", "[".repeat(depth), "]".repeat(depth));
    let reply = server
        .send(
            req(Method::PUT, "/v1/secret/data/deep")
                .token(&init.root_token)
                .raw(deep),
        )
        .await;
    reply.assert_bad_request_starting(
        "invalid_json",
        "failed to decode JSON input: nesting deeper",
    );
    let mut many = String::from("{\"data\": {");
    for index in 0..custos_server::MAX_JSON_KEYS {
        many.push_str(&format!("\"{index}\":1,"));
    }
    many.push_str("\"last\":1}}");
    let reply = server
        .send(
            req(Method::PUT, "/v1/secret/data/keys")
                .token(&init.root_token)
                .raw(many),
        )
        .await;
    reply.assert_bad_request_starting(
        "invalid_json",
        "failed to decode JSON input: more object keys",
    );
    let deep_init = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
    let reply = server
        .send(req(Method::PUT, "/v1/sys/unseal").raw(deep_init))
        .await;
    reply.assert_bad_request_starting(
        "invalid_json",
        "failed to decode JSON input: nesting deeper",
    );
}

#[tokio::test]
async fn bodies_wait_for_the_budget_and_then_get_429() {
    let mut limited = state();
    limited.max_request_bytes = 300 * 1024;
    limited.body_budget = BodyBudget::new(300 * 1024);
    let server = Server::new(limited);
    let init = server.init_unsealed(1, 1).await;
    // One body holds (almost) the whole budget while the rest of it trickles in.
    let held = 300 * 1024 - 8;
    let holder = {
        let server = Server::new(server.state.clone());
        let token = init.root_token.clone();
        tokio::spawn(async move {
            let mut first = b"{\"data\": {\"a\": \"".to_vec();
            first.resize(held, b'x');
            let body = Body::new(Stalling {
                first: Some(Bytes::from(first)),
            });
            let request = req(Method::PUT, "/v1/secret/data/slow")
                .token(&token)
                .header("content-length", &(300 * 1024).to_string())
                .raw(body);
            server.send(request).await
        })
    };
    for _ in 0..250 {
        if server.state.body_budget.available() == 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.state.body_budget.available(), 8);
    let reply = server
        .send(
            req(Method::PUT, "/v1/secret/data/other")
                .token(&init.root_token)
                .json(&json!({ "data": { "a": "b" } })),
        )
        .await;
    reply.assert_error(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        &["the server is receiving too many request bodies at once; retry later"],
    );
    // Reads need no budget.
    let reply = server
        .send(req(Method::GET, "/v1/secret/data/other").token(&init.root_token))
        .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    holder.abort();
    let _ = holder.await;
    assert_eq!(
        server.state.body_budget.available(),
        300 * 1024,
        "the budget comes back"
    );
}

#[tokio::test]
async fn unseal_from_outside_the_allowed_networks_is_403() {
    let mut restricted = state();
    restricted.seal_allowed_networks = Some(Arc::new(vec!["10.0.0.0/8".parse::<Cidr>().unwrap()]));
    let server = Server::new(restricted);
    let body = json!({ "secret_shares": 1, "secret_threshold": 1 });
    for uri in [
        "/v1/sys/init",
        "/v1/sys/unseal",
        "/v1/sys/generate-root/attempt",
    ] {
        let reply = server
            .send(
                req(Method::PUT, uri)
                    .extension(from("127.0.0.1"))
                    .json(&body),
            )
            .await;
        reply.assert_error(
            StatusCode::FORBIDDEN,
            "permission_denied",
            &["permission denied: this endpoint is not reachable from your network address"],
        );
    }
    // Reading the status stays open to all.
    let reply = server
        .send(req(Method::GET, "/v1/sys/init").extension(from("127.0.0.1")))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let reply = server
        .send(req(Method::GET, "/v1/sys/seal-status").extension(from("127.0.0.1")))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(!server.state.engine.is_initialized().await.unwrap());
    let reply = server
        .send(
            req(Method::PUT, "/v1/sys/init")
                .extension(from("10.1.2.3"))
                .json(&body),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn unseal_and_leaks_are_rate_limited_per_source_address() {
    let mut limited = state();
    limited.unseal_rate_limit = Arc::new(RateLimiter::new(2));
    limited.leaks_rate_limit = Arc::new(RateLimiter::new(1));
    let server = Server::new(limited);
    let init = server.init(3, 2).await;
    for _ in 0..2 {
        let reply = server
            .send(
                req(Method::PUT, "/v1/sys/unseal")
                    .extension(from("192.0.2.1"))
                    .json(&json!({ "reset": true })),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    let reply = server
        .send(
            req(Method::PUT, "/v1/sys/unseal")
                .extension(from("192.0.2.1"))
                .json(&json!({ "key": init.keys[0] })),
        )
        .await;
    reply.assert_error(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        &["too many requests from your address; retry later"],
    );
    let reply = server
        .send(
            req(Method::PUT, "/v1/sys/unseal")
                .extension(from("192.0.2.2"))
                .json(&json!({ "key": init.keys[0] })),
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "another address has its own budget"
    );
    let leak = json!({ "leaks": [] });
    let first = server
        .send(
            req(Method::PUT, "/v1/sys/leaks")
                .extension(from("192.0.2.1"))
                .json(&leak),
        )
        .await;
    assert_ne!(first.status, StatusCode::TOO_MANY_REQUESTS);
    let second = server
        .send(
            req(Method::PUT, "/v1/sys/leaks")
                .extension(from("192.0.2.1"))
                .json(&leak),
        )
        .await;
    assert_eq!(second.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn reads_take_no_budget_and_no_body() {
    let server = fresh();
    let init = server.init_unsealed(1, 1).await;
    let before = server.state.body_budget.available();
    let request = req(Method::GET, "/v1/secret/data/x").token(&init.root_token);
    let reply = send_stalling(&server, request, 1024).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(server.state.body_budget.available(), before);
}

#[tokio::test]
async fn a_client_that_declares_a_body_and_stalls_holds_only_what_it_sent() {
    let (server, _init) = unsealed().await;
    let total = server.state.body_budget.bytes();
    let stalled = {
        let server = Server::new(server.state.clone());
        tokio::spawn(async move {
            let (body, length) = stalling(custos_server::LEAKS_BODY_BYTES as u64);
            let request = req(Method::PUT, "/v1/sys/leaks")
                .header("content-length", &length)
                .raw(body);
            server.send(request).await
        })
    };
    let sent = b"{\"data\": {\"a\": \"".len();
    for _ in 0..250 {
        if server.state.body_budget.available() == total - sent {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.state.body_budget.available(), total - sent);
    stalled.abort();
    let _ = stalled.await;
    assert_eq!(server.state.body_budget.available(), total);
}
