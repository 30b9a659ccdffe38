//! custos-storage conformance suite.
