//! Vault's single-dash flags (`-method=userpass`, `-format=json`, `-init`) for the commands
//! modelled on the vault CLI, so scripts and habits carry over: `-name` and `-name=value` become
//! `--name` and `--name=value` before clap parses them.
//!
//! Only for those commands, only for words that look like a flag name (a letter first, then
//! letters, digits and dashes), never for `-` alone, `-h`, negative numbers, or anything after
//! `--`. A flag value that itself starts with `-` must be written `--flag=-value`.

use std::ffi::OsString;

/// The commands that take Vault-style flags.
const VAULT_STYLE: &[&str] = &[
    "login", "token", "read", "write", "list", "delete", "operator", "status",
];

fn looks_like_flag(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic())
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Rewrites the arguments (program name first) as described above.
pub(crate) fn normalize(args: Vec<OsString>) -> Vec<OsString> {
    let command = args.get(1).and_then(|arg| arg.to_str());
    if !command.is_some_and(|command| VAULT_STYLE.contains(&command)) {
        return args;
    }
    let mut out = Vec::with_capacity(args.len());
    let mut rest = false;
    for arg in args {
        let rewritten = match arg.to_str() {
            Some("--") => {
                rest = true;
                None
            }
            Some(text) if !rest && !text.starts_with("--") => text
                .strip_prefix('-')
                .filter(|flag| looks_like_flag(flag.split_once('=').map_or(flag, |(name, _)| name)))
                .map(|flag| OsString::from(format!("--{flag}"))),
            _ => None,
        };
        out.push(rewritten.unwrap_or(arg));
    }
    out
}

#[cfg(test)]
mod tests;
