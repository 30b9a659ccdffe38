//! Unit and property tests for permission names, grants and queries.
#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

use proptest::prelude::*;

use super::*;

fn permission(name: &str) -> Query {
    Query::Permission(name.to_owned())
}

fn parse(text: &str) -> Query {
    Query::parse(text).unwrap_or_else(|error| panic!("{text:?}: {error}"))
}

fn syntax(position: usize, expected: &'static str) -> PermissionError {
    PermissionError::Syntax { position, expected }
}

#[test]
fn permission_names_follow_the_alphabet() {
    for name in [
        "docs.read",
        "billing:write",
        "admin",
        "a-b_c.d:e",
        "AND2",
        "Or",
        "x",
    ] {
        assert_eq!(validate_permission(name), Ok(()), "{name}");
        assert_eq!(validate_grant(name), Ok(()), "{name}");
    }
    assert_eq!(validate_permission(&"a".repeat(MAX_PERMISSION_LEN)), Ok(()));
    assert_eq!(validate_permission(""), Err(PermissionError::Empty));
    assert_eq!(validate_grant(""), Err(PermissionError::Empty));
    assert_eq!(
        validate_permission(&"a".repeat(MAX_PERMISSION_LEN + 1)),
        Err(PermissionError::TooLong {
            position: 0,
            length: 129
        })
    );
    assert_eq!(
        validate_permission("docs read"),
        Err(PermissionError::InvalidCharacter {
            position: 4,
            character: ' '
        })
    );
    assert_eq!(
        validate_permission("cafè"),
        Err(PermissionError::InvalidCharacter {
            position: 3,
            character: 'è'
        })
    );
    assert_eq!(
        validate_permission("docs/read"),
        Err(PermissionError::InvalidCharacter {
            position: 4,
            character: '/'
        })
    );
    for operator in ["AND", "and", "OR", "or"] {
        assert_eq!(
            validate_permission(operator),
            Err(PermissionError::Reserved { position: 0 })
        );
        assert_eq!(
            validate_grant(operator),
            Err(PermissionError::Reserved { position: 0 })
        );
    }
}

#[test]
fn only_grants_hold_wildcards() {
    for grant in ["*", "docs.*", "*.read", "a*b*c", "**"] {
        assert_eq!(validate_grant(grant), Ok(()), "{grant}");
    }
    assert_eq!(
        validate_permission("docs.*"),
        Err(PermissionError::Wildcard { position: 5 })
    );
    assert_eq!(
        validate_grant("docs.* x"),
        Err(PermissionError::InvalidCharacter {
            position: 6,
            character: ' '
        })
    );
}

#[test]
fn grants_match_exactly_and_by_wildcard() {
    let grants = Grants::new(["admin", "docs.*", "*.read", "a*b*c"]);
    assert!(grants.allows("admin"));
    assert!(!grants.allows("admin2"));
    assert!(!grants.allows("Admin"));
    assert!(grants.allows("docs.read"));
    assert!(grants.allows("docs.a.b"));
    assert!(grants.allows("docs."));
    assert!(!grants.allows("docs"));
    assert!(!grants.allows("xdocs.read.write"));
    assert!(grants.allows("billing.read"));
    assert!(grants.allows("a.b.read"));
    assert!(!grants.allows("billing.reader"));
    assert!(grants.allows("abc"));
    assert!(grants.allows("a-x-b-y-c"));
    assert!(!grants.allows("a-x-b-y-cd"));
    assert!(!grants.is_empty());

    let everything = Grants::new(vec!["*".to_owned()]);
    assert!(everything.allows("anything:at.all"));
    assert!(!everything.is_empty());
    assert!(Grants::new(["***"]).allows("x"));

    let none = Grants::new(Vec::<String>::new());
    assert!(none.is_empty());
    assert!(!none.allows("admin"));
    assert_eq!(none, Grants::default());
}

#[test]
fn repeated_stars_collapse_and_duplicates_go() {
    let grants = Grants::new(["a**b", "a*b", "a***b"]);
    assert_eq!(grants.patterns, vec!["a*b".to_owned()]);
    assert!(grants.allows("ab"));
    assert!(grants.allows("a.x.b"));
}

