//! Fuzzes the files a user hands to `custos scan`: a rules file (`--rules`) and a baseline
//! (`--baseline`). Both must be rejected with an error, never a panic, and a rules file that
//! loads must either compile or fail with an error.
#![no_main]

use custos_scanner::{Baseline, Detector, RuleSet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(baseline) = Baseline::parse(text) {
        assert_eq!(baseline.is_empty(), baseline.len() == 0);
    }
    let mut rules = RuleSet::default();
    if rules.add_toml("fuzz.toml", text).is_ok()
        && let Ok(detector) = Detector::new(&rules)
    {
        assert_eq!(detector.len(), rules.rules().len());
        let _ = detector.detect(text.as_bytes(), "fuzz.toml");
    }
});
