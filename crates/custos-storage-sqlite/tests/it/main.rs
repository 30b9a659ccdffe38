//! Integration tests of the SQLite backend: the conformance suite (in memory, in a file) and the
//! SQLite-specific behaviour (persistence, group commit, corrupt rows, foreign files). The
//! in-memory reference backend runs the suite here too, so `cargo test --workspace` covers it.

mod conformance;
mod sqlite;
