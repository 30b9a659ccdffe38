//! Unit and property tests for the sliding-window rate limit.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

const SECOND: u64 = 1_000;

fn outcome(allowed: bool, remaining: u64, reset_ms: u64) -> Outcome {
    Outcome {
        allowed,
        remaining,
        reset_ms,
    }
}

#[test]
fn a_fresh_window_grants_up_to_the_limit() {
    let mut window = Window::default();
    let now = 10 * SECOND + 250;
    assert_eq!(
        window.take(now, 3, SECOND, 1),
        outcome(true, 2, 11 * SECOND)
    );
    assert_eq!(
        window.take(now, 3, SECOND, 2),
        outcome(true, 0, 11 * SECOND)
    );
    assert_eq!(
        window.take(now, 3, SECOND, 1),
        outcome(false, 0, 11 * SECOND)
    );
    assert_eq!(window, Window::from_parts(10 * SECOND, 3, 0));
}

#[test]
fn the_previous_window_counts_by_its_overlap() {
    let mut window = Window::from_parts(10 * SECOND, 10, 0);
    // 250 ms into the next window, the sliding window still overlaps 3/4 of the previous
    // one: 10 × 0.75 = 7.5, rounded up to 8, leaves 2.
    let now = 11 * SECOND + 250;
    assert_eq!(
        window.take(now, 10, SECOND, 0),
        outcome(true, 2, 12 * SECOND)
    );
    assert_eq!(
        window.take(now, 10, SECOND, 2),
        outcome(true, 0, 12 * SECOND)
    );
    assert_eq!(
        window.take(now, 10, SECOND, 1),
        outcome(false, 0, 12 * SECOND)
    );
    assert_eq!(window, Window::from_parts(11 * SECOND, 2, 10));
    // At 900 ms, 10 × 0.1 = 1 and 2 taken: 7 left.
    let later = 11 * SECOND + 900;
    assert_eq!(
        window.take(later, 10, SECOND, 7),
        outcome(true, 0, 12 * SECOND)
    );
}

#[test]
fn a_refused_take_reports_what_is_left() {
    let mut window = Window::default();
    assert!(window.take(500, 10, SECOND, 6).allowed);
    let before = window;
    assert_eq!(window.take(600, 10, SECOND, 5), outcome(false, 4, SECOND));
    assert_eq!(window, before);
    assert_eq!(window.take(600, 10, SECOND, 4), outcome(true, 0, SECOND));
}

#[test]
fn cost_zero_only_reports() {
    let mut window = Window::from_parts(0, 4, 0);
    assert_eq!(window.take(10, 5, SECOND, 0), outcome(true, 1, SECOND));
    assert_eq!(window, Window::from_parts(0, 4, 0));
    // Over the limit (say it was lowered), a report says so.
    assert_eq!(window.take(10, 3, SECOND, 0), outcome(false, 0, SECOND));
    // Time moving on is not stored by a report either.
    assert_eq!(
        window.take(5 * SECOND, 5, SECOND, 0),
        outcome(true, 5, 6 * SECOND)
    );
    assert_eq!(window, Window::from_parts(0, 4, 0));
}

#[test]
fn a_limit_of_zero_grants_nothing() {
    let mut window = Window::default();
    assert_eq!(window.take(1, 0, SECOND, 1), outcome(false, 0, SECOND));
    assert_eq!(window.take(1, 0, SECOND, 0), outcome(true, 0, SECOND));
    assert_eq!(window, Window::default());
}

#[test]
fn two_durations_of_silence_forget_everything() {
    let mut window = Window::from_parts(10 * SECOND, 7, 9);
    assert_eq!(
        window.take(12 * SECOND, 10, SECOND, 10),
        outcome(true, 0, 13 * SECOND)
    );
    assert_eq!(window, Window::from_parts(12 * SECOND, 10, 0));
}

#[test]
fn a_clock_going_back_stands_still_at_the_counted_window() {
    let mut window = Window::default();
    assert!(window.take(10 * SECOND + 10, 5, SECOND, 5).allowed);
    // Back into an earlier window: the counted one still holds all five.
    assert_eq!(
        window.take(3 * SECOND, 5, SECOND, 1),
        outcome(false, 0, 11 * SECOND)
    );
    // Back within the window after a roll: the previous window weighs fully.
    assert!(window.take(11 * SECOND + 999, 5, SECOND, 0).allowed);
    let mut rolled = Window::from_parts(11 * SECOND, 0, 5);
    assert_eq!(
        rolled.take(10 * SECOND + 500, 5, SECOND, 1),
        outcome(false, 0, 12 * SECOND)
    );
    assert_eq!(rolled, Window::from_parts(11 * SECOND, 0, 5));
}

