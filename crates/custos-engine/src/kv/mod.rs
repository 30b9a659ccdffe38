//! The key-value secrets engines: [`v1::KvV1`] (one unversioned JSON object per path) and
//! [`v2::KvV2`] (versioned secrets with metadata, check-and-set and soft delete), both answering
//! the paths, fields and messages of Vault's `kv` plugin so Vault clients work unmodified.
//!
//! This module holds what both versions share: Vault's weakly typed field parsing (an integer
//! may arrive as `3` or `"3"`), Go-style durations and timestamps, folder listing and the size
//! limit on stored values.

pub mod v1;
pub mod v2;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde_json::Value;

use crate::EngineError;
use crate::logical::{LogicalResponse, MountStorage};

/// How many keys one storage list call fetches while walking a folder.
const LIST_PAGE: usize = 1000;
/// The longest secret path, in bytes: with the mount prefix and a version suffix, storage keys
/// stay well below [`custos_storage::MAX_KEY_LEN`].
pub(crate) const MAX_PATH_BYTES: usize = 2048;

/// Refuses paths no storage key can hold, so they fail as a client error and not deep in storage.
pub(crate) fn check_path_limits(path: &str) -> Result<(), EngineError> {
    if path.len() > MAX_PATH_BYTES {
        return Err(EngineError::InvalidRequest(format!(
            "the path is {} bytes long, the limit is {MAX_PATH_BYTES} bytes",
            path.len()
        )));
    }
    if path.contains('\0') {
        return Err(EngineError::InvalidRequest(
            "the path contains a NUL character".into(),
        ));
    }
    Ok(())
}

/// Formats a time as Vault does (Go's `time.RFC3339Nano`): UTC, `Z`, and only as many
/// fractional digits as needed (`2018-03-22T02:24:06.945319214Z`, `2018-03-22T02:24:06Z`).
pub(crate) fn format_time(time: Timestamp) -> String {
    // jiff's default precision prints the fractional seconds without trailing zeros, which is
    // exactly what Go's RFC3339Nano layout does.
    time.to_string()
}

/// Formats whole seconds as Go's `time.Duration.String` does: `0s`, `45s`, `1m30s`, `3h0m0s`.
pub(crate) fn format_go_duration(seconds: i64) -> String {
    if seconds == 0 {
        return "0s".into();
    }
    let sign = if seconds < 0 { "-" } else { "" };
    let total = seconds.unsigned_abs();
    let (hours, minutes, secs) = (total / 3600, (total % 3600) / 60, total % 60);
    if hours > 0 {
        format!("{sign}{hours}h{minutes}m{secs}s")
    } else if minutes > 0 {
        format!("{sign}{minutes}m{secs}s")
    } else {
        format!("{sign}{secs}s")
    }
}

/// Parses a Go duration string (`"1h30m"`, `"1.5h"`, `"300ms"`, `"-2s"`, `"0"`), plus the `d`
/// (day) unit Vault also accepts, into nanoseconds.
pub fn parse_go_duration(input: &str) -> Result<i128, String> {
    let invalid = || format!("invalid duration {input:?}");
    let mut rest = input.trim();
    let mut negative = false;
    if let Some(stripped) = rest.strip_prefix('-') {
        negative = true;
        rest = stripped;
    } else if let Some(stripped) = rest.strip_prefix('+') {
        rest = stripped;
    }
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(number_len);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(invalid());
        }
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let unit_nanos: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            _ => return Err(invalid()),
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        let whole: i128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| invalid())?
        };
        let mut value = whole.checked_mul(unit_nanos).ok_or_else(invalid)?;
        let mut scale = unit_nanos;
        for digit in fraction.chars().take(30) {
            scale /= 10;
            let digit = i128::from(digit.to_digit(10).ok_or_else(invalid)?);
            value = value.checked_add(digit * scale).ok_or_else(invalid)?;
        }
        total = total.checked_add(value).ok_or_else(invalid)?;
        // Go's limit: a duration is an int64 of nanoseconds.
        if total > i128::from(i64::MAX) {
            return Err(invalid());
        }
        rest = tail;
    }
    Ok(if negative { -total } else { total })
}

