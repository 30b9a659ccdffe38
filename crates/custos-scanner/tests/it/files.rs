//! Files and directories: ignore files, binaries, size limits, bad input, inline allows.

use std::fs;
use std::path::PathBuf;

use custos_scanner::{Detector, NoProgress, RuleSet, ScanError, ScanOptions, Scanner};

use crate::util::{custos_key, github_token, scanner};

fn rule_ids(scanner: &Scanner, root: &std::path::Path) -> Vec<(String, String)> {
    let outcome = scanner
        .scan_paths(&[root.to_path_buf()], &NoProgress)
        .unwrap();
    let prefix = format!("{}/", root.display());
    outcome
        .findings
        .iter()
        .map(|f| {
            (
                f.path.strip_prefix(&prefix).unwrap_or(&f.path).to_owned(),
                f.rule_id.to_string(),
            )
        })
        .collect()
}

#[test]
fn gitignore_and_custosignore_are_honoured_and_dot_git_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let token = format!("GITHUB_TOKEN={}\n", github_token(1));
    fs::write(root.join(".gitignore"), "ignored.txt\n").unwrap();
    fs::write(root.join(".custosignore"), "fixtures/\n").unwrap();
    fs::create_dir_all(root.join("fixtures")).unwrap();
    fs::create_dir_all(root.join(".git")).unwrap();
    fs::write(root.join("ignored.txt"), &token).unwrap();
    fs::write(root.join("fixtures/keys.env"), &token).unwrap();
    fs::write(root.join(".git/config"), &token).unwrap();
    fs::write(root.join("app.env"), &token).unwrap();
    fs::write(root.join(".env"), &token).unwrap();
    let found = rule_ids(&scanner(), root);
    assert_eq!(
        found,
        vec![
            (".env".to_owned(), "github-pat-token".to_owned()),
            ("app.env".to_owned(), "github-pat-token".to_owned()),
        ]
    );
}

#[test]
fn binaries_and_archives_are_skipped_by_content() {
    let dir = tempfile::tempdir().unwrap();
    let token = github_token(2);
    fs::write(dir.path().join("blob.dat"), format!("abc\0def {token}")).unwrap();
    fs::write(dir.path().join("bundle.txt"), format!("PK\x03\x04 {token}")).unwrap();
    fs::write(
        dir.path().join("notes.gz"),
        format!("plain text, misleading name {token}"),
    )
    .unwrap();
    let outcome = scanner()
        .scan_paths(&[dir.path().to_path_buf()], &NoProgress)
        .unwrap();
    assert_eq!(outcome.binary_skipped, 2);
    assert_eq!(outcome.findings.len(), 1);
    assert!(outcome.findings[0].path.ends_with("notes.gz"));
}

#[test]
fn files_over_the_size_limit_are_reported_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("big.txt"),
        format!("{}\n{}", "x".repeat(200), github_token(3)),
    )
    .unwrap();
    fs::write(dir.path().join("small.txt"), github_token(4)).unwrap();
    let detector = Detector::new(&RuleSet::defaults().unwrap()).unwrap();
    let scanner = Scanner::new(
        detector,
        ScanOptions {
            max_file_size: 100,
            threads: 1,
        },
    );
    let outcome = scanner
        .scan_paths(&[dir.path().to_path_buf()], &NoProgress)
        .unwrap();
    assert_eq!(outcome.findings.len(), 1);
    assert_eq!(outcome.problems.len(), 1);
    assert!(outcome.problems[0].path.ends_with("big.txt"));
    assert!(
        outcome.problems[0].message.contains("size limit"),
        "{:?}",
        outcome.problems
    );
}

#[test]
fn invalid_utf8_around_a_secret_is_scanned() {
    let dir = tempfile::tempdir().unwrap();
    let mut data = b"\xff\xfe\xc3(garbage \xe2\x82 ".to_vec();
    data.extend_from_slice(github_token(5).as_bytes());
    data.extend_from_slice(b" \xf0\x28\x8c\x28\n");
    fs::write(dir.path().join("mixed.txt"), data).unwrap();
    let found = rule_ids(&scanner(), dir.path());
    assert_eq!(
        found,
        vec![("mixed.txt".to_owned(), "github-pat-token".to_owned())]
    );
}

#[test]
fn huge_single_line_file_is_scanned_with_a_short_snippet() {
    let dir = tempfile::tempdir().unwrap();
    let token = github_token(6);
    let mut line = "var a=1;".repeat(2_000_000);
    line.push_str(&format!("var t=\"{token}\";"));
    line.push_str(&"b=2;".repeat(1_000_000));
    fs::write(dir.path().join("bundle.js"), &line).unwrap();
    let outcome = scanner()
        .scan_paths(&[dir.path().to_path_buf()], &NoProgress)
        .unwrap();
    assert_eq!(outcome.findings.len(), 1);
    let finding = &outcome.findings[0];
    assert_eq!(finding.line, 1);
    assert_eq!(finding.column as usize, 16_000_000 + 8);
    assert!(finding.snippet.len() < 300);
    assert_eq!(finding.secret, token);
}

