//! Unit tests for the detector pipeline on small hand-written rule sets.
#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

use super::*;

fn detector(toml: &str) -> Detector {
    let mut set = RuleSet::default();
    set.add_toml("test.toml", toml).unwrap();
    Detector::new(&set).unwrap()
}

const TWO_RULES: &str = r#"
version = 1
[[rules]]
id = "acme"
description = "Acme"
regex = '''\b(acme_[a-z0-9]{8})\b'''
keywords = ["acme_"]
entropy = 2.0
[[rules]]
id = "generic"
description = "Generic"
regex = '''(?i)token\s*=\s*"([^"]{8,})"'''
keywords = ["token"]
generic = true
"#;

#[test]
fn keyword_prefilter_gates_the_regex() {
    let detector = detector(TWO_RULES);
    assert_eq!(detector.detect(b"x = acme_a1b2c3d4", "f").len(), 1);
    // The regex would match case-insensitively, but the keyword must be present too.
    assert!(detector.detect(b"nothing here", "f").is_empty());
}

#[test]
fn specific_rule_wins_over_generic_on_overlap() {
    let detector = detector(TWO_RULES);
    let found = detector.detect(br#"token = "acme_a1b2c3d4""#, "f");
    assert_eq!(found.len(), 1);
    assert_eq!(detector.rule_id(found[0].rule).as_ref(), "acme");
}

#[test]
fn entropy_threshold_drops_repetitive_values() {
    let detector = detector(TWO_RULES);
    assert!(detector.detect(b"acme_aaaaaaaa", "f").is_empty());
}

#[test]
fn allowlists_apply_to_paths_secrets_and_stopwords() {
    let toml = r#"
[[rules]]
id = "acme"
description = "Acme"
regex = '''\b(acme_[a-z0-9]{8})\b'''
keywords = ["acme_"]
[rules.allowlist]
paths = ['''^fixtures/''']
regexes = ['''^acme_0''']
[allowlist]
stopwords = ["dead"]
"#;
    let detector = detector(toml);
    assert_eq!(detector.detect(b"acme_a1b2c3d4", "src/a").len(), 1);
    assert!(detector.detect(b"acme_a1b2c3d4", "fixtures/a").is_empty());
    assert!(detector.detect(b"acme_0a1b2c3d", "src/a").is_empty());
    assert!(detector.detect(b"acme_deadbeef", "src/a").is_empty());
}

#[test]
fn invalid_rules_are_rejected_with_their_id() {
    let mut set = RuleSet::default();
    set.add_toml(
        "t",
        "[[rules]]\nid = \"bad\"\ndescription = \"d\"\nregex = '('\n",
    )
    .unwrap();
    let error = Detector::new(&set).unwrap_err();
    assert!(error.to_string().contains("bad"), "{error}");
    let mut set = RuleSet::default();
    set.add_toml(
        "t",
        "[[rules]]\nid = \"grp\"\ndescription = \"d\"\nregex = 'a(b)'\nsecret_group = 2\n",
    )
    .unwrap();
    assert!(Detector::new(&set).is_err());
    let mut set = RuleSet::default();
    assert!(set.add_toml("t", "version = 2\n").is_err());
    assert!(
        set.add_toml("t", "[[rules]]\nid = \"x\"\nunknown = 1\n")
            .is_err()
    );
}

#[test]
fn user_rules_replace_defaults_with_the_same_id() {
    let mut set = RuleSet::defaults().unwrap();
    let count = set.rules().len();
    set.add_toml(
        "user",
        "[[rules]]\nid = \"jwt\"\ndescription = \"mine\"\nregex = 'x'\n",
    )
    .unwrap();
    assert_eq!(set.rules().len(), count);
    assert!(
        set.rules()
            .iter()
            .any(|rule| rule.id == "jwt" && rule.description == "mine")
    );
}

#[test]
fn default_rules_compile_and_cover_at_least_150_formats() {
    let set = RuleSet::defaults().unwrap();
    let detector = Detector::new(&set).unwrap();
    assert!(detector.len() >= 150, "{}", detector.len());
}

#[test]
fn detection_never_panics_on_arbitrary_bytes() {
    let detector = Detector::new(&RuleSet::defaults().unwrap()).unwrap();
    let mut state = 0x1234_5678_u64;
    for _ in 0..200 {
        let mut data = Vec::with_capacity(512);
        for _ in 0..512 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            data.push((state >> 24) as u8);
        }
        data.extend_from_slice(b"token=\xff\xfe ghp_ \x00 -----BEGIN PRIVATE KEY-----");
        let _ = detector.detect(&data, "fuzz");
    }
}

