//! hvac, Vault's Python client, against a dev server: the suite in `tests/compat/hvac_suite.py`.
//!
//! Runs when `CUSTOS_TEST_PYTHON` names a Python with hvac installed (`.ci/run` makes a venv);
//! otherwise it says it was skipped.

use std::path::Path;
use std::process::Command;

use crate::support;

#[test]
fn hvac_suite_passes() {
    let Ok(python) = std::env::var("CUSTOS_TEST_PYTHON") else {
        eprintln!("skipped hvac_suite_passes: CUSTOS_TEST_PYTHON not set");
        return;
    };
    let (dir, server) = support::dev_server();
    let suite = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat/hvac_suite.py");
    let output = Command::new(python)
        .arg(suite)
        .env("CUSTOS_ADDR", &server.address)
        .env("CUSTOS_TOKEN", "root")
        .env("PYTHONWARNINGS", "ignore::DeprecationWarning")
        // hvac falls back to `~/.vault-token` and `VAULT_TOKEN` for clients made without a
        // token: neither may leak in from the machine (a `bao server -dev` writes the file).
        .env("HOME", dir.path())
        .env_remove("VAULT_TOKEN")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "hvac suite failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}
