//! The one place where errors become HTTP responses.
//!
//! Every error leaves as Vault's `{"errors": [...]}` body with Vault's status code and a stable
//! custos error code in the `X-Custos-Error-Code` header. Internal details are never sent: the
//! client gets "internal error" and the request id, and the full error is logged once by the
//! request middleware, which finds it in the response extensions.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use custos_api::{ERROR_CODE_HEADER, ErrorCode, ErrorResponse};
use custos_engine::EngineError;

/// An error on its way to the client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The body is not valid JSON or has the wrong shape.
    #[error("failed to decode JSON input: {0}")]
    InvalidJson(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("request timed out")]
    Timeout,
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A path outside the API (`/v2/...`), or a missing secret: Vault's empty error list.
    #[error("not found")]
    NotFound,

    #[error("method not allowed")]
    MethodNotAllowed,
    /// An optional endpoint the configuration did not turn on; the message says which setting.
    #[error("{0}")]
    NotConfigured(&'static str),
    /// `X-Vault-Namespace` names a namespace other than root: custos has no namespaces.
    #[error("namespace not found: {0:?} (custos has only the root namespace)")]
    NamespaceNotFound(String),
    /// The source address is outside `listener.unseal_allowed_networks`.
    #[error("permission denied: this endpoint is not reachable from your network address")]
    ForbiddenNetwork,
    /// The source address sent too many requests to a rate-limited endpoint.
    #[error("too many requests from your address; retry later")]
    RateLimited,
    /// The budget of request body bytes in flight stayed exhausted.
    #[error("the server is receiving too many request bodies at once; retry later")]
    Busy,
}

/// The HTTP status the server answers for `error`: what audit response records show
/// (`custos_engine::AuditConfig::status_of`).
pub fn engine_status(error: &EngineError) -> u16 {
    engine_parts(error).0.as_u16()
}

/// The status, the stable code, and the message the client may see, of an engine error.
fn engine_parts(error: &EngineError) -> (StatusCode, ErrorCode, Option<String>) {
    use EngineError as E;
    match error {
        E::InvalidRequest(message) => (
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
            Some(message.clone()),
        ),
        E::InvalidUnsealKey(message) => (
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidUnsealKey,
            Some(message.clone()),
        ),
        E::InvalidSignature(message) => (
            StatusCode::UNAUTHORIZED,
            ErrorCode::InvalidSignature,
            Some(message.clone()),
        ),
        E::PermissionDenied => (
            StatusCode::FORBIDDEN,
            ErrorCode::PermissionDenied,
            Some(error.to_string()),
        ),
        E::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound, None),
        E::UnsupportedOperation(message) => (
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::MethodNotAllowed,
            Some(message.clone()),
        ),
        E::Expired(message) => (
            StatusCode::NOT_FOUND,
            ErrorCode::Expired,
            Some(message.clone()),
        ),
        E::MethodNotAllowed => (
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::MethodNotAllowed,
            Some(error.to_string()),
        ),
        E::NoRoute(_) => (
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            Some(error.to_string()),
        ),
        E::Conflict => (
            StatusCode::CONFLICT,
            ErrorCode::Conflict,
            Some(error.to_string()),
        ),
        E::Sealed => (
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Sealed,
            Some(error.to_string()),
        ),
        E::NotInitialized => (
            StatusCode::BAD_REQUEST,
            ErrorCode::NotInitialized,
            Some(error.to_string()),
        ),
        E::AlreadyInitialized => (
            StatusCode::BAD_REQUEST,
            ErrorCode::AlreadyInitialized,
            Some(error.to_string()),
        ),
        E::IndexNotReached => (
            StatusCode::PRECONDITION_FAILED,
            ErrorCode::IndexNotReached,
            Some(error.to_string()),
        ),
        E::LoginLocked { .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            Some(error.to_string()),
        ),
        E::Unavailable(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::StorageUnavailable,
            Some(error.to_string()),
        ),
        E::AuditUnavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::AuditUnavailable,
            Some(error.to_string()),
        ),
        E::Internal(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            Some("internal error".into()),
        ),
    }
}

/// The full text of an internal error, kept in the response extensions for the log.
#[derive(Clone, Debug)]
pub(crate) struct ErrorDetail(pub(crate) String);

impl ApiError {
    /// The status, the stable code, and the message the client may see.
    fn parts(&self) -> (StatusCode, ErrorCode, Option<String>) {
        match self {
            ApiError::Engine(error) => engine_parts(error),
            ApiError::InvalidJson(_) => (
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidJson,
                Some(self.to_string()),
            ),
            ApiError::InvalidRequest(message) => (
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidRequest,
                Some(message.clone()),
            ),
            ApiError::PayloadTooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::PayloadTooLarge,
                Some(self.to_string()),
            ),
            ApiError::UnsupportedMediaType(message) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::InvalidRequest,
                Some(message.clone()),
            ),
            ApiError::Timeout => (
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Timeout,
                Some(self.to_string()),
            ),
            // Vault answers unknown methods with an empty error list.
            ApiError::NotFound => (StatusCode::NOT_FOUND, ErrorCode::NotFound, None),
            ApiError::NotConfigured(_) => (
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                Some(self.to_string()),
            ),
            ApiError::NamespaceNotFound(_) => (
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                Some(self.to_string()),
            ),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::MethodNotAllowed,
                None,
            ),
            ApiError::ForbiddenNetwork => (
                StatusCode::FORBIDDEN,
                ErrorCode::PermissionDenied,
                Some(self.to_string()),
            ),
            ApiError::RateLimited | ApiError::Busy => (
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::RateLimited,
                Some(self.to_string()),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
        let body = ErrorResponse {
            errors: message.into_iter().collect(),
        };
        let mut response = (status, axum::Json(body)).into_response();
        response
            .headers_mut()
            .insert(ERROR_CODE_HEADER, HeaderValue::from_static(code.as_str()));
        if let ApiError::Engine(EngineError::LoginLocked {
            retry_after_seconds,
        }) = &self
        {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                HeaderValue::from(*retry_after_seconds),
            );
        }
        if status.is_server_error() {
            response
                .extensions_mut()
                .insert(ErrorDetail(format!("{:#}", ErrorChain(&self))));
        }
        response
    }
}

/// Formats an error with its sources, for the log.
struct ErrorChain<'a>(&'a dyn std::error::Error);

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(error) = source {
            write!(f, ": {error}")?;
            source = error.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_locked_login_is_429_with_retry_after_and_a_stable_code() {
        let response = ApiError::Engine(EngineError::LoginLocked {
            retry_after_seconds: 42,
        })
        .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[axum::http::header::RETRY_AFTER], "42");
        assert_eq!(response.headers()[ERROR_CODE_HEADER], "rate_limited");
        let other = ApiError::RateLimited.into_response();
        assert!(
            other
                .headers()
                .get(axum::http::header::RETRY_AFTER)
                .is_none()
        );
    }
}
