//! Fuzzes the permission query parser: it must never panic; a query it accepts must pass
//! `check`, print to text that parses back to the same query, and evaluate the same either way
//! against grants made of the input's lines (wildcards included).
#![no_main]

use custos_core::{Grants, MAX_QUERY_LEN, Query, validate_grant, validate_permission};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    for line in &lines {
        let _ = validate_permission(line);
        let _ = validate_grant(line);
    }
    let grants = Grants::new(&lines);
    for line in &lines {
        let _ = grants.allows(line);
    }
    let Ok(query) = Query::parse(text) else {
        return;
    };
    assert_eq!(query.check(), Ok(()));
    let canonical = query.to_string();
    if canonical.len() <= MAX_QUERY_LEN {
        let again = Query::parse(&canonical).expect("the canonical form parses");
        assert_eq!(again, query);
        assert_eq!(again.to_string(), canonical);
    }
    let allowed = query.evaluate(&grants);
    assert_eq!(allowed, query.evaluate(&Grants::new(lines.iter().rev())));
});
