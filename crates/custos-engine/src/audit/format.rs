//! Audit records in Vault's JSON shape, with every secret replaced by its HMAC.
//!
//! A request record is `{"time","type":"request","auth","request"}` and a response record
//! `{"time","type":"response","auth","request","response","error"}`, field for field as Vault's
//! (`internal/audit/format.go` in OpenBao), plus custos's `response.status`: the HTTP status the
//! client got. The `auth` and `request` blocks are formatted once per device per request and
//! reused by the response record.
//!
//! Hashing is done while serialising ([`Hashed`] wraps a borrowed JSON value), so request and
//! response data are never copied to be hashed: every string value, at any depth, becomes
//! `"hmac-sha256:<hex>"` of HMAC-SHA256 under the device's salt, except RFC 3339 timestamps under a
//! `*_time` key of response data (as Vault leaves its engines' times) and values under a key listed in the mount's
//! `audit_non_hmac_request_keys` / `audit_non_hmac_response_keys` (the nearest enclosing map
//! key, as Vault). Tokens are always hashed, accessors when `hmac_accessor` is on; `log_raw`
//! hashes nothing.

use std::borrow::Cow;
use std::collections::BTreeMap;

use custos_crypto::PreparedHmac;
use jiff::Timestamp;
use serde::Serialize;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde_json::{Map, Value};

use super::{Device, Outcome};
use crate::logical::{LogicalResponse, Operation};
use crate::pipeline::AuditEvent;
use crate::{EngineError, Unsealed};

/// The mount a request went to, as records name it: its fields are written into both the
/// `request` and the `response` block (flattened).
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct MountInfo {
    #[serde(rename = "mount_point", skip_serializing_if = "Option::is_none")]
    point: Option<String>,
    #[serde(rename = "mount_type", skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
    #[serde(rename = "mount_accessor", skip_serializing_if = "Option::is_none")]
    accessor: Option<String>,
    #[serde(rename = "mount_class", skip_serializing_if = "Option::is_none")]
    class: Option<&'static str>,
    #[serde(skip)]
    non_hmac_request_keys: Vec<String>,
    #[serde(skip)]
    non_hmac_response_keys: Vec<String>,
}

impl MountInfo {
    /// The mount serving `path`: `sys/`, an auth method (the token store included), or a
    /// secrets engine; nothing when no mount serves it.
    pub(crate) fn of(unsealed: &Unsealed, path: &str) -> MountInfo {
        if path.starts_with("sys/") || path == "sys" {
            return MountInfo {
                point: Some("sys/".into()),
                kind: Some("system".into()),
                ..MountInfo::default()
            };
        }
        let (table, relative, class, prefix) = match path.strip_prefix("auth/") {
            Some(rest) => (unsealed.auths(), rest, "auth", "auth/"),
            None => (unsealed.mounts(), path, "secret", ""),
        };
        let Some(entry) = table.route(relative) else {
            return MountInfo::default();
        };
        MountInfo {
            point: Some(format!("{prefix}{}", entry.path)),
            kind: Some(entry.kind.clone()),
            accessor: Some(entry.accessor.clone()).filter(|accessor| !accessor.is_empty()),
            class: Some(class),
            non_hmac_request_keys: entry.config.audit_non_hmac_request_keys.clone(),
            non_hmac_response_keys: entry.config.audit_non_hmac_response_keys.clone(),
        }
    }
}

/// A record's `time`: RFC 3339 in UTC, with nanoseconds.
pub(crate) fn time(now: Timestamp) -> String {
    now.to_string()
}

/// How strings are hashed in one part of a record.
#[derive(Clone, Copy)]
struct Hashing<'a> {
    /// `None`: `log_raw`, nothing is hashed.
    hmac: Option<&'a PreparedHmac>,
    /// Values under these keys stay in clear.
    non_hmac: &'a [String],
    /// The hash of the empty string, made once per device (empty values are common: KV's
    /// `deletion_time`).
    empty: &'a str,
    /// Response data: an RFC 3339 timestamp under a `*_time` key (`created_time`) stays in
    /// clear, as Vault leaves the times its engines answer. Request data is the caller's, so
    /// every string of it is hashed, whatever it looks like.
    clear_times: bool,
}