#[test]
fn pathological_patterns_match_in_bounded_time() {
    // Naive backtracking takes exponential time on this; the iterative glob is quadratic.
    let pattern = format!("{}b", "a*".repeat(60));
    let grants = Grants::new([pattern.as_str()]);
    let text = "a".repeat(MAX_PERMISSION_LEN);
    let started = std::time::Instant::now();
    assert!(!grants.allows(&text));
    assert!(grants.allows(&format!("{text}b")));
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
}

#[test]
fn and_binds_tighter_than_or() {
    assert_eq!(
        parse("a AND b OR c"),
        Query::Or(vec![
            Query::And(vec![permission("a"), permission("b")]),
            permission("c")
        ])
    );
    assert_eq!(
        parse("a OR b AND c"),
        Query::Or(vec![
            permission("a"),
            Query::And(vec![permission("b"), permission("c")])
        ])
    );
    assert_eq!(
        parse("docs.read AND (billing.read OR admin)"),
        Query::And(vec![
            permission("docs.read"),
            Query::Or(vec![permission("billing.read"), permission("admin")])
        ])
    );
}

#[test]
fn chains_are_one_group_and_parentheses_keep_theirs() {
    assert_eq!(
        parse("a and b and c"),
        Query::And(vec![permission("a"), permission("b"), permission("c")])
    );
    assert_eq!(
        parse("(a AND b) AND c"),
        Query::And(vec![
            Query::And(vec![permission("a"), permission("b")]),
            permission("c")
        ])
    );
    assert_eq!(parse("((a))"), permission("a"));
    assert_eq!(parse("  admin\t"), permission("admin"));
}

#[test]
fn spacing_and_case_of_operators_are_free() {
    let expected = parse("a AND (b OR c)");
    for text in [
        "a and (b or c)",
        "a AND(b OR c)",
        "a\nAND\t(b\r\nOR c )",
        "(a) AND ((b) OR (c))",
    ] {
        assert_eq!(parse(text), expected, "{text:?}");
    }
}

#[test]
fn display_is_canonical() {
    for (text, canonical) in [
        ("a", "a"),
        ("a and(b or c)", "a AND (b OR c)"),
        ("a AND b OR c", "a AND b OR c"),
        ("(a AND b) OR c", "a AND b OR c"),
        ("(a AND b) AND c", "(a AND b) AND c"),
        ("a OR (b OR c)", "a OR (b OR c)"),
        ("(((a)))", "a"),
    ] {
        assert_eq!(parse(text).to_string(), canonical, "{text:?}");
    }
    let single = Query::And(vec![Query::Or(vec![permission("a")]), permission("b")]);
    assert_eq!(single.to_string(), "a AND b");
    let nested_single = Query::And(vec![
        Query::Or(vec![Query::Or(vec![permission("a"), permission("b")])]),
        permission("c"),
    ]);
    assert_eq!(nested_single.to_string(), "(a OR b) AND c");
}

#[test]
fn syntax_errors_give_the_byte_position() {
    for (text, error) in [
        ("", syntax(0, "a permission or `(`")),
        ("   ", syntax(3, "a permission or `(`")),
        ("a AND", syntax(5, "a permission or `(`")),
        ("AND a", syntax(0, "a permission or `(`")),
        ("a OR OR b", syntax(5, "a permission or `(`")),
        ("a b", syntax(2, "`AND`, `OR` or the end of the query")),
        ("a And b", syntax(2, "`AND`, `OR` or the end of the query")),
        ("a)", syntax(1, "`AND`, `OR` or the end of the query")),
        ("(a", syntax(2, "`AND`, `OR` or `)`")),
        ("(a b)", syntax(3, "`AND`, `OR` or `)`")),
        ("()", syntax(1, "a permission or `(`")),
        ("a AND ()", syntax(7, "a permission or `(`")),
    ] {
        assert_eq!(Query::parse(text), Err(error), "{text:?}");
    }
    let message = Query::parse("a AND (b OR").unwrap_err().to_string();
    assert_eq!(
        message,
        "syntax error in permission query at byte 11: expected a permission or `(`"
    );
}

