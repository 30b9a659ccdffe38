//! Git history and staged changes, on throwaway repositories built with the git CLI.

use std::fs;
use std::path::Path;
use std::process::Command;

use custos_scanner::{Finding, NoProgress, ScanError};

use crate::util::{github_token, scanner};

/// Runs git in `dir` without reading the user's or the system's configuration.
fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=Test Author",
            "-c",
            "user.email=author@example.org",
        ])
        .args([
            "-c",
            "commit.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_DATE", "2024-03-01T12:00:00Z")
        .env("GIT_COMMITTER_DATE", "2024-03-01T12:00:00Z")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q"]);
    fs::write(dir.path().join("README.md"), "# demo\n").unwrap();
    git(dir.path(), &["add", "."]);
    git(dir.path(), &["commit", "-q", "-m", "initial"]);
    dir
}

fn commit_file(dir: &Path, path: &str, content: &str, message: &str) -> String {
    let full = dir.join(path);
    fs::create_dir_all(full.parent().unwrap()).unwrap();
    fs::write(full, content).unwrap();
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", message]);
    git(dir, &["rev-parse", "HEAD"])
}

fn history(dir: &Path) -> Vec<Finding> {
    scanner()
        .scan_git_history(dir, &NoProgress)
        .unwrap()
        .findings
}

fn commit_of(finding: &Finding) -> &str {
    finding
        .commit
        .as_ref()
        .map(|commit| commit.id.as_str())
        .unwrap()
}

#[test]
fn secret_added_then_deleted_is_found_once_with_its_commit_author_date_and_line() {
    let dir = repo();
    let token = github_token(100);
    let added = commit_file(
        dir.path(),
        "src/config.py",
        &format!("import os\nTOKEN = \"{token}\"\n"),
        "add config",
    );
    fs::remove_file(dir.path().join("src/config.py")).unwrap();
    git(dir.path(), &["commit", "-q", "-a", "-m", "remove config"]);
    let found = history(dir.path());
    assert_eq!(found.len(), 1);
    let finding = &found[0];
    assert_eq!(commit_of(finding), added);
    assert_eq!(finding.path, "src/config.py");
    assert_eq!((finding.line, finding.column), (2, 10));
    let commit = finding.commit.as_ref().unwrap();
    assert_eq!(commit.author, "Test Author");
    assert_eq!(commit.email, "author@example.org");
    assert!(
        commit.date.starts_with("2024-03-01T12:00:00"),
        "{}",
        commit.date
    );
    assert_eq!(commit.summary, "add config");
}

#[test]
fn secrets_on_unmerged_branches_and_tags_are_found() {
    let dir = repo();
    git(dir.path(), &["checkout", "-q", "-b", "side"]);
    let side = commit_file(
        dir.path(),
        "side.env",
        &format!("T={}\n", github_token(101)),
        "side",
    );
    git(dir.path(), &["checkout", "-q", "--detach", "main"]);
    let tagged = commit_file(
        dir.path(),
        "tagged.env",
        &format!("T={}\n", github_token(102)),
        "tagged",
    );
    git(dir.path(), &["tag", "v1"]);
    git(dir.path(), &["checkout", "-q", "main"]);
    let found = history(dir.path());
    let mut commits: Vec<&str> = found.iter().map(commit_of).collect();
    commits.sort_unstable();
    let mut expected = vec![side.as_str(), tagged.as_str()];
    expected.sort_unstable();
    assert_eq!(commits, expected);
}

#[test]
fn secret_merged_from_a_side_branch_is_reported_once_with_the_side_commit() {
    let dir = repo();
    git(dir.path(), &["checkout", "-q", "-b", "feature"]);
    let side = commit_file(
        dir.path(),
        "feature.env",
        &format!("T={}\n", github_token(103)),
        "feature",
    );
    git(dir.path(), &["checkout", "-q", "main"]);
    commit_file(dir.path(), "other.txt", "unrelated\n", "main work");
    git(
        dir.path(),
        &["merge", "-q", "--no-ff", "-m", "merge feature", "feature"],
    );
    let found = history(dir.path());
    assert_eq!(found.len(), 1);
    assert_eq!(commit_of(&found[0]), side);
}

#[test]
fn secret_introduced_by_a_merge_commit_itself_is_attributed_to_the_merge() {
    let dir = repo();
    git(dir.path(), &["checkout", "-q", "-b", "feature"]);
    commit_file(dir.path(), "a.txt", "feature\n", "feature");
    git(dir.path(), &["checkout", "-q", "main"]);
    commit_file(dir.path(), "b.txt", "main\n", "main");
    git(
        dir.path(),
        &["merge", "-q", "--no-ff", "--no-commit", "feature"],
    );
    fs::write(
        dir.path().join("b.txt"),
        format!("main\nT={}\n", github_token(104)),
    )
    .unwrap();
    git(dir.path(), &["add", "b.txt"]);
    git(dir.path(), &["commit", "-q", "-m", "evil merge"]);
    let merge = git(dir.path(), &["rev-parse", "HEAD"]);
    let found = history(dir.path());
    assert_eq!(found.len(), 1);
    assert_eq!(commit_of(&found[0]), merge);
    assert_eq!(found[0].path, "b.txt");
    assert_eq!(found[0].line, 2);
}