impl Hashing<'_> {
    fn string(&self, value: &str) -> String {
        match self.hmac {
            Some(_) if value.is_empty() => self.empty.to_owned(),
            Some(hmac) => hmac_string(hmac, value),
            None => value.to_owned(),
        }
    }

    fn keeps(&self, key: Option<&str>, text: &str) -> bool {
        key.is_some_and(|key| {
            self.non_hmac.iter().any(|kept| kept == key)
                || (self.clear_times && key.ends_with("_time") && is_timestamp(text))
        })
    }
}

/// `"hmac-sha256:" + hex(HMAC(value))`, written byte by byte into one allocation (this runs for
/// every string of every record).
pub(crate) fn hmac_string(hmac: &PreparedHmac, value: &str) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    const PREFIX: &[u8] = b"hmac-sha256:";
    let tag = hmac.sign(value.as_bytes());
    let mut out = Vec::with_capacity(PREFIX.len() + 2 * tag.len());
    out.extend_from_slice(PREFIX);
    for byte in tag {
        out.push(DIGITS[usize::from(byte >> 4)]);
        out.push(DIGITS[usize::from(byte & 0x0f)]);
    }
    // Only ASCII was written.
    String::from_utf8(out).unwrap_or_default()
}

/// Whether `text` is an RFC 3339 timestamp (Vault leaves the times its engines answer in clear:
/// creation and deletion times are not secrets, and they make records searchable).
fn is_timestamp(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() >= 20
        && bytes.len() <= 40
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && matches!(bytes[10], b'T' | b't')
        && text.parse::<Timestamp>().is_ok()
}

/// A JSON value serialised with its strings hashed.
struct Hashed<'a> {
    value: &'a Value,
    /// The nearest enclosing map key.
    key: Option<&'a str>,
    how: Hashing<'a>,
}

impl Serialize for Hashed<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.value {
            Value::String(text) => {
                if self.how.hmac.is_some() && !self.how.keeps(self.key, text) {
                    serializer.serialize_str(&self.how.string(text))
                } else {
                    serializer.serialize_str(text)
                }
            }
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Hashed {
                        value: item,
                        key: self.key,
                        how: self.how,
                    })?;
                }
                seq.end()
            }
            Value::Object(map) => HashedMap {
                map,
                how: self.how,
                elide: false,
            }
            .serialize(serializer),
            other => other.serialize(serializer),
        }
    }
}

/// A JSON object serialised with its strings hashed; `elide` replaces a list answer's `keys`
/// and `key_info` by their counts (`elide_list_responses`).
struct HashedMap<'a> {
    map: &'a Map<String, Value>,
    how: Hashing<'a>,
    elide: bool,
}

impl Serialize for HashedMap<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_map(Some(self.map.len()))?;
        for (key, value) in self.map {
            match (self.elide, key.as_str(), value) {
                (true, "keys", Value::Array(items)) => out.serialize_entry(key, &items.len())?,
                (true, "key_info", Value::Object(map)) => out.serialize_entry(key, &map.len())?,
                _ => out.serialize_entry(
                    key,
                    &Hashed {
                        value,
                        key: Some(key),
                        how: self.how,
                    },
                )?,
            }
        }
        out.end()
    }
}

/// Vault's `auth` block: the caller, or the token a response issued.
#[derive(Serialize, Default)]
struct AuthBlock<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    client_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    accessor: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    display_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    policies: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_policies: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    num_uses: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    remaining_uses: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_ttl: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_issue_time: Option<String>,
}

#[derive(Serialize)]
struct Namespace {
    id: &'static str,
}

