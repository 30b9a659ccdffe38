//! Tests of KV v2.
