//! Fuzzes the detector with the default rules over arbitrary file contents: it must never panic,
//! and every detection must point inside the buffer, with the secret inside the whole match.
#![no_main]

use std::sync::OnceLock;

use custos_scanner::{Detector, RuleSet};
use libfuzzer_sys::fuzz_target;

fn detector() -> &'static Detector {
    static DETECTOR: OnceLock<Detector> = OnceLock::new();
    DETECTOR.get_or_init(|| {
        let rules = RuleSet::defaults().expect("embedded rules parse");
        Detector::new(&rules).expect("embedded rules compile")
    })
}

fuzz_target!(|data: &[u8]| {
    let detector = detector();
    for detection in detector.detect(data, "fuzz/input.txt") {
        assert!(detection.rule < detector.len());
        assert!(detection.whole.start <= detection.whole.end);
        assert!(detection.whole.end <= data.len());
        assert!(detection.secret.start <= detection.secret.end);
        assert!(detection.secret.end <= data.len());
        assert!(detection.entropy.is_finite() && detection.entropy >= 0.0);
    }
});