/// Vault's `request` block.
#[derive(Serialize)]
struct RequestBlock<'a> {
    id: &'a str,
    operation: &'static str,
    #[serde(flatten)]
    mount: &'a MountInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_token_accessor: Option<Cow<'a, str>>,
    namespace: Namespace,
    path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<HashedMap<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    remote_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    remote_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    wrap_ttl: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_certificate_serial_number: Option<String>,
}

/// Vault's `wrap_info` block of a response.
#[derive(Serialize)]
struct WrapBlock<'a> {
    ttl: u64,
    token: String,
    accessor: Cow<'a, str>,
    creation_time: &'a str,
    creation_path: &'a str,
}

/// Vault's `response` block, plus `status`.
#[derive(Serialize)]
struct ResponseBlock<'a> {
    #[serde(flatten)]
    mount: &'a MountInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth: Option<AuthBlock<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<HashedMap<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    warnings: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    wrap_info: Option<WrapBlock<'a>>,
    status: u16,
}

/// Vault's operation names.
fn operation_name(operation: Operation) -> &'static str {
    operation.capability()
}

fn encode(out: &mut Vec<u8>, value: &impl Serialize) -> Result<(), EngineError> {
    serde_json::to_writer(out, value)
        .map_err(|error| EngineError::Internal(format!("formatting an audit record: {error}")))
}

/// An accessor as a device shows it: hashed when `hmac_accessor` (and not `log_raw`).
fn accessor<'a>(device: &Device, hmac: Option<&PreparedHmac>, value: &'a str) -> Cow<'a, str> {
    match hmac {
        Some(hmac) if device.format.hmac_accessor => Cow::Owned(hmac_string(hmac, value)),
        _ => Cow::Borrowed(value),
    }
}

/// The decimal serial number of a DER certificate (Vault logs the leaf's), if it parses.
fn certificate_serial(der: &[u8]) -> Option<String> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(decimal(certificate.tbs_certificate.raw_serial()))
}

/// A big-endian unsigned integer in decimal.
fn decimal(bytes: &[u8]) -> String {
    let mut number: Vec<u8> = bytes
        .iter()
        .copied()
        .skip_while(|byte| *byte == 0)
        .collect();
    let mut digits = Vec::new();
    while !number.is_empty() {
        let mut remainder = 0u32;
        for byte in &mut number {
            let value = (remainder << 8) | u32::from(*byte);
            *byte = u8::try_from(value / 10).unwrap_or(u8::MAX);
            remainder = value % 10;
        }
        digits.push(b'0' + u8::try_from(remainder).unwrap_or(0));
        let leading = number.iter().take_while(|byte| **byte == 0).count();
        number.drain(..leading);
    }
    if digits.is_empty() {
        return "0".into();
    }
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}

