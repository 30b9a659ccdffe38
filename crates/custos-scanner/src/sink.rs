//! `FindingSink`s decide where findings go: a terminal, JSON lines, or a SARIF 2.1.0 log.
//!
//! Secrets are redacted unless the sink was built with `show_secrets`; snippets are
//! redacted the same way.

use std::io::{self, Write};

use serde_json::{Value, json};

use crate::finding::{Finding, redact};

/// Output formats of `custos scan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// Human-readable text.
    Text,
    /// One JSON object per line.
    Json,
    /// SARIF 2.1.0, as accepted by GitHub code scanning.
    Sarif,
}

/// Receives findings one by one and writes them somewhere.
pub trait FindingSink {
    /// Records one finding.
    ///
    /// # Errors
    /// Errors of the underlying writer.
    fn finding(&mut self, finding: &Finding) -> io::Result<()>;

    /// Completes the output (SARIF writes its whole document here).
    ///
    /// # Errors
    /// Errors of the underlying writer.
    fn finish(&mut self) -> io::Result<()>;
}

/// Builds the sink for a format.
pub fn sink_for<'w>(
    format: OutputFormat,
    writer: Box<dyn Write + 'w>,
    show_secrets: bool,
) -> Box<dyn FindingSink + 'w> {
    match format {
        OutputFormat::Text => Box::new(TextSink::new(writer, show_secrets)),
        OutputFormat::Json => Box::new(JsonLinesSink::new(writer, show_secrets)),
        OutputFormat::Sarif => Box::new(SarifSink::new(writer, show_secrets)),
    }
}

fn shown_secret(finding: &Finding, show_secrets: bool) -> String {
    if show_secrets {
        finding.secret.clone()
    } else {
        redact(&finding.secret)
    }
}

fn shown_snippet(finding: &Finding, show_secrets: bool) -> String {
    if show_secrets || finding.secret.is_empty() {
        finding.snippet.clone()
    } else {
        let first_line = finding.secret.lines().next().unwrap_or_default();
        if first_line.is_empty() {
            return finding.snippet.clone();
        }
        finding.snippet.replace(first_line, &redact(first_line))
    }
}

/// Human-readable findings, one block each.
pub struct TextSink<W: Write> {
    writer: W,
    show_secrets: bool,
}

impl<W: Write> TextSink<W> {
    /// A text sink writing to `writer`.
    pub fn new(writer: W, show_secrets: bool) -> Self {
        Self {
            writer,
            show_secrets,
        }
    }
}

impl<W: Write> FindingSink for TextSink<W> {
    fn finding(&mut self, finding: &Finding) -> io::Result<()> {
        let w = &mut self.writer;
        writeln!(
            w,
            "{}:{}:{}: {} ({})",
            finding.path, finding.line, finding.column, finding.rule_id, finding.description
        )?;
        let check = if finding.validated {
            "  [checksum valid]"
        } else {
            ""
        };
        writeln!(
            w,
            "    secret:      {}{check}",
            shown_secret(finding, self.show_secrets)
        )?;
        writeln!(
            w,
            "    line:        {}",
            shown_snippet(finding, self.show_secrets).trim()
        )?;
        if let Some(commit) = &finding.commit {
            writeln!(
                w,
                "    commit:      {} {} <{}> {}",
                commit.id, commit.author, commit.email, commit.date
            )?;
        }
        writeln!(w, "    fingerprint: {}", finding.fingerprint)?;
        writeln!(w)
    }

