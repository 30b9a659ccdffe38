//! Fuzzes the policy parser: it must never panic; a policy it accepts must format to text that
//! parses back to the same rules, and must compile and evaluate without panicking.
#![no_main]

use custos_policy::{Capability, Facts, Policy, PolicySet, format};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(policy) = Policy::parse("fuzz", text) else {
        return;
    };
    let formatted = format(&policy);
    let again = Policy::parse("fuzz", &formatted).expect("formatted policy parses");
    assert_eq!(format(&again), formatted);
    let set = PolicySet::compile(&[policy], &|_| None);
    let facts = Facts::at(jiff::Timestamp::UNIX_EPOCH);
    for path in ["secret/data/a", "sys/", "a/b/c/"] {
        let _ = set.evaluate(path, Capability::Read, &facts);
        let _ = set.evaluate(path, Capability::List, &facts);
    }
});
