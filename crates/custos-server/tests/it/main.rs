//! HTTP integration tests: the router driven with `oneshot`, no socket. Every test checks the
//! status code and the JSON body field for field against what Vault answers.
#![expect(clippy::unwrap_used, reason = "tests")]

mod auth;
mod authz_matrix;
mod body;
mod forwarded;
mod generate_root;
mod github_leaks;
mod hardening;
mod health;
mod index;
mod init;
mod internal;
mod key_status;
mod logical;
mod matrix;
mod sealed;
mod support;
mod unseal;
