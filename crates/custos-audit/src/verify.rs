//! Checking a hash chain over one or more files, line by line, and naming the first problem.
//!
//! Every line is judged against the line before it and, to tell the kinds of damage apart, the
//! line after it: a line whose successor skips it and links to its predecessor was inserted; a
//! line that links to its predecessor but carries the wrong `seq` was altered; a jump forward
//! whose missing line comes next was reordered, and one whose missing lines never come was a
//! removal. A change to the very last line cannot be seen by the chain alone: only the server's
//! head (`--server`) or a checkpoint signature covers it.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::chain::{self, CheckpointReason, Fields, GENESIS_HASH};

/// What kind of damage a problem is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A line's bytes (or its `seq`) were changed after it was written.
    Altered,
    /// Lines are missing: the sequence jumps forward.
    Removed,
    /// A line that was never part of the chain sits in it.
    Inserted,
    /// Lines are out of order.
    Reordered,
    /// A file ends early: a closed file without its closing checkpoint, or a torn last line.
    Truncated,
    /// A line is not a chain record (not JSON, or without `seq`/`prev_hash`).
    Malformed,
    /// The server refused a checkpoint's signature or its head disagrees with the files.
    BadSignature,
}

impl ProblemKind {
    /// The word used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Altered => "altered",
            ProblemKind::Removed => "removed",
            ProblemKind::Inserted => "inserted",
            ProblemKind::Reordered => "reordered",
            ProblemKind::Truncated => "truncated",
            ProblemKind::Malformed => "malformed",
            ProblemKind::BadSignature => "bad signature",
        }
    }
}

/// The first problem found, and where.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// What kind of damage.
    pub kind: ProblemKind,
    /// The file, as given.
    pub file: String,
    /// The line (from 1) the problem names.
    pub line: u64,
    /// That line's `seq`, when it has one.
    pub seq: Option<u64>,
    /// A sentence for people.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}:{}", self.kind.as_str(), self.file, self.line)?;
        if let Some(seq) = self.seq {
            write!(f, " (seq {seq})")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A checkpoint whose signature the server can check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SignedCheckpoint {
    /// The file holding it.
    pub file: String,
    /// Its line.
    pub line: u64,
    /// Its `seq`.
    pub seq: u64,
    /// The device named in it.
    pub device: String,
    /// [`crate::checkpoint_payload`] of its fields.
    pub payload: String,
    /// Its `signature` (`hmac-sha256:<hex>`).
    pub signature: String,
}

/// What one file held.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FileSummary {
    /// The file, as given.
    pub file: String,
    /// Its lines.
    pub lines: u64,
    /// The `seq` of its first and last well-formed lines.
    pub first_seq: Option<u64>,
    /// See `first_seq`.
    pub last_seq: Option<u64>,
}

/// The outcome of a verification.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The files, in the order they were checked.
    pub files: Vec<FileSummary>,
    /// Lines checked.
    pub lines: u64,
    /// Checkpoint records among them.
    pub checkpoints: u64,
    /// The `seq` of the first line.
    pub first_seq: Option<u64>,
    /// The `seq` of the last line.
    pub last_seq: Option<u64>,
    /// `sha256:<hex>` of the last line, to compare with the server's head.
    pub last_hash: Option<String>,
    /// Lines after the last checkpoint (no signature covers them).
    pub uncovered: u64,
    /// The first problem; `None` when the chain is intact.
    pub problem: Option<Problem>,
    /// Things worth knowing that are not tampering.
    pub warnings: Vec<String>,
    /// Signed checkpoints, for the server to check.
    #[serde(skip)]
    pub signed: Vec<SignedCheckpoint>,
}

/// Choices of a verification.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VerifyOptions {
    /// The last file must end with a closing checkpoint too (an archive, not a live file).
    pub closed: bool,
    /// The last file may still be written to: a torn last line is a warning, not truncation.
    pub live: bool,
}

/// One well-formed line, as the judge needs it.
#[derive(Clone, Debug)]
struct Entry {
    file: usize,
    line: u64,
    seq: u64,
    prev_hash: String,
    hash: String,
    closing: bool,
    /// No line before it was judged (the first line given).
    first: bool,
}

/// A streaming verifier: feed it files and lines in order, then [`Verifier::finish`].
#[derive(Debug, Default)]
pub struct Verifier {
    options: VerifyOptions,
    report: Report,
    previous: Option<Entry>,
    current: Option<Entry>,
    /// The previous non-empty file did not end with a closing checkpoint.
    unclosed: Option<usize>,
    last_checkpoint_seq: Option<u64>,
    unsigned: u64,
}

