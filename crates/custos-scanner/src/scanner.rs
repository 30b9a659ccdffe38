//! `Scanner`: walks files (in parallel), stdin and byte buffers, and turns detections into
//! findings with lines, columns, snippets, inline `custos:allow` handling and fingerprints.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::detector::Detector;
use crate::finding::{CommitInfo, Finding, fingerprint, snippet};

/// The comment marker that silences findings on its line.
pub(crate) const ALLOW_MARKER: &[u8] = b"custos:allow";

/// gitleaks's marker, honoured the same way so that migrated repositories stay quiet.
pub(crate) const GITLEAKS_ALLOW_MARKER: &[u8] = b"gitleaks:allow";

/// Bytes looked at to decide whether a file is binary, as git and ripgrep do.
const BINARY_SNIFF_LEN: usize = 8192;

/// Receives progress while a scan runs; the CLI draws a progress bar with it.
pub trait Progress: Sync {
    /// `bytes` more bytes were scanned.
    fn advance(&self, bytes: u64);
}

/// A [`Progress`] that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn advance(&self, _bytes: u64) {}
}

/// Tunables of a scan.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Files larger than this are skipped and reported as a problem.
    pub max_file_size: u64,
    /// Worker threads; 0 means one per core.
    pub threads: usize,
}

impl Default for ScanOptions {
    fn default() -> Self {
        Self {
            max_file_size: 32 * 1024 * 1024,
            threads: 0,
        }
    }
}

/// Something that could not be scanned; the scan goes on without it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file or input concerned.
    pub path: String,
    /// What went wrong.
    pub message: String,
}

/// Why a scan could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// Reading an input failed.
    #[error("cannot read {path}")]
    Io {
        /// The input.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// git could not be run or reported an error (not a repository, corrupt objects, ...).
    #[error("git: {0}")]
    Git(String),
}

/// What a scan found and what it had to skip.
#[derive(Debug, Default)]
pub struct ScanOutcome {
    /// Findings, sorted by path, line and column (by commit order in git mode).
    pub findings: Vec<Finding>,
    /// Inputs skipped or partly scanned.
    pub problems: Vec<Problem>,
    /// Files (or file diffs in git mode) scanned.
    pub files: u64,
    /// Bytes scanned.
    pub bytes: u64,
    /// Files skipped as binary or archive.
    pub binary_skipped: u64,
}

/// Walks inputs and reports findings; cheap to share between threads.
#[derive(Debug)]
pub struct Scanner {
    detector: Detector,
    options: ScanOptions,
}

impl Scanner {
    /// A scanner over compiled rules.
    #[must_use]
    pub fn new(detector: Detector, options: ScanOptions) -> Self {
        Self { detector, options }
    }

    /// The compiled rules.
    #[must_use]
    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    pub(crate) fn threads(&self) -> usize {
        if self.options.threads == 0 {
            std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
        } else {
            self.options.threads
        }
    }

    /// Scans one buffer that came from `path`.
    #[must_use]
    pub fn scan_bytes(&self, path: &str, data: &[u8]) -> Vec<Finding> {
        self.findings_in(data, path, None, None)
    }

    /// Scans everything readable from `reader` as one input named `name` (stdin).
    ///
    /// # Errors
    /// [`ScanError::Io`] when reading fails.
    pub fn scan_reader(
        &self,
        name: &str,
        mut reader: impl Read,
        progress: &dyn Progress,
    ) -> Result<ScanOutcome, ScanError> {
        let mut data = Vec::new();
        reader
            .read_to_end(&mut data)
            .map_err(|source| ScanError::Io {
                path: name.to_owned(),
                source,
            })?;
        progress.advance(data.len() as u64);
        Ok(ScanOutcome {
            findings: self.scan_bytes(name, &data),
            problems: Vec::new(),
            files: 1,
            bytes: data.len() as u64,
            binary_skipped: 0,
        })
    }

    /// Turns detections in `data` into findings. `line_map[k]` gives the real line number of
    /// line `k + 1` of `data` when `data` is a collage of lines (git diffs).
    pub(crate) fn findings_in(
        &self,
        data: &[u8],
        path: &str,
        line_map: Option<&[u32]>,
        commit: Option<&std::sync::Arc<CommitInfo>>,
    ) -> Vec<Finding> {
        let detections =
            self.detector
                .detect_in_commit(data, path, commit.map(|commit| commit.id.as_str()));
        let mut findings = Vec::with_capacity(detections.len());
        let mut cursor = LineCursor::default();
        for detection in detections {
            let start = detection.secret.start;
            let end = detection.secret.end.max(start + 1).min(data.len());
            if allowed_inline(data, start, end) {
                continue;
            }
            let line = cursor.line_of(data, start);
            let end_line = line + count_newlines(&data[start..end - 1]);
            let column = start - line_start(data, start) + 1;
            let end_column = end - line_start(data, end - 1) + 1;
            let map = |buffer_line: u32| {
                line_map
                    .and_then(|map| map.get(buffer_line as usize - 1).copied())
                    .unwrap_or(buffer_line)
            };
            let secret = String::from_utf8_lossy(&data[detection.secret.clone()]).into_owned();
            let rule_id = self.detector.rule_id(detection.rule).clone();
            findings.push(Finding {
                fingerprint: fingerprint(&rule_id, path, &secret),
                description: self.detector.rule_description(detection.rule).clone(),
                rule_id,
                path: path.to_owned(),
                line: map(line),
                column: saturate(column),
                end_line: map(end_line),
                end_column: saturate(end_column),
                snippet: snippet(data, start, end),
                secret,
                validated: detection.validated,
                entropy: detection.entropy,
                commit: commit.cloned(),
            });
        }
        findings
    }

