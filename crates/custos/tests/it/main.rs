//! End-to-end tests of the `custos` binary.
#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod scan;
