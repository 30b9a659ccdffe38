//! Unit tests for `root`.
