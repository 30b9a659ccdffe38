//! The one request pipeline every logical request goes through:
//! authenticate → authorise → audit → route to the mount (or to `sys/`) → audit the answer.
//!
//! Authorisation is the ACL of the caller's policies (`policy/`). Audit goes two ways: every
//! [`AuditEvent`] goes to the [`AuditSink`] (a seam for tests and alerts; [`NoAudit`] by default),
//! and request and response records go to the audit devices (`audit/`), which fail the request
//! when none can write.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::EngineError;
use crate::logical::{LogicalRequest, LogicalResponse, Operation};

/// The longest logical path accepted, in bytes: the mount's path, a KV v2 segment such as
/// `metadata/` and a secret path of up to 2048 bytes (the KV limit) fit with room to spare.
/// Vault has no such limit; custos keeps one so a storage key always fits PostgreSQL's primary-key
/// index, which cannot hold an incompressible key past about 2,700 bytes.
pub const MAX_PATH_LEN: usize = 2560;

/// A request for `/v1/<path>` that is not one of the seal life cycle endpoints.
#[derive(Clone, Debug)]
pub struct Request {
    pub operation: Operation,
    /// Without `/v1/`: `secret/data/app`.
    pub path: String,
    pub data: Option<Map<String, Value>>,
    pub query: BTreeMap<String, String>,
    pub token: Option<String>,
    pub merge_patch: bool,
    /// Set by the HTTP layer from `X-Request-Id` generation, for audit and responses.
    pub request_id: String,
    /// `X-Vault-Wrap-TTL` in seconds: wrap the answer behind a single-use token.
    pub wrap_ttl: Option<u64>,
    /// Facts about the connection the request came on (address, client certificate).
    pub connection: Connection,
}

/// What the HTTP layer knows about the connection a request came on. Address rules (token and
/// secret-id CIDR bindings, policy `cidrs` conditions), certificate login and certificate-bound
/// tokens are decided on these facts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Connection {
    /// The client's address: the socket's peer, or the address a trusted proxy named in
    /// `X-Forwarded-For`. `None` for in-process callers (tests, dev-mode set-up), which no
    /// address rule admits.
    pub remote_addr: Option<std::net::IpAddr>,
    /// The socket peer's port, for audit records (Vault's `remote_port`); `None` behind a
    /// trusted proxy, whose port says nothing of the client.
    pub remote_port: Option<u16>,
    /// The TLS client certificate the connection presented, verified by the listener.
    pub client_cert: Option<ClientCert>,
    /// The `User-Agent` header, for audit.
    pub user_agent: Option<String>,
}

/// A TLS client certificate: the chain as presented (leaf first, DER) and the leaf's SHA-256
/// fingerprint, which certificate-bound tokens are bound to.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCert {
    pub chain: std::sync::Arc<Vec<Vec<u8>>>,
    /// Lower-case hex SHA-256 of the leaf's DER.
    pub fingerprint: String,
}

impl ClientCert {
    /// A certificate from its chain (leaf first); `None` for an empty chain.
    pub fn from_chain(chain: Vec<Vec<u8>>) -> Option<ClientCert> {
        let fingerprint = custos_crypto::sha256_hex(chain.first()?);
        Some(ClientCert {
            chain: std::sync::Arc::new(chain),
            fingerprint,
        })
    }

    /// The leaf certificate's DER.
    pub fn leaf(&self) -> &[u8] {
        self.chain.first().map_or(&[], Vec::as_slice)
    }
}

impl std::fmt::Debug for ClientCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCert")
            .field("fingerprint", &self.fingerprint)
            .field("chain_len", &self.chain.len())
            .finish()
    }
}

impl Request {
    pub fn new(operation: Operation, path: impl Into<String>) -> Request {
        Request {
            operation,
            path: path.into(),
            data: None,
            query: BTreeMap::new(),
            token: None,
            merge_patch: false,
            request_id: String::new(),
            wrap_ttl: None,
            connection: Connection::default(),
        }
    }

