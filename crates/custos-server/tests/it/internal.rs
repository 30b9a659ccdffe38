//! Corrupt storage: the client gets a bare "internal error", never the details.

use std::sync::Arc;

use axum::http::StatusCode;
use custos_engine::{Engine, SystemClock};
use custos_server::AppState;
use custos_storage::{MemoryStorage, Storage};

use crate::support::Server;

#[tokio::test]
async fn a_corrupt_seal_config_is_500_internal_error_without_details() {
    let storage = Arc::new(MemoryStorage::new());
    let first = Server::new(AppState::new(Engine::new(
        storage.clone(),
        Arc::new(SystemClock),
    )));
    first.init(1, 1).await;
    storage
        .put("seal/config", b"{\"secret\":\"do-not-leak\"".to_vec())
        .await
        .unwrap();
    // A restarted server reads the configuration from storage.
    let server = Server::new(AppState::new(Engine::new(storage, Arc::new(SystemClock))));
    for uri in ["/v1/sys/seal-status", "/v1/sys/health", "/v1/sys/init"] {
        let reply = server.get(uri).await;
        reply.assert_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            &["internal error"],
        );
        let text = String::from_utf8_lossy(&reply.bytes);
        assert!(
            !text.contains("do-not-leak") && !text.contains("corrupt"),
            "{uri}: {text}"
        );
    }
}
