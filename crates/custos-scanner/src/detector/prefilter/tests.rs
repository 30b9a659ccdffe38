//! The lane-split keyword search must report exactly what one overlapping Aho-Corasick pass
//! reports, in the same order, wherever the lane boundaries fall.
#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

use aho_corasick::AhoCorasick;
use proptest::prelude::*;

use super::*;

fn keywords(words: &[&str]) -> Vec<Vec<u8>> {
    words.iter().map(|word| word.as_bytes().to_vec()).collect()
}

fn hits(prefilter: &KeywordPrefilter, data: &[u8]) -> Vec<(usize, Range<usize>)> {
    let mut hits = Vec::new();
    prefilter.find(data, |keyword, range| hits.push((keyword, range)));
    hits
}

fn expected(keywords: &[Vec<u8>], data: &[u8]) -> Vec<(usize, Range<usize>)> {
    let automaton = AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .build(keywords)
        .unwrap();
    automaton
        .find_overlapping_iter(data)
        .map(|found| (found.pattern().as_usize(), found.range()))
        .collect()
}

#[test]
fn hits_across_lane_boundaries_are_found_once() {
    let words = keywords(&["token", "tok", "sk", "ke"]);
    let prefilter = KeywordPrefilter::new(&words).unwrap();
    // Four lanes of 300 bytes; keywords straddle every boundary.
    let mut data = vec![b'.'; 1200];
    for boundary in [298, 598, 898] {
        data[boundary..boundary + 5].copy_from_slice(b"ToKeN");
    }
    data[1197..].copy_from_slice(b"aSk");
    let found = hits(&prefilter, &data);
    assert_eq!(found, expected(&words, &data));
    assert_eq!(found.len(), 3 * 3 + 1);
}

proptest! {
    #[test]
    fn lanes_report_what_one_pass_reports(
        data in proptest::collection::vec(
            prop_oneof![Just(b'a'), Just(b'B'), Just(b'c'), Just(b'_'), any::<u8>()],
            0..4000,
        ),
    ) {
        let words = keywords(&["ab", "abc", "bca", "c_a", "aaaaaa", "b"]);
        let prefilter = KeywordPrefilter::new(&words).unwrap();
        prop_assert_eq!(hits(&prefilter, &data), expected(&words, &data));
    }
}
