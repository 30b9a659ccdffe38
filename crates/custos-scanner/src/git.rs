//! Git inputs: the full history of every ref (`--git`) and the staged changes (`--staged`).
//!
//! Both drive the `git` CLI and parse its patch output, scanning only *added* lines:
//! - History lists `git rev-list --all --topo-order --reverse` and feeds slices of that
//!   list to parallel `git diff-tree --stdin -p -U0 --cc -M` processes, so parents come
//!   before children, each commit's blobs are diffed once by git, renames produce no added
//!   lines, and merge commits show only what the merge itself introduced (dense combined
//!   diff: lines new relative to *every* parent). Findings are then deduplicated by rule
//!   and secret, keeping the first (introducing) commit, so a secret is reported once even
//!   when it was deleted later, lives on several branches or was copied elsewhere.
//! - Staged changes run `git diff --cached -p -U0 -M`.
//!
//! The added lines of one file in one commit are joined into one buffer (so multi-line
//! private keys added together are found) with a map back to their line numbers, and the
//! buffers are scanned by a pool of worker threads while git is still writing.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};

use crate::finding::{CommitInfo, Finding};
use crate::scanner::{Problem, Progress, ScanError, ScanOutcome, Scanner};

/// Marks the start of a commit header in our `--format`.
const COMMIT_MARK: u8 = 0x1e;
/// Separates fields in our commit header.
const FIELD_SEP: u8 = 0x1f;

/// The added lines of one file in one commit.
struct Chunk {
    sequence: u64,
    commit: Option<Arc<CommitInfo>>,
    path: String,
    data: Vec<u8>,
    lines: Vec<u32>,
}

impl Scanner {
    /// Scans every commit reachable from any ref of the repository at `repo`.
    ///
    /// # Errors
    /// [`ScanError::Git`] when git cannot run or fails (not a repository, corrupt objects).
    pub fn scan_git_history(
        &self,
        repo: &Path,
        progress: &dyn Progress,
    ) -> Result<ScanOutcome, ScanError> {
        let mut list = git(repo);
        list.args(["rev-list", "--all", "--topo-order", "--reverse"]);
        let output = list
            .output()
            .map_err(|error| ScanError::Git(format!("cannot run git: {error}")))?;
        if !output.status.success() {
            return Err(ScanError::Git(
                String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            ));
        }
        let commits: Vec<&[u8]> = output
            .stdout
            .split(|&byte| byte == b'\n')
            .filter(|line| !line.is_empty())
            .collect();
        // git computes diffs on one core per process, so contiguous slices of the
        // topological order go to parallel `git diff-tree --stdin` processes; sequence
        // numbers keep the global order for deduplication.
        let processes = self
            .threads()
            .min(commits.len().div_ceil(MIN_COMMITS_PER_PROCESS))
            .max(1);
        let per_process = commits.len().div_ceil(processes).max(1);
        let jobs = commits
            .chunks(per_process)
            .enumerate()
            .map(|(index, slice)| {
                let mut command = git(repo);
                command.args([
                    "diff-tree",
                    "--stdin",
                    "--root",
                    "-r",
                    "-p",
                    "--cc",
                    "-U0",
                    "--find-renames",
                    "--no-color",
                    "--no-ext-diff",
                    "--no-textconv",
                    "--src-prefix=a/",
                    "--dst-prefix=b/",
                    "--format=%x1e%H%x1f%an%x1f%ae%x1f%aI%x1f%s",
                ]);
                let mut input = slice.join(&b'\n');
                input.push(b'\n');
                GitJob {
                    command,
                    input: Some(input),
                    first_sequence: (index as u64) << 40,
                }
            })
            .collect();
        let mut outcome = self.run_diffs(jobs, progress)?;
        let mut seen = HashSet::new();
        outcome
            .findings
            .retain(|finding| seen.insert((finding.rule_id.clone(), finding.secret.clone())));
        Ok(outcome)
    }

