//! Request extractors: JSON bodies with Vault's error messages and our size limit, and tokens.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::error::ApiError;

/// A JSON body. An empty body decodes as `{}` (Vault's CLI sends none for `PUT sys/seal`).
pub(crate) struct JsonBody<T>(pub(crate) T);

/// Reads a body of at most `limit` bytes and parses it as a JSON object; an empty body is `None`.
pub(crate) async fn read_json_object(
    body: axum::body::Body,
    limit: usize,
) -> Result<Option<serde_json::Map<String, serde_json::Value>>, ApiError> {
    let bytes = read_limited(body, limit).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    match serde_json::from_slice(&bytes) {
        Ok(serde_json::Value::Object(map)) => Ok(Some(map)),
        Ok(_) => Err(ApiError::InvalidJson(
            "the request body must be a JSON object".into(),
        )),
        Err(error) => Err(ApiError::InvalidJson(error.to_string())),
    }
}

async fn read_limited(body: axum::body::Body, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|error| {
        // `to_bytes` fails either on the limit or on a broken connection.
        if std::error::Error::source(&error)
            .is_some_and(|source| source.is::<http_body_util::LengthLimitError>())
            || error.to_string().contains("length limit")
        {
            ApiError::PayloadTooLarge { limit }
        } else {
            ApiError::InvalidRequest(format!("failed to read request body: {error}"))
        }
    })
}

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = read_limited(request.into_body(), state.max_request_bytes).await?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        // Vault accepts only a JSON object as a request body; serde alone would also read a
        // struct from an array.
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|error| ApiError::InvalidJson(error.to_string()))?;
        if !value.is_object() {
            return Err(ApiError::InvalidJson(
                "the request body must be a JSON object".into(),
            ));
        }
        serde_json::from_value(value)
            .map(JsonBody)
            .map_err(|error| ApiError::InvalidJson(error.to_string()))
    }
}

/// The caller's token, from `X-Vault-Token` or `Authorization: Bearer`, if any.
pub(crate) struct Token(pub(crate) Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for Token {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Token(token_from_headers(&parts.headers)))
    }
}

/// The caller's token, from `X-Vault-Token` or `Authorization: Bearer`, if any.
pub(crate) fn token_from_headers(headers: &axum::http::HeaderMap) -> Option<String> {
    {
        let from_vault_header = headers
            .get(custos_api::TOKEN_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|value| !value.is_empty());
        let from_bearer = || {
            headers
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.strip_prefix("Bearer "))
                .map(str::trim)
                .filter(|value| !value.is_empty())
        };
        from_vault_header.or_else(from_bearer).map(str::to_owned)
    }
}

impl Token {
    pub(crate) fn as_deref(&self) -> Option<&str> {
        self.0.as_deref()
    }
}
