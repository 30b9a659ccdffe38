//! The error body (`{"errors": [...]}`, as Vault) and custos's stable error codes.
//!
//! Codes travel in the `X-Custos-Error-Code` header so the body stays byte-compatible with Vault.
//! Codes are part of the API: they are documented in docs/api-errors.md and never renamed.

use serde::{Deserialize, Serialize};

/// Vault's error body.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorResponse {
    #[serde(default)]
    pub errors: Vec<String>,
}

impl ErrorResponse {
    pub fn new(message: impl Into<String>) -> Self {
        ErrorResponse {
            errors: vec![message.into()],
        }
    }
}

/// Stable, machine-readable error codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidJson,
    PayloadTooLarge,
    PermissionDenied,
    NotFound,
    MethodNotAllowed,
    Sealed,
    NotInitialized,
    AlreadyInitialized,
    InvalidUnsealKey,
    /// A signed request (GitHub's leak reports) without a valid signature from a trusted key.
    InvalidSignature,
    StorageUnavailable,
    /// Audit devices are enabled and none could record the request: refused, nothing done.
    AuditUnavailable,
    Timeout,
    Conflict,
    Expired,
    IndexNotReached,
    /// Too many requests from one source address, or too many request bodies at once.
    RateLimited,
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 19] = [
        ErrorCode::InvalidRequest,
        ErrorCode::InvalidJson,
        ErrorCode::PayloadTooLarge,
        ErrorCode::PermissionDenied,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Sealed,
        ErrorCode::NotInitialized,
        ErrorCode::AlreadyInitialized,
        ErrorCode::InvalidUnsealKey,
        ErrorCode::InvalidSignature,
        ErrorCode::StorageUnavailable,
        ErrorCode::AuditUnavailable,
        ErrorCode::Timeout,
        ErrorCode::Conflict,
        ErrorCode::Expired,
        ErrorCode::IndexNotReached,
        ErrorCode::RateLimited,
        ErrorCode::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Sealed => "sealed",
            ErrorCode::NotInitialized => "not_initialized",
            ErrorCode::AlreadyInitialized => "already_initialized",
            ErrorCode::InvalidUnsealKey => "invalid_unseal_key",
            ErrorCode::InvalidSignature => "invalid_signature",
            ErrorCode::StorageUnavailable => "storage_unavailable",
            ErrorCode::AuditUnavailable => "audit_unavailable",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Expired => "secret_expired",
            ErrorCode::IndexNotReached => "index_not_reached",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Internal => "internal",
        }
    }

    pub fn parse(code: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "duplicate {}", code.as_str());
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
        }
    }

    #[test]
    fn error_body_is_vaults_shape() {
        let body = serde_json::to_string(&ErrorResponse::new("permission denied")).unwrap();
        assert_eq!(body, r#"{"errors":["permission denied"]}"#);
    }
}