/// Parses a field Vault types as `TypeDurationSecond`: a number of seconds (`3600`, `"3600"`)
/// or a duration string (`"1h"`), truncated to whole seconds.
pub(crate) fn parse_duration_seconds(field: &str, value: &Value) -> Result<i64, EngineError> {
    let invalid = || {
        EngineError::InvalidRequest(format!(
            "error converting input {value} for field {field:?}: expected a duration such as \"3h\" or a number of seconds"
        ))
    };
    match value {
        Value::Number(number) => {
            if let Some(seconds) = number.as_i64() {
                Ok(seconds)
            } else {
                number
                    .as_f64()
                    .filter(|seconds| seconds.is_finite() && seconds.abs() < 9.2e18)
                    .map(|seconds| seconds.trunc() as i64)
                    .ok_or_else(invalid)
            }
        }
        Value::String(text) => {
            let text = text.trim();
            if text.is_empty() {
                return Ok(0);
            }
            if let Ok(seconds) = text.parse::<i64>() {
                return Ok(seconds);
            }
            let nanos = parse_go_duration(text).map_err(|_| invalid())?;
            i64::try_from(nanos / 1_000_000_000).map_err(|_| invalid())
        }
        _ => Err(invalid()),
    }
}

/// Parses a field Vault types as `TypeInt`: a JSON integer, an integral float or a numeric string.
pub(crate) fn parse_int(field: &str, value: &Value) -> Result<i64, EngineError> {
    let invalid = || {
        EngineError::InvalidRequest(format!(
            "error converting input {value} for field {field:?}: expected an integer"
        ))
    };
    match value {
        Value::Number(number) => number
            .as_i64()
            .or_else(|| {
                number
                    .as_f64()
                    .filter(|float| float.fract() == 0.0 && float.abs() < 9.2e18)
                    .map(|float| float as i64)
            })
            .ok_or_else(invalid),
        Value::String(text) => text.trim().parse::<i64>().map_err(|_| invalid()),
        _ => Err(invalid()),
    }
}

/// Parses a field Vault types as `TypeBool`: `true`/`false`, or the strings Go's
/// `strconv.ParseBool` accepts (`"true"`, `"1"`, `"f"`, ...).
pub(crate) fn parse_bool(field: &str, value: &Value) -> Result<bool, EngineError> {
    let invalid = || {
        EngineError::InvalidRequest(format!(
            "error converting input {value} for field {field:?}: expected a boolean"
        ))
    };
    match value {
        Value::Bool(flag) => Ok(*flag),
        Value::Number(number) => Ok(number.as_f64().is_some_and(|float| float != 0.0)),
        Value::String(text) => match text.trim() {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
            "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
            _ => Err(invalid()),
        },
        _ => Err(invalid()),
    }
}

/// Serialises a value to store and checks it against the mount's size limit.
pub(crate) fn encode_limited(
    value: &impl serde::Serialize,
    max_value_bytes: usize,
) -> Result<Vec<u8>, EngineError> {
    let bytes = serde_json::to_vec(value)
        .map_err(|error| EngineError::Internal(format!("encoding kv entry: {error}")))?;
    if bytes.len() > max_value_bytes {
        return Err(EngineError::InvalidRequest(format!(
            "the secret is too large: {} bytes once encoded, the limit is {max_value_bytes} bytes",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// Decodes a stored JSON record; a record that does not parse is corrupt, never "not found".
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    key: &str,
    bytes: &[u8],
) -> Result<T, EngineError> {
    serde_json::from_slice(bytes)
        .map_err(|error| EngineError::Internal(format!("kv entry {key:?} is corrupt: {error}")))
}

/// The storage prefix of the folder a list request names (`""` for the root, else `a/b/`).
pub(crate) fn folder_prefix(path: &str) -> String {
    let folder = path.trim_matches('/');
    if folder.is_empty() {
        String::new()
    } else {
        format!("{folder}/")
    }
}

/// Lists the immediate children of `prefix` (a storage prefix ending in `/`, or empty): leaves
/// by name, folders with a trailing `/`, sorted and without duplicates. `None` for an empty folder,
/// which Vault answers with 404.
pub(crate) async fn list_children(
    storage: &MountStorage,
    prefix: &str,
) -> Result<Option<LogicalResponse>, EngineError> {
    let mut children = BTreeSet::new();
    let mut after: Option<String> = None;
    loop {
        let page = storage.list(prefix, after.as_deref(), LIST_PAGE).await?;
        for key in &page.keys {
            let Some(relative) = key.strip_prefix(prefix) else {
                continue;
            };
            match relative.split_once('/') {
                Some((folder, _)) if !folder.is_empty() => {
                    children.insert(format!("{folder}/"));
                }
                Some(_) => {}
                None if !relative.is_empty() => {
                    children.insert(relative.to_owned());
                }
                None => {}
            }
        }
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    if children.is_empty() {
        return Ok(None);
    }
    Ok(Some(LogicalResponse::list(children.into_iter().collect())))
}

/// Vault's answer to an operation a path does not support (405 in Vault).
pub(crate) fn unsupported(operation: crate::logical::Operation, path: &str) -> EngineError {
    EngineError::UnsupportedOperation(format!(
        "{} operation not supported on path {path:?}",
        operation.capability()
    ))
}