impl Verifier {
    /// A verifier with these options.
    pub fn new(options: VerifyOptions) -> Verifier {
        Verifier {
            options,
            ..Verifier::default()
        }
    }

    /// Whether a problem has been found (later lines are then ignored).
    pub fn failed(&self) -> bool {
        self.report.problem.is_some()
    }

    /// Starts the next file.
    pub fn begin_file(&mut self, name: &str) {
        if let Some(current) = &self.current
            && !current.closing
            && self.unclosed.is_none()
        {
            self.unclosed = Some(current.file);
        }
        self.report.files.push(FileSummary {
            file: name.to_owned(),
            ..FileSummary::default()
        });
    }

    /// Checks one complete line (without its newline). Returns false once a problem is known.
    pub fn line(&mut self, bytes: &[u8]) -> bool {
        if self.failed() {
            return false;
        }
        let file = self.report.files.len().saturating_sub(1);
        let summary = self.summary();
        summary.lines += 1;
        let line = summary.lines;
        self.report.lines += 1;
        let entry = match self.parse(file, line, bytes) {
            Ok(entry) => entry,
            Err(message) => {
                self.judge_current(None);
                let seq = serde_json::from_slice::<serde_json::Value>(bytes)
                    .ok()
                    .and_then(|value| value.get("seq").and_then(serde_json::Value::as_u64));
                self.fail(ProblemKind::Malformed, file, line, seq, message);
                return false;
            }
        };
        let summary = self.summary();
        summary.first_seq.get_or_insert(entry.seq);
        summary.last_seq = Some(entry.seq);
        self.judge_current(Some(&entry));
        if !self.failed()
            && let Some(unclosed) = self.unclosed.take()
        {
            let (lines, last_seq) = {
                let summary = &self.report.files[unclosed];
                (summary.lines, summary.last_seq)
            };
            self.fail(
                ProblemKind::Truncated,
                unclosed,
                lines,
                last_seq,
                "the file ends without a closing checkpoint (rotate, reopen or close), \
                 so its tail is missing"
                    .to_owned(),
            );
        }
        if self.failed() {
            return false;
        }
        self.previous = self.current.take();
        self.current = Some(entry);
        true
    }

    /// The last bytes of a file had no newline: a torn write, or a writer still at work.
    pub fn torn(&mut self, bytes: &[u8]) {
        if self.failed() {
            return;
        }
        let file = self.report.files.len().saturating_sub(1);
        let summary = self.summary();
        summary.lines += 1;
        let line = summary.lines;
        if self.options.live {
            self.report.warnings.push(format!(
                "{}:{line}: the last {} bytes have no newline yet (a write in progress?)",
                self.report.files[file].file,
                bytes.len()
            ));
            return;
        }
        self.judge_current(None);
        self.fail(
            ProblemKind::Truncated,
            file,
            line,
            None,
            format!("a torn last line: {} bytes without a newline", bytes.len()),
        );
    }

    /// Judges the last line and returns the report.
    pub fn finish(mut self) -> Report {
        if !self.failed() {
            self.judge_current(None);
        }
        if !self.failed()
            && self.options.closed
            && let Some(current) = &self.current
            && !current.closing
        {
            let (file, line, seq) = (current.file, current.line, current.seq);
            self.fail(
                ProblemKind::Truncated,
                file,
                line,
                Some(seq),
                "the file ends without a closing checkpoint".to_owned(),
            );
        }
        if let Some(current) = &self.current {
            self.report.last_seq = Some(current.seq);
            self.report.last_hash = Some(current.hash.clone());
        }
        if self.report.uncovered > 0 && self.report.problem.is_none() {
            let after = match self.last_checkpoint_seq {
                Some(seq) => format!("the last checkpoint (seq {seq})"),
                None => "the start (there is no checkpoint)".to_owned(),
            };
            self.report.warnings.push(format!(
                "{} records after {after} are not covered by a checkpoint; only the server's head (--server) can vouch for them",
                self.report.uncovered
            ));
        }
        if self.unsigned > 0 {
            self.report
                .warnings
                .push(format!("{} checkpoints carry no signature", self.unsigned));
        }
        self.report
    }

    fn summary(&mut self) -> &mut FileSummary {
        if self.report.files.is_empty() {
            self.report.files.push(FileSummary {
                file: "-".to_owned(),
                ..FileSummary::default()
            });
        }
        let last = self.report.files.len() - 1;
        &mut self.report.files[last]
    }

