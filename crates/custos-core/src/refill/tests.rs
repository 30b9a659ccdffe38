//! Unit and property tests for refill boundaries and the civil-date arithmetic under them.
#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

use proptest::prelude::*;

use super::*;

const DAY: i64 = SECONDS_PER_DAY;

// 00:00 UTC of some dates, from Python's `datetime` (an independent implementation).
const Y1900_01_31: i64 = -2_206_396_800;
const Y1900_02_28: i64 = -2_203_977_600;
const Y1969_12_15: i64 = -1_468_800;
const Y2000_02_29: i64 = 951_782_400;
const Y2024_12_31: i64 = 1_735_603_200;
const Y2025_01_01: i64 = 1_735_689_600;
const Y2026_04_30: i64 = 1_777_507_200;
const Y2026_05_31: i64 = 1_780_185_600;
const Y2026_12_20: i64 = 1_797_724_800;
const Y2027_01_15: i64 = 1_799_971_200;
const Y2027_01_31: i64 = 1_801_353_600;
const Y2027_02_28: i64 = 1_803_772_800;
const Y2027_03_31: i64 = 1_806_451_200;
const Y2028_01_31: i64 = 1_832_889_600;
const Y2028_02_29: i64 = 1_835_395_200;
const Y2100_02_28: i64 = 4_107_456_000;
const Y0001_01_01: i64 = -62_135_596_800;

fn monthly(day: u8) -> Interval {
    Interval::monthly(day).unwrap()
}

#[test]
fn civil_dates_match_known_timestamps() {
    for (seconds, date) in [
        (0, (1970, 1, 1)),
        (Y1900_02_28, (1900, 2, 28)),
        (Y2000_02_29, (2000, 2, 29)),
        (Y2028_02_29, (2028, 2, 29)),
        (Y2100_02_28, (2100, 2, 28)),
        (Y0001_01_01, (1, 1, 1)),
        (Y1969_12_15, (1969, 12, 15)),
    ] {
        let days = seconds / DAY;
        assert_eq!(civil_from_days(days), date, "{seconds}");
        assert_eq!(days_from_civil(date.0, date.1, date.2), days, "{date:?}");
    }
    assert_eq!(civil_from_days(-1), (1969, 12, 31));
    assert_eq!(days_from_civil(0, 3, 1), -719_468);
    assert_eq!(civil_from_days(-719_469), (0, 2, 29));
}

#[test]
fn leap_years_follow_the_gregorian_rules() {
    for (year, leap) in [
        (2028, true),
        (2027, false),
        (2000, true),
        (1900, false),
        (2100, false),
        (0, true),
        (-4, true),
        (-100, false),
        (-400, true),
    ] {
        assert_eq!(is_leap_year(year), leap, "{year}");
        assert_eq!(days_in_month(year, 2), if leap { 29 } else { 28 });
    }
    assert_eq!(days_in_month(2027, 4), 30);
    assert_eq!(days_in_month(2027, 12), 31);
}

#[test]
fn monthly_days_are_checked() {
    assert_eq!(
        Interval::monthly(0),
        Err(RefillError::DayOutOfRange { day: 0 })
    );
    assert_eq!(
        Interval::monthly(32),
        Err(RefillError::DayOutOfRange { day: 32 })
    );
    assert_eq!(Interval::monthly(1), Ok(Interval::Monthly { day: 1 }));
    assert_eq!(Interval::monthly(31), Ok(Interval::Monthly { day: 31 }));
    assert_eq!(
        RefillError::DayOutOfRange { day: 40 }.to_string(),
        "refill day must be between 1 and 31, got 40"
    );
}

#[test]
fn daily_refills_at_midnight() {
    assert_eq!(next_refill(Interval::Daily, 0), DAY);
    assert_eq!(next_refill(Interval::Daily, DAY - 1), DAY);
    assert_eq!(next_refill(Interval::Daily, DAY), 2 * DAY);
    assert_eq!(next_refill(Interval::Daily, -1), 0);
    assert_eq!(next_refill(Interval::Daily, -DAY), 0);
    assert_eq!(next_refill(Interval::Daily, -DAY - 1), -DAY);
    assert_eq!(next_refill(Interval::Daily, Y2024_12_31 + 5), Y2025_01_01);
}

#[test]
fn monthly_refills_on_the_day_or_the_last_day_of_a_short_month() {
    for (day, after, expected) in [
        // Day 31 in February: the 29th in a leap year, the 28th otherwise.
        (31, Y2028_01_31, Y2028_02_29),
        (31, Y2027_01_31, Y2027_02_28),
        (31, Y2027_02_28, Y2027_03_31),
        (31, Y2027_02_28 - 1, Y2027_02_28),
        (30, Y2028_01_31, Y2028_02_29),
        (29, Y2027_01_31, Y2027_02_28),
        (29, Y2028_01_31, Y2028_02_29),
        (29, Y2100_02_28 - DAY, Y2100_02_28),
        (29, Y2000_02_29 - 1, Y2000_02_29),
        (31, Y1900_01_31, Y1900_02_28),
        // 30 April, then 31 May.
        (31, Y2026_04_30 - 1, Y2026_04_30),
        (31, Y2026_04_30, Y2026_05_31),
        // Over the year's end.
        (15, Y2026_12_20, Y2027_01_15),
        (1, Y2024_12_31, Y2025_01_01),
        (31, Y2024_12_31, Y2025_01_01 + 30 * DAY),
        // Before 1970.
        (1, Y1969_12_15, 0),
        (15, Y1969_12_15 - 1, Y1969_12_15),
        (15, Y1969_12_15, Y1969_12_15 + 31 * DAY),
        // On the day itself, later than midnight: next month.
        (15, Y2027_01_15 + 3_600, Y2027_01_15 + 31 * DAY),
    ] {
        assert_eq!(
            next_refill(monthly(day), after),
            expected,
            "day {day} after {after}"
        );
    }
}

