//! `POST /v1/sys/leaks/github` over HTTP: off (404) without configured keys, 401 with the
//! `invalid_signature` code for unsigned or wrongly signed reports, the leak body limit, and
//! 503 while sealed. Signed reports that revoke are tested end to end (`custos/tests/it`).

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use custos_engine::GithubLeakKeys;

use crate::support::{SEALED, Server, req, state};

const KEY_ID: &str = "test-key";

/// The P-256 generator point as a public key: valid, and nobody signs with it here.
const PEM: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEaxfR8uEsQkf4vOblY6RA8ncDfYEt
6zOg9KE5RdiYwpZP40Li/hp/m47n60p8D54WK84zV2sxXs7LtkBoN79R9Q==
-----END PUBLIC KEY-----";

fn configured() -> Server {
    let mut state = state();
    let mut keys = GithubLeakKeys::new();
    keys.add_pem(KEY_ID, PEM).unwrap();
    state.github_leak_keys = Arc::new(keys);
    Server::new(state)
}

async fn unsealed(server: &Server) {
    let init = server.init(1, 1).await;
    assert_eq!(server.unseal(&init.keys[0]).await.status, StatusCode::OK);
}

#[tokio::test]
async fn without_keys_the_endpoint_is_not_configured() {
    let server = Server::new(state());
    unsealed(&server).await;
    let reply = server
        .send(req(Method::POST, "/v1/sys/leaks/github").raw("[]"))
        .await;
    reply.assert_error(
        StatusCode::NOT_FOUND,
        "not_found",
        &["GitHub leak reports are not configured on this server (leaks.github_keys)"],
    );
}

#[tokio::test]
async fn unsigned_and_wrongly_signed_reports_are_401() {
    let server = configured();
    unsealed(&server).await;
    let body = r#"[{"token":"custos_token_x","type":"custos_token"}]"#;
    let cases = [
        (None, None, "missing Github-Public-Key-Identifier header"),
        (
            Some(KEY_ID),
            None,
            "missing Github-Public-Key-Signature header",
        ),
        (
            Some("other"),
            Some("MEUCIQ=="),
            "unknown Github-Public-Key-Identifier: no key in leaks.github_keys has it",
        ),
        (
            Some(KEY_ID),
            Some("not base64"),
            "Github-Public-Key-Signature is not a base64 ECDSA signature",
        ),
        (
            Some(KEY_ID),
            Some(
                "MEQCIA6C6L8ZYvZnqgV0zwrrmRab10QmIFV396gsba/WYm9oAiAI6Q+/jNaWqkgG5YhaWshTXbRwIgqIK6Ru7LxVYDbV5Q==",
            ),
            "Github-Public-Key-Signature does not verify for this body and key",
        ),
    ];
    for (key_identifier, signature, message) in cases {
        let mut request = req(Method::POST, "/v1/sys/leaks/github").raw(body);
        if let Some(key_identifier) = key_identifier {
            request = request.header("Github-Public-Key-Identifier", key_identifier);
        }
        if let Some(signature) = signature {
            request = request.header("Github-Public-Key-Signature", signature);
        }
        server.send(request).await.assert_error(
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
            &[message],
        );
    }
}

#[tokio::test]
async fn the_leak_body_limit_and_the_seal_apply() {
    let server = configured();
    let sealed = server
        .send(req(Method::POST, "/v1/sys/leaks/github").raw("[]"))
        .await;
    sealed.assert_error(StatusCode::SERVICE_UNAVAILABLE, "sealed", &[SEALED]);
    unsealed(&server).await;
    let large = "x".repeat(custos_server::LEAKS_BODY_BYTES + 1);
    let reply = server
        .send(req(Method::POST, "/v1/sys/leaks/github").raw(large))
        .await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    let reply = server.send(req(Method::GET, "/v1/sys/leaks/github")).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
}
