//! Reading request bodies within bounds: a size limit per endpoint, a global budget of body bytes
//! in flight, and a cheap pre-scan of JSON nesting depth and object keys before parsing.
//!
//! A JSON body parsed into a `serde_json::Value` costs many times its size in memory, so the
//! bounds apply before parsing, and the budget makes N parallel large bodies wait (and then fail
//! with 429) rather than add up.

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use http_body_util::BodyExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use zeroize::Zeroizing;

use crate::error::ApiError;

/// Deepest nesting of objects and arrays accepted in a JSON body.
pub const MAX_JSON_DEPTH: usize = 64;
/// Most object keys (at all levels together) accepted in one JSON body.
pub const MAX_JSON_KEYS: usize = 65_536;
/// Body limit of the endpoints that work without a token and take a few small fields
/// (`sys/init`, `sys/unseal`, `sys/wrapping/lookup`, `sys/wrapping/unwrap`).
pub const SMALL_BODY_BYTES: usize = 16 * 1024;
/// Body limit of `sys/leaks` (up to 1000 credentials with their URLs).
pub const LEAKS_BODY_BYTES: usize = 256 * 1024;
/// How long a body waits for budget before the request is refused with 429.
pub const BUDGET_WAIT: Duration = Duration::from_secs(2);

/// The bytes of request bodies being read or handled at once, across all connections.
#[derive(Clone, Debug)]
pub struct BodyBudget {
    semaphore: Arc<Semaphore>,
    bytes: usize,
}

impl BodyBudget {
    pub fn new(bytes: usize) -> BodyBudget {
        let bytes = bytes.clamp(1, Semaphore::MAX_PERMITS);
        BodyBudget {
            semaphore: Arc::new(Semaphore::new(bytes)),
            bytes,
        }
    }

    /// The total budget in bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The bytes not taken by a body right now.
    pub fn available(&self) -> usize {
        self.semaphore.available_permits()
    }

    async fn take(&self, bytes: usize) -> Result<OwnedSemaphorePermit, ApiError> {
        let bytes = u32::try_from(bytes).map_err(|_| ApiError::Busy)?;
        tokio::time::timeout(
            BUDGET_WAIT,
            self.semaphore.clone().acquire_many_owned(bytes),
        )
        .await
        .map_err(|_| ApiError::Busy)?
        .map_err(|_| ApiError::Busy)
    }
}

/// A body read into memory, holding its share of the budget until dropped.
/// The buffer is zeroized on drop: it may hold an unseal key or a secret.
pub(crate) struct ReadBody {
    pub(crate) bytes: Zeroizing<Vec<u8>>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl ReadBody {
    pub(crate) fn is_blank(&self) -> bool {
        self.bytes.iter().all(u8::is_ascii_whitespace)
    }

    /// Whether the body is the JSON value `null`: Vault's Go clients send it for a request
    /// without data (`bao unwrap TOKEN` does), and Vault reads it as no data.
    pub(crate) fn is_null(&self) -> bool {
        self.bytes.trim_ascii() == b"null"
    }
}

/// The declared `Content-Length`, if any and well-formed.
pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse().ok())
}

/// Reads a body of at most `limit` bytes, taking budget for it as it arrives (so a client that
/// declares a large body and then stalls holds no budget). A declared `Content-Length` above the
/// limit is refused before a byte is read.
pub(crate) async fn read(
    headers: &HeaderMap,
    body: axum::body::Body,
    limit: usize,
    budget: &BodyBudget,
) -> Result<ReadBody, ApiError> {
    let too_large = || ApiError::PayloadTooLarge { limit };
    let declared = content_length(headers);
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    let mut permit: Option<OwnedSemaphorePermit> = None;
    let mut bytes = Zeroizing::new(Vec::new());
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| {
            ApiError::InvalidRequest(format!("failed to read request body: {error}"))
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        let total = bytes.len() + data.len();
        if total > limit {
            return Err(too_large());
        }
        let more = budget.take(data.len()).await?;
        match permit.as_mut() {
            Some(held) => held.merge(more),
            None => permit = Some(more),
        }
        if total > bytes.capacity() {
            // Grow into a fresh buffer so the old one is zeroized, not just freed. The declared
            // length (within the limit) sizes the buffer once the first bytes have come.
            let wanted = declared
                .and_then(|length| usize::try_from(length).ok())
                .unwrap_or(0)
                .max(total)
                .max(bytes.capacity().saturating_mul(2))
                .min(limit);
            let mut grown = Zeroizing::new(Vec::with_capacity(wanted));
            grown.extend_from_slice(&bytes);
            bytes = grown;
        }
        bytes.extend_from_slice(&data);
    }
    Ok(ReadBody {
        bytes,
        _permit: permit,
    })
}

