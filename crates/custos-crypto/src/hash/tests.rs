//! Unit tests for `hash`.
