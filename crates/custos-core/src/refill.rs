//! Usage refills of API keys: when a key's `remaining` count is set back to its refill amount.
//!
//! Refills happen at 00:00 UTC: every day, or once a month on a chosen day. A month shorter
//! than the chosen day refills on its last day (day 31 refills on 28 or 29 February, and on
//! 30 April). Times are unix seconds, negative ones included; dates use the proleptic
//! Gregorian calendar, converted with Howard Hinnant's `days_from_civil` and
//! `civil_from_days` (<https://howardhinnant.github.io/date_algorithms.html>).

use std::fmt;

const SECONDS_PER_DAY: i64 = 86_400;

/// How often a key's uses are refilled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interval {
    /// Every day at 00:00 UTC.
    Daily,
    /// Every month at 00:00 UTC of `day` (1 to 31), or of the month's last day when it is
    /// shorter. A `day` outside 1 to 31 (only possible without [`Interval::monthly`]) is
    /// taken as the nearest of the two.
    Monthly { day: u8 },
}

/// Why a refill setting is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefillError {
    /// A monthly refill day outside 1 to 31.
    DayOutOfRange { day: u8 },
}

impl fmt::Display for RefillError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DayOutOfRange { day } => {
                write!(f, "refill day must be between 1 and 31, got {day}")
            }
        }
    }
}

impl std::error::Error for RefillError {}

impl Interval {
    /// A monthly refill on `day`.
    ///
    /// # Errors
    /// [`RefillError::DayOutOfRange`] unless `day` is 1 to 31.
    pub fn monthly(day: u8) -> Result<Interval, RefillError> {
        if (1..=31).contains(&day) {
            Ok(Interval::Monthly { day })
        } else {
            Err(RefillError::DayOutOfRange { day })
        }
    }
}

/// The first refill boundary (00:00 UTC of a refill day) strictly after `after_unix` seconds.
///
/// Past the range of `i64` seconds (some 292 billion years away) it saturates to `i64::MAX`.
#[must_use]
pub fn next_refill(interval: Interval, after_unix: i64) -> i64 {
    next_boundary(interval, after_unix).unwrap_or(i64::MAX)
}

/// Whether a refill boundary lies in `(last_unix, now_unix]`: a refill is due when one passed
/// since the last one. False when `now_unix` is not after `last_unix`.
#[must_use]
pub fn refill_due(interval: Interval, last_unix: i64, now_unix: i64) -> bool {
    now_unix > last_unix
        && next_boundary(interval, last_unix).is_some_and(|boundary| boundary <= now_unix)
}

/// The first boundary after `after_unix`, or `None` when it does not fit in an `i64`.
fn next_boundary(interval: Interval, after_unix: i64) -> Option<i64> {
    let today = after_unix.div_euclid(SECONDS_PER_DAY);
    let day = match interval {
        Interval::Daily => today.checked_add(1)?,
        Interval::Monthly { day } => {
            let day = day.clamp(1, 31);
            let (year, month, day_of_month) = civil_from_days(today);
            let this_month = refill_day(day, year, month);
            if day_of_month < this_month {
                days_from_civil(year, month, this_month)
            } else {
                let (year, month) = if month == 12 {
                    (year + 1, 1)
                } else {
                    (year, month + 1)
                };
                days_from_civil(year, month, refill_day(day, year, month))
            }
        }
    };
    day.checked_mul(SECONDS_PER_DAY)
}

/// The day of `year`-`month` on which a monthly refill on `day` happens.
fn refill_day(day: u8, year: i64, month: u8) -> u8 {
    day.min(days_in_month(year, month))
}

fn is_leap_year(year: i64) -> bool {
    year.rem_euclid(4) == 0 && (year.rem_euclid(100) != 0 || year.rem_euclid(400) == 0)
}

/// Days in `month` (1 to 12) of `year`.
fn days_in_month(year: i64, month: u8) -> u8 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to `year`-`month`-`day` (month 1 to 12, day 1 to 31), negative before.
///
/// Hinnant's `days_from_civil`: years counted from March, so the leap day ends a year, in
/// eras of 400 years (146097 days) that repeat exactly.
fn days_from_civil(year: i64, month: u8, day: u8) -> i64 {
    let (month, day) = (i64::from(month), i64::from(day));
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400; // [0, 399]
    let month_from_march = if month > 2 { month - 3 } else { month + 9 }; // [0, 11]
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1; // [0, 365]
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year; // [0, 146096]
    era * 146_097 + day_of_era - 719_468
}

/// The date (year, month 1 to 12, day 1 to 31) that lies `days` after 1970-01-01.
///
/// Hinnant's `civil_from_days`, the inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let days = days + 719_468; // from 0000-03-01
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097; // [0, 146096]
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365; // [0, 399]
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100); // [0, 365]
    let month_from_march = (5 * day_of_year + 2) / 153; // [0, 11]
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1; // [1, 31]
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    }; // [1, 12]
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // Both are in the ranges noted above, so the conversions cannot fail.
    (
        year,
        u8::try_from(month).unwrap_or(1),
        u8::try_from(day).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests;