    fn fail(
        &mut self,
        kind: ProblemKind,
        file: usize,
        line: u64,
        seq: Option<u64>,
        message: String,
    ) {
        if self.report.problem.is_some() {
            return;
        }
        self.report.problem = Some(Problem {
            kind,
            file: self
                .report
                .files
                .get(file)
                .map(|summary| summary.file.clone())
                .unwrap_or_default(),
            line,
            seq,
            message,
        });
    }

    /// Reads a line's chain fields and checks a checkpoint's own fields.
    fn parse(&mut self, file: usize, line: u64, bytes: &[u8]) -> Result<Entry, String> {
        let fields: Fields<'_> = serde_json::from_slice(bytes)
            .map_err(|error| format!("not a chain record: {error}"))?;
        if !chain::is_hash(&fields.prev_hash) {
            return Err("prev_hash is not sha256:<64 hex digits>".to_owned());
        }
        if fields.seq == 0 || fields.seq == u64::MAX {
            return Err(format!("seq {} is never written", fields.seq));
        }
        let mut closing = false;
        if fields.kind.as_deref() == Some("checkpoint") {
            let reason = fields
                .reason
                .as_deref()
                .and_then(CheckpointReason::parse)
                .ok_or("a checkpoint without a known reason")?;
            let (Some(time), Some(device), Some(records)) = (
                fields.time.as_deref(),
                fields.device.as_deref(),
                fields.records,
            ) else {
                return Err("a checkpoint without time, device or records".to_owned());
            };
            if records != fields.seq - 1 {
                return Err(format!(
                    "a checkpoint at seq {} counts {records} records before it",
                    fields.seq
                ));
            }
            closing = reason.closes_file();
            self.report.checkpoints += 1;
            self.report.uncovered = 0;
            self.last_checkpoint_seq = Some(fields.seq);
            match fields.signature.as_deref() {
                Some(signature) => {
                    let payload = chain::checkpoint_payload(
                        device,
                        fields.seq,
                        &fields.prev_hash,
                        time,
                        records,
                        reason,
                    );
                    self.report.signed.push(SignedCheckpoint {
                        file: self.report.files[file].file.clone(),
                        line,
                        seq: fields.seq,
                        device: device.to_owned(),
                        payload: String::from_utf8_lossy(&payload).into_owned(),
                        signature: signature.to_owned(),
                    });
                }
                None => self.unsigned += 1,
            }
        } else {
            self.report.uncovered += 1;
        }
        Ok(Entry {
            file,
            line,
            seq: fields.seq,
            prev_hash: fields.prev_hash.into_owned(),
            hash: chain::line_hash(bytes),
            closing,
            first: false,
        })
    }

    /// Judges the waiting line against its predecessor, looking at `next` to name the damage.
    fn judge_current(&mut self, next: Option<&Entry>) {
        let Some(current) = self.current.as_mut() else {
            return;
        };
        let Some(previous) = &self.previous else {
            current.first = true;
            let current = current.clone();
            if (current.seq == 1) != (current.prev_hash == GENESIS_HASH) {
                self.fail(
                    ProblemKind::Altered,
                    current.file,
                    current.line,
                    Some(current.seq),
                    "only the record with seq 1 carries the genesis prev_hash, and it always does"
                        .to_owned(),
                );
            } else if current.seq > 1 {
                self.report.first_seq = Some(current.seq);
                self.report.warnings.push(format!(
                    "the chain starts at seq {}: earlier records are not in the files given, so nothing links the first line",
                    current.seq
                ));
            } else {
                self.report.first_seq = Some(1);
            }
            return;
        };
        let current = current.clone();
        let previous = previous.clone();
        let Some((kind, named, message)) = classify(&previous, &current, next) else {
            return;
        };
        self.fail(kind, named.file, named.line, Some(named.seq), message);
    }
}

