//! `X-Forwarded-For` behind trusted proxies (`listener.x_forwarded_for_authorized_addrs`): the
//! client's address decides the seal life cycle's network rule and rate limit; a header from
//! anyone else, or a request without one, is refused as Vault refuses it.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{Method, StatusCode};
use custos_core::Cidr;
use custos_server::{ForwardedFor, PeerInfo, RateLimiter};
use serde_json::json;

use crate::support::{Server, req, state};

fn from(address: &str) -> PeerInfo {
    PeerInfo {
        remote_addr: SocketAddr::new(address.parse().unwrap(), 40000),
        certificates: None,
    }
}

/// A server behind the proxy 10.0.0.1, answering unseal to 203.0.113.0/24 only.
fn behind_proxy(config: ForwardedFor) -> Server {
    let mut state = state();
    state.forwarded_for = Some(Arc::new(config));
    state.seal_allowed_networks = Some(Arc::new(vec!["203.0.113.0/24".parse::<Cidr>().unwrap()]));
    Server::new(state)
}

fn proxy_config() -> ForwardedFor {
    ForwardedFor::new(vec!["10.0.0.1".parse().unwrap()])
}

async fn seal_status_via(server: &Server, peer: &str, xff: Option<&str>) -> crate::support::Reply {
    let mut request = req(Method::PUT, "/v1/sys/unseal")
        .json(&json!({ "reset": true }))
        .extension(from(peer));
    if let Some(xff) = xff {
        request = request.header("x-forwarded-for", xff);
    }
    server.send(request).await
}

#[tokio::test]
async fn the_network_rule_applies_to_the_client_behind_a_trusted_proxy() {
    let server = behind_proxy(proxy_config());
    let _ = server.init(1, 1).await;
    // The proxy itself is outside the allowed network; the client it names is inside.
    let reply = seal_status_via(&server, "10.0.0.1", Some("203.0.113.7")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json());
    let reply = seal_status_via(&server, "10.0.0.1", Some("203.0.113.7, 198.51.100.9")).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "the last hop decides");
    let reply = seal_status_via(&server, "10.0.0.1", Some("198.51.100.9, 203.0.113.7")).await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn an_untrusted_peer_or_a_missing_header_is_refused_by_default() {
    let server = behind_proxy(proxy_config());
    let reply = seal_status_via(&server, "203.0.113.7", Some("203.0.113.8")).await;
    reply.assert_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        &["client address not authorized for x-forwarded-for and configured to reject connection"],
    );
    let reply = seal_status_via(&server, "10.0.0.1", None).await;
    reply.assert_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        &["missing x-forwarded-for header and configured to reject when not present"],
    );
    // Any path, not only the guarded ones.
    let reply = server
        .send(req(Method::GET, "/v1/sys/seal-status").extension(from("192.0.2.1")))
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn lenient_settings_fall_back_to_the_peer() {
    let server = behind_proxy(ForwardedFor {
        reject_not_authorized: false,
        reject_not_present: false,
        ..proxy_config()
    });
    let _ = server.init(1, 1).await;
    // A client in the allowed network that talks directly, with or without a header of its own.
    let reply = seal_status_via(&server, "203.0.113.7", Some("198.51.100.9")).await;
    assert_eq!(reply.status, StatusCode::OK, "its header is ignored");
    let reply = seal_status_via(&server, "203.0.113.7", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    // An outsider cannot get in by naming an allowed address.
    let reply = seal_status_via(&server, "198.51.100.9", Some("203.0.113.7")).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn rate_limits_count_per_client_not_per_proxy() {
    let mut state = state();
    state.forwarded_for = Some(Arc::new(proxy_config()));
    state.unseal_rate_limit = Arc::new(RateLimiter::new(1));
    let server = Server::new(state);
    let _ = server.init(1, 1).await;
    let first = seal_status_via(&server, "10.0.0.1", Some("203.0.113.7")).await;
    assert_eq!(first.status, StatusCode::OK);
    let again = seal_status_via(&server, "10.0.0.1", Some("203.0.113.7")).await;
    assert_eq!(again.status, StatusCode::TOO_MANY_REQUESTS);
    let other = seal_status_via(&server, "10.0.0.1", Some("203.0.113.8")).await;
    assert_eq!(
        other.status,
        StatusCode::OK,
        "another client has its own budget"
    );
}
