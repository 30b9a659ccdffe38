//! Wire types of custos's HTTP API, shared by the server and the client.
//!
//! Everything here follows HashiCorp Vault's JSON field for field, so that Vault's own clients
//! (the `vault`/`bao` CLI, hvac, vaultrs, Terraform) work against custos unmodified.
//! Domain types never derive serde; they are converted to and from these at the HTTP boundary,
//! so changing a domain type cannot change the JSON by accident.

pub mod error;
pub mod sys;

pub use error::{ErrorCode, ErrorResponse};

use serde::{Deserialize, Serialize};

/// custos's own version: `custos --version`, and `custos_version` in `sys/health` and
/// `sys/seal-status`.
pub const VERSION: &str = "0.1.0";

/// The Vault version custos reports in `version` of `sys/health` and `sys/seal-status`: the Vault
/// API release whose KV, wrapping and sys answers custos follows, so clients that gate features
/// on the server's version (Terraform's provider parses it with go-version) see a Vault they
/// know. The build metadata names custos and its own version.
pub const VAULT_COMPATIBLE_VERSION: &str = "1.15.0+custos.0.1.0";

/// Header carrying the caller's token (Vault's name; `Authorization: Bearer` works too).
pub const TOKEN_HEADER: &str = "x-vault-token";
/// Header carrying the request id of every response.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Header carrying the stable error code of an error response (the body stays Vault's shape).
pub const ERROR_CODE_HEADER: &str = "x-custos-error-code";
/// Header carrying the storage index of a write (responses), or the index a request needs the
/// node to have applied first (requests): Vault's read-your-writes header.
pub const INDEX_HEADER: &str = "x-vault-index";

/// Vault's standard response envelope for logical requests.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Envelope<T> {
    pub request_id: String,
    pub lease_id: String,
    pub renewable: bool,
    pub lease_duration: u64,
    pub data: Option<T>,
    pub wrap_info: Option<serde_json::Value>,
    pub warnings: Option<Vec<String>>,
    pub auth: Option<serde_json::Value>,
}

impl<T> Envelope<T> {
    /// A plain data response with no lease, wrapping or auth.
    pub fn data(request_id: impl Into<String>, data: T) -> Self {
        Envelope {
            request_id: request_id.into(),
            lease_id: String::new(),
            renewable: false,
            lease_duration: 0,
            data: Some(data),
            wrap_info: None,
            warnings: None,
            auth: None,
        }
    }
}
