//! Unit tests of the gitleaks conversion, field by field.
#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

use super::*;
use crate::Detector;

fn load(text: &str) -> RuleSet {
    let mut set = RuleSet::default();
    set.add_toml("g.toml", text).unwrap();
    set
}

fn rule<'a>(set: &'a RuleSet, id: &str) -> &'a RuleSpec {
    set.rules.iter().find(|rule| rule.id == id).unwrap()
}

fn warned(set: &RuleSet, needle: &str) -> bool {
    set.warnings()
        .iter()
        .any(|warning| warning.contains(needle))
}

#[test]
fn gitleaks_keys_are_recognised_and_custos_files_are_not() {
    assert_eq!(gitleaks_key("title = \"x\"").as_deref(), Some("title"));
    assert_eq!(
        gitleaks_key("[extend]\nuseDefault = true").as_deref(),
        Some("extend")
    );
    assert_eq!(
        gitleaks_key("[[rules]]\nid = \"a\"\nsecretGroup = 2").as_deref(),
        Some("secretGroup")
    );
    assert_eq!(
        gitleaks_key("[allowlist]\ndescription = \"d\"").as_deref(),
        Some("description")
    );
    assert_eq!(
        gitleaks_key("[[rules]]\nid = \"a\"\n[rules.allowlist]\nregexTarget = \"line\"").as_deref(),
        Some("regexTarget")
    );
    assert_eq!(
        gitleaks_key("[[allowlists]]\ncondition = \"AND\"\npaths = ['x']").as_deref(),
        Some("condition")
    );
    assert_eq!(gitleaks_key("[[allowlists]]\ncondition = \"and\""), None);
    assert_eq!(gitleaks_key("version = 1\n[[rules]]\nid = \"a\""), None);
    assert_eq!(gitleaks_key("not toml ["), None);
    assert_eq!(
        gitleaks_key("[[rules]]\nid = \"a\"\n[[rules.allowlists]]\ntargetRules = []").as_deref(),
        Some("targetRules")
    );
    // custos rules have `allowlists` too: a mistake in one is a custos error.
    assert_eq!(
        gitleaks_key("[[rules]]\nid = \"a\"\n[[rules.allowlists]]\nstopword = []"),
        None
    );
    assert_eq!(gitleaks_key("version = 1\ntitle = \"x\""), None);
}

#[test]
fn rule_fields_are_converted() {
    let set = load(
        r#"
title = "t"
[[rules]]
id = "acme"
description = "Acme key"
regex = '''(acme)_([a-z0-9]{16})'''
secretGroup = 2
entropy = 3.5
keywords = ["acme_"]
path = '''\.env$'''
tags = ["key"]
"#,
    );
    let acme = rule(&set, "acme");
    assert_eq!(acme.description, "Acme key");
    assert_eq!(acme.secret_group, Some(2));
    assert!((acme.entropy - 3.5).abs() < f64::EPSILON);
    assert_eq!(acme.keywords, ["acme_"]);
    assert_eq!(acme.path.as_deref(), Some(r"\.env$"));
    assert!(set.warnings().is_empty(), "{:?}", set.warnings());
}

#[test]
fn missing_description_and_secret_group_zero_take_defaults() {
    let set =
        load("[[rules]]\nid = \"x\"\nregex = 'x(y)'\nsecretGroup = 0\ntags = []\nentropy = 3\n");
    let x = rule(&set, "x");
    assert_eq!(x.description, "x");
    assert_eq!(x.secret_group, None);
    assert!((x.entropy - 3.0).abs() < f64::EPSILON);
}

#[test]
fn without_secret_group_the_first_group_that_matched_is_the_secret() {
    let set =
        load("title = \"t\"\n[[rules]]\nid = \"alt\"\nregex = '''key=(a[0-9]+)|tok=(b[0-9]+)'''\n");
    let detector = Detector::new(&set).unwrap();
    let data = b"tok=b123 key=a456";
    let found = detector.detect(data, "f");
    let secrets: Vec<&[u8]> = found.iter().map(|d| &data[d.secret.clone()]).collect();
    assert_eq!(secrets, [&b"b123"[..], &b"a456"[..]]);
    // An explicit secretGroup is used as written.
    let set = load(
        "title = \"t\"\n[[rules]]\nid = \"g\"\nregex = '''(key)=(a[0-9]+)'''\nsecretGroup = 2\n",
    );
    let detector = Detector::new(&set).unwrap();
    let found = detector.detect(b"key=a456", "f");
    assert_eq!(found[0].secret, 4..8);
}

