//! `custos scan` end to end: exit codes, formats, stdin, baselines, hooks, git modes.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const B62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn custos_key(seed: u8) -> String {
    let mut random = [0u8; 30];
    for (index, byte) in random.iter_mut().enumerate() {
        *byte = seed
            .wrapping_mul(97)
            .wrapping_add(index as u8)
            .wrapping_mul(31);
    }
    custos_core::ApiKey::from_random("acme_live", &random)
        .unwrap()
        .as_str()
        .to_owned()
}

fn github_token(seed: u8) -> String {
    let random: String = (0..30)
        .map(|i| char::from(B62[(usize::from(seed) * 7 + i * 13) % 62]))
        .collect();
    let mut value = custos_core::crc32(random.as_bytes());
    let mut checksum = [b'0'; 6];
    for slot in checksum.iter_mut().rev() {
        *slot = B62[(value % 62) as usize];
        value /= 62;
    }
    format!(
        "ghp_{random}{}",
        String::from_utf8(checksum.to_vec()).unwrap()
    )
}

fn custos(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_custos"))
        .current_dir(dir)
        .arg("scan")
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap()
}

pub(crate) fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=E2E",
            "-c",
            "user.email=e2e@example.org",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn clean_directory_exits_0_and_findings_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("ok.txt"), "nothing to see\n").unwrap();
    let clean = custos(dir.path(), &["."]);
    assert_eq!(
        clean.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&clean.stderr)
    );
    fs::write(
        dir.path().join("leak.env"),
        format!("KEY={}\n", custos_key(1)),
    )
    .unwrap();
    let dirty = custos(dir.path(), &["."]);
    assert_eq!(dirty.status.code(), Some(1));
    let text = stdout(&dirty);
    assert!(text.contains("leak.env:1:5: custos-api-key"), "{text}");
    assert!(
        !text.contains(&custos_key(1)),
        "secret must be redacted: {text}"
    );
    let shown = custos(dir.path(), &["--show-secrets", "."]);
    assert!(stdout(&shown).contains(&custos_key(1)));
}

#[test]
fn errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        custos(dir.path(), &["does-not-exist"]).status.code(),
        Some(2)
    );
    assert_eq!(custos(dir.path(), &["--git", "."]).status.code(), Some(2));
    fs::write(
        dir.path().join("bad.toml"),
        "[[rules]]\nid = \"x\"\ndescription = \"d\"\nregex = '('\n",
    )
    .unwrap();
    let bad_rules = custos(dir.path(), &["--rules", "bad.toml", "."]);
    assert_eq!(bad_rules.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_rules.stderr).contains("rule x"));
    assert_eq!(
        custos(dir.path(), &["--format", "xml", "."]).status.code(),
        Some(2)
    );
}

#[test]
fn stdin_json_and_sarif_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_custos"))
        .args(["scan", "--format", "json", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("token = {}\n", github_token(2)).as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let line: serde_json::Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(line["path"], "<stdin>");
    assert_eq!(line["rule_id"], "github-pat-token");

    fs::write(dir.path().join("a.env"), format!("T={}\n", github_token(3))).unwrap();
    let sarif = custos(
        dir.path(),
        &["--format", "sarif", "--output", "out.sarif", "."],
    );
    assert_eq!(sarif.status.code(), Some(1));
    assert!(stdout(&sarif).is_empty());
    let log: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.path().join("out.sarif")).unwrap()).unwrap();
    assert_eq!(log["runs"][0]["results"][0]["ruleId"], "github-pat-token");
}

#[test]
fn write_baseline_then_baseline_suppresses_known_findings() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("a.env"), format!("T={}\n", github_token(4))).unwrap();
    let write = custos(dir.path(), &["--write-baseline", "baseline.json", "a.env"]);
    assert_eq!(write.status.code(), Some(0));
    assert_eq!(
        custos(dir.path(), &["--baseline", "baseline.json", "a.env"])
            .status
            .code(),
        Some(0)
    );
    fs::write(
        dir.path().join("a.env"),
        format!("\n\nT={}\nU={}\n", github_token(4), github_token(5)),
    )
    .unwrap();
    let again = custos(
        dir.path(),
        &["--baseline", "baseline.json", "--format", "json", "a.env"],
    );
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(stdout(&again).lines().count(), 1);
    assert!(String::from_utf8_lossy(&again.stderr).contains("1 known in baseline"));
}

