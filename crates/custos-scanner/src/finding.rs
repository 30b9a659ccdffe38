//! `Finding`: a detection placed in its file (or commit), with a stable fingerprint.

use std::fmt;
use std::sync::Arc;

/// The commit that introduced a finding in `--git` mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    /// Full commit id.
    pub id: String,
    /// Author name.
    pub author: String,
    /// Author e-mail.
    pub email: String,
    /// Author date, strict ISO 8601.
    pub date: String,
    /// First line of the commit message.
    pub summary: String,
}

/// A secret found in some input.
///
/// It holds the secret itself, so `Debug` redacts it; sinks decide whether to show it.
#[derive(Clone)]
pub struct Finding {
    /// Rule id (`aws-access-key-id`).
    pub rule_id: Arc<str>,
    /// Rule description.
    pub description: Arc<str>,
    /// Path of the file, relative to the scan root when possible; `<stdin>` for stdin.
    pub path: String,
    /// 1-based line of the first byte of the secret.
    pub line: u32,
    /// 1-based byte column of the first byte of the secret.
    pub column: u32,
    /// 1-based line of the last byte of the secret.
    pub end_line: u32,
    /// 1-based byte column just past the secret on `end_line`.
    pub end_column: u32,
    /// The secret (lossily decoded as UTF-8).
    pub secret: String,
    /// The line holding the start of the secret, shortened around it.
    pub snippet: String,
    /// Whether a checksum proved the secret genuine.
    pub validated: bool,
    /// Shannon entropy of the secret, bits per byte.
    pub entropy: f64,
    /// The introducing commit, in git mode.
    pub commit: Option<Arc<CommitInfo>>,
    /// Stable identity: SHA-256 of rule id, path and secret, hex. Line numbers are not
    /// part of it, so moving a line does not make a baselined finding new.
    pub fingerprint: String,
}

impl fmt::Debug for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Finding")
            .field("rule_id", &self.rule_id)
            .field("path", &self.path)
            .field("line", &self.line)
            .field("secret", &redact(&self.secret))
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// Computes the fingerprint of a finding.
#[must_use]
pub(crate) fn fingerprint(rule_id: &str, path: &str, secret: &str) -> String {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(rule_id.as_bytes());
    context.update(&[0]);
    context.update(path.as_bytes());
    context.update(&[0]);
    context.update(secret.as_bytes());
    hex::encode(context.finish().as_ref())
}

/// Redacts a secret for display: keeps a short prefix (at most 4 characters and at most a
/// quarter of the secret, so short passwords keep almost nothing) and masks the rest.
#[must_use]
pub fn redact(secret: &str) -> String {
    let chars = secret.chars().count();
    let keep = (chars / 4).min(4);
    let shown: String = secret.chars().take(keep).collect();
    format!("{shown}{}", "*".repeat((chars - keep).clamp(3, 16)))
}

/// Longest snippet kept around a secret, in bytes of context either side.
const SNIPPET_CONTEXT: usize = 80;

/// The line holding `secret_start`, cut to at most `SNIPPET_CONTEXT` bytes either side of
/// the secret so a minified file does not print megabytes.
pub(crate) fn snippet(data: &[u8], secret_start: usize, secret_end: usize) -> String {
    let line_start = memchr::memrchr(b'\n', &data[..secret_start]).map_or(0, |nl| nl + 1);
    let line_end =
        memchr::memchr(b'\n', &data[secret_start..]).map_or(data.len(), |nl| secret_start + nl);
    let from = line_start.max(secret_start.saturating_sub(SNIPPET_CONTEXT));
    let to = line_end
        .min(secret_end.max(secret_start) + SNIPPET_CONTEXT)
        .max(from);
    let text = String::from_utf8_lossy(&data[from..to]);
    text.trim_end_matches('\r').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_depends_on_rule_path_and_secret_only() {
        let a = fingerprint("r", "p", "s");
        assert_eq!(a, fingerprint("r", "p", "s"));
        assert_ne!(a, fingerprint("r", "p2", "s"));
        assert_ne!(a, fingerprint("r2", "p", "s"));
        assert_ne!(a, fingerprint("r", "p", "s2"));
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn redaction_hides_most_of_the_secret() {
        assert_eq!(redact("ghp_abcdefghijklmnop"), "ghp_****************");
        assert_eq!(redact("hunter22"), "hu******");
        assert_eq!(redact("ab"), "***");
    }

    #[test]
    fn snippet_is_the_line_cut_around_the_secret() {
        let data = b"first\nkey = SECRET here\nlast";
        let start = 12;
        assert_eq!(snippet(data, start, start + 6), "key = SECRET here");
        let long = format!("{}SECRET{}", "a".repeat(500), "b".repeat(500));
        let cut = snippet(long.as_bytes(), 500, 506);
        assert_eq!(cut.len(), 80 + 6 + 80);
    }
}