#[test]
fn days_outside_the_month_are_clamped() {
    assert_eq!(
        next_refill(Interval::Monthly { day: 0 }, Y1969_12_15),
        next_refill(monthly(1), Y1969_12_15)
    );
    assert_eq!(
        next_refill(Interval::Monthly { day: 200 }, Y2028_01_31),
        Y2028_02_29
    );
}

#[test]
fn a_refill_is_due_once_a_boundary_has_passed() {
    assert!(refill_due(Interval::Daily, 0, DAY));
    assert!(refill_due(Interval::Daily, DAY - 1, DAY));
    assert!(!refill_due(Interval::Daily, DAY, DAY));
    assert!(!refill_due(Interval::Daily, DAY, 2 * DAY - 1));
    assert!(!refill_due(Interval::Daily, 2 * DAY, DAY));
    assert!(refill_due(monthly(31), Y2027_01_31, Y2027_02_28));
    assert!(!refill_due(monthly(31), Y2027_01_31, Y2027_02_28 - 1));
    assert!(refill_due(monthly(1), Y1969_12_15, 0));
}

#[test]
fn extreme_times_saturate_instead_of_panicking() {
    assert_eq!(next_refill(Interval::Daily, i64::MAX), i64::MAX);
    assert_eq!(next_refill(monthly(31), i64::MAX), i64::MAX);
    assert!(!refill_due(Interval::Daily, i64::MAX - 1, i64::MAX));
    let first = next_refill(monthly(1), i64::MIN);
    assert!(first > i64::MIN);
    assert_eq!(first % DAY, 0);
    assert_eq!(next_refill(Interval::Daily, i64::MIN) % DAY, 0);
}

fn interval() -> impl Strategy<Value = Interval> {
    prop_oneof![
        Just(Interval::Daily),
        (1u8..=31).prop_map(|day| Interval::Monthly { day }),
    ]
}

/// Times some 30 000 years either side of 1970.
fn time() -> impl Strategy<Value = i64> {
    -1_000_000_000_000i64..1_000_000_000_000
}

/// Whether `unix` is a refill boundary of `interval`.
fn is_boundary(interval: Interval, unix: i64) -> bool {
    if unix.rem_euclid(DAY) != 0 {
        return false;
    }
    match interval {
        Interval::Daily => true,
        Interval::Monthly { day } => {
            let (year, month, day_of_month) = civil_from_days(unix.div_euclid(DAY));
            day_of_month == day.min(days_in_month(year, month))
        }
    }
}

proptest! {
    #[test]
    fn civil_conversions_are_inverse(days in -400_000_000i64..400_000_000) {
        let (year, month, day) = civil_from_days(days);
        prop_assert!((1..=12).contains(&month));
        prop_assert!(day >= 1 && day <= days_in_month(year, month));
        prop_assert_eq!(days_from_civil(year, month, day), days);
        // The next day is the next date.
        let next = civil_from_days(days + 1);
        let expected = if day < days_in_month(year, month) {
            (year, month, day + 1)
        } else if month < 12 {
            (year, month + 1, 1)
        } else {
            (year + 1, 1, 1)
        };
        prop_assert_eq!(next, expected);
    }

    #[test]
    fn next_refill_is_the_first_boundary_after(interval in interval(), after in time()) {
        let next = next_refill(interval, after);
        prop_assert!(next > after);
        prop_assert!(is_boundary(interval, next));
        // No boundary in between: the boundaries are at most one a day, so check every
        // midnight from `after` up to `next`, which is at most 31 days away.
        prop_assert!(next - after <= 31 * DAY);
        let mut midnight = (after.div_euclid(DAY) + 1) * DAY;
        while midnight < next {
            prop_assert!(!is_boundary(interval, midnight), "{} is a boundary", midnight);
            midnight += DAY;
        }
    }

    #[test]
    fn refill_due_agrees_with_next_refill(interval in interval(), last in time(), step in -40 * DAY..40 * DAY) {
        let now = last + step;
        let due = refill_due(interval, last, now);
        let any_boundary = ((last.div_euclid(DAY) + 1)..=now.div_euclid(DAY))
            .any(|day| is_boundary(interval, day * DAY));
        prop_assert_eq!(due, any_boundary);
    }

    #[test]
    fn any_time_is_handled(interval in interval(), after: i64, now: i64) {
        let next = next_refill(interval, after);
        prop_assert!(next > after || next == i64::MAX);
        let _ = refill_due(interval, after, now);
    }
}
