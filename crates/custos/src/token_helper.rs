//! The token helper: `custos login` keeps the token in `~/.custos-token` (as the vault CLI keeps
//! `~/.vault-token`), and every client command falls back to it when no token is given.
//!
//! The file is written atomically (a fresh file with mode 0600 in the same directory, synced,
//! then renamed over the old one), so a reader never sees half a token and the token is never
//! readable by others, not even for a moment.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use zeroize::Zeroizing;

/// The file's name in the home directory.
pub(crate) const TOKEN_FILE: &str = ".custos-token";

/// Where the token is kept for the user whose home directory is `home`.
pub(crate) fn token_path(home: &Path) -> PathBuf {
    home.join(TOKEN_FILE)
}

/// The home directory, from `HOME`.
pub(crate) fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|home| !home.is_empty())
        .map(PathBuf::from)
}

/// The stored token, if there is one. A file that is missing or blank is no token; one that
/// cannot be read is an error (a token that silently goes missing would be confusing).
pub(crate) fn read(home: &Path) -> anyhow::Result<Option<Zeroizing<String>>> {
    let path = token_path(home);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let text = Zeroizing::new(text);
            let token = text.trim();
            Ok((!token.is_empty()).then(|| Zeroizing::new(token.to_owned())))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Stores `token` in the home directory's token file, replacing any earlier one.
pub(crate) fn store(home: &Path, token: &str) -> anyhow::Result<PathBuf> {
    let token = token.trim();
    if token.is_empty() || token.contains(['\n', '\r']) {
        bail!("refusing to store an empty or multi-line token");
    }
    let path = token_path(home);
    let mut suffix = [0u8; 8];
    custos_crypto::fill_random(&mut suffix).context("cannot read random bytes")?;
    let temporary = home.join(format!(
        "{TOKEN_FILE}.tmp-{}",
        suffix
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect::<String>()
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let written = (|| -> std::io::Result<()> {
        let mut file = options.open(&temporary)?;
        file.write_all(token.as_bytes())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temporary, &path)
    })();
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(error).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(path)
}

/// The token to use: the `--token` flag, then `CUSTOS_TOKEN`, then `VAULT_TOKEN` (an empty
/// variable counts as unset), then the token file in `home`.
pub(crate) fn pick(
    flag: Option<String>,
    env: &dyn Fn(&str) -> Option<String>,
    home: Option<&Path>,
) -> anyhow::Result<Option<String>> {
    if let Some(token) = flag.filter(|token| !token.is_empty()) {
        return Ok(Some(token));
    }
    for name in ["CUSTOS_TOKEN", "VAULT_TOKEN"] {
        if let Some(token) = env(name).filter(|token| !token.is_empty()) {
            return Ok(Some(token));
        }
    }
    match home {
        Some(home) => Ok(read(home)?.map(|token| token.to_string())),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests;