#[test]
fn bad_names_in_queries_give_their_position_in_the_query() {
    assert_eq!(
        Query::parse("admin OR docs.*"),
        Err(PermissionError::Wildcard { position: 14 })
    );
    assert_eq!(
        Query::parse("admin OR (do$cs)"),
        Err(PermissionError::InvalidCharacter {
            position: 12,
            character: '$'
        })
    );
    let long = "a".repeat(MAX_PERMISSION_LEN + 1);
    assert_eq!(
        Query::parse(&format!("x OR {long}")),
        Err(PermissionError::TooLong {
            position: 5,
            length: 129
        })
    );
    assert!(
        Query::parse("docs.*")
            .unwrap_err()
            .to_string()
            .contains("byte 5")
    );
}

#[test]
fn length_limit_is_checked_first() {
    let long = "a".repeat(MAX_QUERY_LEN + 1);
    assert_eq!(
        Query::parse(&long),
        Err(PermissionError::QueryTooLong { length: 4097 })
    );
    let deep = format!("{}a{}", "(".repeat(100_000), ")".repeat(100_000));
    let started = std::time::Instant::now();
    assert_eq!(
        Query::parse(&deep),
        Err(PermissionError::QueryTooLong { length: 200_001 })
    );
    assert!(started.elapsed() < std::time::Duration::from_millis(100));
}

#[test]
fn parentheses_are_bounded_before_recursing() {
    let ok = format!("{}a{}", "(".repeat(16), ")".repeat(16));
    assert_eq!(parse(&ok), permission("a"));
    let too_deep = format!("{}a{}", "(".repeat(17), ")".repeat(17));
    assert_eq!(Query::parse(&too_deep), Err(PermissionError::TooDeep));
    // Within the length limit, with no closing parentheses at all: refused at level 17.
    let unclosed = "(".repeat(MAX_QUERY_LEN);
    assert_eq!(Query::parse(&unclosed), Err(PermissionError::TooDeep));
}

/// `a0 OR (a1 AND (a2 OR (a3 AND ...)))`: every parenthesis adds one level of `AND`/`OR`.
fn alternating(levels: usize) -> String {
    let mut text = format!("a{levels}");
    for level in (0..levels).rev() {
        let operator = if level % 2 == 0 { "OR" } else { "AND" };
        text = format!("a{level} {operator} ({text})");
    }
    text
}

#[test]
fn nesting_of_and_or_is_bounded() {
    let ok = Query::parse(&alternating(MAX_QUERY_DEPTH)).unwrap();
    assert_eq!(ok.check(), Ok(()));
    assert_eq!(
        Query::parse(&alternating(MAX_QUERY_DEPTH + 1)),
        Err(PermissionError::TooDeep)
    );
    // Eight parentheses, each holding an `OR` of `AND`s: seventeen levels.
    let mut text = "b AND c".to_owned();
    for _ in 0..8 {
        text = format!("x OR y AND ({text})");
    }
    assert_eq!(Query::parse(&text), Err(PermissionError::TooDeep));
}

#[test]
fn terms_are_bounded() {
    let names: Vec<String> = (0..MAX_QUERY_TERMS).map(|n| format!("p{n}")).collect();
    let ok = names.join(" OR ");
    assert_eq!(parse(&ok).check(), Ok(()));
    let too_many = format!("{ok} OR extra");
    assert_eq!(Query::parse(&too_many), Err(PermissionError::TooManyTerms));
}

#[test]
fn check_refuses_what_parse_would() {
    assert_eq!(Query::And(vec![]).check(), Err(PermissionError::EmptyGroup));
    assert_eq!(
        Query::Or(vec![permission("a"), Query::And(vec![])]).check(),
        Err(PermissionError::EmptyGroup)
    );
    assert_eq!(
        Query::Or(vec![permission("a"), permission("b c")]).check(),
        Err(PermissionError::InvalidCharacter {
            position: 1,
            character: ' '
        })
    );
    assert_eq!(
        permission("docs.*").check(),
        Err(PermissionError::Wildcard { position: 5 })
    );
    assert_eq!(
        permission("or").check(),
        Err(PermissionError::Reserved { position: 0 })
    );
    assert_eq!(permission("").check(), Err(PermissionError::Empty));
    let many = Query::And((0..=MAX_QUERY_TERMS).map(|_| permission("a")).collect());
    assert_eq!(many.check(), Err(PermissionError::TooManyTerms));
    assert_eq!(Query::And(vec![permission("a")]).check(), Ok(()));
}

