//! Vault's duration syntax, as policies use it (`max_ttl`, `max_wrapping_ttl`).

/// The longest duration accepted: a hundred years, in seconds. Bigger values are mistakes.
const MAX_SECONDS: u64 = 100 * 365 * 24 * 3600;

/// Parses a duration into seconds: a bare number of seconds (`"3600"`) or a sequence of
/// numbers with units `d`, `h`, `m`, `s` (`"30m"`, `"8h"`, `"1h30m"`, `"2d"`).
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "invalid duration {text:?}: use seconds or units such as \"30m\", \"8h\", \"1h30m\""
        )
    };
    let text_trimmed = text.trim();
    if text_trimmed.is_empty() {
        return Err(bad());
    }
    if let Ok(seconds) = text_trimmed.parse::<u64>() {
        return check(seconds).ok_or_else(bad);
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in text_trimmed.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            'd' => 86_400,
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(bad()),
        };
        let amount: u64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        total = amount
            .checked_mul(unit)
            .and_then(|part| total.checked_add(part))
            .ok_or_else(bad)?;
    }
    if !digits.is_empty() {
        return Err(bad());
    }
    check(total).ok_or_else(bad)
}

fn check(seconds: u64) -> Option<u64> {
    (seconds <= MAX_SECONDS).then_some(seconds)
}

/// The canonical text of a duration: the largest units that divide it (`"1h30m"`, `"45s"`).
pub(crate) fn format_duration(seconds: u64) -> String {
    if seconds == 0 {
        return "0s".into();
    }
    let mut rest = seconds;
    let mut text = String::new();
    for (unit, name) in [(3600, 'h'), (60, 'm'), (1, 's')] {
        if rest >= unit {
            text.push_str(&format!("{}{name}", rest / unit));
            rest %= unit;
        }
    }
    text
}
