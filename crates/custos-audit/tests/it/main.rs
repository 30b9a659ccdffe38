//! Integration tests of `custos-audit`: file devices written and read back by `verify`.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod device;