    #[must_use]
    pub fn token(mut self, token: impl Into<String>) -> Request {
        self.token = Some(token.into());
        self
    }

    #[must_use]
    pub fn data(mut self, data: Value) -> Request {
        self.data = match data {
            Value::Object(map) => Some(map),
            _ => None,
        };
        self
    }

    #[must_use]
    pub fn query(mut self, key: &str, value: &str) -> Request {
        self.query.insert(key.to_owned(), value.to_owned());
        self
    }
}

/// One audited event: the request, and then its outcome.
///
/// The fields after `alert` are what audit devices' records are made of; they borrow from the
/// request being served, so an event costs no copy. [`AuditEvent::new`] leaves them empty.
/// Its `Debug` shows neither the token nor the body nor the answer.
#[derive(Clone)]
pub struct AuditEvent<'a> {
    pub request_id: &'a str,
    pub operation: Operation,
    pub path: &'a str,
    pub caller: &'a str,
    /// `None` for the request record; `Some(Ok(()))` or `Some(Err(message))` for the response.
    pub outcome: Option<Result<(), String>>,
    /// Set on a record that needs a human's attention, such as a root token reported as
    /// leaked; it says what happened and never holds a secret. The alerts issue sends these on.
    pub alert: Option<String>,
    /// The token the request presented (hashed in records), valid or not.
    pub token: Option<&'a str>,
    /// The token's details, once it authenticated.
    pub auth: Option<AuditAuth<'a>>,
    /// The request's body (its strings hashed in records).
    pub data: Option<&'a Map<String, Value>>,
    /// The connection the request came on.
    pub connection: Option<&'a Connection>,
    /// `X-Vault-Wrap-TTL`, in seconds.
    pub wrap_ttl: Option<u64>,
    /// The answer, on the response event of a request that succeeded.
    pub response: Option<&'a LogicalResponse>,
    /// The error, on the response event of a request that failed.
    pub error: Option<&'a EngineError>,
}

impl std::fmt::Debug for AuditEvent<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditEvent")
            .field("request_id", &self.request_id)
            .field("operation", &self.operation)
            .field("path", &crate::Untrusted(self.path))
            .field("caller", &self.caller)
            .field("outcome", &self.outcome)
            .field("alert", &self.alert)
            .field("has_token", &self.token.is_some())
            .field("auth", &self.auth)
            .field("wrap_ttl", &self.wrap_ttl)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for AuditAuth<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditAuth")
            .field("accessor", &self.accessor)
            .field("display_name", &self.display_name)
            .field("policies", &self.policies)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl<'a> AuditEvent<'a> {
    /// An event with only its identity: no token, body, connection or outcome.
    pub fn new(
        request_id: &'a str,
        operation: Operation,
        path: &'a str,
        caller: &'a str,
    ) -> AuditEvent<'a> {
        AuditEvent {
            request_id,
            operation,
            path,
            caller,
            outcome: None,
            alert: None,
            token: None,
            auth: None,
            data: None,
            connection: None,
            wrap_ttl: None,
            response: None,
            error: None,
        }
    }

    /// The event of `request`: its id, operation, path, token, body, connection and wrap TTL.
    pub fn of_request(request: &'a Request, caller: &'a str) -> AuditEvent<'a> {
        AuditEvent {
            token: request.token.as_deref(),
            data: request.data.as_ref(),
            connection: Some(&request.connection),
            wrap_ttl: request.wrap_ttl,
            ..AuditEvent::new(
                &request.request_id,
                request.operation,
                &request.path,
                caller,
            )
        }
    }
}

