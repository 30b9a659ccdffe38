//! Unit tests for `shamir`.