#[test]
fn user_rules_extend_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("rules.toml"),
        "version = 1\n[[rules]]\nid = \"internal-token\"\ndescription = \"Internal token\"\nregex = '''\\b(itk_[a-z0-9]{20})\\b'''\nkeywords = [\"itk_\"]\n",
    )
    .unwrap();
    fs::write(
        dir.path().join("app.cfg"),
        "token itk_a8d7f6g5h4j3k2l1m0n9\n",
    )
    .unwrap();
    let output = custos(
        dir.path(),
        &["--rules", "rules.toml", "--format", "json", "app.cfg"],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(stdout(&output).contains("\"internal-token\""));
}

#[test]
fn gitleaks_config_adds_its_rules_and_warns_about_what_it_cannot_apply() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("gitleaks.toml"),
        r#"title = "migrated"
[extend]
useDefault = true

[[rules]]
id = "internal-token"
description = "Internal token"
regex = '''(?i)\b(itk_[a-z0-9]{20})\b'''
keywords = ["itk_"]
tags = ["internal"]

[[rules]]
id = "key-files"
path = '''\.key$'''

[allowlist]
description = "fixtures"
paths = ['''^fixtures/''']
"#,
    )
    .unwrap();
    fs::create_dir(dir.path().join("fixtures")).unwrap();
    let secret = "token itk_a8d7f6g5h4j3k2l1m0n9\n";
    fs::write(dir.path().join("app.cfg"), secret).unwrap();
    fs::write(dir.path().join("fixtures/app.cfg"), secret).unwrap();
    fs::write(
        dir.path().join("quiet.cfg"),
        "token itk_q8d7f6g5h4j3k2l1m0n9 # gitleaks:allow\n",
    )
    .unwrap();
    let output = custos(
        dir.path(),
        &[
            "--rules",
            "gitleaks.toml",
            "--format",
            "json",
            "--no-progress",
            ".",
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    let findings = stdout(&output);
    assert_eq!(findings.lines().count(), 1, "{findings}");
    assert!(findings.contains("\"internal-token\""), "{findings}");
    assert!(findings.contains("app.cfg"), "{findings}");
    assert!(!findings.contains("fixtures"), "{findings}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "custos scan: warning: gitleaks.toml: rule \"key-files\": a rule with `path` and no `regex`"
        ),
        "{stderr}"
    );
}

#[test]
fn git_history_and_installed_pre_commit_hook() {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q"]);
    fs::write(dir.path().join("a.env"), format!("T={}\n", github_token(6))).unwrap();
    git(dir.path(), &["add", "."]);
    git(dir.path(), &["commit", "-q", "-m", "leak"]);
    fs::remove_file(dir.path().join("a.env")).unwrap();
    git(dir.path(), &["commit", "-q", "-a", "-m", "unleak"]);
    assert_eq!(custos(dir.path(), &["."]).status.code(), Some(0));
    let history = custos(dir.path(), &["--git", "--format", "json", "."]);
    assert_eq!(history.status.code(), Some(1));
    let line: serde_json::Value = serde_json::from_str(stdout(&history).trim()).unwrap();
    assert_eq!(line["commit"]["author"], "E2E");

    let install = custos(dir.path(), &["install-hook"]);
    assert_eq!(
        install.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&install.stderr)
    );
    assert_eq!(custos(dir.path(), &["install-hook"]).status.code(), Some(2));
    fs::write(dir.path().join("b.env"), format!("T={}\n", custos_key(7))).unwrap();
    git(dir.path(), &["add", "b.env"]);
    let staged = custos(dir.path(), &["--staged"]);
    assert_eq!(staged.status.code(), Some(1));
    // The hook runs the same check and blocks the commit.
    let commit = Command::new("git")
        .arg("-C")
        .arg(dir.path())
        .args([
            "-c",
            "user.name=E2E",
            "-c",
            "user.email=e2e@example.org",
            "commit",
            "-q",
            "-m",
            "leak again",
        ])
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env(
            "PATH",
            format!(
                "{}:{}",
                Path::new(env!("CARGO_BIN_EXE_custos"))
                    .parent()
                    .unwrap()
                    .display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .output()
        .unwrap();
    assert!(!commit.status.success(), "the hook must block the commit");
}