/// What is wrong between `previous` and `current`, given the line after (if any), and which
/// line is to blame; `None` when `current` follows `previous`.
fn classify<'a>(
    previous: &'a Entry,
    current: &'a Entry,
    next: Option<&Entry>,
) -> Option<(ProblemKind, &'a Entry, String)> {
    let links = current.prev_hash == previous.hash;
    if links && current.seq == previous.seq + 1 {
        return None;
    }
    if links {
        return Some((
            ProblemKind::Altered,
            current,
            format!(
                "the line follows seq {} but carries seq {}",
                previous.seq, current.seq
            ),
        ));
    }
    if previous.prev_hash == current.hash {
        // The line before `previous` again: a copy when that line was already judged in its
        // place, else the first two lines are swapped.
        return Some(if previous.first {
            (
                ProblemKind::Reordered,
                current,
                format!("this line comes before seq {} in the chain", previous.seq),
            )
        } else {
            (
                ProblemKind::Inserted,
                current,
                "a copy of the line two lines up".to_owned(),
            )
        });
    }
    if let Some(next) = next
        && next.prev_hash == previous.hash
    {
        return Some(if current.prev_hash == next.hash {
            (
                ProblemKind::Reordered,
                current,
                format!("this line and the next (seq {}) are swapped", next.seq),
            )
        } else {
            (
                ProblemKind::Inserted,
                current,
                "the next line links past this one to the line before it".to_owned(),
            )
        });
    }
    if current.seq == previous.seq + 1 {
        return Some(match next {
            Some(next) if next.prev_hash != current.hash => (
                ProblemKind::Altered,
                current,
                "this line's prev_hash matches no line, and the next line does not link to it"
                    .to_owned(),
            ),
            _ => (
                ProblemKind::Altered,
                previous,
                "this line no longer hashes to the prev_hash its successor carries".to_owned(),
            ),
        });
    }
    if previous.first && previous.seq != 1 {
        return Some((
            ProblemKind::Inserted,
            previous,
            "the first line does not belong to the chain that follows it".to_owned(),
        ));
    }
    if current.seq > previous.seq + 1 {
        if let Some(next) = next
            && next.seq > previous.seq
            && next.seq < current.seq
        {
            return Some((
                ProblemKind::Reordered,
                current,
                format!("seq {} comes after it", next.seq),
            ));
        }
        let missing = if current.seq == previous.seq + 2 {
            format!("seq {} is", previous.seq + 1)
        } else {
            format!("seq {} to {} are", previous.seq + 1, current.seq - 1)
        };
        return Some((
            ProblemKind::Removed,
            current,
            format!("{missing} missing before this line"),
        ));
    }
    if current.seq == previous.seq || current.hash == previous.hash {
        return Some((
            ProblemKind::Inserted,
            current,
            format!("a second line with seq {}", current.seq),
        ));
    }
    Some((
        ProblemKind::Reordered,
        current,
        format!("seq goes back from {} to {}", previous.seq, current.seq),
    ))
}

/// Reads `path` line by line into `verifier`; `on_bytes` hears how many bytes were read.
pub fn feed_file(
    verifier: &mut Verifier,
    path: &Path,
    on_bytes: &mut dyn FnMut(u64),
) -> io::Result<()> {
    let file = File::open(path)?;
    verifier.begin_file(&path.display().to_string());
    feed_reader(
        verifier,
        BufReader::with_capacity(256 * 1024, file),
        on_bytes,
    )
}

/// Reads lines from `reader` into `verifier` (the file must have been begun).
pub fn feed_reader(
    verifier: &mut Verifier,
    mut reader: impl BufRead,
    on_bytes: &mut dyn FnMut(u64),
) -> io::Result<()> {
    let mut line = Vec::with_capacity(4096);
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line)?;
        if read == 0 {
            return Ok(());
        }
        on_bytes(read as u64);
        match line.strip_suffix(b"\n") {
            Some(complete) => {
                if !verifier.line(complete) {
                    return Ok(());
                }
            }
            None => {
                verifier.torn(&line);
                return Ok(());
            }
        }
    }
}

/// Verifies `paths` in the order given.
pub fn verify_files(paths: &[PathBuf], options: VerifyOptions) -> io::Result<Report> {
    let mut verifier = Verifier::new(options);
    for path in paths {
        feed_file(&mut verifier, path, &mut |_| {})?;
        if verifier.failed() {
            break;
        }
    }
    Ok(verifier.finish())
}

/// Verifies lines held in memory (one file), for tests and the fuzz target.
pub fn verify_bytes(bytes: &[u8], options: VerifyOptions) -> Report {
    let mut verifier = Verifier::new(options);
    verifier.begin_file("-");
    // Reading from a slice cannot fail.
    let _ = feed_reader(&mut verifier, bytes, &mut |_| {});
    verifier.finish()
}

/// The `seq` of the first well-formed line of `path`, to put rotated files in chain order.
pub fn first_seq(path: &Path) -> io::Result<Option<u64>> {
    let mut reader = BufReader::new(File::open(path)?);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(None);
        }
        if let Ok(fields) = serde_json::from_slice::<Fields<'_>>(line.trim_ascii_end()) {
            return Ok(Some(fields.seq));
        }
    }
}

#[cfg(test)]
mod tests;
