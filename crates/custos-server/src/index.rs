//! Read-your-writes across nodes: `X-Vault-Index`.
//!
//! A response to a request that committed something carries `X-Vault-Index` with the storage
//! revision of its last commit. A request that sends it back (one or more values, as Vault's
//! clients do) waits until this node has applied that revision from the change feed, at most
//! [`AppState::index_wait`], else it fails with 412 (`index_not_reached`), as Vault does; then it
//! runs reading past the read cache (see `custos_engine::read_fresh`).
//!
//! The value has the shape of Vault's (base64 of `v1:<cluster id>:<local index>:<replicated
//! index>:<hmac>`), so Vault's Go client can merge and compare the states it collects; custos
//! leaves the HMAC empty and the replicated index 0, and reads only the local index back.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use custos_engine::Revision;

use crate::AppState;
use crate::error::ApiError;

/// Encodes a revision as an `X-Vault-Index` value.
pub(crate) fn encode(cluster_id: &str, revision: Revision) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("v1:{cluster_id}:{revision}:0:"))
}

/// Decodes an `X-Vault-Index` value back to the revision it names.
pub(crate) fn decode(value: &str) -> Option<Revision> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let mut pieces = text.split(':');
    if pieces.next()? != "v1" {
        return None;
    }
    let _cluster = pieces.next()?;
    let local: u64 = pieces.next()?.parse().ok()?;
    Some(Revision(local))
}

/// The middleware: wait for a requested index, report the committed one.
pub(crate) async fn read_your_writes(state: &AppState, request: Request, next: Next) -> Response {
    let mut wanted: Option<Revision> = None;
    for value in request.headers().get_all(custos_api::INDEX_HEADER) {
        let Some(revision) = value.to_str().ok().and_then(decode) else {
            return ApiError::InvalidRequest("invalid X-Vault-Index header".into()).into_response();
        };
        wanted = wanted.max(Some(revision));
    }
    if let Some(revision) = wanted
        && let Err(error) = state
            .engine
            .wait_for_index(revision, state.index_wait)
            .await
    {
        return ApiError::from(error).into_response();
    }
    let (mut response, committed) = if wanted.is_some() {
        // Applied is not proof enough under concurrent commits: read past the cache too.
        custos_engine::read_fresh(custos_engine::track_commits(next.run(request))).await
    } else {
        custos_engine::track_commits(next.run(request)).await
    };
    if let Some(revision) = committed {
        let cluster_id = state.engine.cluster_id().unwrap_or_default();
        if let Ok(value) = HeaderValue::from_str(&encode(&cluster_id, revision)) {
            response
                .headers_mut()
                .insert(custos_api::INDEX_HEADER, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_values_round_trip_in_vaults_shape() {
        let value = encode("6c3f2a", Revision(42));
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&value)
            .unwrap();
        assert_eq!(raw, b"v1:6c3f2a:42:0:");
        assert_eq!(decode(&value), Some(Revision(42)));
    }

    #[test]
    fn malformed_index_values_are_refused() {
        for bad in ["", "not base64!", "djI6eDox", "djE6eDp5OjA6"] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }
}
