//! `POST /v1/sys/leaks/github`: GitHub's secret-scanning partner endpoint. The raw body and the
//! two signature headers go to the engine (`Engine::report_github_leaks`), which verifies and
//! revokes; the answer is GitHub's JSON array, not Vault's envelope.
//!
//! Without `[[leaks.github_keys]]` in the configuration the endpoint answers 404 before reading
//! the body: a server that trusts no key has nothing to verify a report with.

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use custos_api::sys::{
    GITHUB_KEY_IDENTIFIER_HEADER, GITHUB_KEY_SIGNATURE_HEADER, GithubLeakResult,
};
use custos_engine::{EngineError, GithubLeakReport};

use crate::error::ApiError;
use crate::{RequestId, Shared, body};

/// A header's value as text; one that is not visible ASCII reads as absent.
fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

pub(crate) async fn report(
    State(state): State<Shared>,
    request: Request,
) -> Result<Response, ApiError> {
    if state.github_leak_keys.is_empty() {
        return Err(ApiError::NotConfigured(
            "GitHub leak reports are not configured on this server (leaks.github_keys)",
        ));
    }
    if state.engine.is_sealed() {
        return Err(EngineError::Sealed.into());
    }
    let (parts, body) = request.into_parts();
    let request_id = parts
        .extensions
        .get::<RequestId>()
        .map(|id| id.0.clone())
        .unwrap_or_default();
    let body = body::read(
        &parts.headers,
        body,
        body::LEAKS_BODY_BYTES,
        &state.body_budget,
    )
    .await?;
    let connection = crate::logical::connection(&parts);
    let verdicts = state
        .engine
        .report_github_leaks(
            &state.github_leak_keys,
            GithubLeakReport {
                key_identifier: header(&parts.headers, GITHUB_KEY_IDENTIFIER_HEADER),
                signature: header(&parts.headers, GITHUB_KEY_SIGNATURE_HEADER),
                body: &body.bytes,
                request_id: &request_id,
                connection: &connection,
            },
        )
        .await?;
    let results: Vec<GithubLeakResult> = verdicts
        .into_iter()
        .map(|verdict| GithubLeakResult {
            label: verdict.label().to_owned(),
            token_hash: verdict.token_hash,
            token_type: verdict.token_type,
        })
        .collect();
    Ok(axum::Json(results).into_response())
}
