//! Every sys route × every method × every seal state, without a token: nothing protected ever
//! succeeds, nothing fails with a 5xx other than 503, and nothing changes the seal state.

use axum::http::{Method, StatusCode};

use crate::support::{Server, fresh, req, sealed, unsealed};

/// The server's own routes, from the table the router registers.
fn routes() -> Vec<custos_server::ExplicitRoute> {
    custos_server::explicit_routes()
}

fn methods() -> [Method; 7] {
    [
        Method::GET,
        Method::HEAD,
        Method::PUT,
        Method::POST,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
    ]
}

async fn check_all(server: &Server, state: &str) {
    let sealed_before = server.state.engine.is_sealed();
    let initialised_before = server.state.engine.is_initialized().await.unwrap();
    let mut checked = 0;
    let routes = routes();
    for explicit in &routes {
        let route = &explicit.path;
        for method in methods() {
            for body in [None, Some("{}")] {
                let mut request = req(method.clone(), route);
                if let Some(body) = body {
                    request = request.raw(body);
                }
                let reply = server.send(request).await;
                let status = reply.status;
                let what = format!("{state}: {method} {route} body {body:?} -> {status}");
                // 503 is "sealed"; 501 is only health's "not initialised".
                let allowed_5xx = status == StatusCode::SERVICE_UNAVAILABLE
                    || (status == StatusCode::NOT_IMPLEMENTED && *route == "/v1/sys/health");
                assert!(!status.is_server_error() || allowed_5xx, "{what}");
                // `sys/seal` on a sealed server has nothing to protect.
                let protected = explicit.access != custos_server::Access::Public
                    && !(*route == "/v1/sys/seal" && sealed_before);
                if protected {
                    assert!(!status.is_success(), "{what}");
                }
                let health_answer =
                    *route == "/v1/sys/health" && (method == Method::GET || method == Method::HEAD);
                if method != Method::HEAD && !status.is_success() && !health_answer {
                    // Errors are always Vault's JSON shape (health's 501/503 carry its body).
                    assert!(reply.json()["errors"].is_array(), "{what}");
                    assert!(reply.header("x-custos-error-code").is_some(), "{what}");
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, routes.len() * 7 * 2);
    assert_eq!(
        server.state.engine.is_sealed(),
        sealed_before,
        "{state}: seal state changed"
    );
    assert_eq!(
        server.state.engine.is_initialized().await.unwrap(),
        initialised_before,
        "{state}: init state changed"
    );
}

#[tokio::test]
async fn no_tokenless_request_succeeds_on_a_protected_route_before_init() {
    check_all(&fresh(), "uninitialised").await;
}

#[tokio::test]
async fn no_tokenless_request_succeeds_on_a_protected_route_while_sealed() {
    let (server, _) = sealed().await;
    check_all(&server, "sealed").await;
}

#[tokio::test]
async fn no_tokenless_request_succeeds_on_a_protected_route_while_unsealed() {
    let (server, _) = unsealed().await;
    check_all(&server, "unsealed").await;
}
