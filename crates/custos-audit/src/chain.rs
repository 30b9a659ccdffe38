//! The hash chain's line format: the `seq` and `prev_hash` fields a device puts at the front of
//! every record, checkpoint records, and the canonical checkpoint payload the server signs.

use std::borrow::Cow;
use std::io::Write as _;

use serde::Deserialize;

use crate::AuditError;

/// The `prev_hash` of the first line of a chain: no line came before it.
pub const GENESIS_HASH: &str =
    "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// The first line of every checkpoint payload, naming its layout.
pub const CHECKPOINT_PAYLOAD_VERSION: &str = "custos-audit-checkpoint/v1";

/// Why a checkpoint was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointReason {
    /// `checkpoint_records` records since the last checkpoint.
    Count,
    /// `checkpoint_interval` passed with records since the last checkpoint.
    Interval,
    /// The file passed `max_file_size` and is being renamed: it ends here.
    Rotate,
    /// The path is being opened again (SIGHUP, or the file was moved or deleted): it ends here.
    Reopen,
    /// The device is closing (seal, disable, shutdown): the file ends here.
    Close,
}

impl CheckpointReason {
    /// The word written in the record's `reason` field.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointReason::Count => "count",
            CheckpointReason::Interval => "interval",
            CheckpointReason::Rotate => "rotate",
            CheckpointReason::Reopen => "reopen",
            CheckpointReason::Close => "close",
        }
    }

    /// The reason named by `word`.
    pub fn parse(word: &str) -> Option<CheckpointReason> {
        Some(match word {
            "count" => CheckpointReason::Count,
            "interval" => CheckpointReason::Interval,
            "rotate" => CheckpointReason::Rotate,
            "reopen" => CheckpointReason::Reopen,
            "close" => CheckpointReason::Close,
            _ => return None,
        })
    }

    /// Whether a file may end with a checkpoint of this reason.
    pub fn closes_file(self) -> bool {
        matches!(
            self,
            CheckpointReason::Rotate | CheckpointReason::Reopen | CheckpointReason::Close
        )
    }
}

/// The bytes a checkpoint's signature covers: [`CHECKPOINT_PAYLOAD_VERSION`], then the device
/// path, `seq`, `prev_hash`, `time`, `records` and `reason`, each on its own line (joined by
/// `\n`, no trailing newline), exactly as they appear in the checkpoint record.
pub fn checkpoint_payload(
    device: &str,
    seq: u64,
    prev_hash: &str,
    time: &str,
    records: u64,
    reason: CheckpointReason,
) -> Vec<u8> {
    format!(
        "{CHECKPOINT_PAYLOAD_VERSION}\n{device}\n{seq}\n{prev_hash}\n{time}\n{records}\n{}",
        reason.as_str()
    )
    .into_bytes()
}

/// `sha256:<hex>` of one line (without its newline).
pub(crate) fn line_hash(line: &[u8]) -> String {
    format!("sha256:{}", custos_crypto::sha256_hex(line))
}

/// Appends `record` to `buffer` as line `seq` of the chain, linked to `prev_hash`, with its
/// newline; the record must be a JSON object on one line.
pub(crate) fn push_record(
    buffer: &mut Vec<u8>,
    seq: u64,
    prev_hash: &str,
    record: &[u8],
) -> Result<(), AuditError> {
    let Some((b'{', rest)) = record.split_first() else {
        return Err(AuditError::BadRecord);
    };
    if record.iter().any(|byte| *byte == b'\n' || *byte == b'\r') {
        return Err(AuditError::BadRecord);
    }
    let empty_object = rest
        .iter()
        .find(|byte| !byte.is_ascii_whitespace())
        .is_some_and(|byte| *byte == b'}');
    push_prefix(buffer, seq, prev_hash);
    if !empty_object {
        buffer.push(b',');
    }
    buffer.extend_from_slice(rest);
    buffer.push(b'\n');
    Ok(())
}

/// Writes `{"seq":N,"prev_hash":"…"` without a separator after it.
fn push_prefix(buffer: &mut Vec<u8>, seq: u64, prev_hash: &str) {
    buffer.extend_from_slice(b"{\"seq\":");
    // Writing into a Vec cannot fail, and `write!` formats without an intermediate String.
    let _ = write!(buffer, "{seq}");
    buffer.extend_from_slice(b",\"prev_hash\":\"");
    buffer.extend_from_slice(prev_hash.as_bytes());
    buffer.push(b'"');
}

