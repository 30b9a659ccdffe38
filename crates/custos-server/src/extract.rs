//! Request extractors: JSON bodies with Vault's error messages and our size limit, and tokens.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::error::ApiError;

/// A JSON body. An empty body decodes as `{}` (Vault's CLI sends none for `PUT sys/seal`).
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let limit = state.max_request_bytes;
        let bytes = axum::body::to_bytes(request.into_body(), limit)
            .await
            .map_err(|error| {
                // `to_bytes` fails either on the limit or on a broken connection.
                if std::error::Error::source(&error)
                    .is_some_and(|source| source.is::<http_body_util::LengthLimitError>())
                    || error.to_string().contains("length limit")
                {
                    ApiError::PayloadTooLarge { limit }
                } else {
                    ApiError::InvalidRequest(format!("failed to read request body: {error}"))
                }
            })?;
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
        let headers = &parts.headers;
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
        Ok(Token(
            from_vault_header.or_else(from_bearer).map(str::to_owned),
        ))
    }
}

impl Token {
    pub(crate) fn as_deref(&self) -> Option<&str> {
        self.0.as_deref()
    }
}