#[test]
fn an_empty_keyword_makes_the_rule_run_everywhere() {
    let set = load("[[rules]]\nid = \"x\"\nregex = 'x'\nkeywords = [\"\", \"a\"]\ntags = []\n");
    assert!(rule(&set, "x").keywords.is_empty());
}

#[test]
fn negative_secret_group_and_rule_without_regex_or_path_are_errors() {
    let mut set = RuleSet::default();
    let error = set
        .add_toml(
            "g",
            "[[rules]]\nid = \"neg\"\nregex = 'x'\nsecretGroup = -1\n",
        )
        .unwrap_err();
    assert!(error.to_string().contains("neg"), "{error}");
    let error = set
        .add_toml("g", "title = \"t\"\n[[rules]]\nid = \"empty\"\n")
        .unwrap_err();
    assert!(error.to_string().contains("empty"), "{error}");
}

#[test]
fn both_allowlist_syntaxes_and_regex_targets_are_converted() {
    let set = load(
        r#"
[[rules]]
id = "a"
regex = 'a'
[rules.allowlist]
description = "old"
regexes = ['^x']
paths = ['^fixtures/']
stopwords = ["dummy"]
[[rules.allowlists]]
regexTarget = "match"
regexes = ['m']
[[rules.allowlists]]
regexTarget = "line"
condition = "AND"
regexes = ['l']
paths = ['p']
"#,
    );
    let lists = &rule(&set, "a").allowlists;
    assert_eq!(lists.len(), 3);
    assert_eq!(lists[0].regexes, ["^x"]);
    assert_eq!(lists[0].paths, ["^fixtures/"]);
    assert_eq!(lists[0].stopwords, ["dummy"]);
    assert_eq!(lists[1].match_regexes, ["m"]);
    assert!(lists[1].regexes.is_empty());
    assert_eq!(lists[2].line_regexes, ["l"]);
    assert_eq!(lists[2].condition, Condition::And);
    assert!(set.warnings().is_empty(), "{:?}", set.warnings());
}

#[test]
fn commits_are_converted() {
    let set = load(
        r#"
[[rules]]
id = "a"
regex = 'a'
[[rules.allowlists]]
commits = ["abc"]
stopwords = ["s"]
[[rules.allowlists]]
condition = "AND"
commits = ["abc"]
paths = ['p']
"#,
    );
    let lists = &rule(&set, "a").allowlists;
    assert_eq!(lists.len(), 2);
    assert_eq!(lists[0].commits, ["abc"]);
    assert_eq!(lists[0].stopwords, ["s"]);
    assert_eq!(lists[1].commits, ["abc"]);
    assert_eq!(lists[1].condition, Condition::And);
    assert!(set.warnings().is_empty(), "{:?}", set.warnings());
}

#[test]
fn an_unknown_regex_target_drops_an_and_allowlist_whole() {
    let set = load(
        r#"
[[rules]]
id = "a"
regex = 'a'
[[rules.allowlists]]
condition = "AND"
regexTarget = "file"
regexes = ['x']
paths = ['p']
"#,
    );
    assert!(rule(&set, "a").allowlists.is_empty());
    assert!(warned(&set, "this AND allowlist is ignored"));
}

#[test]
fn unknown_regex_target_and_condition_are_warned_about() {
    let set = load(
        r#"
[[rules]]
id = "a"
regex = 'a'
[[rules.allowlists]]
regexTarget = "file"
regexes = ['x']
[[rules.allowlists]]
condition = "XOR"
paths = ['p']
"#,
    );
    assert!(warned(&set, "regexTarget \"file\""));
    assert!(warned(&set, "condition \"XOR\""));
    assert!(
        rule(&set, "a")
            .allowlists
            .iter()
            .all(|list| list.paths.is_empty())
    );
}