/// The `"auth":{…},"request":{…}` part of a device's records for `event`.
pub(crate) fn request_fragment(
    device: &Device,
    event: &AuditEvent<'_>,
    mount: &MountInfo,
) -> Result<Vec<u8>, EngineError> {
    let hmac = (!device.format.log_raw).then_some(&device.salt);
    let how = Hashing {
        hmac,
        non_hmac: &mount.non_hmac_request_keys,
        empty: &device.empty_hash,
        clear_times: false,
    };
    // The caller's token and accessor are hashed once, for both blocks; an authenticated
    // caller's come from the device's cache when it made a request lately.
    let cached = event
        .auth
        .as_ref()
        .filter(|auth| hmac.is_some() && !auth.token_key.is_empty())
        .and_then(|auth| device.cached_caller(auth.token_key));
    let (client_token, caller_accessor) = match cached {
        Some((token, accessor)) => (Some(token), Some(Cow::Owned(accessor))),
        None => {
            let client_token = event
                .token
                .filter(|token| !token.is_empty())
                .map(|token| how.string(token));
            let caller_accessor = event
                .auth
                .as_ref()
                .map(|auth| accessor(device, hmac, auth.accessor))
                .filter(|accessor| !accessor.is_empty());
            if let (Some(auth), Some(token), Some(accessor)) =
                (event.auth.as_ref(), &client_token, &caller_accessor)
                && hmac.is_some()
                && !auth.token_key.is_empty()
            {
                device.cache_caller(auth.token_key, token, accessor);
            }
            (client_token, caller_accessor)
        }
    };
    let auth = match &event.auth {
        Some(auth) => AuthBlock {
            client_token: client_token.clone(),
            accessor: caller_accessor.clone(),
            display_name: Some(auth.display_name),
            policies: Some(auth.policies),
            token_policies: Some(auth.policies),
            metadata: auth.metadata.filter(|metadata| !metadata.is_empty()),
            num_uses: None,
            remaining_uses: Some(auth.remaining_uses).filter(|uses| *uses > 0),
            token_type: Some(auth.token_type),
            token_ttl: Some(auth.ttl).filter(|ttl| *ttl > 0),
            token_issue_time: Timestamp::from_nanosecond(auth.issue_time_nanos)
                .ok()
                .filter(|_| auth.issue_time_nanos > 0)
                .and_then(|time| time.round(jiff::Unit::Second).ok())
                .map(|time| time.to_string()),
        },
        // No caller: Vault writes the zero token type.
        None => AuthBlock {
            token_type: Some("default"),
            ..AuthBlock::default()
        },
    };
    let connection = event.connection;
    let request = RequestBlock {
        id: event.request_id,
        operation: operation_name(event.operation),
        mount,
        client_token,
        client_token_accessor: caller_accessor,
        namespace: Namespace { id: "root" },
        path: event.path,
        data: event.data.map(|map| HashedMap {
            map,
            how,
            elide: false,
        }),
        remote_address: connection
            .and_then(|connection| connection.remote_addr)
            .map(|address| address.to_string()),
        remote_port: connection.and_then(|connection| connection.remote_port),
        wrap_ttl: event.wrap_ttl.filter(|ttl| *ttl > 0),
        client_certificate_serial_number: connection
            .and_then(|connection| connection.client_cert.as_ref())
            .and_then(|certificate| certificate_serial(certificate.leaf())),
    };
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"\"auth\":");
    encode(&mut out, &auth)?;
    out.extend_from_slice(b",\"request\":");
    encode(&mut out, &request)?;
    Ok(out)
}

/// A request record from its time and fragment, with the error that refused the request
/// before it could run (a token that did not authenticate), as Vault writes it.
pub(crate) fn request_record(
    time: &str,
    fragment: &[u8],
    error: Option<&EngineError>,
) -> Result<Vec<u8>, EngineError> {
    let mut out = Vec::with_capacity(fragment.len() + 64);
    out.extend_from_slice(b"{\"time\":\"");
    out.extend_from_slice(time.as_bytes());
    out.extend_from_slice(b"\",\"type\":\"request\",");
    out.extend_from_slice(fragment);
    if let Some(error) = error {
        out.extend_from_slice(b",\"error\":");
        encode(&mut out, &error.to_string())?;
    }
    out.push(b'}');
    Ok(out)
}

/// What a response record says besides the request's fragment.
pub(crate) struct Response<'a> {
    pub(crate) operation: Operation,
    pub(crate) mount: &'a MountInfo,
    pub(crate) outcome: Outcome<'a>,
    pub(crate) status: u16,
}

