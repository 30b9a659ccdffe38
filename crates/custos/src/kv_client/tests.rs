//! Unit tests of KV paths: API paths per KV version and URL encoding.

use super::{KvPath, KvVersion, encode_path};

#[test]
fn paths_per_version() {
    let v2 = KvPath {
        mount: "secret/".into(),
        version: KvVersion::V2,
        relative: "app/db".into(),
    };
    assert_eq!(v2.data_path(), "secret/data/app/db");
    assert_eq!(v2.endpoint("metadata"), "secret/metadata/app/db");
    let v1 = KvPath {
        mount: "kv/".into(),
        version: KvVersion::V1,
        relative: "app".into(),
    };
    assert_eq!(v1.data_path(), "kv/app");
    assert!(v1.require_v2("rollback").is_err());
}

#[test]
fn paths_are_percent_encoded() {
    assert_eq!(
        encode_path("secret/data/my app?x"),
        "secret/data/my%20app%3Fx"
    );
    assert_eq!(encode_path("a/b-c_d.e~f"), "a/b-c_d.e~f");
}
