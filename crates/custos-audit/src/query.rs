//! Filtering audit records: which lines `custos audit query` prints, and the columns of its
//! table. Records are Vault-shaped (`time`, `type`, `auth`, `request`, `response`, `error`).

use jiff::Timestamp;
use serde_json::Value;

/// Whether a request succeeded, as its record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// No `error` in the record.
    Ok,
    /// The record carries an `error`.
    Error,
}

/// The conditions a record must meet; `None` fields match everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Records at or after this time.
    pub since: Option<Timestamp>,
    /// Records before this time.
    pub until: Option<Timestamp>,
    /// `request.path` starts with this.
    pub path_prefix: Option<String>,
    /// `auth.accessor` equals this (as written in the record: `hmac-sha256:<hex>` unless the
    /// device logs accessors raw).
    pub accessor: Option<String>,
    /// `request.remote_address` equals this.
    pub remote_address: Option<String>,
    /// `request.operation` equals this (`read`, `update`, `login`, ...).
    pub operation: Option<String>,
    /// Whether the record carries an error.
    pub outcome: Option<Outcome>,
    /// `type` equals this (`request`, `response`, `checkpoint`); checkpoints are left out unless
    /// asked for.
    pub kind: Option<String>,
}

/// The table columns of one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// `time`.
    pub time: String,
    /// `type`.
    pub kind: String,
    /// `request.operation`.
    pub operation: String,
    /// `request.path`.
    pub path: String,
    /// `request.remote_address`.
    pub remote_address: String,
    /// `auth.display_name`.
    pub display_name: String,
    /// `ok`, or `error: <error>`.
    pub outcome: String,
}

fn text<'a>(record: &'a Value, pointer: &str) -> &'a str {
    record
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn has_error(record: &Value) -> bool {
    match record.get("error") {
        None | Some(Value::Null) => false,
        Some(Value::String(error)) => !error.is_empty(),
        Some(_) => true,
    }
}

impl Filter {
    /// Whether `record` meets every condition.
    pub fn matches(&self, record: &Value) -> bool {
        let kind = text(record, "/type");
        match &self.kind {
            Some(wanted) if wanted != kind => return false,
            None if kind == "checkpoint" => return false,
            _ => {}
        }
        if self.since.is_some() || self.until.is_some() {
            let Ok(time) = text(record, "/time").parse::<Timestamp>() else {
                return false;
            };
            if self.since.is_some_and(|since| time < since)
                || self.until.is_some_and(|until| time >= until)
            {
                return false;
            }
        }
        if let Some(prefix) = &self.path_prefix
            && !text(record, "/request/path").starts_with(prefix.as_str())
        {
            return false;
        }
        let equal = |wanted: &Option<String>, pointer: &str| {
            wanted
                .as_deref()
                .is_none_or(|wanted| text(record, pointer) == wanted)
        };
        if !equal(&self.accessor, "/auth/accessor")
            || !equal(&self.remote_address, "/request/remote_address")
            || !equal(&self.operation, "/request/operation")
        {
            return false;
        }
        match self.outcome {
            Some(Outcome::Ok) => !has_error(record),
            Some(Outcome::Error) => has_error(record),
            None => true,
        }
    }
}

impl Row {
    /// The columns of `record`.
    pub fn of(record: &Value) -> Row {
        let outcome = match record.get("error") {
            Some(Value::String(error)) if !error.is_empty() => format!("error: {error}"),
            Some(Value::Null) | None => "ok".to_owned(),
            Some(Value::String(_)) => "ok".to_owned(),
            Some(other) => format!("error: {other}"),
        };
        let kind = text(record, "/type");
        let (operation, path) = if kind == "checkpoint" {
            (
                text(record, "/reason").to_owned(),
                text(record, "/device").to_owned(),
            )
        } else {
            (
                text(record, "/request/operation").to_owned(),
                text(record, "/request/path").to_owned(),
            )
        };
        Row {
            time: text(record, "/time").to_owned(),
            kind: kind.to_owned(),
            operation,
            path,
            remote_address: text(record, "/request/remote_address").to_owned(),
            display_name: text(record, "/auth/display_name").to_owned(),
            outcome,
        }
    }
}