/// A response record for one device.
pub(crate) fn response_record(
    device: &Device,
    time: &str,
    fragment: &[u8],
    response: &Response<'_>,
) -> Result<Vec<u8>, EngineError> {
    let hmac = (!device.format.log_raw).then_some(&device.salt);
    let how = Hashing {
        hmac,
        non_hmac: &response.mount.non_hmac_response_keys,
        empty: &device.empty_hash,
        clear_times: true,
    };
    let (answer, error): (Option<&LogicalResponse>, Option<&EngineError>) = match response.outcome {
        Outcome::Answer(answer) => (answer, None),
        Outcome::Failed(error) => (None, Some(error)),
    };
    let elide = device.format.elide_list_responses && response.operation == Operation::List;
    let block = ResponseBlock {
        mount: response.mount,
        auth: answer
            .and_then(|answer| answer.auth.as_ref())
            .map(|issued| AuthBlock {
                client_token: Some(how.string(&issued.client_token)),
                accessor: Some(accessor(device, hmac, &issued.accessor)),
                display_name: None,
                policies: Some(&issued.policies),
                token_policies: Some(&issued.token_policies),
                metadata: Some(&issued.metadata).filter(|metadata| !metadata.is_empty()),
                num_uses: Some(issued.num_uses).filter(|uses| *uses > 0),
                remaining_uses: None,
                token_type: Some("service"),
                token_ttl: Some(issued.lease_duration).filter(|ttl| *ttl > 0),
                token_issue_time: None,
            }),
        data: answer
            .and_then(|answer| answer.data.as_ref())
            .map(|map| HashedMap { map, how, elide }),
        warnings: answer
            .map(|answer| answer.warnings.as_slice())
            .filter(|warnings| !warnings.is_empty()),
        wrap_info: answer
            .and_then(|answer| answer.wrap_info.as_ref())
            .map(|wrap| WrapBlock {
                ttl: wrap.ttl,
                token: how.string(&wrap.token),
                accessor: accessor(device, hmac, &wrap.accessor),
                creation_time: &wrap.creation_time,
                creation_path: &wrap.creation_path,
            }),
        status: response.status,
    };
    let mut out = Vec::with_capacity(fragment.len() + 256);
    out.extend_from_slice(b"{\"time\":\"");
    out.extend_from_slice(time.as_bytes());
    out.extend_from_slice(b"\",\"type\":\"response\",");
    out.extend_from_slice(fragment);
    out.extend_from_slice(b",\"response\":");
    encode(&mut out, &block)?;
    if let Some(error) = error {
        out.extend_from_slice(b",\"error\":");
        encode(&mut out, &error.to_string())?;
    }
    out.push(b'}');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_numbers_are_decimal() {
        assert_eq!(decimal(&[]), "0");
        assert_eq!(decimal(&[0]), "0");
        assert_eq!(decimal(&[0x01, 0x00]), "256");
        assert_eq!(
            decimal(&[0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            "18446744073709551615"
        );
    }

    #[test]
    fn only_answered_times_stay_in_clear() {
        let hmac = PreparedHmac::new(&[7; 32]);
        let serialise = |value: &Value, clear_times: bool| {
            let how = Hashing {
                hmac: Some(&hmac),
                non_hmac: &[],
                empty: "",
                clear_times,
            };
            serde_json::to_value(Hashed {
                value,
                key: None,
                how,
            })
            .unwrap()
        };
        let data = serde_json::json!({
            "created_time": "2024-01-02T03:04:05Z",
            "password": "2024-01-02T03:04:05Z",
            "nested": {"deletion_time": "2024-01-02T03:04:05Z"},
        });
        let answer = serialise(&data, true);
        assert_eq!(answer["created_time"], "2024-01-02T03:04:05Z");
        assert_eq!(answer["nested"]["deletion_time"], "2024-01-02T03:04:05Z");
        // A value that merely looks like a time, under another key, is hashed.
        assert!(
            answer["password"]
                .as_str()
                .unwrap()
                .starts_with("hmac-sha256:")
        );
        // Request data is the caller's: every string is hashed.
        let request = serialise(&data, false);
        for value in [
            &request["created_time"],
            &request["password"],
            &request["nested"]["deletion_time"],
        ] {
            assert!(
                value.as_str().unwrap().starts_with("hmac-sha256:"),
                "{request}"
            );
        }
    }

    #[test]
    fn timestamps_are_recognised() {
        assert!(is_timestamp("2024-01-02T03:04:05Z"));
        assert!(is_timestamp("2024-01-02T03:04:05.123456789+02:00"));
        assert!(!is_timestamp("2024-01-02"));
        assert!(!is_timestamp("s3cr3t-value-not-a-time"));
        assert!(!is_timestamp("2024-01-02T03:04:05Zsecret"));
    }
}