#[test]
fn global_allowlists_of_both_syntaxes_and_target_rules() {
    let set = load(
        r#"
[[rules]]
id = "a"
regex = 'a'
[allowlist]
description = "old"
paths = ['^vendor/']
[[allowlists]]
stopwords = ["example"]
[[allowlists]]
targetRules = ["a", "elsewhere"]
regexes = ['^test']
"#,
    );
    assert_eq!(set.allowlists.len(), 1);
    assert_eq!(set.allowlists[0].paths, ["^vendor/"]);
    assert_eq!(set.allowlists[0].stopwords, ["example"]);
    assert_eq!(rule(&set, "a").allowlists[0].regexes, ["^test"]);
    assert!(warned(&set, "\"elsewhere\" is not a rule of this file"));
}

#[test]
fn path_only_skip_report_and_required_rules_are_warned_about() {
    let set = load(
        r#"
[[rules]]
id = "pem-file"
path = '''\.pem$'''
[[rules]]
id = "aux"
regex = 'aux'
skipReport = true
[[rules]]
id = "main"
regex = 'main'
[[rules.required]]
id = "aux"
withinLines = 2
"#,
    );
    assert_eq!(set.rules.len(), 1);
    assert!(warned(
        &set,
        "rule \"pem-file\": a rule with `path` and no `regex`"
    ));
    assert!(warned(&set, "SKIPPED"));
    assert!(warned(&set, "rule \"aux\": skipReport"));
    assert!(warned(&set, "rule \"main\": `required`"));
}

#[test]
fn extend_disabled_rules_remove_loaded_rules_and_warn_about_others() {
    let mut set = RuleSet::default();
    set.add_toml(
        "c.toml",
        "[[rules]]\nid = \"keep\"\ndescription = \"d\"\nregex = 'k'\n[[rules]]\nid = \"drop\"\ndescription = \"d\"\nregex = 'd'\n",
    )
    .unwrap();
    set.add_toml(
        "g.toml",
        "[extend]\nuseDefault = true\ndisabledRules = [\"drop\", \"aws-access-token\"]\n",
    )
    .unwrap();
    let ids: Vec<&str> = set.rules.iter().map(|rule| rule.id.as_str()).collect();
    assert_eq!(ids, ["keep"]);
    assert!(warned(
        &set,
        "\"aws-access-token\" is not the id of a loaded rule"
    ));
}

#[test]
fn extend_path_needs_a_file_and_is_followed_relative_to_it() {
    let mut set = RuleSet::default();
    let error = set
        .add_toml("g.toml", "[extend]\npath = \"base.toml\"\n")
        .unwrap_err();
    assert!(matches!(error, RuleError::Extend { .. }), "{error}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(
        dir.path().join("sub/base.toml"),
        "title = \"base\"\n[[rules]]\nid = \"base\"\nregex = 'b'\n[[rules]]\nid = \"over\"\nregex = 'old'\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("main.toml"),
        "[extend]\npath = \"sub/base.toml\"\n[[rules]]\nid = \"over\"\nregex = 'new'\n",
    )
    .unwrap();
    let mut set = RuleSet::default();
    set.add_toml_file(&dir.path().join("main.toml")).unwrap();
    assert_eq!(rule(&set, "base").regex, "b");
    assert_eq!(rule(&set, "over").regex, "new");
}

#[test]
fn extend_chains_stop_at_the_gitleaks_depth() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("loop.toml"),
        "[extend]\npath = \"loop.toml\"\n",
    )
    .unwrap();
    let mut set = RuleSet::default();
    let error = set
        .add_toml_file(&dir.path().join("loop.toml"))
        .unwrap_err();
    assert!(error.to_string().contains("levels"), "{error}");
}

#[test]
fn unknown_keys_are_warned_about() {
    let set =
        load("title = \"t\"\nsomething = 1\n[[rules]]\nid = \"a\"\nregex = 'a'\nsmart = true\n");
    assert!(warned(&set, "unknown key `something`"));
    assert!(warned(&set, "rule \"a\": unknown key `smart`"));
}

