//! The options of a file device, given as Vault-style strings (`file_path`, `mode`, `fsync`, ...)
//! and resolved once into typed values.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::AuditError;

/// Where a device writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// A file, created if missing (its directory is never created).
    File(PathBuf),
    /// The process's standard output: the same chain and checkpoints, no rotation.
    Stdout,
}

/// When written records reach the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// `fdatasync` after every batch, before its callers are answered.
    EveryWrite,
    /// Callers are answered once the batch is written; a sync follows at most `fsync_interval`
    /// later, so power loss loses at most that much and a process crash loses nothing.
    Batched,
    /// Never sync: the operating system decides when the data reaches the disk.
    OsBuffered,
}

/// The resolved options of a file device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileOptions {
    /// Where records go.
    pub output: Output,
    /// The permission bits a new file gets; `None` leaves them to the umask (Vault's `0000`).
    pub mode: Option<u32>,
    /// When records are synced.
    pub fsync: FsyncPolicy,
    /// The longest a batched write stays unsynced.
    pub fsync_interval: Duration,
    /// The size past which the file is rotated; `None` never rotates.
    pub max_file_size: Option<u64>,
    /// A checkpoint after this many records (0: none by count).
    pub checkpoint_records: u64,
    /// A checkpoint after this long with records since the last one; zero disables checkpoints
    /// by count and by time, leaving only those written when a file is closed.
    pub checkpoint_interval: Duration,
}

/// The options [`FileOptions::from_options`] understands.
const KNOWN: &[&str] = &[
    "file_path",
    "path",
    "mode",
    "fsync",
    "fsync_interval",
    "max_file_size",
    "checkpoint_records",
    "checkpoint_interval",
];

impl FileOptions {
    /// Resolves the string options of device `device`; an unknown option or a bad value is an
    /// error that names it.
    pub fn from_options(
        device: &str,
        options: &BTreeMap<String, String>,
    ) -> Result<FileOptions, AuditError> {
        let invalid = |message: String| AuditError::Invalid {
            device: device.to_owned(),
            message,
        };
        if let Some(unknown) = options.keys().find(|key| !KNOWN.contains(&key.as_str())) {
            return Err(invalid(format!(
                "unknown option {unknown:?} (known: {})",
                KNOWN.join(", ")
            )));
        }
        let file_path = options
            .get("file_path")
            .or_else(|| options.get("path"))
            .map(|path| path.trim())
            .filter(|path| !path.is_empty())
            .ok_or_else(|| invalid("file_path is required".to_owned()))?;
        let output = if file_path == "stdout" {
            Output::Stdout
        } else {
            Output::File(PathBuf::from(file_path))
        };
        let mode = match options.get("mode").map(|mode| mode.trim()) {
            None | Some("") => Some(0o600),
            Some(text) => {
                let bits = u32::from_str_radix(text, 8)
                    .ok()
                    .filter(|bits| *bits <= 0o7777)
                    .ok_or_else(|| invalid(format!("mode {text:?} is not an octal mode")))?;
                (bits != 0).then_some(bits)
            }
        };
        let fsync = match options.get("fsync").map(|value| value.trim()) {
            None | Some("") | Some("batched") => FsyncPolicy::Batched,
            Some("every_write") => FsyncPolicy::EveryWrite,
            Some("os_buffered") => FsyncPolicy::OsBuffered,
            Some(other) => {
                return Err(invalid(format!(
                    "fsync {other:?} is not every_write, batched or os_buffered"
                )));
            }
        };
        let duration = |name: &str, default: Duration| -> Result<Duration, AuditError> {
            match options.get(name) {
                None => Ok(default),
                Some(text) => parse_duration(text)
                    .ok_or_else(|| invalid(format!("{name} {text:?} is not a duration"))),
            }
        };
        let fsync_interval = duration("fsync_interval", Duration::from_millis(100))?;
        if fsync_interval.is_zero() {
            return Err(invalid("fsync_interval must be more than 0".to_owned()));
        }
        let checkpoint_interval = duration("checkpoint_interval", Duration::from_secs(60))?;
        let max_file_size = match options.get("max_file_size") {
            None => None,
            Some(text) => Some(
                parse_size(text)
                    .filter(|size| *size > 0)
                    .ok_or_else(|| invalid(format!("max_file_size {text:?} is not a size")))?,
            ),
        };
        let checkpoint_records = match options.get("checkpoint_records") {
            None => 1000,
            Some(text) => text
                .trim()
                .parse()
                .map_err(|_| invalid(format!("checkpoint_records {text:?} is not a number")))?,
        };
        if output == Output::Stdout && max_file_size.is_some() {
            return Err(invalid("max_file_size cannot apply to stdout".to_owned()));
        }
        Ok(FileOptions {
            output,
            mode,
            fsync,
            fsync_interval,
            max_file_size,
            checkpoint_records,
            checkpoint_interval,
        })
    }
}

