//! Unit tests of the `.env` reader and writer.

use std::collections::BTreeMap;

use super::{DotenvError, is_env_name, parse, write};

fn check(text: &str, expect: &[(&str, &str)]) {
    let parsed = parse(text).unwrap();
    let expect: Vec<(String, String)> = expect
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    assert_eq!(parsed, expect);
}

fn check_error(text: &str, line: usize, fragment: &str) {
    let error = parse(text).unwrap_err();
    assert_eq!(error.line, line, "{error}");
    assert!(error.message.contains(fragment), "{error}");
}

#[test]
fn names() {
    assert!(is_env_name("DB_PASSWORD"));
    assert!(is_env_name("_x9"));
    assert!(!is_env_name("9x"));
    assert!(!is_env_name("a-b"));
    assert!(!is_env_name(""));
}

#[test]
fn comments_blank_lines_and_export() {
    check(
        "# a comment\n\n  \nexport A=1\n  B = two words  # trailing comment\nC=x#not-a-comment\nD=\n",
        &[
            ("A", "1"),
            ("B", "two words"),
            ("C", "x#not-a-comment"),
            ("D", ""),
        ],
    );
}

#[test]
fn quoted_values() {
    check(
        "A='single $HOME \\n # kept'\nB=\"dq \\\"x\\\" \\\\ \\$HOME \\n end\" # comment\nC=\"a\\tb\\q\"\n",
        &[
            ("A", "single $HOME \\n # kept"),
            ("B", "dq \"x\" \\ $HOME \n end"),
            ("C", "a\tb\\q"),
        ],
    );
}

#[test]
fn quoted_values_span_lines() {
    check(
        "KEY=\"-----BEGIN-----\nabc\n-----END-----\"\nNEXT='a\nb'\nLAST=1\r\n",
        &[
            ("KEY", "-----BEGIN-----\nabc\n-----END-----"),
            ("NEXT", "a\nb"),
            ("LAST", "1"),
        ],
    );
}

#[test]
fn malformed_lines_are_refused_with_their_number() {
    check_error("A=1\njust text\n", 2, "expected NAME=VALUE");
    check_error("A=1\n\n9A=1\n", 3, "not a valid variable name");
    check_error("A=1\nB=\"open\nstill open\n", 2, "never closed");
    check_error("A='x' y\n", 1, "after the closing quote");
    check_error("A=1\nexport A=2\n", 2, "already set on line 1");
    assert_eq!(
        parse("bad").unwrap_err().to_string(),
        DotenvError {
            line: 1,
            message: "expected NAME=VALUE".into()
        }
        .to_string()
    );
}

#[test]
fn written_values_read_back_unchanged() {
    let entries: BTreeMap<String, String> = [
        ("PLAIN", "value"),
        (
            "TRICKY",
            "a \"quoted\" $HOME `cmd` \\ back\nslash # hash\r\n",
        ),
        ("EMPTY", ""),
        ("SINGLE", "it's"),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect();
    let text = write(&entries);
    assert!(
        text.starts_with("EMPTY=\"\"\nPLAIN=\"value\"\nSINGLE=\"it's\"\n"),
        "{text}"
    );
    let read: BTreeMap<String, String> = parse(&text).unwrap().into_iter().collect();
    assert_eq!(read, entries);
}

proptest::proptest! {
    /// Untrusted .env files: parsing never panics, whatever the bytes.
    #[test]
    fn parsing_never_panics(text in "\\PC{0,200}") {
        let _ = parse(&text);
    }

    /// What `write` produces, `parse` reads back exactly.
    #[test]
    fn written_files_parse_back(
        entries in proptest::collection::btree_map("[A-Za-z_][A-Za-z0-9_]{0,12}", "\\PC{0,40}", 0..8)
    ) {
        let text = write(&entries);
        let parsed: BTreeMap<String, String> = parse(&text).unwrap().into_iter().collect();
        proptest::prop_assert_eq!(parsed, entries);
    }
}