#[test]
fn check_walks_deep_queries_without_recursing() {
    let mut query = permission("a");
    for _ in 0..MAX_QUERY_DEPTH {
        query = Query::And(vec![query]);
    }
    assert_eq!(query.check(), Ok(()));
    for _ in 0..1_000 {
        query = Query::Or(vec![query]);
    }
    assert_eq!(query.check(), Err(PermissionError::TooDeep));
}

#[test]
fn evaluation_follows_and_or() {
    let grants = Grants::new(["docs.*", "admin"]);
    for (text, expected) in [
        ("docs.read", true),
        ("billing.read", false),
        ("docs.read AND admin", true),
        ("docs.read AND billing.read", false),
        ("docs.read AND (billing.read OR admin)", true),
        ("billing.read OR billing.write", false),
        ("billing.read AND docs.x OR admin", true),
        ("billing.read AND (docs.x OR admin)", false),
    ] {
        assert_eq!(parse(text).evaluate(&grants), expected, "{text}");
    }
    assert!(Query::And(vec![]).evaluate(&grants));
    assert!(!Query::Or(vec![]).evaluate(&grants));
    assert!(!parse("docs.read").evaluate(&Grants::default()));
}

#[test]
fn errors_read_well() {
    for (error, expected) in [
        (PermissionError::Empty, "permission name is empty"),
        (
            PermissionError::TooManyTerms,
            "permission query names more than 64 permissions",
        ),
        (
            PermissionError::TooDeep,
            "permission query nests `AND`/`OR` or parentheses more than 16 deep",
        ),
        (
            PermissionError::QueryTooLong { length: 5000 },
            "permission query is 5000 bytes long, more than 4096",
        ),
        (
            PermissionError::InvalidCharacter {
                position: 3,
                character: '$',
            },
            "invalid character '$' at byte 3: permissions use letters, digits, `_`, `.`, `:` and `-`",
        ),
    ] {
        assert_eq!(error.to_string(), expected);
    }
}

/// The reference for wildcard matching: the obvious recursive definition.
fn naive_glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|skip| naive_glob(rest, &text[skip..])),
        Some((byte, rest)) => text.first() == Some(byte) && naive_glob(rest, &text[1..]),
    }
}

/// The reference for evaluation: recursion over the query, a scan over the grants.
fn naive_evaluate(query: &Query, grants: &[String]) -> bool {
    match query {
        Query::Permission(name) => grants
            .iter()
            .any(|grant| naive_glob(grant.as_bytes(), name.as_bytes())),
        Query::And(operands) => operands
            .iter()
            .all(|operand| naive_evaluate(operand, grants)),
        Query::Or(operands) => operands
            .iter()
            .any(|operand| naive_evaluate(operand, grants)),
    }
}

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_.:-]{1,12}".prop_filter("operators are not names", |name| {
        !OPERATORS.contains(&name.as_str())
    })
}

/// A few names, so that queries and grants meet often.
fn small_name() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "a",
        "b",
        "docs.read",
        "docs.write",
        "docs.a.b",
        "billing:read",
        "admin",
    ])
    .prop_map(str::to_owned)
}

fn grant() -> impl Strategy<Value = String> {
    prop_oneof![
        small_name(),
        prop::sample::select(vec!["*", "docs.*", "*.read", "*:*", "d*s*b", "a*"])
            .prop_map(str::to_owned),
    ]
}

/// Queries shaped as `parse` returns them: every `and`/`or` has two operands or more.
fn query_of(leaf: impl Strategy<Value = String> + 'static) -> impl Strategy<Value = Query> {
    leaf.prop_map(Query::Permission)
        .prop_recursive(5, 48, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 2..4).prop_map(Query::And),
                prop::collection::vec(inner, 2..4).prop_map(Query::Or),
            ]
        })
}

