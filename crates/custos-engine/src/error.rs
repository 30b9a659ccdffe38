//! `EngineError`: the vocabulary the HTTP layer maps to status codes, in one place.

use custos_storage::StorageError;

/// Everything an engine operation can fail with. Variants say what happened; the server maps
/// each to a status code and a stable error code, and never shows `Internal` details to clients.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The request itself is wrong (bad parameters, malformed key); the message is for the client.
    #[error("{0}")]
    InvalidRequest(String),
    /// An unseal key could not be used; the message is for the client.
    #[error("{0}")]
    InvalidUnsealKey(String),
    /// A request that proves its origin by a signature (GitHub's leak reports) has none, names
    /// a key this server does not trust, or its signature does not verify. The message is for
    /// the client and never quotes the request.
    #[error("{0}")]
    InvalidSignature(String),
    /// Missing, unknown or insufficient token. Deliberately says nothing more.
    #[error("permission denied")]
    PermissionDenied,
    #[error("{0} not found")]
    NotFound(String),
    /// Seal-state messages use Vault's exact wording: the `vault`/`bao` CLI recognises a sealed
    /// server by this text, and scripts written for Vault match on the others.
    #[error("Vault is sealed")]
    Sealed,
    #[error("Vault is not initialized")]
    NotInitialized,
    #[error("Vault is already initialized")]
    AlreadyInitialized,
    /// The path exists but does not take this operation.
    #[error("unsupported operation")]
    MethodNotAllowed,
    /// No mount serves this path.
    #[error("no handler for route {0:?}. route entry not found.")]
    NoRoute(String),
    /// A storage compare-and-swap lost a race; the operation may be retried from a fresh read.
    #[error("the data changed concurrently, try again")]
    Conflict,
    /// The path exists but does not support this operation (Vault answers 405); the message is
    /// for the client.
    #[error("{0}")]
    UnsupportedOperation(String),
    /// The secret's `expires_at` custom metadata has passed; the message (for the client) says
    /// when. Reads may override it with `allow_expired=true`.
    #[error("{0}")]
    Expired(String),
    /// The request asked (`X-Vault-Index`) for a storage revision this node has not applied
    /// within the wait bound; another node or a retry will do.
    #[error("required index state not present")]
    IndexNotReached,
    /// Too many failed logins for this user or from this address: try again after the given
    /// number of seconds. The same answer whether or not the user exists.
    #[error("too many failed login attempts; try again later")]
    LoginLocked { retry_after_seconds: u64 },
    /// Audit devices are enabled and none could write the request's record: the request is
    /// refused (and did nothing). Says nothing about which device or why; the log does.
    #[error("audit log unavailable: request refused")]
    AuditUnavailable,
    /// Storage cannot be reached: the request fails closed and may be retried.
    #[error("storage is unavailable, try again later")]
    Unavailable(#[source] StorageError),
    /// A bug or corrupt data. The message is logged, never sent to the client.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StorageError> for EngineError {
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::Unavailable { .. } => EngineError::Unavailable(error),
            StorageError::Conflict => EngineError::Conflict,
            StorageError::Corrupt(_) | StorageError::Invalid(_) => {
                EngineError::Internal(error.to_string())
            }
        }
    }
}
