//! Tests of configuration layering and validation.

use std::collections::HashMap;

use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

const FILE: &str = r#"
version = 1
[listener]
address = "0.0.0.0:8300"
tls_cert_file = "/etc/custos/cert.pem"
tls_key_file = "/etc/custos/key.pem"
[storage]
backend = "sqlite"
path = "/var/lib/custos/custos.db"
"#;

#[test]
fn env_overrides_file_and_flags_override_env() {
    let file = parse_file(FILE).unwrap();
    let env_layer = from_env(&env(&[("CUSTOS_LISTEN_ADDRESS", "127.0.0.1:9000")])).unwrap();
    let flags = RawConfig {
        log: RawLog {
            level: Some("debug".into()),
            format: None,
        },
        ..RawConfig::default()
    };
    let config = resolve(merge(merge(file, env_layer), flags)).unwrap();
    assert_eq!(config.address.to_string(), "127.0.0.1:9000");
    assert_eq!(config.log_level, "debug");
    assert!(
        matches!(config.storage, StorageConfig::Sqlite { ref path, .. } if path == Path::new("/var/lib/custos/custos.db"))
    );
    assert!(matches!(config.tls, TlsConfig::Enabled(_)));
}

#[test]
fn unknown_fields_are_refused() {
    let error = parse_file("version = 1\n[listener]\nadress = \"x\"\n").unwrap_err();
    assert!(format!("{error:#}").contains("adress"), "{error:#}");
}

#[test]
fn version_is_required() {
    assert!(parse_file("[listener]\n").is_err());
    assert!(parse_file("version = 2\n").is_err());
}

#[test]
fn tls_is_required_unless_disabled_explicitly() {
    let error = resolve(RawConfig::default()).unwrap_err();
    assert!(format!("{error:#}").contains("tls_disable"));
    let raw = from_env(&env(&[("CUSTOS_TLS_DISABLE", "true")])).unwrap();
    assert!(matches!(resolve(raw).unwrap().tls, TlsConfig::Disabled));
}

#[test]
fn bad_values_are_explained() {
    let raw = from_env(&env(&[("CUSTOS_TLS_DISABLE", "maybe")]));
    assert!(raw.is_err());
    let raw = from_env(&env(&[
        ("CUSTOS_TLS_DISABLE", "1"),
        ("CUSTOS_REQUEST_TIMEOUT", "soon"),
    ]))
    .unwrap();
    assert!(format!("{:#}", resolve(raw).unwrap_err()).contains("request_timeout"));
    let raw = from_env(&env(&[
        ("CUSTOS_TLS_DISABLE", "1"),
        ("CUSTOS_STORAGE_BACKEND", "etcd"),
    ]))
    .unwrap();
    assert!(format!("{:#}", resolve(raw).unwrap_err()).contains("etcd"));
}

#[test]
fn durations_parse() {
    assert_eq!(parse_duration("x", "90s").unwrap(), Duration::from_secs(90));
    assert_eq!(parse_duration("x", "5m").unwrap(), Duration::from_secs(300));
    assert_eq!(
        parse_duration("x", "250ms").unwrap(),
        Duration::from_millis(250)
    );
    assert!(parse_duration("x", "0s").is_err());
    assert!(parse_duration("x", "-5s").is_err());
}

#[test]
fn readable_secret_files_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("url");
    std::fs::write(&file, "postgres://u:p@127.0.0.1/db\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(read_secret_file(&file, false).is_err());
    assert_eq!(
        read_secret_file(&file, true).unwrap().0.as_str(),
        "postgres://u:p@127.0.0.1/db"
    );
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(read_secret_file(&file, false).is_ok());
}

#[test]
fn secrets_do_not_show_in_debug() {
    let raw = from_env(&env(&[
        ("CUSTOS_TLS_DISABLE", "1"),
        ("CUSTOS_STORAGE_BACKEND", "postgres"),
        ("CUSTOS_STORAGE_URL", "postgres://user:hunter2@db/custos"),
    ]))
    .unwrap();
    let config = resolve(raw).unwrap();
    assert!(!format!("{config:?}").contains("hunter2"));
}

#[test]
fn example_configs_in_docs_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/config");
    let sqlite = parse_file(&std::fs::read_to_string(root.join("sqlite.toml")).unwrap()).unwrap();
    let config = resolve(sqlite).unwrap();
    assert!(matches!(config.storage, StorageConfig::Sqlite { .. }));
    assert!(matches!(config.log_format, LogFormat::Json));
    let postgres =
        parse_file(&std::fs::read_to_string(root.join("postgres.toml")).unwrap()).unwrap();
    assert_eq!(postgres.storage.backend.as_deref(), Some("postgres"));
    assert!(postgres.storage.url_file.is_some());
}

#[test]
fn the_read_cache_is_on_by_default_and_can_be_turned_off() {
    let raw = from_env(&env(&[("CUSTOS_TLS_DISABLE", "1")])).unwrap();
    assert!(matches!(
        resolve(raw).unwrap().storage,
        StorageConfig::Sqlite { cache_bytes, .. } if cache_bytes == 64 * 1024 * 1024
    ));
    let raw = from_env(&env(&[
        ("CUSTOS_TLS_DISABLE", "1"),
        ("CUSTOS_STORAGE_BACKEND", "postgres"),
        ("CUSTOS_STORAGE_URL", "postgres://127.0.0.1/custos"),
        ("CUSTOS_STORAGE_CACHE_BYTES", "0"),
    ]))
    .unwrap();
    assert!(matches!(
        resolve(raw).unwrap().storage,
        StorageConfig::Postgres { cache_bytes: 0, .. }
    ));
}

#[test]
fn the_encryption_limit_per_key_has_a_safe_default_and_bounds() {
    let raw = from_env(&env(&[("CUSTOS_TLS_DISABLE", "1")])).unwrap();
    assert_eq!(resolve(raw).unwrap().max_encryptions_per_key, 1 << 30);
    let file = parse_file(
        "version = 1\n[listener]\ntls_disable = true\n[seal]\nmax_encryptions_per_key = 1000000\n",
    )
    .unwrap();
    assert_eq!(resolve(file).unwrap().max_encryptions_per_key, 1_000_000);
    let raw = from_env(&env(&[
        ("CUSTOS_TLS_DISABLE", "1"),
        ("CUSTOS_SEAL_MAX_ENCRYPTIONS_PER_KEY", "2000000"),
    ]))
    .unwrap();
    assert_eq!(resolve(raw).unwrap().max_encryptions_per_key, 2_000_000);
    for bad in ["10", "8589934592"] {
        let raw = from_env(&env(&[
            ("CUSTOS_TLS_DISABLE", "1"),
            ("CUSTOS_SEAL_MAX_ENCRYPTIONS_PER_KEY", bad),
        ]))
        .unwrap();
        let error = format!("{:#}", resolve(raw).unwrap_err());
        assert!(error.contains("seal.max_encryptions_per_key"), "{error}");
    }
}