#[test]
fn windows_cover_every_match_around_a_hit_and_merge() {
    let data = b"aaaa KEYWORD_abcdef bbbb cccc KEYWORD_x dddd";
    // Hits at 5..12 and 30..37, matches of at most 10 bytes.
    let found = windows(data, &[5..12, 30..37], 10);
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].start, 2);
    // The end is pushed past the word the bound cut ("KEYWORD_abcdef") and its delimiter.
    assert_eq!(found[0].end, 20);
    let merged = windows(data, &[5..12, 30..37], 40);
    assert_eq!(merged, vec![0..data.len()]);
}

#[test]
fn windowed_and_anchored_rules_find_secrets_at_buffer_edges() {
    let detector = Detector::new(&RuleSet::defaults().unwrap()).unwrap();
    let token = "glpat-Ab3dEf6hIj9kLm2nOp5q";
    for text in [
        token.to_owned(),
        format!("x{}", " ".repeat(5000)) + token,
        format!("{token}\n"),
    ] {
        let found = detector.detect(text.as_bytes(), "f");
        assert_eq!(found.len(), 1, "{text:?}");
        assert_eq!(&text.as_bytes()[found[0].secret.clone()], token.as_bytes());
    }
    let generic = "db_password = \"Zx8!kq2Lm9#vB\"";
    let found = detector.detect(generic.as_bytes(), "config.py");
    assert_eq!(found.len(), 1);
    assert_eq!(
        &generic.as_bytes()[found[0].secret.clone()],
        b"Zx8!kq2Lm9#vB"
    );
}

#[test]
fn custos_key_candidates_need_exactly_36_base62_characters() {
    let key = custos_core::ApiKey::from_random("acme", &[9u8; 30]).unwrap();
    let text = format!("a_short b_{}x {}", "A".repeat(40), key.as_str());
    let found = custos_key_windows(text.as_bytes());
    assert_eq!(found.len(), 1);
    assert!(found[0].end == text.len());
}

#[test]
fn detections_per_rule_are_capped() {
    let detector = Detector::new(&RuleSet::defaults().unwrap()).unwrap();
    let text = "t = glpat-Ab3dEf6hIj9kLm2nOp5q\n".repeat(MAX_DETECTIONS_PER_RULE + 200);
    assert_eq!(
        detector.detect(text.as_bytes(), "f").len(),
        MAX_DETECTIONS_PER_RULE
    );
}

#[test]
fn keywords_longer_than_the_prefix_are_checked_in_full() {
    let keyword = KeywordRule {
        rule: 0,
        rest: b"~".to_vec().into_boxed_slice(),
    };
    assert_eq!(keyword.occurrence(b"x SHA256~abc", &(2..8)), Some(2..9));
    assert_eq!(keyword.occurrence(b"x sha256(abc", &(2..8)), None);
    assert_eq!(keyword.occurrence(b"x sha256", &(2..8)), None);
}

#[test]
fn rule_path_restricts_the_files_a_rule_checks() {
    let detector = detector(
        r#"
[[rules]]
id = "acme"
description = "Acme"
regex = '''\b(acme_[a-z0-9]{8})\b'''
keywords = ["acme_"]
path = '''\.env$'''
"#,
    );
    assert_eq!(detector.detect(b"acme_a1b2c3d4", "app/.env").len(), 1);
    assert!(detector.detect(b"acme_a1b2c3d4", "app/main.rs").is_empty());
}

#[test]
fn allowlists_on_the_match_and_the_line() {
    let detector = detector(
        r#"
[[rules]]
id = "acme"
description = "Acme"
regex = '''key=(acme_[a-z0-9]{8})'''
keywords = ["acme_"]
[[rules.allowlists]]
match_regexes = ['''^key=acme_0''']
[[rules.allowlists]]
line_regexes = ['''(?i)not.?secret''']
"#,
    );
    assert_eq!(detector.detect(b"key=acme_a1b2c3d4", "f").len(), 1);
    assert!(detector.detect(b"key=acme_0a1b2c3d", "f").is_empty());
    assert!(
        detector
            .detect(b"x\nkey=acme_a1b2c3d4 # NOT SECRET\ny", "f")
            .is_empty()
    );
    // The line regex sees only the match's own line.
    assert_eq!(
        detector
            .detect(b"# not secret\nkey=acme_a1b2c3d4\n", "f")
            .len(),
        1
    );
}

#[test]
fn and_allowlists_need_every_kind_of_entry_to_match() {
    let toml = r#"
[[rules]]
id = "acme"
description = "Acme"
regex = '''\b(acme_[a-z0-9]{8})\b'''
keywords = ["acme_"]
[[allowlists]]
condition = "and"
paths = ['''^tests/''']
regexes = ['''^acme_0''']
"#;
    let detector = detector(toml);
    assert!(detector.detect(b"acme_0a1b2c3d", "tests/a").is_empty());
    assert_eq!(detector.detect(b"acme_0a1b2c3d", "src/a").len(), 1);
    assert_eq!(detector.detect(b"acme_a1b2c3d4", "tests/a").len(), 1);
    assert!(!detector.path_allowed("tests/a"));
}
