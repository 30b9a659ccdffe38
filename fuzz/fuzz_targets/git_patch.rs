//! Fuzzes the parser of `git log -p` output. Paths, commit messages and file contents come from
//! repositories custos does not control; the parser must never panic, and every chunk it hands
//! to the detector must carry one line number per added line.
#![no_main]

use custos_scanner::fuzzing::parse_patch_bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for (_path, lines, numbers) in parse_patch_bytes(data) {
        assert!(!lines.is_empty());
        assert_eq!(lines.iter().filter(|&&b| b == b'\n').count(), numbers.len());
    }
});