/// Checks nesting depth and the number of object keys without parsing; the bytes need not be
/// valid JSON (the parser judges that afterwards).
pub(crate) fn check_shape(bytes: &[u8]) -> Result<(), ApiError> {
    let mut depth = 0usize;
    let mut keys = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return Err(ApiError::InvalidJson(format!(
                        "nesting deeper than the limit of {MAX_JSON_DEPTH}"
                    )));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            // Outside strings, each `:` follows one object key.
            b':' => {
                keys += 1;
                if keys > MAX_JSON_KEYS {
                    return Err(ApiError::InvalidJson(format!(
                        "more object keys than the limit of {MAX_JSON_KEYS}"
                    )));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Parses a body that must be a JSON object into `T` (a blank body reads as `{}`), after the
/// shape check. Vault accepts only an object; serde alone would also read a struct from an array.
pub(crate) fn parse_object<T: serde::de::DeserializeOwned>(body: &ReadBody) -> Result<T, ApiError> {
    let bytes: &[u8] = if body.is_blank() || body.is_null() {
        b"{}"
    } else {
        &body.bytes
    };
    check_shape(bytes)?;
    let first = bytes.iter().find(|byte| !byte.is_ascii_whitespace());
    if first != Some(&b'{') {
        // Let serde name what is wrong when it is not JSON at all.
        if let Err(error) = serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
            return Err(ApiError::InvalidJson(error.to_string()));
        }
        return Err(ApiError::InvalidJson(
            "the request body must be a JSON object".into(),
        ));
    }
    serde_json::from_slice(bytes).map_err(|error| ApiError::InvalidJson(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_check_counts_depth_outside_strings() {
        let deep = format!(
            "{}{}",
            "[".repeat(MAX_JSON_DEPTH),
            "]".repeat(MAX_JSON_DEPTH)
        );
        assert!(check_shape(deep.as_bytes()).is_ok());
        let deeper = format!("[{deep}]");
        assert!(check_shape(deeper.as_bytes()).is_err());
        let in_string = format!("{{\"a\": \"{}\"}}", "[".repeat(1000));
        assert!(check_shape(in_string.as_bytes()).is_ok());
        assert!(check_shape(br#"{"a\"[[[[": 1}"#).is_ok());
    }

    #[test]
    fn a_null_body_is_no_data_as_in_vault() {
        let read = |text: &str| ReadBody {
            bytes: Zeroizing::new(text.as_bytes().to_vec()),
            _permit: None,
        };
        for text in ["null", " null\n", ""] {
            let parsed: serde_json::Map<String, serde_json::Value> =
                parse_object(&read(text)).expect("no data");
            assert!(parsed.is_empty(), "{text:?}");
        }
        for text in ["nul", "null null", "[null]", "1"] {
            assert!(
                parse_object::<serde_json::Map<String, serde_json::Value>>(&read(text)).is_err(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn shape_check_counts_keys() {
        let mut many = String::from("{");
        for index in 0..=MAX_JSON_KEYS {
            many.push_str(&format!("\"k{index}\":0,"));
        }
        many.push_str("\"last\":0}");
        assert!(check_shape(many.as_bytes()).is_err());
        assert!(check_shape(br#"{"url": "https://x:443/a:b"}"#).is_ok());
    }

    proptest::proptest! {
        #[test]
        fn shape_check_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = check_shape(&bytes);
        }
    }
}
