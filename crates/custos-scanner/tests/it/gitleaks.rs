//! gitleaks configuration files: a migrated `.gitleaks.toml` finds what its rules describe,
//! its allowlists suppress exactly what they name, and what custos cannot apply is warned
//! about.

use std::fs;
use std::path::Path;
use std::process::Command;

use custos_scanner::{Detector, NoProgress, RuleSet, ScanOptions, Scanner};

/// A realistic configuration of a team migrating from gitleaks.
const CONFIG: &str = r#"
title = "acme gitleaks config"

[extend]
useDefault = true
disabledRules = ["generic-api-key"]

[[rules]]
id = "acme-deploy-key"
description = "Acme deploy key"
regex = '''(?i)(?:acme)(?:[\w.-]{0,20})[\s'"]{0,3}(?:=|:)[\s'"]{0,5}(adk_[a-z0-9]{24})(?:['"\s;]|$)'''
secretGroup = 1
entropy = 3.0
keywords = ["adk_"]
tags = ["acme", "deploy"]

  [rules.allowlist]
  description = "the documented example key"
  regexes = ['''^adk_0{8}''']

[[rules]]
id = "acme-ci-password"
description = "Password in CI files"
regex = '''(password):\s*"([^"\s]{12,})"'''
secretGroup = 2
keywords = ["password"]
path = '''(^|/)\.ci/[^/]+\.ya?ml$'''

  [[rules.allowlists]]
  description = "vault references are not secrets"
  regexTarget = "match"
  regexes = ['''password:\s*"\$\{vault:''']

  [[rules.allowlists]]
  description = "reviewed lines"
  regexTarget = "line"
  regexes = ['''#\s*reviewed-ok''']

  [[rules.allowlists]]
  description = "old commits"
  commits = ["0123456789abcdef0123456789abcdef01234567"]

[[rules]]
id = "acme-cert"
description = "Acme certificate file"
path = '''\.acmecert$'''

[allowlist]
description = "global"
paths = ['''(^|/)vendor/''']

[[allowlists]]
description = "tests with fake keys"
condition = "AND"
paths = ['''(^|/)tests/''']
stopwords = ["fake"]
"#;

fn scanner(set: &RuleSet) -> Scanner {
    Scanner::new(
        Detector::new(set).unwrap(),
        ScanOptions {
            threads: 2,
            ..ScanOptions::default()
        },
    )
}

fn gitleaks_rules() -> RuleSet {
    let mut set = RuleSet::default();
    set.add_toml(".gitleaks.toml", CONFIG).unwrap();
    set
}

fn found(scanner: &Scanner, path: &str, text: &str) -> Vec<(String, String)> {
    scanner
        .scan_bytes(path, text.as_bytes())
        .into_iter()
        .map(|finding| (finding.rule_id.to_string(), finding.secret))
        .collect()
}

const DEPLOY_KEY: &str = "adk_k3j9x0q2m7v5b8n1c4z6l0p2";

#[test]
fn custom_rules_find_their_secret_group() {
    let scanner = scanner(&gitleaks_rules());
    assert_eq!(
        found(
            &scanner,
            "deploy.sh",
            &format!("ACME_KEY = \"{DEPLOY_KEY}\"\n")
        ),
        [("acme-deploy-key".to_owned(), DEPLOY_KEY.to_owned())]
    );
    assert_eq!(
        found(
            &scanner,
            ".ci/build.yml",
            "password: \"hunter2hunter2XY\"\n"
        ),
        [("acme-ci-password".to_owned(), "hunter2hunter2XY".to_owned())]
    );
}

#[test]
fn entropy_and_the_secret_allowlist_suppress_only_their_values() {
    let scanner = scanner(&gitleaks_rules());
    // The documented example key is allowlisted by a secret regex.
    assert!(found(&scanner, "a", "acme_key: adk_00000000a1b2c3d4e5f6g7h8\n").is_empty());
    // Low entropy is below the rule's threshold.
    assert!(found(&scanner, "a", "acme_key: adk_aaaaaaaaaaaaaaaaaaaaaaaa\n").is_empty());
    assert_eq!(
        found(&scanner, "a", &format!("acme_key: {DEPLOY_KEY}\n")).len(),
        1
    );
}

#[test]
fn rule_path_restricts_the_rule_to_matching_files() {
    let scanner = scanner(&gitleaks_rules());
    let text = "password: \"hunter2hunter2XY\"\n";
    assert_eq!(found(&scanner, "app/.ci/deploy.yaml", text).len(), 1);
    assert!(found(&scanner, "app/config.yml", text).is_empty());
    assert!(found(&scanner, ".ci/nested/deploy.yml", text).is_empty());
}

#[test]
fn match_and_line_allowlists_suppress_what_they_name() {
    let scanner = scanner(&gitleaks_rules());
    let text = "\
password: \"${vault:ci/password}\"
password: \"hunter2hunter2XY\" # reviewed-ok
password: \"another-Secret-99\"
";
    assert_eq!(
        found(&scanner, ".ci/build.yml", text),
        [(
            "acme-ci-password".to_owned(),
            "another-Secret-99".to_owned()
        )]
    );
}

