//! Engine integration tests: the seal life cycle over in-memory storage, a fake clock and real
//! crypto. Each module covers one concern; `support` holds the shared harness.
#![expect(clippy::unwrap_used, reason = "tests")]

mod auth;
mod budget;
mod follow;
mod generate_root;
mod github_leaks;
mod init;
mod leaks;
mod mounts;
mod posture;
mod properties;
mod restart;
mod rotate;
mod seal_drain;
mod storage;
mod support;
mod uninitialised;
mod unseal;
mod wrapping;