#[test]
fn extreme_values_saturate_instead_of_panicking() {
    let mut window = Window::from_parts(u64::MAX - 5, u64::MAX, u64::MAX);
    assert_eq!(
        window.take(u64::MAX - 4, u64::MAX, 2, 1),
        outcome(false, 0, u64::MAX - 3)
    );
    assert_eq!(
        window.take(u64::MAX, u64::MAX, u64::MAX, u64::MAX),
        outcome(true, 0, u64::MAX)
    );
    assert_eq!(window, Window::from_parts(u64::MAX, u64::MAX, 0));
    assert_eq!(
        window.take(u64::MAX, u64::MAX, u64::MAX, 1),
        outcome(false, 0, u64::MAX)
    );
    let mut window = Window::default();
    assert_eq!(
        window.take(u64::MAX, u64::MAX, 0, u64::MAX),
        outcome(true, 0, u64::MAX)
    );
    assert!(!window.take(u64::MAX, u64::MAX, 0, 1).allowed);
    let mut window = Window::default();
    assert_eq!(
        window.take(u64::MAX, u64::MAX, u64::MAX, 1),
        outcome(true, u64::MAX - 1, u64::MAX)
    );
    // A zero duration counts as one millisecond.
    let mut window = Window::default();
    assert_eq!(window.take(7, 1, 0, 1), outcome(true, 0, 8));
    assert_eq!(window.take(7, 1, 0, 1), outcome(false, 0, 8));
    assert_eq!(window.take(9, 1, 0, 1), outcome(true, 0, 10));
}

/// One request: how long after the previous one it comes, and its cost.
fn requests() -> impl Strategy<Value = Vec<(u64, u64)>> {
    prop::collection::vec((0u64..400, 0u64..4), 1..200)
}

/// Runs the requests with time moving forward; returns the granted (time, cost) pairs.
fn run(requests: &[(u64, u64)], start: u64, limit: u64, duration: u64) -> Vec<(u64, u64)> {
    let mut window = Window::default();
    let mut now = start;
    let mut granted = Vec::new();
    for &(gap, cost) in requests {
        now += gap;
        let before = window;
        let outcome = window.take(now, limit, duration, cost);
        assert_eq!(outcome.reset_ms, (now / duration + 1) * duration);
        if outcome.allowed {
            granted.push((now, cost));
        } else {
            assert_eq!(window, before, "a refused take changed the window");
        }
    }
    granted
}

proptest! {
    #[test]
    fn a_fixed_window_never_grants_more_than_the_limit(
        requests in requests(),
        start in 0u64..1_000_000,
        limit in 0u64..20,
        duration in 1u64..2_000,
    ) {
        let granted = run(&requests, start, limit, duration);
        let mut per_window = BTreeMap::new();
        for (time, cost) in granted {
            *per_window.entry(time / duration).or_insert(0) += cost;
        }
        for (index, total) in per_window {
            prop_assert!(total <= limit, "window {index}: {total} > {limit}");
        }
    }

    #[test]
    fn a_sliding_span_never_grants_twice_the_limit(
        requests in requests(),
        start in 0u64..1_000_000,
        limit in 1u64..20,
        duration in 1u64..2_000,
    ) {
        let granted = run(&requests, start, limit, duration);
        // The sliding sum peaks at spans ending at a grant.
        for &(end, _) in &granted {
            let total: u64 = granted
                .iter()
                .filter(|&&(time, _)| time + duration > end && time <= end)
                .map(|&(_, cost)| cost)
                .sum();
            prop_assert!(total < 2 * limit, "{total} granted in the span ending at {end}");
        }
    }

    #[test]
    fn a_refused_or_free_take_changes_nothing(
        window in (0u64..10_000, 0u64..30, 0u64..30),
        now in 0u64..20_000,
        limit in 0u64..30,
        duration in 1u64..3_000,
        cost in 0u64..40,
    ) {
        let mut window = Window::from_parts(window.0, window.1, window.2);
        let before = window;
        let outcome = window.take(now, limit, duration, cost);
        if !outcome.allowed || cost == 0 {
            prop_assert_eq!(window, before);
        } else {
            prop_assert!(window.current() >= cost);
        }
    }

    #[test]
    fn the_counter_recovers_after_two_durations_of_silence(
        requests in requests(),
        limit in 1u64..20,
        duration in 1u64..2_000,
        silence in 0u64..5_000,
        cost in 0u64..20,
    ) {
        prop_assume!(cost <= limit);
        let mut window = Window::default();
        let mut now = 0;
        for &(gap, request_cost) in &requests {
            now += gap;
            window.take(now, limit, duration, request_cost);
        }
        let later = now + 2 * duration + silence;
        let outcome = window.take(later, limit, duration, cost);
        prop_assert!(outcome.allowed);
        prop_assert_eq!(outcome.remaining, limit - cost);
    }

    #[test]
    fn a_wandering_clock_never_overfills_a_counted_window(
        times in prop::collection::vec((0u64..20_000, 0u64..4), 1..200),
        limit in 0u64..20,
        duration in 1u64..3_000,
    ) {
        let mut window = Window::default();
        let mut per_window: BTreeMap<u64, u64> = BTreeMap::new();
        for (now, cost) in times {
            if window.take(now, limit, duration, cost).allowed {
                *per_window.entry(window.start_ms()).or_insert(0) += cost;
            }
        }
        for (start, total) in per_window {
            prop_assert!(total <= limit, "window at {start}: {total} > {limit}");
        }
    }

    #[test]
    fn take_never_panics(
        window in any::<(u64, u64, u64)>(),
        now: u64,
        limit: u64,
        duration: u64,
        cost: u64,
    ) {
        let mut window = Window::from_parts(window.0, window.1, window.2);
        let outcome = window.take(now, limit, duration, cost);
        prop_assert!(outcome.remaining <= limit);
    }
}
