//! [`Untrusted`]: how the engine writes strings an outside caller chose into the log.
//!
//! A caller-chosen string written raw can forge log lines (a newline followed by a fake
//! `INFO ... custos sealed`), drive the operator's terminal with escape codes, hide text behind
//! bidirectional overrides, or flood the log. `Untrusted` displays it quoted, with quotes,
//! backslashes, control characters and invisible formatting characters escaped, and cut after
//! [`MAX_LOGGED_CHARS`] characters with an ellipsis. Every string from a request that reaches a
//! log event in the engine goes through it (`url = %Untrusted(&leak.url)`).

use std::fmt::{self, Write as _};

/// How many characters of an untrusted string are logged before the ellipsis.
pub const MAX_LOGGED_CHARS: usize = 200;

/// A caller-chosen string, displayed quoted and escaped. See the module documentation.
#[derive(Clone, Copy)]
pub struct Untrusted<'a>(pub &'a str);

/// Characters that print nothing but change how the rest of a line reads: zero-width
/// characters, bidirectional marks, embeddings, overrides and isolates, the byte order mark.
fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        for (index, c) in self.0.chars().enumerate() {
            if index == MAX_LOGGED_CHARS {
                f.write_char('…')?;
                break;
            }
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c if c.is_control() || is_invisible_format(c) => {
                    write!(f, "\\u{{{:x}}}", u32::from(c))?;
                }
                c => f.write_char(c)?,
            }
        }
        f.write_char('"')
    }
}

impl fmt::Debug for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(text: &str) -> String {
        Untrusted(text).to_string()
    }

    #[test]
    fn plain_text_is_only_quoted() {
        assert_eq!(
            shown("https://github.com/acme/app"),
            "\"https://github.com/acme/app\""
        );
        assert_eq!(shown("café ✓"), "\"café ✓\"");
        assert_eq!(shown(""), "\"\"");
    }

    #[test]
    fn newlines_and_escape_codes_cannot_reach_the_log_raw() {
        let forged = "x\n2026-01-01T00:00:00Z  INFO custos: custos sealed\r\x1b[2J\x1b[31mred\x07";
        let text = shown(forged);
        assert_eq!(
            text,
            "\"x\\n2026-01-01T00:00:00Z  INFO custos: custos sealed\\r\\u{1b}[2J\\u{1b}[31mred\\u{7}\""
        );
        assert!(!text.chars().any(char::is_control), "{text:?}");
    }

    #[test]
    fn quotes_backslashes_and_invisible_characters_are_escaped() {
        assert_eq!(shown("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(shown("\u{202E}gnp.exe"), "\"\\u{202e}gnp.exe\"");
        assert_eq!(shown("a\u{200B}b\u{FEFF}"), "\"a\\u{200b}b\\u{feff}\"");
        assert_eq!(shown("\u{85}\u{9b}"), "\"\\u{85}\\u{9b}\"");
    }

    #[test]
    fn long_strings_are_cut_with_an_ellipsis() {
        let text = shown(&"a".repeat(10_000));
        assert_eq!(text, format!("\"{}…\"", "a".repeat(MAX_LOGGED_CHARS)));
        let exact = shown(&"b".repeat(MAX_LOGGED_CHARS));
        assert_eq!(exact, format!("\"{}\"", "b".repeat(MAX_LOGGED_CHARS)));
    }

    proptest::proptest! {
        #[test]
        fn no_control_character_ever_survives(text in "\\PC*|[\\x00-\\x1f\\x7f-\\u{9f}a\"]{0,64}") {
            let shown = Untrusted(&text).to_string();
            proptest::prop_assert!(!shown.chars().any(|c| c.is_control() || is_invisible_format(c)));
        }
    }
}
