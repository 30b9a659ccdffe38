//! Unit tests for `random`.