#[test]
fn global_allowlists_apply_to_every_rule() {
    let scanner = scanner(&gitleaks_rules());
    let key = format!("acme_key: {DEPLOY_KEY}\n");
    // [allowlist] paths exclude the file.
    assert!(found(&scanner, "vendor/lib/deploy.sh", &key).is_empty());
    assert!(scanner.detector().path_allowed("vendor/lib/deploy.sh"));
    // [[allowlists]] with AND: both a tests/ path and the stopword are needed.
    let fake = "acme_key: adk_fake9x0q2m7v5b8n1c4z6l0p\n";
    assert!(found(&scanner, "tests/deploy.sh", fake).is_empty());
    assert_eq!(found(&scanner, "src/deploy.sh", fake).len(), 1);
    assert_eq!(found(&scanner, "tests/deploy.sh", &key).len(), 1);
}

#[test]
fn unsupported_features_are_warned_about() {
    let set = gitleaks_rules();
    let warnings = set.warnings().join("\n");
    assert!(
        warnings.contains(".gitleaks.toml: rule \"acme-cert\": a rule with `path` and no `regex`"),
        "{warnings}"
    );
    // A gitleaks rule id that custos does not have cannot be disabled.
    assert!(
        warnings.contains("disabledRules: \"generic-api-key\" is not the id of a loaded rule"),
        "{warnings}"
    );
    let ids: Vec<&str> = set.rules().iter().map(|rule| rule.id.as_str()).collect();
    assert_eq!(ids, ["acme-deploy-key", "acme-ci-password"]);
    assert_eq!(set.warnings().len(), 2, "{warnings}");
}

#[test]
fn custos_defaults_stay_and_disabled_rules_remove_custos_ids() {
    let mut set = RuleSet::defaults().unwrap();
    let before = set.rules().len();
    set.add_toml(
        ".gitleaks.toml",
        "[extend]\nuseDefault = true\ndisabledRules = [\"github-pat-token\"]\n",
    )
    .unwrap();
    assert_eq!(set.rules().len(), before - 1);
    assert!(set.rules().iter().all(|rule| rule.id != "github-pat-token"));
    assert!(set.warnings().is_empty(), "{:?}", set.warnings());

    let mut set = RuleSet::defaults().unwrap();
    set.add_toml(".gitleaks.toml", CONFIG).unwrap();
    assert_eq!(set.rules().len(), before + 2);
}

#[test]
fn a_config_extending_another_file_loads_both() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("base.toml"), CONFIG).unwrap();
    fs::write(
        dir.path().join(".gitleaks.toml"),
        "[extend]\npath = \"base.toml\"\n[[rules]]\nid = \"extra\"\nregex = '''xtr_[0-9]{6}'''\nkeywords = [\"xtr_\"]\n",
    )
    .unwrap();
    let mut set = RuleSet::default();
    set.add_toml_file(&dir.path().join(".gitleaks.toml"))
        .unwrap();
    let scanner = scanner(&set);
    fs::write(
        dir.path().join("app.env"),
        format!("acme_key: {DEPLOY_KEY}\nx = xtr_123456\n"),
    )
    .unwrap();
    let outcome = scanner
        .scan_paths(&[dir.path().join("app.env")], &NoProgress)
        .unwrap();
    let ids: Vec<&str> = outcome
        .findings
        .iter()
        .map(|f| f.rule_id.as_ref())
        .collect();
    assert_eq!(ids, ["acme-deploy-key", "extra"]);
}

#[test]
fn gitleaks_allow_comments_silence_their_line() {
    let scanner = scanner(&gitleaks_rules());
    let text = format!("acme_key: {DEPLOY_KEY} # gitleaks:allow\nacme_key: {DEPLOY_KEY}\n");
    let findings = scanner.scan_bytes("deploy.sh", text.as_bytes());
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].line, 2);
}

fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=T", "-c", "user.email=t@example.org"])
        .args(["-c", "commit.gpgsign=false"])
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    assert!(output.status.success(), "git {args:?}");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[test]
fn commit_allowlists_apply_in_git_history_scans_only() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    git(repo, &["init", "-q"]);
    fs::write(
        repo.join("old.sh"),
        "acme_key: adk_q3j9x0q2m7v5b8n1c4z6l0p2\n",
    )
    .unwrap();
    git(repo, &["add", "."]);
    git(repo, &["commit", "-q", "-m", "old key"]);
    let old = git(repo, &["rev-parse", "HEAD"]);
    fs::write(repo.join("new.sh"), format!("acme_key: {DEPLOY_KEY}\n")).unwrap();
    git(repo, &["add", "."]);
    git(repo, &["commit", "-q", "-m", "new key"]);
    let config = format!(
        "title = \"t\"\n[[rules]]\nid = \"acme-deploy-key\"\nregex = '''(adk_[a-z0-9]{{24}})'''\nkeywords = [\"adk_\"]\n[[rules.allowlists]]\ncommits = [\"{old}\"]\n"
    );
    let mut set = RuleSet::default();
    set.add_toml(".gitleaks.toml", &config).unwrap();
    let scanner = scanner(&set);
    let history = scanner.scan_git_history(repo, &NoProgress).unwrap();
    let paths: Vec<&str> = history.findings.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["new.sh"]);
    // Scanning the files has no commit to match, so both keys are reported.
    let files = scanner
        .scan_paths(&[repo.join("old.sh"), repo.join("new.sh")], &NoProgress)
        .unwrap();
    assert_eq!(files.findings.len(), 2);
}