/// The fields of a checkpoint record.
pub(crate) struct Checkpoint<'a> {
    pub(crate) device: &'a str,
    pub(crate) seq: u64,
    pub(crate) prev_hash: &'a str,
    pub(crate) time: &'a str,
    pub(crate) reason: CheckpointReason,
    pub(crate) signature: Option<&'a str>,
}

impl Checkpoint<'_> {
    /// What a checkpoint's `records` field holds: the lines of the chain before it.
    pub(crate) fn records(&self) -> u64 {
        self.seq.saturating_sub(1)
    }

    /// Appends the checkpoint line (with its newline) to `buffer`.
    pub(crate) fn push(&self, buffer: &mut Vec<u8>) {
        push_prefix(buffer, self.seq, self.prev_hash);
        let quoted = |text: &str| serde_json::Value::from(text).to_string();
        let line = format!(
            ",\"type\":\"checkpoint\",\"time\":\"{}\",\"device\":{},\"records\":{},\"reason\":\"{}\"",
            self.time,
            quoted(self.device),
            self.records(),
            self.reason.as_str()
        );
        buffer.extend_from_slice(line.as_bytes());
        if let Some(signature) = self.signature {
            buffer.extend_from_slice(b",\"signature\":");
            buffer.extend_from_slice(quoted(signature).as_bytes());
        }
        buffer.extend_from_slice(b"}\n");
    }
}

/// The chain fields of a line, read by verify and by a device continuing a file.
#[derive(Deserialize)]
pub(crate) struct Fields<'a> {
    pub(crate) seq: u64,
    #[serde(borrow)]
    pub(crate) prev_hash: Cow<'a, str>,
    #[serde(rename = "type", default, borrow)]
    pub(crate) kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(crate) time: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(crate) device: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(crate) records: Option<u64>,
    #[serde(default, borrow)]
    pub(crate) reason: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub(crate) signature: Option<Cow<'a, str>>,
}

/// Whether `hash` has the shape `sha256:` + 64 lower-case hex digits.
pub(crate) fn is_hash(hash: &str) -> bool {
    hash.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The current time as RFC 3339 UTC with nanoseconds (`2026-11-28T10:15:00.123456789Z`).
pub(crate) fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S.%9fZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_get_chain_fields_in_front() {
        let mut buffer = Vec::new();
        push_record(&mut buffer, 7, GENESIS_HASH, br#"{"type":"request"}"#).unwrap();
        push_record(&mut buffer, 8, GENESIS_HASH, b"{}").unwrap();
        let text = String::from_utf8(buffer).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            format!(r#"{{"seq":7,"prev_hash":"{GENESIS_HASH}","type":"request"}}"#)
        );
        assert_eq!(
            lines[1],
            format!(r#"{{"seq":8,"prev_hash":"{GENESIS_HASH}"}}"#)
        );
        for line in lines {
            serde_json::from_str::<serde_json::Value>(line).unwrap();
        }
    }

    #[test]
    fn records_that_are_not_one_line_objects_are_refused() {
        let mut buffer = Vec::new();
        for bad in [&b"[]"[..], b"", b"{\"a\":\n1}", b" {}"] {
            assert!(matches!(
                push_record(&mut buffer, 1, GENESIS_HASH, bad),
                Err(AuditError::BadRecord)
            ));
        }
        assert!(buffer.is_empty());
    }

    #[test]
    fn checkpoint_payload_is_canonical() {
        let payload = checkpoint_payload(
            "file/",
            12,
            GENESIS_HASH,
            "2026-11-28T10:15:00.000000001Z",
            11,
            CheckpointReason::Rotate,
        );
        assert_eq!(
            String::from_utf8(payload).unwrap(),
            format!(
                "custos-audit-checkpoint/v1\nfile/\n12\n{GENESIS_HASH}\n2026-11-28T10:15:00.000000001Z\n11\nrotate"
            )
        );
    }

    #[test]
    fn time_has_nanoseconds() {
        let time = now_rfc3339();
        assert_eq!(time.len(), "2026-11-28T10:15:00.123456789Z".len(), "{time}");
        assert!(time.parse::<jiff::Timestamp>().is_ok(), "{time}");
    }
}