#[test]
fn unreadable_file_is_reported_or_scanned_never_fatal() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locked.env");
    fs::write(&path, github_token(7)).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o000)).unwrap();
    fs::write(dir.path().join("open.env"), github_token(8)).unwrap();
    let readable = fs::read(&path).is_ok(); // root reads anything
    let outcome = scanner()
        .scan_paths(&[dir.path().to_path_buf()], &NoProgress)
        .unwrap();
    if readable {
        assert_eq!(outcome.findings.len(), 2);
    } else {
        assert_eq!(outcome.findings.len(), 1);
        assert_eq!(outcome.problems.len(), 1);
        assert!(outcome.problems[0].message.contains("cannot open"));
    }
}

#[test]
fn missing_root_is_an_error() {
    let error = scanner()
        .scan_paths(&[PathBuf::from("/nonexistent/custos/path")], &NoProgress)
        .unwrap_err();
    assert!(matches!(error, ScanError::Io { .. }), "{error}");
    // The message names the path once; the OS error is its source, printed once by callers.
    assert_eq!(error.to_string(), "cannot read /nonexistent/custos/path");
    let source = std::error::Error::source(&error).map(ToString::to_string);
    assert!(source.is_some_and(|text| text.contains("No such file")));
}

#[cfg(unix)]
#[test]
fn a_fifo_named_on_the_command_line_is_skipped_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|status| status.success()) {
        eprintln!("skipped: mkfifo is not available");
        return;
    }
    fs::write(
        dir.path().join("a.txt"),
        format!("t = \"{}\"\n", github_token(3)),
    )
    .unwrap();
    // Named directly, the FIFO is reported; inside a directory it is passed over. Reading it
    // would block this test forever, since nobody writes to it.
    let outcome = scanner()
        .scan_paths(&[fifo.clone(), dir.path().to_path_buf()], &NoProgress)
        .unwrap();
    assert_eq!(outcome.findings.len(), 1);
    assert_eq!(outcome.problems.len(), 1, "{:?}", outcome.problems);
    assert!(outcome.problems[0].path.ends_with("pipe"));
    assert!(outcome.problems[0].message.contains("not a regular file"));
}

#[test]
fn inline_allow_comment_silences_only_its_line() {
    let text = format!(
        "a = \"{}\"  # custos:allow test fixture\nb = \"{}\"\n",
        github_token(9),
        github_token(10)
    );
    let findings = scanner().scan_bytes("f.py", text.as_bytes());
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].line, 2);
    assert_eq!(findings[0].column, 6);
}

#[test]
fn multi_line_private_keys_report_their_span() {
    let body: String = (0..8)
        .map(|i| {
            format!(
                "{}\n",
                "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"
                    .repeat(2)
                    .replace('M', &i.to_string())
            )
        })
        .collect();
    let text =
        format!("x = 1\n-----BEGIN RSA PRIVATE KEY-----\n{body}-----END RSA PRIVATE KEY-----\n");
    let findings = scanner().scan_bytes("id_rsa", text.as_bytes());
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].rule_id.as_ref(), "private-key");
    assert_eq!((findings[0].line, findings[0].end_line), (2, 11));
}

#[test]
fn custos_keys_are_found_only_with_a_valid_checksum() {
    let key = custos_key("acme_live", 11);
    let token = custos_key("custos_token", 12);
    let mut broken = key.clone();
    broken.pop();
    broken.push(if key.ends_with('a') { 'b' } else { 'a' });
    let text = format!("k1 = {key}\nk2 = {broken}\nk3 = {token}\nlookup(my_{key})\n");
    let findings = scanner().scan_bytes("keys.txt", text.as_bytes());
    let summary: Vec<(u32, &str, bool)> = findings
        .iter()
        .map(|f| (f.line, f.rule_id.as_ref(), f.validated))
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, "custos-api-key", true),
            (3, "custos-token", true),
            (4, "custos-api-key", true)
        ]
    );
    assert_eq!(findings[2].secret, key);
}

#[test]
fn stdin_is_scanned_as_one_input() {
    let text = format!("token: {}\n", github_token(13));
    let outcome = scanner()
        .scan_reader("<stdin>", text.as_bytes(), &NoProgress)
        .unwrap();
    assert_eq!(outcome.findings.len(), 1);
    assert_eq!(outcome.findings[0].path, "<stdin>");
}