    /// Scans the changes staged in the index of the repository at `repo` (pre-commit).
    ///
    /// # Errors
    /// [`ScanError::Git`] when git cannot run or fails.
    pub fn scan_staged(
        &self,
        repo: &Path,
        progress: &dyn Progress,
    ) -> Result<ScanOutcome, ScanError> {
        let mut command = git(repo);
        command.args([
            "diff",
            "--cached",
            "-p",
            "-U0",
            "--find-renames",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            "--src-prefix=a/",
            "--dst-prefix=b/",
        ]);
        self.run_diffs(
            vec![GitJob {
                command,
                input: None,
                first_sequence: 0,
            }],
            progress,
        )
    }

    fn run_diffs(
        &self,
        jobs: Vec<GitJob>,
        progress: &dyn Progress,
    ) -> Result<ScanOutcome, ScanError> {
        let mut children = Vec::with_capacity(jobs.len());
        for mut job in jobs {
            let mut child = job
                .command
                .stdin(if job.input.is_some() {
                    Stdio::piped()
                } else {
                    Stdio::null()
                })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|error| ScanError::Git(format!("cannot run git: {error}")))?;
            let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
                return Err(ScanError::Git("git pipes are missing".to_owned()));
            };
            let stdin = child.stdin.take().zip(job.input.take());
            children.push((child, stdout, stderr, stdin, job.first_sequence));
        }
        let results: Mutex<Vec<(u64, Finding)>> = Mutex::new(Vec::new());
        let threads = self.threads();
        let (sender, receiver) = mpsc::sync_channel::<Chunk>(threads * 8);
        let receiver = Mutex::new(receiver);
        let mut waiting = Vec::with_capacity(children.len());
        let streams = std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    loop {
                        let chunk = match receiver.lock() {
                            Ok(receiver) => receiver.recv(),
                            Err(_) => return,
                        };
                        let Ok(chunk) = chunk else { return };
                        let found = self.findings_in(
                            &chunk.data,
                            &chunk.path,
                            Some(&chunk.lines),
                            chunk.commit.as_ref(),
                        );
                        if !found.is_empty()
                            && let Ok(mut results) = results.lock()
                        {
                            results.extend(found.into_iter().map(|f| (chunk.sequence, f)));
                        }
                    }
                });
            }
            let mut handles = Vec::with_capacity(children.len());
            for (child, stdout, mut stderr, stdin, first_sequence) in children {
                if let Some((mut pipe, input)) = stdin {
                    // A failed write means git exited early; its status says why.
                    scope.spawn(move || {
                        let _ = pipe.write_all(&input);
                    });
                }
                let stderr_thread = scope.spawn(move || {
                    let mut text = String::new();
                    let _ = stderr.read_to_string(&mut text);
                    text
                });
                let sender = sender.clone();
                let parser = scope.spawn(move || {
                    parse_patch_stream(
                        BufReader::with_capacity(1 << 20, stdout),
                        &sender,
                        progress,
                        first_sequence,
                    )
                });
                waiting.push(child);
                handles.push((parser, stderr_thread));
            }
            drop(sender);
            handles
                .into_iter()
                .map(|(parser, stderr_thread)| {
                    let parsed = parser.join().unwrap_or_else(|_| {
                        Err(std::io::Error::other("git output parser panicked"))
                    });
                    (parsed, stderr_thread.join().unwrap_or_default())
                })
                .collect::<Vec<_>>()
        });
        let mut stats = StreamStats::default();
        for (mut child, (parsed, stderr_text)) in waiting.into_iter().zip(streams) {
            let status = child
                .wait()
                .map_err(|error| ScanError::Git(format!("waiting for git: {error}")))?;
            if !status.success() {
                let message = stderr_text.trim();
                return Err(ScanError::Git(if message.is_empty() {
                    format!("git exited with {status}")
                } else {
                    message.to_owned()
                }));
            }
            let parsed =
                parsed.map_err(|error| ScanError::Git(format!("reading git output: {error}")))?;
            stats.chunks += parsed.chunks;
            stats.bytes += parsed.bytes;
            stats.problems.extend(parsed.problems);
        }
        let mut results = results.into_inner().unwrap_or_default();
        results.sort_by(|(seq_a, a), (seq_b, b)| {
            (seq_a, a.line, a.column, &a.rule_id).cmp(&(seq_b, b.line, b.column, &b.rule_id))
        });
        Ok(ScanOutcome {
            findings: results.into_iter().map(|(_, finding)| finding).collect(),
            problems: stats.problems,
            files: stats.chunks,
            bytes: stats.bytes,
            binary_skipped: 0,
        })
    }
}