/// A point in time given as RFC 3339 (`2026-11-28T10:00:00Z`) or as a span before `now`
/// (`90s`, `15m`, `24h`, `7d`).
pub fn parse_time(text: &str, now: Timestamp) -> Option<Timestamp> {
    if let Ok(time) = text.parse::<Timestamp>() {
        return Some(time);
    }
    let span = crate::options::parse_duration(text)?;
    let span = jiff::SignedDuration::try_from(span).ok()?;
    now.checked_sub(span).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record() -> Value {
        json!({
            "seq": 3, "prev_hash": "sha256:00", "time": "2026-11-28T10:00:00.5Z", "type": "response",
            "auth": {"accessor": "hmac-sha256:ab", "display_name": "token-ci"},
            "request": {"operation": "read", "path": "secret/data/app", "remote_address": "10.0.0.7"},
            "error": ""
        })
    }

    #[test]
    fn every_condition_filters() {
        let record = record();
        assert!(Filter::default().matches(&record));
        let now: Timestamp = "2026-11-28T12:00:00Z".parse().unwrap();
        let cases: Vec<(Filter, bool)> = vec![
            (
                Filter {
                    since: parse_time("2h", now),
                    ..Filter::default()
                },
                true,
            ),
            (
                Filter {
                    since: parse_time("1h", now),
                    ..Filter::default()
                },
                false,
            ),
            (
                Filter {
                    until: parse_time("2026-11-28T10:00:00Z", now),
                    ..Filter::default()
                },
                false,
            ),
            (
                Filter {
                    path_prefix: Some("secret/".into()),
                    ..Filter::default()
                },
                true,
            ),
            (
                Filter {
                    path_prefix: Some("sys/".into()),
                    ..Filter::default()
                },
                false,
            ),
            (
                Filter {
                    accessor: Some("hmac-sha256:ab".into()),
                    ..Filter::default()
                },
                true,
            ),
            (
                Filter {
                    accessor: Some("hmac-sha256:cd".into()),
                    ..Filter::default()
                },
                false,
            ),
            (
                Filter {
                    remote_address: Some("10.0.0.8".into()),
                    ..Filter::default()
                },
                false,
            ),
            (
                Filter {
                    operation: Some("read".into()),
                    ..Filter::default()
                },
                true,
            ),
            (
                Filter {
                    outcome: Some(Outcome::Ok),
                    ..Filter::default()
                },
                true,
            ),
            (
                Filter {
                    outcome: Some(Outcome::Error),
                    ..Filter::default()
                },
                false,
            ),
            (
                Filter {
                    kind: Some("request".into()),
                    ..Filter::default()
                },
                false,
            ),
        ];
        for (filter, expected) in cases {
            assert_eq!(filter.matches(&record), expected, "{filter:?}");
        }
    }

    #[test]
    fn checkpoints_only_when_asked() {
        let checkpoint = json!({"type": "checkpoint", "reason": "close", "device": "file/"});
        assert!(!Filter::default().matches(&checkpoint));
        let asked = Filter {
            kind: Some("checkpoint".into()),
            ..Filter::default()
        };
        assert!(asked.matches(&checkpoint));
        assert_eq!(Row::of(&checkpoint).operation, "close");
    }

    #[test]
    fn rows_show_the_outcome() {
        let mut record = record();
        assert_eq!(Row::of(&record).outcome, "ok");
        record["error"] = json!("permission denied");
        let row = Row::of(&record);
        assert_eq!(row.outcome, "error: permission denied");
        assert_eq!(row.display_name, "token-ci");
        assert_eq!(row.path, "secret/data/app");
    }
}