    /// Scans files and directories, in parallel, honouring `.gitignore`, `.custosignore`,
    /// the size limit and skipping binary files and archives.
    ///
    /// # Errors
    /// [`ScanError::Io`] when a root path does not exist.
    pub fn scan_paths(
        &self,
        roots: &[PathBuf],
        progress: &dyn Progress,
    ) -> Result<ScanOutcome, ScanError> {
        let Some((first, rest)) = roots.split_first() else {
            return Ok(ScanOutcome::default());
        };
        for root in roots {
            std::fs::symlink_metadata(root).map_err(|source| ScanError::Io {
                path: root.display().to_string(),
                source,
            })?;
        }
        let mut builder = ignore::WalkBuilder::new(first);
        for root in rest {
            builder.add(root);
        }
        builder
            .hidden(false)
            .ignore(false)
            .git_ignore(true)
            .git_exclude(true)
            .git_global(false)
            .require_git(false)
            .parents(true)
            .follow_links(false)
            .add_custom_ignore_filename(".custosignore")
            .threads(self.threads())
            .filter_entry(|entry| entry.file_name() != ".git");
        let shared = Shared::default();
        builder.build_parallel().run(|| {
            let shared = &shared;
            let mut buffer = Vec::new();
            Box::new(move |entry| {
                match entry {
                    Ok(entry) => match entry.file_type() {
                        Some(kind) if kind.is_file() => {
                            self.scan_file(entry.path(), &mut buffer, shared, progress);
                        }
                        // A FIFO, socket or device named on the command line: reading it
                        // could block forever or never end. Inside a directory they are
                        // passed over like symlinks, without a word.
                        Some(kind) if entry.depth() == 0 && !kind.is_dir() && !kind.is_symlink() => {
                            shared.problem(
                                display_path(entry.path()),
                                "skipped: not a regular file (pipe one into `custos scan -` instead)"
                                    .to_owned(),
                            );
                        }
                        _ => {}
                    },
                    Err(error) => shared.problem(String::new(), error.to_string()),
                }
                ignore::WalkState::Continue
            })
        });
        let mut outcome = shared.into_outcome();
        outcome.findings.sort_by(|a, b| {
            (&a.path, a.line, a.column, &a.rule_id).cmp(&(&b.path, b.line, b.column, &b.rule_id))
        });
        outcome.problems.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(outcome)
    }

    fn scan_file(
        &self,
        path: &Path,
        buffer: &mut Vec<u8>,
        shared: &Shared,
        progress: &dyn Progress,
    ) {
        let name = display_path(path);
        if self.detector.path_allowed(&name) {
            return;
        }
        let file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(error) => return shared.problem(name, format!("cannot open: {error}")),
        };
        let max = self.options.max_file_size;
        match file.metadata() {
            Ok(meta) if meta.len() > max => {
                return shared.problem(
                    name,
                    format!(
                        "skipped: {} bytes is over the size limit of {max}",
                        meta.len()
                    ),
                );
            }
            Ok(_) => {}
            Err(error) => return shared.problem(name, format!("cannot stat: {error}")),
        }
        buffer.clear();
        if let Err(error) = file.take(max.saturating_add(1)).read_to_end(buffer) {
            return shared.problem(name, format!("cannot read: {error}"));
        }
        if buffer.len() as u64 > max {
            return shared.problem(name, format!("skipped: grew over the size limit of {max}"));
        }
        progress.advance(buffer.len() as u64);
        shared
            .bytes
            .fetch_add(buffer.len() as u64, Ordering::Relaxed);
        if looks_binary(buffer) {
            shared.binary.fetch_add(1, Ordering::Relaxed);
            return;
        }
        shared.files.fetch_add(1, Ordering::Relaxed);
        let findings = self.findings_in(buffer, &name, None, None);
        if !findings.is_empty() {
            shared.findings(findings);
        }
    }
}

#[derive(Default)]
struct Shared {
    findings: Mutex<Vec<Finding>>,
    problems: Mutex<Vec<Problem>>,
    files: AtomicU64,
    bytes: AtomicU64,
    binary: AtomicU64,
}

impl Shared {
    fn problem(&self, path: String, message: String) {
        if let Ok(mut problems) = self.problems.lock() {
            problems.push(Problem { path, message });
        }
    }