/// One git process whose patch output is scanned.
struct GitJob {
    command: Command,
    /// Bytes written to git's stdin (commit ids for `diff-tree --stdin`).
    input: Option<Vec<u8>>,
    /// Sequence number of the first chunk, so chunks of all jobs sort in commit order.
    first_sequence: u64,
}

/// Below this many commits per process, one more git process is not worth starting.
const MIN_COMMITS_PER_PROCESS: usize = 256;

fn git(repo: &Path) -> Command {
    let mut command = Command::new("git");
    command
        .arg("-C")
        .arg(repo)
        .args([
            "-c",
            "core.quotePath=false",
            "-c",
            "log.showSignature=false",
        ])
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C");
    command
}

#[derive(Default)]
struct StreamStats {
    chunks: u64,
    bytes: u64,
    problems: Vec<Problem>,
}

/// Parser state for `git log -p` / `git diff` output.
struct PatchParser<'a> {
    sender: &'a mpsc::SyncSender<Chunk>,
    progress: &'a dyn Progress,
    stats: StreamStats,
    sequence: u64,
    commit: Option<Arc<CommitInfo>>,
    path: Option<String>,
    in_header: bool,
    parents: usize,
    next_line: u32,
    data: Vec<u8>,
    lines: Vec<u32>,
}

fn parse_patch_stream(
    mut reader: impl BufRead,
    sender: &mpsc::SyncSender<Chunk>,
    progress: &dyn Progress,
    first_sequence: u64,
) -> std::io::Result<StreamStats> {
    let mut parser = PatchParser {
        sender,
        progress,
        stats: StreamStats::default(),
        sequence: first_sequence,
        commit: None,
        path: None,
        in_header: false,
        parents: 1,
        next_line: 0,
        data: Vec::new(),
        lines: Vec::new(),
    };
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        parser.line(&line);
    }
    parser.flush();
    Ok(parser.stats)
}

impl PatchParser<'_> {
    fn line(&mut self, line: &[u8]) {
        if line.first() == Some(&COMMIT_MARK) {
            self.flush();
            self.path = None;
            self.commit = Some(Arc::new(parse_commit(&line[1..])));
            return;
        }
        if line.starts_with(b"diff --git ")
            || line.starts_with(b"diff --cc ")
            || line.starts_with(b"diff --combined ")
        {
            self.flush();
            self.path = None;
            self.in_header = true;
            return;
        }
        if self.in_header {
            if let Some(rest) = line.strip_prefix(b"+++ ") {
                self.path = target_path(rest);
            } else if line.starts_with(b"@@") {
                self.hunk(line);
            }
            return;
        }
        if line.starts_with(b"@@") {
            self.hunk(line);
            return;
        }
        if self.path.is_none() || line.len() < self.parents {
            return;
        }
        let (marks, content) = line.split_at(self.parents);
        if marks.iter().all(|&mark| mark == b'+') {
            self.data.extend_from_slice(content);
            self.data.push(b'\n');
            self.lines.push(self.next_line);
            self.next_line = self.next_line.saturating_add(1);
        } else if !marks.contains(&b'-') && !marks.contains(&b'\\') {
            // Context, or a line some parent already had: it exists in the result.
            self.next_line = self.next_line.saturating_add(1);
        }
    }

    /// `@@ -a,b +c,d @@` or, for merges, `@@@ -a,b -c,d +e,f @@@`.
    fn hunk(&mut self, line: &[u8]) {
        self.in_header = false;
        let ats = line.iter().take_while(|&&b| b == b'@').count();
        self.parents = ats.saturating_sub(1).max(1);
        let text = String::from_utf8_lossy(line);
        self.next_line = text
            .split(' ')
            .skip(1)
            .find_map(|part| part.strip_prefix('+'))
            .and_then(|range| range.split(',').next())
            .and_then(|start| start.parse().ok())
            .unwrap_or(1);
    }

    fn flush(&mut self) {
        if self.data.is_empty() {
            self.lines.clear();
            return;
        }
        let Some(path) = self.path.clone() else {
            self.data.clear();
            self.lines.clear();
            return;
        };
        self.sequence += 1;
        self.stats.chunks += 1;
        self.stats.bytes += self.data.len() as u64;
        self.progress.advance(self.data.len() as u64);
        let chunk = Chunk {
            sequence: self.sequence,
            commit: self.commit.clone(),
            path,
            data: std::mem::take(&mut self.data),
            lines: std::mem::take(&mut self.lines),
        };
        if self.sender.send(chunk).is_err() {
            self.stats.problems.push(Problem {
                path: String::new(),
                message: "scanner workers stopped early".to_owned(),
            });
        }
    }
}

