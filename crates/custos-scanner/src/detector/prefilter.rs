//! The keyword prefilter: one Aho-Corasick DFA run over several stretches of a buffer at once.
//!
//! A DFA transition needs the state the previous byte produced, so a single pass over a buffer
//! waits on one dependent table load per byte and leaves the rest of the core idle.
//! Splitting the buffer into [`LANES`] consecutive stretches and stepping their independent
//! states in one loop lets those loads overlap; on the benchmark tree this made the whole
//! detector about twice as fast as with `AhoCorasick::find_overlapping_iter` over the same DFA.

use std::collections::HashSet;
use std::ops::Range;

use aho_corasick::automaton::{Automaton, StateID};
use aho_corasick::dfa::DFA;
use aho_corasick::{Anchored, MatchKind, StartKind};

/// Stretches searched side by side.
const LANES: usize = 4;

/// Buffers shorter than this per lane are searched in one pass: the split is not worth it.
const MIN_LANE_LEN: usize = 256;

/// Finds every occurrence of every keyword, case-insensitively, overlapping ones included.
pub(super) struct KeywordPrefilter {
    dfa: DFA,
    start: StateID,
    /// Longest keyword: a lane started this many bytes early minus one is in the state a pass
    /// from the buffer start would have, since a state only remembers that many bytes.
    max_len: usize,
    /// No match state has a higher id, so most bytes need one comparison for all lanes.
    highest_match: u32,
}

impl KeywordPrefilter {
    /// Compiles `keywords`; hits report a keyword by its index in this slice.
    pub(super) fn new(keywords: &[Vec<u8>]) -> Result<Self, String> {
        let dfa = DFA::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .start_kind(StartKind::Unanchored)
            // The lane loop steps states itself, so the automaton's own prefilter is unused.
            .prefilter(false)
            .build(keywords)
            .map_err(|error| error.to_string())?;
        let start = dfa
            .start_state(Anchored::No)
            .map_err(|error| error.to_string())?;
        let max_len = dfa.max_pattern_len();
        let highest_match = highest_match_state(&dfa, start);
        Ok(Self {
            dfa,
            start,
            max_len,
            highest_match,
        })
    }

    /// Calls `hit(keyword, range)` for every occurrence, in order of the end of the range
    /// (as `AhoCorasick::find_overlapping_iter` does).
    ///
    /// Never inlined: inside the detector's big loop the compiler ran out of registers and kept
    /// three of the four lane states on the stack, a store and a load per byte.
    #[inline(never)]
    pub(super) fn find(&self, data: &[u8], mut hit: impl FnMut(usize, Range<usize>)) {
        let lane_len = data.len() / LANES;
        if lane_len < MIN_LANE_LEN {
            let mut found = Vec::new();
            self.step(self.start, data, 0, &mut found);
            return self.report(&found, &mut hit);
        }
        // Lane k reports matches that end in its stretch `k * lane_len..(k + 1) * lane_len`;
        // the last lane goes on to the end of the buffer afterwards. Every lane but the first
        // starts early enough to be in the right state when its stretch begins.
        let mut states = [self.start; LANES];
        for (lane, state) in states.iter_mut().enumerate().skip(1) {
            let begin = lane * lane_len;
            let warm_up = begin.saturating_sub(self.max_len.saturating_sub(1))..begin;
            *state = self.warm_up(*state, &data[warm_up]);
        }
        let mut found: [Vec<(usize, StateID)>; LANES] = Default::default();
        let [mut s0, mut s1, mut s2, mut s3] = states;
        let (a, rest) = data.split_at(lane_len);
        let (b, rest) = rest.split_at(lane_len);
        let (c, rest) = rest.split_at(lane_len);
        let (d, tail) = rest.split_at(lane_len);
        let bytes = a.iter().zip(b).zip(c).zip(d);
        for (offset, (((&x0, &x1), &x2), &x3)) in bytes.enumerate() {
            s0 = self.dfa.next_state(Anchored::No, s0, x0);
            s1 = self.dfa.next_state(Anchored::No, s1, x1);
            s2 = self.dfa.next_state(Anchored::No, s2, x2);
            s3 = self.dfa.next_state(Anchored::No, s3, x3);
            let lowest = s0.min(s1).min(s2.min(s3));
            if lowest.as_u32() <= self.highest_match {
                for (lane, state) in [s0, s1, s2, s3].into_iter().enumerate() {
                    if self.dfa.is_match(state) {
                        found[lane].push((lane * lane_len + offset + 1, state));
                    }
                }
            }
        }
        let [_, _, _, last] = &mut found;
        self.step(s3, tail, LANES * lane_len, last);
        for lane in &found {
            self.report(lane, &mut hit);
        }
    }

    /// Runs the DFA over `bytes` (which start at `offset` in the buffer) from `state`, and
    /// records `(end, state)` for every match state reached.
    fn step(
        &self,
        mut state: StateID,
        bytes: &[u8],
        offset: usize,
        found: &mut Vec<(usize, StateID)>,
    ) -> StateID {
        for (position, &byte) in bytes.iter().enumerate() {
            state = self.dfa.next_state(Anchored::No, state, byte);
            if self.dfa.is_special(state) && self.dfa.is_match(state) {
                found.push((offset + position + 1, state));
            }
        }
        state
    }

    /// Runs the DFA over `bytes` from `state` without recording matches.
    fn warm_up(&self, mut state: StateID, bytes: &[u8]) -> StateID {
        for &byte in bytes {
            state = self.dfa.next_state(Anchored::No, state, byte);
        }
        state
    }

    fn report(&self, found: &[(usize, StateID)], hit: &mut impl FnMut(usize, Range<usize>)) {
        for &(end, state) in found {
            for index in 0..self.dfa.match_len(state) {
                let pattern = self.dfa.match_pattern(state, index);
                hit(pattern.as_usize(), end - self.dfa.pattern_len(pattern)..end);
            }
        }
    }
}

/// The highest id of a match state reachable from `start`.
fn highest_match_state(dfa: &DFA, start: StateID) -> u32 {
    let mut seen = HashSet::from([start]);
    let mut queue = vec![start];
    let mut highest = 0;
    while let Some(state) = queue.pop() {
        if dfa.is_match(state) {
            highest = highest.max(state.as_u32());
        }
        for byte in 0..=u8::MAX {
            let next = dfa.next_state(Anchored::No, state, byte);
            if seen.insert(next) {
                queue.push(next);
            }
        }
    }
    highest
}

#[cfg(test)]
mod tests;