/// Queries as a caller may build them, one-operand groups included.
fn loose_query() -> impl Strategy<Value = Query> {
    small_name()
        .prop_map(Query::Permission)
        .prop_recursive(5, 48, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 1..4).prop_map(Query::And),
                prop::collection::vec(inner, 1..4).prop_map(Query::Or),
            ]
        })
}

/// Writes a query the way a careless person might: lower-case operators, no spaces around
/// parentheses, redundant parentheses around names.
fn sloppy(query: &Query) -> String {
    match query {
        Query::Permission(name) => format!("({name})"),
        Query::And(operands) => operands
            .iter()
            .map(|operand| format!("({})", sloppy(operand)))
            .collect::<Vec<_>>()
            .join("and"),
        Query::Or(operands) => operands
            .iter()
            .map(|operand| format!("({})", sloppy(operand)))
            .collect::<Vec<_>>()
            .join("or"),
    }
}

/// Query-like text: operators, parentheses and names with odd spacing, to reach deep into
/// the parser more often than arbitrary text does.
fn query_like_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![
            "(",
            ")",
            "AND",
            "and",
            "OR",
            "or",
            "And",
            " ",
            "a",
            "docs.read",
            "*",
            "$",
            "\t",
            "é",
        ]),
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #[test]
    fn display_parses_back_to_the_same_query(query in query_of(name())) {
        prop_assume!(query.check().is_ok());
        let text = query.to_string();
        prop_assert_eq!(Query::parse(&text), Ok(query.clone()));
        prop_assert_eq!(Query::parse(&sloppy(&query)), Ok(query));
    }

    #[test]
    fn parsed_queries_print_canonically(text in query_like_text()) {
        if let Ok(query) = Query::parse(&text) {
            prop_assert_eq!(query.check(), Ok(()));
            let canonical = query.to_string();
            let again = Query::parse(&canonical).unwrap();
            prop_assert_eq!(again.to_string(), canonical);
            prop_assert_eq!(again, query);
        }
    }

    #[test]
    fn one_operand_groups_print_as_their_operand(query in loose_query(), grants in prop::collection::vec(grant(), 0..4)) {
        prop_assume!(query.check().is_ok());
        let reparsed = Query::parse(&query.to_string()).unwrap();
        let grants = Grants::new(&grants);
        prop_assert_eq!(reparsed.evaluate(&grants), query.evaluate(&grants));
    }

    #[test]
    fn evaluation_matches_the_reference(
        query in query_of(small_name()),
        grants in prop::collection::vec(grant(), 0..5),
    ) {
        let compiled = Grants::new(&grants);
        prop_assert_eq!(query.evaluate(&compiled), naive_evaluate(&query, &grants));
    }

    #[test]
    fn wildcards_match_like_the_reference(pattern in "[ab.*]{0,10}", text in "[ab.]{0,12}") {
        let grants = Grants::new([&pattern]);
        prop_assert_eq!(
            grants.allows(&text),
            naive_glob(pattern.as_bytes(), text.as_bytes()),
            "pattern {:?} text {:?}", pattern, text
        );
    }

    #[test]
    fn parse_never_panics(text in "\\PC{0,200}") {
        let _ = Query::parse(&text);
    }

    #[test]
    fn parse_never_panics_on_query_like_text(text in query_like_text()) {
        if let Err(error) = Query::parse(&text) {
            // Every message is printable, and positions lie within the text.
            let message = error.to_string();
            prop_assert!(!message.is_empty());
            if let PermissionError::Syntax { position, .. }
            | PermissionError::InvalidCharacter { position, .. }
            | PermissionError::Wildcard { position } = error
            {
                prop_assert!(position <= text.len());
                prop_assert!(text.is_char_boundary(position));
            }
        }
    }

    #[test]
    fn validation_accepts_exactly_the_alphabet(name in "\\PC{0,20}") {
        let expected = !name.is_empty()
            && name.chars().all(is_name_char)
            && !OPERATORS.contains(&name.as_str());
        prop_assert_eq!(validate_permission(&name).is_ok(), expected);
    }
}