/// One chunk of added lines: the file's path, the lines (each ended by `\n`) and their line
/// numbers in the new file.
#[cfg(any(test, feature = "fuzzing"))]
pub type ParsedChunk = (String, Vec<u8>, Vec<u32>);

/// Runs the patch parser over `stream` as if git had printed it, and returns the chunks it would
/// hand to the detector. For fuzzing and property tests: git's output carries paths, commit
/// messages and file contents of repositories custos does not control.
#[cfg(any(test, feature = "fuzzing"))]
#[must_use]
pub fn parse_patch_bytes(stream: &[u8]) -> Vec<ParsedChunk> {
    // Every chunk holds at least one line, so the channel never fills up.
    let (sender, receiver) = mpsc::sync_channel(stream.len() + 1);
    let parsed = parse_patch_stream(stream, &sender, &crate::NoProgress, 0);
    drop(sender);
    debug_assert!(parsed.is_ok(), "reading from a slice cannot fail");
    receiver
        .into_iter()
        .map(|chunk| (chunk.path, chunk.data, chunk.lines))
        .collect()
}

fn parse_commit(header: &[u8]) -> CommitInfo {
    let mut fields = header
        .split(|&b| b == FIELD_SEP)
        .map(|field| String::from_utf8_lossy(field).into_owned());
    let mut next = || fields.next().unwrap_or_default();
    CommitInfo {
        id: next(),
        author: next(),
        email: next(),
        date: next(),
        summary: next(),
    }
}

/// The path after `+++ `: `b/<path>`, a C-quoted `"b/<path>"`, or `/dev/null` (deleted).
fn target_path(rest: &[u8]) -> Option<String> {
    let rest = rest.strip_suffix(b"\t").unwrap_or(rest);
    if rest == b"/dev/null" {
        return None;
    }
    let unquoted = if rest.first() == Some(&b'"') {
        unquote(rest)
    } else {
        rest.to_vec()
    };
    let path = unquoted.strip_prefix(b"b/").unwrap_or(&unquoted);
    Some(String::from_utf8_lossy(path).into_owned())
}

