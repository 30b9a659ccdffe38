//! Rate limits of API keys: a sliding-window counter, as Cloudflare describes it.
//!
//! Time is cut into fixed windows of `duration_ms`. A [`Window`] counts what was granted in the
//! current fixed window and remembers the count of the one before. At an instant `elapsed`
//! milliseconds into the current window, the sliding window of `duration_ms` ending there
//! overlaps `duration_ms - elapsed` of the previous window, so it is estimated to hold
//!
//! ```text
//! previous × (duration_ms - elapsed) / duration_ms + current
//! ```
//!
//! (the weighted part rounded up, so rounding never grants more), and a take is allowed when
//! that estimate plus its cost stays within the limit.
//!
//! # Bounds
//!
//! - Within one fixed window the total granted never exceeds `limit`: the estimate is at least
//!   the current count.
//! - Over any sliding span of `duration_ms` the total granted never exceeds `2 × limit`. The
//!   estimate assumes the previous window's grants were spread evenly; when they all came at
//!   its very end and the current window's come at its very end too, a span covering both
//!   bursts holds up to `previous + limit - previous × (duration_ms - elapsed) / duration_ms`,
//!   which stays below `2 × limit`. Requests spread evenly stay within `limit`.
//!
//! Time comes in as unix milliseconds. A clock that goes back is treated as standing still at
//! the start of the window already counted: nothing is forgotten, so going back never grants
//! more than `limit` in one window.

/// The state of one rate limit of one key: the current fixed window and the count before it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    /// Start of the current fixed window, a multiple of the duration, in unix milliseconds.
    start_ms: u64,
    /// Tokens granted in the current fixed window.
    current: u64,
    /// Tokens granted in the fixed window just before it.
    previous: u64,
}

/// What [`Window::take`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Whether the tokens were taken.
    pub allowed: bool,
    /// Tokens left in the sliding window after this call.
    pub remaining: u64,
    /// When the current fixed window ends, in unix milliseconds.
    pub reset_ms: u64,
}

impl Window {
    /// A window restored from stored counts: `start_ms` of the current fixed window, the count
    /// granted in it and the count of the window before.
    #[must_use]
    pub fn from_parts(start_ms: u64, current: u64, previous: u64) -> Window {
        Window {
            start_ms,
            current,
            previous,
        }
    }

    /// Start of the current fixed window, in unix milliseconds.
    #[must_use]
    pub fn start_ms(&self) -> u64 {
        self.start_ms
    }

    /// Tokens granted in the current fixed window.
    #[must_use]
    pub fn current(&self) -> u64 {
        self.current
    }

    /// Tokens granted in the fixed window before the current one.
    #[must_use]
    pub fn previous(&self) -> u64 {
        self.previous
    }

    /// Takes `cost` tokens if `limit` allows it at `now_ms` for windows of `duration_ms` (> 0;
    /// 0 counts as 1 ms).
    ///
    /// Only a take that is allowed and costs something changes the window; a refused take and
    /// a `cost` of 0 (a report: is the key within its limit now?) leave it as it was.
    /// `remaining` is what is left after this call, `reset_ms` when the current fixed window
    /// ends. Arithmetic saturates throughout, so no input panics.
    pub fn take(&mut self, now_ms: u64, limit: u64, duration_ms: u64, cost: u64) -> Outcome {
        let duration_ms = duration_ms.max(1);
        let rolled = self.rolled(now_ms, duration_ms);
        // A clock that went back stands still at the start of the window already counted.
        let elapsed = now_ms.saturating_sub(rolled.start_ms).min(duration_ms - 1);
        let overlap = duration_ms - elapsed;
        // previous × overlap / duration, rounded up; u128 cannot overflow here and the
        // quotient is at most `previous`, so it fits back in a u64.
        let weighted =
            (u128::from(rolled.previous) * u128::from(overlap)).div_ceil(u128::from(duration_ms));
        let weighted = u64::try_from(weighted).unwrap_or(u64::MAX);
        let used = weighted.saturating_add(rolled.current);
        let reset_ms = rolled.start_ms.saturating_add(duration_ms);
        // Checked, not saturating: a sum past u64::MAX must not look like one within the limit.
        let Some(wanted) = used.checked_add(cost).filter(|&wanted| wanted <= limit) else {
            return Outcome {
                allowed: false,
                remaining: limit.saturating_sub(used),
                reset_ms,
            };
        };
        if cost > 0 {
            *self = Window {
                current: rolled.current.saturating_add(cost),
                ..rolled
            };
        }
        Outcome {
            allowed: true,
            remaining: limit - wanted,
            reset_ms,
        }
    }

    /// The window moved on to the fixed window holding `now_ms`, never back.
    fn rolled(&self, now_ms: u64, duration_ms: u64) -> Window {
        let start_ms = now_ms - now_ms % duration_ms;
        if start_ms <= self.start_ms {
            return *self;
        }
        let previous = if start_ms - self.start_ms == duration_ms {
            self.current
        } else {
            0
        };
        Window {
            start_ms,
            current: 0,
            previous,
        }
    }
}

#[cfg(test)]
mod tests;
