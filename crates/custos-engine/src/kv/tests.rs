//! Tests of the shared kv helpers and of KV v1.