/// A duration such as `100ms`, `60s`, `5m`, `1h` or a bare number of seconds.
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let number: u64 = number.parse().ok()?;
    let duration = match unit.trim() {
        "" | "s" => Duration::from_secs(number),
        "ms" => Duration::from_millis(number),
        "m" => Duration::from_secs(number.checked_mul(60)?),
        "h" => Duration::from_secs(number.checked_mul(3600)?),
        "d" => Duration::from_secs(number.checked_mul(86_400)?),
        _ => return None,
    };
    Some(duration)
}

/// A size such as `100MiB`, `10MB`, `512KiB` or a bare number of bytes.
pub(crate) fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    let number: u64 = number.parse().ok()?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_follow_vault() {
        let resolved =
            FileOptions::from_options("file/", &options(&[("file_path", "/x/a.log")])).unwrap();
        assert_eq!(resolved.output, Output::File(PathBuf::from("/x/a.log")));
        assert_eq!(resolved.mode, Some(0o600));
        assert_eq!(resolved.fsync, FsyncPolicy::Batched);
        assert_eq!(resolved.fsync_interval, Duration::from_millis(100));
        assert_eq!(resolved.max_file_size, None);
        assert_eq!(resolved.checkpoint_records, 1000);
        assert_eq!(resolved.checkpoint_interval, Duration::from_secs(60));
    }

    #[test]
    fn every_option_is_read() {
        let resolved = FileOptions::from_options(
            "file/",
            &options(&[
                ("path", "stdout"),
                ("mode", "0000"),
                ("fsync", "every_write"),
                ("fsync_interval", "5ms"),
                ("checkpoint_records", "10"),
                ("checkpoint_interval", "0"),
            ]),
        )
        .unwrap();
        assert_eq!(resolved.output, Output::Stdout);
        assert_eq!(resolved.mode, None);
        assert_eq!(resolved.fsync, FsyncPolicy::EveryWrite);
        assert_eq!(resolved.fsync_interval, Duration::from_millis(5));
        assert_eq!(resolved.checkpoint_records, 10);
        assert_eq!(resolved.checkpoint_interval, Duration::ZERO);
        let sized = FileOptions::from_options(
            "file/",
            &options(&[("file_path", "a.log"), ("max_file_size", "100MiB")]),
        )
        .unwrap();
        assert_eq!(sized.max_file_size, Some(100 << 20));
    }

    #[test]
    fn bad_options_are_named() {
        let check = |pairs: &[(&str, &str)], expected: &str| {
            let error = FileOptions::from_options("file/", &options(pairs))
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{error:?} lacks {expected:?}");
        };
        check(&[], "file_path is required");
        check(&[("file_path", "a"), ("colour", "red")], "\"colour\"");
        check(&[("file_path", "a"), ("mode", "rw")], "mode");
        check(&[("file_path", "a"), ("fsync", "sometimes")], "fsync");
        check(
            &[("file_path", "a"), ("max_file_size", "big")],
            "max_file_size",
        );
        check(
            &[("file_path", "a"), ("fsync_interval", "0")],
            "fsync_interval",
        );
        check(
            &[("file_path", "stdout"), ("max_file_size", "1MiB")],
            "stdout",
        );
    }

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_size("10KiB"), Some(10_240));
        assert_eq!(parse_size("3MB"), Some(3_000_000));
        assert_eq!(parse_size("99999999999999999999GiB"), None);
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("ms"), None);
    }
}