#[test]
fn renamed_file_keeps_the_original_finding_only() {
    let dir = repo();
    let content = format!("line one\nline two\nT={}\nline four\n", github_token(105));
    let added = commit_file(dir.path(), "old/name.env", &content, "add");
    git(dir.path(), &["mv", "old/name.env", "new-name.env"]);
    git(dir.path(), &["commit", "-q", "-m", "rename"]);
    let found = history(dir.path());
    assert_eq!(found.len(), 1);
    assert_eq!(commit_of(&found[0]), added);
    assert_eq!(found[0].path, "old/name.env");
}

#[test]
fn the_same_secret_committed_twice_is_reported_once() {
    let dir = repo();
    let token = github_token(106);
    let first = commit_file(dir.path(), "a.env", &format!("T={token}\n"), "first");
    commit_file(dir.path(), "b.env", &format!("T={token}\n"), "copy");
    let found = history(dir.path());
    assert_eq!(found.len(), 1);
    assert_eq!(commit_of(&found[0]), first);
}

#[test]
fn staged_changes_are_scanned_and_unstaged_ones_are_not() {
    let dir = repo();
    fs::write(
        dir.path().join("staged.env"),
        format!("T={}\n", github_token(107)),
    )
    .unwrap();
    fs::write(
        dir.path().join("unstaged.env"),
        format!("T={}\n", github_token(108)),
    )
    .unwrap();
    git(dir.path(), &["add", "staged.env"]);
    let outcome = scanner().scan_staged(dir.path(), &NoProgress).unwrap();
    assert_eq!(outcome.findings.len(), 1);
    assert_eq!(outcome.findings[0].path, "staged.env");
    assert!(outcome.findings[0].commit.is_none());
}

#[test]
fn staged_changes_in_a_repository_without_commits_are_scanned() {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q"]);
    fs::write(
        dir.path().join("first.env"),
        format!("T={}\n", github_token(109)),
    )
    .unwrap();
    git(dir.path(), &["add", "."]);
    let outcome = scanner().scan_staged(dir.path(), &NoProgress).unwrap();
    assert_eq!(outcome.findings.len(), 1);
}

#[test]
fn a_directory_that_is_not_a_repository_is_a_git_error() {
    let dir = tempfile::tempdir().unwrap();
    let error = scanner()
        .scan_git_history(dir.path(), &NoProgress)
        .unwrap_err();
    assert!(matches!(error, ScanError::Git(_)), "{error}");
}

#[test]
fn a_corrupt_repository_is_a_git_error_not_a_crash() {
    let dir = repo();
    commit_file(
        dir.path(),
        "a.env",
        &format!("T={}\n", github_token(110)),
        "add",
    );
    // Remove every loose object: history can no longer be read.
    let objects = dir.path().join(".git/objects");
    for entry in fs::read_dir(&objects).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.len() == 2 {
            fs::remove_dir_all(&path).unwrap();
        }
    }
    let error = scanner()
        .scan_git_history(dir.path(), &NoProgress)
        .unwrap_err();
    assert!(matches!(error, ScanError::Git(_)), "{error}");
}

#[test]
fn long_histories_split_across_git_processes_keep_the_introducing_commit() {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q"]);
    let token = github_token(111);
    let mut stream = Vec::new();
    for n in 1..=700u32 {
        let content = match n {
            300 => format!("T={token}\n"),
            650 => format!("copy={token}\n"),
            _ => format!("value = {n}\n"),
        };
        let path = if n == 650 {
            "copy.env".to_owned()
        } else {
            format!("f{}.txt", n % 7)
        };
        let message = format!("commit {n}\n");
        stream.extend_from_slice(
            format!(
                "commit refs/heads/main\nmark :{n}\ncommitter T <t@example.org> {} +0000\ndata {}\n{message}",
                1_600_000_000 + n * 60,
                message.len()
            )
            .as_bytes(),
        );
        if n > 1 {
            stream.extend_from_slice(format!("from :{}\n", n - 1).as_bytes());
        }
        stream.extend_from_slice(
            format!("M 644 inline {path}\ndata {}\n{content}\n", content.len()).as_bytes(),
        );
    }
    let mut child = Command::new("git")
        .arg("-C")
        .arg(dir.path())
        .args(["fast-import", "--quiet"])
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), &stream).unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    let introducing = git(
        dir.path(),
        &["log", "--format=%H", "--grep=^commit 300$", "main"],
    );

    let detector =
        custos_scanner::Detector::new(&custos_scanner::RuleSet::defaults().unwrap()).unwrap();
    let scanner = custos_scanner::Scanner::new(
        detector,
        custos_scanner::ScanOptions {
            threads: 3,
            ..custos_scanner::ScanOptions::default()
        },
    );
    let outcome = scanner.scan_git_history(dir.path(), &NoProgress).unwrap();
    assert_eq!(outcome.findings.len(), 1);
    assert_eq!(commit_of(&outcome.findings[0]), introducing);
    assert_eq!(outcome.findings[0].path, "f6.txt");
    assert!(outcome.files >= 700, "{}", outcome.files);
}