    fn finish(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

fn finding_json(finding: &Finding, show_secrets: bool) -> Value {
    json!({
        "rule_id": &*finding.rule_id,
        "description": &*finding.description,
        "path": finding.path,
        "line": finding.line,
        "column": finding.column,
        "end_line": finding.end_line,
        "end_column": finding.end_column,
        "secret": shown_secret(finding, show_secrets),
        "redacted": !show_secrets,
        "snippet": shown_snippet(finding, show_secrets),
        "validated": finding.validated,
        "entropy": (finding.entropy * 100.0).round() / 100.0,
        "fingerprint": finding.fingerprint,
        "commit": finding.commit.as_ref().map(|commit| json!({
            "id": commit.id,
            "author": commit.author,
            "email": commit.email,
            "date": commit.date,
            "summary": commit.summary,
        })),
    })
}

/// One JSON object per finding, one per line.
pub struct JsonLinesSink<W: Write> {
    writer: W,
    show_secrets: bool,
}

impl<W: Write> JsonLinesSink<W> {
    /// A JSON-lines sink writing to `writer`.
    pub fn new(writer: W, show_secrets: bool) -> Self {
        Self {
            writer,
            show_secrets,
        }
    }
}

impl<W: Write> FindingSink for JsonLinesSink<W> {
    fn finding(&mut self, finding: &Finding) -> io::Result<()> {
        serde_json::to_writer(&mut self.writer, &finding_json(finding, self.show_secrets))?;
        self.writer.write_all(b"\n")
    }

    fn finish(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

/// A SARIF 2.1.0 log with one run; written whole by `finish`.
pub struct SarifSink<W: Write> {
    writer: W,
    show_secrets: bool,
    rules: Vec<(String, String)>,
    results: Vec<Value>,
}

impl<W: Write> SarifSink<W> {
    /// A SARIF sink writing to `writer`.
    pub fn new(writer: W, show_secrets: bool) -> Self {
        Self {
            writer,
            show_secrets,
            rules: Vec::new(),
            results: Vec::new(),
        }
    }
}

impl<W: Write> FindingSink for SarifSink<W> {
    fn finding(&mut self, finding: &Finding) -> io::Result<()> {
        let rule_index = match self
            .rules
            .iter()
            .position(|(id, _)| **id == *finding.rule_id)
        {
            Some(index) => index,
            None => {
                self.rules
                    .push((finding.rule_id.to_string(), finding.description.to_string()));
                self.rules.len() - 1
            }
        };
        let mut message = format!(
            "{} found: {}",
            finding.description,
            shown_secret(finding, self.show_secrets)
        );
        if let Some(commit) = &finding.commit {
            message.push_str(&format!(
                " (introduced in commit {} by {} on {})",
                commit.id, commit.author, commit.date
            ));
        }
        let mut properties = json!({ "validated": finding.validated });
        if let Some(commit) = &finding.commit {
            properties["commit"] = json!({
                "id": commit.id, "author": commit.author, "email": commit.email, "date": commit.date,
            });
        }
        self.results.push(json!({
            "ruleId": finding.rule_id.to_string(),
            "ruleIndex": rule_index,
            "level": "error",
            "message": { "text": message },
            "locations": [{
                "physicalLocation": {
                    "artifactLocation": { "uri": uri_path(&finding.path) },
                    "region": {
                        "startLine": finding.line.max(1),
                        "startColumn": finding.column.max(1),
                        "endLine": finding.end_line.max(finding.line).max(1),
                        "endColumn": finding.end_column.max(1),
                        "snippet": { "text": shown_snippet(finding, self.show_secrets) },
                    },
                },
            }],
            "partialFingerprints": { "custosFingerprint/v1": finding.fingerprint },
            "properties": properties,
        }));
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        let rules: Vec<Value> = self
            .rules
            .iter()
            .map(|(id, description)| {
                json!({
                    "id": id,
                    "name": id,
                    "shortDescription": { "text": description },
                    "fullDescription": { "text": format!("{description}: a credential committed to source. Revoke it, then remove it from history.") },
                    "defaultConfiguration": { "level": "error" },
                    "help": { "text": "Revoke or rotate the credential first; deleting it from the file does not remove it from git history." },
                    "properties": { "tags": ["security", "secret"], "security-severity": "8.0", "precision": "high" },
                })
            })
            .collect();
        let log = json!({
            "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "version": "2.1.0",
            "runs": [{
                "tool": { "driver": {
                    "name": "custos",
                    "informationUri": "https://github.com/custos/custos",
                    "semanticVersion": env!("CARGO_PKG_VERSION"),
                    "rules": rules,
                }},
                "results": std::mem::take(&mut self.results),
                "columnKind": "utf16CodeUnits",
            }],
        });
        serde_json::to_writer_pretty(&mut self.writer, &log)?;
        self.writer.write_all(b"\n")?;
        self.writer.flush()
    }
}

/// A relative path as a SARIF URI reference: `/`-separated, with reserved bytes escaped.
fn uri_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || b"/-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