#[test]
fn gitleaks_looking_files_report_gitleaks_errors_and_others_custos_errors() {
    let mut set = RuleSet::default();
    let error = set
        .add_toml(
            "g.toml",
            "title = \"t\"\n[[rules]]\nid = \"a\"\nkeywords = \"notalist\"\n",
        )
        .unwrap_err();
    assert!(matches!(error, RuleError::ParseGitleaks { .. }), "{error}");
    assert!(error.to_string().contains("gitleaks"), "{error}");
    let error = set
        .add_toml("c.toml", "[[rules]]\nid = \"a\"\nregex = 'a'\nbogus = 1\n")
        .unwrap_err();
    assert!(matches!(error, RuleError::Parse { .. }), "{error}");
    assert!(!error.to_string().contains("gitleaks"), "{error}");
}

#[test]
fn typical_gitleaks_regexes_compile() {
    let set = load(
        r#"
title = "regexes"
[[rules]]
id = "generic-ish"
regex = '''(?i)[\w.-]{0,50}?(?:access|auth|api|secret|token)(?:[ \t\w.-]{0,20})[\s'"]{0,3}(?:=|>|:{1,3}=|\|\||:|=>|\?=|,)[\x60'"\s=]{0,5}([\w.=-]{10,150})(?:[\x60'"\s;]|\\[nr]|$)'''
keywords = ["access", "auth", "api", "secret", "token"]
[[rules]]
id = "bounded"
regex = '''\b((?:ab|cd)[0-9a-f]{32})(?:['|\"|\n|\r|\s|\x60|;]|$)'''
[[rules]]
id = "named"
regex = '''(?P<key>zz_[A-Z0-9]{8})\z'''
"#,
    );
    let detector = Detector::new(&set).unwrap();
    let found = detector.detect(b"api_token = \"Zx81kQ0vLm2Pq7Ty\"\n", "a.env");
    assert_eq!(found.len(), 1);
}

#[test]
fn a_gitleaks_regex_that_does_not_compile_names_its_rule() {
    let set = load("title = \"t\"\n[[rules]]\nid = \"broken-rule\"\nregex = '(unclosed'\n");
    let error = Detector::new(&set).unwrap_err();
    assert!(error.to_string().contains("broken-rule"), "{error}");
}

proptest::proptest! {
    #[test]
    fn any_text_loads_or_fails_without_panicking(text in "\\PC{0,200}") {
        let mut set = RuleSet::default();
        if set.add_toml("p.toml", &text).is_ok() {
            let _ = Detector::new(&set);
        }
    }

    #[test]
    fn gitleaks_shaped_tables_never_panic(
        group in proptest::option::of(-3i64..5),
        entropy in proptest::option::of(-1.0f64..10.0),
        target in proptest::option::of("secret|match|line|other"),
        condition in proptest::option::of("OR|AND|and|nope"),
        regex in "[a-z()|\\\\.*?]{0,12}",
        with_path in proptest::bool::ANY,
    ) {
        let mut text = String::from("title = \"p\"\n[[rules]]\nid = \"r\"\n");
        text.push_str(&format!("regex = '''{regex}'''\n"));
        if let Some(group) = group { text.push_str(&format!("secretGroup = {group}\n")); }
        if let Some(entropy) = entropy { text.push_str(&format!("entropy = {entropy:?}\n")); }
        if with_path { text.push_str("path = '''\\.env$'''\n"); }
        text.push_str("[[rules.allowlists]]\nregexes = ['x']\ncommits = ['c']\n");
        if let Some(target) = target { text.push_str(&format!("regexTarget = \"{target}\"\n")); }
        if let Some(condition) = condition { text.push_str(&format!("condition = \"{condition}\"\n")); }
        let mut set = RuleSet::default();
        if set.add_toml("p.toml", &text).is_ok() && let Ok(detector) = Detector::new(&set) {
            let _ = detector.detect(b"x = abc\n.env r", "a.env");
        }
    }
}

#[test]
fn unicode_classes_are_refused_with_the_rule_id() {
    let set = load("title = \"t\"\n[[rules]]\nid = \"letters\"\nregex = '\\p{L}+'\n");
    let error = Detector::new(&set).unwrap_err();
    assert!(error.to_string().contains("letters"), "{error}");
}
