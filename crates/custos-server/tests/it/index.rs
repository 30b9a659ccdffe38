//! `X-Vault-Index`: writes answer with the storage index they committed at, and a request that
//! sends one back waits for the node to have applied it (412 when it does not in time).

use std::time::Duration;

use axum::http::{Method, StatusCode};
use base64::Engine as _;
use custos_engine::Invalidation;
use serde_json::json;

use crate::support::{Server, req, unsealed};

fn decode(value: &str) -> u64 {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(value)
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let pieces: Vec<&str> = text.split(':').collect();
    assert_eq!(pieces.len(), 5, "{text}");
    assert_eq!(pieces[0], "v1");
    assert!(!pieces[1].is_empty(), "the cluster id is set: {text}");
    pieces[2].parse().unwrap()
}

fn index(revision: u64) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("v1:c:{revision}:0:"))
}

async fn mount_kv(server: &Server, token: &str) {
    let reply = server
        .send(
            req(Method::POST, "/v1/sys/mounts/kv")
                .token(token)
                .json(&json!({"type": "kv", "options": {"version": "2"}})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert!(reply.header("x-vault-index").is_some());
}

#[tokio::test]
async fn writes_answer_with_a_growing_index_and_reads_without_one() {
    let (server, init) = unsealed().await;
    let token = &init.root_token;
    mount_kv(&server, token).await;
    let mut last = 0;
    for round in 0..3 {
        let reply = server
            .send(
                req(Method::POST, "/v1/kv/data/app")
                    .token(token)
                    .json(&json!({"data": {"round": round}})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        let revision = decode(reply.header("x-vault-index").unwrap());
        assert!(revision > last, "{revision} after {last}");
        last = revision;
    }
    let reply = server
        .send(req(Method::GET, "/v1/kv/data/app").token(token))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("x-vault-index"), None);
    let reply = server
        .send(req(Method::POST, "/v1/sys/rotate").token(token))
        .await;
    assert!(decode(reply.header("x-vault-index").unwrap()) > last);
}

#[tokio::test]
async fn a_single_node_never_waits_for_an_index() {
    let (server, init) = unsealed().await;
    let reply = server
        .send(
            req(Method::GET, "/v1/sys/mounts")
                .token(&init.root_token)
                .header("x-vault-index", &index(1 << 40)),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn a_malformed_index_is_a_bad_request() {
    let (server, init) = unsealed().await;
    for bad in ["garbage!", "djI6YzoxOjA6", "djE6Yzp4OjA6"] {
        let reply = server
            .send(
                req(Method::GET, "/v1/sys/mounts")
                    .token(&init.root_token)
                    .header("x-vault-index", bad),
            )
            .await;
        reply.assert_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &["invalid X-Vault-Index header"],
        );
    }
}

#[tokio::test]
async fn a_clustered_node_answers_412_for_an_index_it_has_not_applied() {
    let mut state = crate::support::state();
    state.index_wait = Duration::from_millis(50);
    let server = Server::new(state);
    let init = server.init_unsealed(1, 1).await;
    let engine = &server.state.engine;
    engine.attach_change_feed();
    engine
        .apply_invalidation(&Invalidation::All { revision: None })
        .await;
    let applied = engine.applied_index().0;
    let ask = |revision: u64| {
        req(Method::GET, "/v1/sys/mounts")
            .token(&init.root_token)
            .header("x-vault-index", &index(revision))
    };
    assert_eq!(server.send(ask(applied)).await.status, StatusCode::OK);
    server.send(ask(applied + 5)).await.assert_error(
        StatusCode::PRECONDITION_FAILED,
        "index_not_reached",
        &["required index state not present"],
    );
    // Several values (as Vault's clients send): the highest must be reached.
    let reply = server
        .send(ask(applied).header("x-vault-index", &index(applied + 5)))
        .await;
    assert_eq!(reply.status, StatusCode::PRECONDITION_FAILED);
}