/// Undoes git's C-style path quoting: `\"`, `\\`, `\t`, `\n` and octal `\NNN` escapes.
fn unquote(quoted: &[u8]) -> Vec<u8> {
    let inner = quoted
        .strip_prefix(b"\"")
        .and_then(|rest| rest.strip_suffix(b"\""))
        .unwrap_or(quoted);
    let mut out = Vec::with_capacity(inner.len());
    let mut index = 0;
    while index < inner.len() {
        let byte = inner[index];
        if byte != b'\\' || index + 1 >= inner.len() {
            out.push(byte);
            index += 1;
            continue;
        }
        let escaped = inner[index + 1];
        let octal = inner
            .get(index + 1..index + 4)
            .filter(|digits| digits.iter().all(|d| (b'0'..=b'7').contains(d)));
        if let Some(digits) = octal {
            let value = digits
                .iter()
                .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            out.push(u8::try_from(value).unwrap_or(b'?'));
            index += 4;
            continue;
        }
        out.push(match escaped {
            b't' => b'\t',
            b'n' => b'\n',
            b'r' => b'\r',
            other => other,
        });
        index += 2;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn target_path_handles_prefixes_quotes_and_deletions() {
        assert_eq!(target_path(b"b/src/a.rs").as_deref(), Some("src/a.rs"));
        assert_eq!(target_path(b"/dev/null"), None);
        assert_eq!(
            target_path(b"\"b/with\\ttab \\303\\251\"").as_deref(),
            Some("with\ttab \u{e9}")
        );
    }

    #[test]
    fn commit_headers_are_split_into_fields() {
        let info = parse_commit(b"abc\x1fJane\x1fj@x.org\x1f2024-01-01T00:00:00Z\x1fadd key");
        assert_eq!(info.id, "abc");
        assert_eq!(info.author, "Jane");
        assert_eq!(info.email, "j@x.org");
        assert_eq!(info.summary, "add key");
        let short = parse_commit(b"only-id");
        assert_eq!(short.id, "only-id");
        assert_eq!(short.author, "");
    }

    #[test]
    fn parser_keeps_only_added_lines_with_their_line_numbers() {
        let patch = b"\x1eabc\x1fJ\x1fj@x\x1f2024-01-01\x1fs\n\ndiff --git a/f b/f\nindex 1..2 100644\n--- a/f\n+++ b/f\n@@ -3,0 +4,2 @@\n+one\n++++ two\n@@ -9 +10 @@\n-old\n+new\n\\ No newline at end of file\n";
        let (sender, receiver) = mpsc::sync_channel(16);
        let stats = parse_patch_stream(&patch[..], &sender, &crate::scanner::NoProgress, 0)
            .unwrap_or_default();
        drop(sender);
        let chunks: Vec<Chunk> = receiver.iter().collect();
        assert_eq!(stats.chunks, 1);
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].path, "f");
        assert_eq!(chunks[0].data, b"one\n+++ two\nnew\n");
        assert_eq!(chunks[0].lines, vec![4, 5, 10]);
        assert_eq!(
            chunks[0].commit.as_ref().map(|c| c.id.as_str()),
            Some("abc")
        );
    }

    #[test]
    fn combined_diffs_keep_only_lines_new_to_every_parent() {
        let patch = b"diff --cc f\nindex 1,2..3\n--- a/f\n+++ b/f\n@@@ -1,1 -1,1 +1,3 @@@\n++evil\n+ from_second\n  both\n- gone\n";
        let chunks = parse_patch_bytes(patch);
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].1, b"evil\n");
        assert_eq!(chunks[0].2, vec![1]);
    }

    #[test]
    fn line_numbers_stop_at_the_largest_instead_of_overflowing() {
        let patch = b"diff --git a/f b/f\n+++ b/f\n@@ -1 +4294967295,3 @@\n+a\n b\n+c\n";
        let chunks = parse_patch_bytes(patch);
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].2, vec![u32::MAX, u32::MAX]);
    }

    /// Lines that look like the parts of `git log -p` output, plus arbitrary bytes.
    fn patch_line() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b"diff --git a/f b/f".to_vec()),
            Just(b"diff --cc f".to_vec()),
            Just(b"+++ b/f".to_vec()),
            Just(b"+++ \"b/q\\303\\251\\\"".to_vec()),
            Just(b"+++ /dev/null".to_vec()),
            Just(b"@@ -1 +2,3 @@".to_vec()),
            Just(b"@@ -1 +4294967295 @@".to_vec()),
            Just(b"@@@ -1 -1 +1,2 @@@".to_vec()),
            Just(b"\x1eabc\x1fJane\x1fj@x\x1f2024\x1fs".to_vec()),
            Just(b"\\ No newline at end of file".to_vec()),
            "[+ -]{0,3}[a-z ]{0,8}".prop_map(String::into_bytes),
            proptest::collection::vec(any::<u8>(), 0..12),
        ]
    }

    proptest! {
        #[test]
        fn every_chunk_has_one_line_number_per_added_line(
            lines in proptest::collection::vec(patch_line(), 0..40)
        ) {
            let stream = lines.join(&b'\n');
            let chunks = parse_patch_bytes(&stream);
            let mut total = 0;
            for (_, data, numbers) in &chunks {
                prop_assert!(!data.is_empty());
                prop_assert_eq!(data.last(), Some(&b'\n'));
                let newlines = data.iter().filter(|&&b| b == b'\n').count();
                prop_assert_eq!(newlines, numbers.len());
                total += data.len();
            }
            prop_assert!(total <= stream.len() + lines.len());
        }
    }
}