/// What records show of the token that made a request (Vault's `auth` block).
#[derive(Clone, Copy)]
pub struct AuditAuth<'a> {
    /// The token's accessor (hashed in records unless `hmac_accessor=false`).
    pub accessor: &'a str,
    pub display_name: &'a str,
    pub policies: &'a [String],
    pub metadata: Option<&'a BTreeMap<String, String>>,
    /// `service` (the only kind custos issues).
    pub token_type: &'a str,
    /// The token's TTL in seconds; 0: none.
    pub ttl: u64,
    /// When the token was issued, in nanoseconds since the epoch.
    pub issue_time_nanos: i128,
    /// Uses left after this one; 0: unlimited.
    pub remaining_uses: u64,
    /// The engine's keyed hash of the token (its storage key): devices cache the caller's
    /// hashes under it. Never written to a record; empty: do not cache.
    pub token_key: &'a str,
}

/// Where audit records go. A failing sink fails the request (no audit, no service).
#[async_trait::async_trait]
pub trait AuditSink: Send + Sync + 'static {
    async fn record(&self, event: &AuditEvent<'_>) -> Result<(), EngineError>;
}

/// Records nothing: the default sink (audit devices are configured apart, `AuditConfig`).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoAudit;

#[async_trait::async_trait]
impl AuditSink for NoAudit {
    async fn record(&self, _: &AuditEvent<'_>) -> Result<(), EngineError> {
        Ok(())
    }
}

/// Checks a logical path: not too long, no empty, `.` or `..` segments, no control characters.
/// A single trailing slash (a folder, for lists) is allowed.
pub fn validate_path(path: &str) -> Result<(), EngineError> {
    let invalid = |why: String| Err(EngineError::InvalidRequest(format!("invalid path: {why}")));
    if path.len() > MAX_PATH_LEN {
        return invalid(format!(
            "{} bytes is longer than the limit of {MAX_PATH_LEN}",
            path.len()
        ));
    }
    if path.chars().any(char::is_control) {
        return invalid("control characters are not allowed".into());
    }
    let body = path.strip_suffix('/').unwrap_or(path);
    if body.is_empty() {
        return invalid("empty path".into());
    }
    for segment in body.split('/') {
        match segment {
            "" => return invalid(format!("{path:?} has an empty segment")),
            "." | ".." => return invalid(format!("{path:?} has a {segment:?} segment")),
            _ => {}
        }
    }
    Ok(())
}

/// Builds the request a backend sees: the path made relative to its mount.
pub(crate) fn to_logical(request: Request, mount_path: &str) -> LogicalRequest {
    let relative = request
        .path
        .strip_prefix(mount_path)
        .unwrap_or_default()
        .to_owned();
    LogicalRequest {
        operation: request.operation,
        path: relative,
        data: request.data,
        query: request.query,
        merge_patch: request.merge_patch,
        connection: request.connection,
    }
}

/// Wraps a JSON object into a response.
pub(crate) fn object(value: Value) -> LogicalResponse {
    match value {
        Value::Object(map) => LogicalResponse::data(map),
        _ => LogicalResponse::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_checked() {
        for good in [
            "secret",
            "secret/",
            "secret/data/app",
            "a b/c",
            "caf\u{e9}/x",
        ] {
            assert!(validate_path(good).is_ok(), "{good:?}");
        }
        for bad in [
            "", "/", "a//b", "/a", "a/./b", "a/..", "..", "a\u{0}b", "a\nb",
        ] {
            assert!(validate_path(bad).is_err(), "{bad:?}");
        }
        assert!(validate_path(&"a".repeat(MAX_PATH_LEN)).is_ok());
        assert!(validate_path(&"a".repeat(MAX_PATH_LEN + 1)).is_err());
    }

    proptest::proptest! {
        #[test]
        fn validation_never_panics(path in "\\PC{0,64}") {
            let _ = validate_path(&path);
        }

        #[test]
        fn accepted_paths_have_no_dot_or_empty_segments(path in "[a-z./]{0,24}") {
            if validate_path(&path).is_ok() {
                let body = path.strip_suffix('/').unwrap_or(&path);
                proptest::prop_assert!(body.split('/').all(|s| !s.is_empty() && s != "." && s != ".."));
            }
        }
    }
}
