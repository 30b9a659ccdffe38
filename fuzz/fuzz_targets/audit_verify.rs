//! Fuzzes the audit chain verifier (`custos audit verify`): any bytes, as one file or split into
//! two, must give a report, never a panic, and an intact report must account for every line.
#![no_main]

use custos_audit::verify::{Verifier, VerifyOptions, feed_reader, verify_bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let report = verify_bytes(data, VerifyOptions::default());
    if report.problem.is_none() {
        let lines = data.iter().filter(|byte| **byte == b'\n').count() as u64;
        assert_eq!(report.lines, lines);
        assert_eq!(report.last_seq.is_some(), lines > 0);
    }
    // The same bytes as two files, split at the first byte's value.
    let split = usize::from(data.first().copied().unwrap_or(0)).min(data.len());
    let (first, second) = data.split_at(split);
    let mut verifier = Verifier::new(VerifyOptions { closed: true, live: false });
    for (name, part) in [("a.log", first), ("b.log", second)] {
        verifier.begin_file(name);
        let _ = feed_reader(&mut verifier, part, &mut |_| {});
        if verifier.failed() {
            break;
        }
    }
    let _ = verifier.finish();
});
