//! Unit tests for `keyring`.
