//! Unit tests for `blob`.
