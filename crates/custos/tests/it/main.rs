//! End-to-end tests: the real `custos` binary on port 0, driven over TLS by `custos-client`.

#![expect(clippy::unwrap_used, reason = "tests fail loudly on unexpected errors")]

mod support;

mod apikeys;
mod apikeys_cli;
mod approle;
mod audit;
mod audit_cli;
mod bao_cli;
mod budget_postgres;
mod cert_auth;
mod cli;
mod cli_auth;
mod cluster;
mod crash;
mod differential;
mod forwarded;
mod github_leaks;
mod hardening;
mod hvac;
mod inventory;
mod kv_cli;
mod lifecycle;
mod outage;
mod policies;
mod run_cli;
mod scan;
mod scan_revoke;
mod tidy;
mod tls;
mod tokens;
mod userpass;
mod vaultrs_compat;
