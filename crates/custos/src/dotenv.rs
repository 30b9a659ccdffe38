//! Reading and writing `.env` files, for `custos import` and `custos export --format dotenv`.
//!
//! The reader accepts what docker compose and the common `dotenv` libraries accept: blank lines,
//! `#` comments (whole-line, or after whitespace following an unquoted value), an optional
//! `export ` prefix, unquoted values, single-quoted values (literal), and double-quoted values
//! with the escapes `\n`, `\r`, `\t`, `\"`, `\\`, `\$` and `` \` ``; quoted values may span lines.
//! `$VAR` is never expanded: a `.env` file holding secrets should mean exactly what it says.
//! The writer double-quotes and escapes every value, so its output reads back unchanged.

use std::collections::BTreeMap;

/// A line of a `.env` file that cannot be read, with its 1-based number.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct DotenvError {
    pub(crate) line: usize,
    pub(crate) message: String,
}

impl std::fmt::Display for DotenvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for DotenvError {}

/// Whether `name` can be an environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses a `.env` file into its variables, in file order. A name set twice is an error, as it
/// is almost always a mistake in a file of secrets.
pub(crate) fn parse(text: &str) -> Result<Vec<(String, String)>, DotenvError> {
    let lines: Vec<&str> = text
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .collect();
    let mut entries: Vec<(String, String)> = Vec::new();
    let mut first_seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut index = 0;
    while let Some(line) = lines.get(index) {
        let number = index + 1;
        index += 1;
        let error = |message: String| DotenvError {
            line: number,
            message,
        };
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let rest = trimmed
            .strip_prefix("export")
            .filter(|rest| rest.starts_with([' ', '\t']))
            .map_or(trimmed, str::trim_start);
        let Some((name, raw_value)) = rest.split_once('=') else {
            return Err(error("expected NAME=VALUE".into()));
        };
        let name = name.trim_end();
        if !is_env_name(name) {
            return Err(error(format!(
                "{name:?} is not a valid variable name (letters, digits and _, not starting with a digit)"
            )));
        }
        let value_start = raw_value.trim_start();
        let value = match value_start.chars().next() {
            Some(quote @ ('\'' | '"')) => {
                let (value, after) = quoted(&value_start[1..], quote, &lines, &mut index)
                    .ok_or_else(|| {
                        error(format!(
                            "the {} quote opened here is never closed",
                            if quote == '"' { "double" } else { "single" }
                        ))
                    })?;
                let after = after.trim_start();
                if !(after.is_empty() || after.starts_with('#')) {
                    return Err(DotenvError {
                        line: index,
                        message: format!("unexpected text {after:?} after the closing quote"),
                    });
                }
                value
            }
            _ => unquoted(raw_value),
        };
        if let Some(previous) = first_seen.get(name) {
            return Err(error(format!("{name} is already set on line {previous}")));
        }
        first_seen.insert(name.to_owned(), number);
        entries.push((name.to_owned(), value));
    }
    Ok(entries)
}

/// An unquoted value: up to a `#` that follows whitespace, without surrounding whitespace.
fn unquoted(raw: &str) -> String {
    let mut previous_is_space = false;
    let mut end = raw.len();
    for (position, c) in raw.char_indices() {
        if c == '#' && previous_is_space {
            end = position;
            break;
        }
        previous_is_space = c.is_whitespace();
    }
    raw[..end].trim().to_owned()
}

/// Reads a quoted value that starts in `first` (just after the opening quote) and may continue
/// on the following lines (`index` is the next line to read, and is advanced past the lines
/// used). Returns the value and what follows the closing quote on its line, or `None` when the
/// quote is never closed.
fn quoted<'a>(
    first: &'a str,
    quote: char,
    lines: &[&'a str],
    index: &mut usize,
) -> Option<(String, &'a str)> {
    let mut value = String::new();
    let mut line = first;
    loop {
        let mut chars = line.char_indices();
        while let Some((position, c)) = chars.next() {
            if c == quote {
                return Some((value, &line[position + c.len_utf8()..]));
            }
            if c == '\\' && quote == '"' {
                match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, 'r')) => value.push('\r'),
                    Some((_, 't')) => value.push('\t'),
                    Some((_, escaped @ ('"' | '\\' | '$' | '`'))) => value.push(escaped),
                    // An unknown escape stays as written, as the dotenv libraries do.
                    Some((_, other)) => {
                        value.push('\\');
                        value.push(other);
                    }
                    None => value.push('\\'),
                }
                continue;
            }
            value.push(c);
        }
        line = lines.get(*index)?;
        *index += 1;
        value.push('\n');
    }
}

/// Writes variables as `NAME="value"` lines, sorted by name, escaping `\`, `"`, `$`, `` ` ``,
/// newlines and carriage returns.
pub(crate) fn write(entries: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for (name, value) in entries {
        out.push_str(name);
        out.push_str("=\"");
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '$' => out.push_str("\\$"),
                '`' => out.push_str("\\`"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                other => out.push(other),
            }
        }
        out.push_str("\"\n");
    }
    out
}

#[cfg(test)]
mod tests;