    fn findings(&self, mut new: Vec<Finding>) {
        if let Ok(mut findings) = self.findings.lock() {
            findings.append(&mut new);
        }
    }

    fn into_outcome(self) -> ScanOutcome {
        ScanOutcome {
            findings: self.findings.into_inner().unwrap_or_default(),
            problems: self.problems.into_inner().unwrap_or_default(),
            files: self.files.into_inner(),
            bytes: self.bytes.into_inner(),
            binary_skipped: self.binary.into_inner(),
        }
    }
}

/// A path as users see it: without a leading `./`, lossily decoded, `/`-separated.
pub(crate) fn display_path(path: &Path) -> String {
    let text = path.to_string_lossy();
    let text = text.strip_prefix("./").unwrap_or(&text);
    text.replace('\\', "/")
}

/// Binary files have a NUL byte early on; archives and compressed files are recognised by
/// their magic numbers (they can be NUL-free for a while).
pub(crate) fn looks_binary(data: &[u8]) -> bool {
    const MAGIC: &[&[u8]] = &[
        b"PK\x03\x04",         // zip, jar, docx, apk
        b"\x1f\x8b",           // gzip
        b"BZh",                // bzip2
        b"\xfd7zXZ\x00",       // xz
        b"7z\xbc\xaf\x27\x1c", // 7z
        b"\x28\xb5\x2f\xfd",   // zstd
        b"Rar!\x1a\x07",       // rar
        b"%PDF-",              // pdf
        b"\x7fELF",            // executables
        b"\x89PNG",            // png
        b"\xff\xd8\xff",       // jpeg
        b"GIF8",               // gif
    ];
    if MAGIC.iter().any(|magic| data.starts_with(magic)) {
        return true;
    }
    if data.len() > 262 && &data[257..262] == b"ustar" {
        return true;
    }
    memchr::memchr(0, &data[..data.len().min(BINARY_SNIFF_LEN)]).is_some()
}

fn saturate(value: usize) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

fn count_newlines(bytes: &[u8]) -> u32 {
    saturate(memchr::memchr_iter(b'\n', bytes).count())
}

fn line_start(data: &[u8], position: usize) -> usize {
    memchr::memrchr(b'\n', &data[..position]).map_or(0, |nl| nl + 1)
}

fn line_end(data: &[u8], position: usize) -> usize {
    memchr::memchr(b'\n', &data[position..]).map_or(data.len(), |nl| position + nl)
}

/// Whether the lines spanned by `start..end` carry the `custos:allow` (or gitleaks's
/// `gitleaks:allow`) marker.
fn allowed_inline(data: &[u8], start: usize, end: usize) -> bool {
    let from = line_start(data, start);
    let to = line_end(data, end.saturating_sub(1).max(start));
    [ALLOW_MARKER, GITLEAKS_ALLOW_MARKER]
        .iter()
        .any(|marker| memchr::memmem::find(&data[from..to], marker).is_some())
}

/// Counts lines incrementally, since detections come sorted by position.
#[derive(Default)]
struct LineCursor {
    position: usize,
    line: u32,
}

impl LineCursor {
    fn line_of(&mut self, data: &[u8], position: usize) -> u32 {
        if position < self.position {
            *self = Self::default();
        }
        self.line += count_newlines(&data[self.position..position]);
        self.position = position;
        self.line + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_detection_uses_nul_bytes_and_magic_numbers() {
        assert!(looks_binary(b"abc\x00def"));
        assert!(looks_binary(b"PK\x03\x04rest"));
        assert!(looks_binary(b"\x1f\x8bcompressed"));
        assert!(!looks_binary(b"plain text\n"));
        assert!(!looks_binary("caf\u{e9} \u{1f600}".as_bytes()));
    }

    #[test]
    fn line_cursor_counts_lines_forward_and_restarts_backwards() {
        let data = b"a\nb\nc\nd";
        let mut cursor = LineCursor::default();
        assert_eq!(cursor.line_of(data, 0), 1);
        assert_eq!(cursor.line_of(data, 4), 3);
        assert_eq!(cursor.line_of(data, 6), 4);
        assert_eq!(cursor.line_of(data, 2), 2);
    }

    #[test]
    fn inline_allow_covers_the_lines_of_the_match() {
        let data = b"x = 1\nkey = abc # custos:allow\nother = abc";
        let start = 12;
        assert!(allowed_inline(data, start, start + 3));
        let other = data.len() - 3;
        assert!(!allowed_inline(data, other, other + 3));
    }

    #[test]
    fn gitleaks_allow_comment_works_like_custos_allow() {
        let data = b"key = abc // gitleaks:allow\nother = abc";
        assert!(allowed_inline(data, 6, 9));
        let other = data.len() - 3;
        assert!(!allowed_inline(data, other, other + 3));
    }

    #[test]
    fn display_path_strips_dot_slash() {
        assert_eq!(display_path(Path::new("./src/a.rs")), "src/a.rs");
        assert_eq!(display_path(Path::new("src/a.rs")), "src/a.rs");
    }
}
