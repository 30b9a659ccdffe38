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
    assert_eq!(config.login_lockout, custos_engine::LoginLockout::default());
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
fn the_reconcile_interval_defaults_to_30_seconds_and_must_be_positive() {
    let postgres = |extra: &[(&str, &str)]| {
        let mut vars = vec![
            ("CUSTOS_TLS_DISABLE", "1"),
            ("CUSTOS_STORAGE_BACKEND", "postgres"),
            ("CUSTOS_STORAGE_URL", "postgres://127.0.0.1/custos"),
        ];
        vars.extend_from_slice(extra);
        resolve(from_env(&env(&vars)).unwrap())
    };
    assert!(matches!(
        postgres(&[]).unwrap().storage,
        StorageConfig::Postgres { reconcile_interval, .. } if reconcile_interval == Duration::from_secs(30)
    ));
    assert!(matches!(
        postgres(&[("CUSTOS_STORAGE_RECONCILE_INTERVAL", "5s")]).unwrap().storage,
        StorageConfig::Postgres { reconcile_interval, .. } if reconcile_interval == Duration::from_secs(5)
    ));
    let error = postgres(&[("CUSTOS_STORAGE_RECONCILE_INTERVAL", "0s")]).unwrap_err();
    assert!(error.to_string().contains("reconcile_interval"), "{error}");
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

#[test]
fn tls_disable_with_client_certificates_is_refused() {
    for extra in [
        ("CUSTOS_TLS_CLIENT_CA_FILE", "/etc/custos/ca.pem"),
        ("CUSTOS_TLS_REQUIRE_CLIENT_CERT", "true"),
    ] {
        let raw = from_env(&env(&[("CUSTOS_TLS_DISABLE", "true"), extra])).unwrap();
        let error = format!("{:#}", resolve(raw).unwrap_err());
        assert!(error.contains("tls_disable"), "{error}");
        assert!(error.contains("client certificates need TLS"), "{error}");
    }
}

#[test]
fn a_readable_tls_key_file_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let layer = |allow: &str| {
        from_env(&env(&[
            ("CUSTOS_TLS_CERT_FILE", "/etc/custos/cert.pem"),
            ("CUSTOS_TLS_KEY_FILE", key.to_str().unwrap()),
            ("CUSTOS_DANGEROUS_ALLOW_READABLE_SECRET_FILES", allow),
        ]))
        .unwrap()
    };
    let error = format!("{:#}", resolve(layer("false")).unwrap_err());
    assert!(error.contains("tls_key_file"), "{error}");
    assert!(error.contains("chmod 600"), "{error}");
    assert!(resolve(layer("true")).is_ok());
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(resolve(layer("false")).is_ok());
}

#[test]
fn listener_limits_have_defaults_and_can_be_set() {
    let config = resolve(from_env(&env(&[("CUSTOS_TLS_DISABLE", "1")])).unwrap()).unwrap();
    assert_eq!(config.max_request_bytes, 1024 * 1024 + 64 * 1024);
    assert_eq!(config.body_budget_bytes, 64 * 1024 * 1024);
    assert_eq!(config.first_byte_timeout, Duration::from_secs(10));
    assert_eq!(config.idle_timeout, Duration::from_secs(300));
    assert_eq!(config.max_connections, 1024);
    assert!(config.unseal_allowed_networks.is_none());
    assert_eq!(config.unseal_rate_limit, 60);
    assert_eq!(config.leaks_rate_limit, 60);

    // The default body limit follows the largest secret.
    let raw = from_env(&env(&[
        ("CUSTOS_TLS_DISABLE", "1"),
        ("CUSTOS_MAX_SECRET_BYTES", "4194304"),
    ]))
    .unwrap();
    assert_eq!(
        resolve(raw).unwrap().max_request_bytes,
        4 * 1024 * 1024 + 64 * 1024
    );

    let file = parse_file(
        r#"
version = 1
[listener]
tls_disable = true
first_byte_timeout = "2s"
idle_timeout = "1m"
max_connections = 50
max_request_bytes = 2000000
body_budget_bytes = 8000000
unseal_allowed_networks = ["10.0.0.0/8", "::1"]
unseal_rate_limit = 5
leaks_rate_limit = 0
"#,
    )
    .unwrap();
    let config = resolve(file).unwrap();
    assert_eq!(config.first_byte_timeout, Duration::from_secs(2));
    assert_eq!(config.idle_timeout, Duration::from_secs(60));
    assert_eq!(config.max_connections, 50);
    assert_eq!(config.body_budget_bytes, 8_000_000);
    let networks: Vec<String> = config
        .unseal_allowed_networks
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(networks, ["10.0.0.0/8", "::1/128"]);
    assert_eq!(config.unseal_rate_limit, 5);
    assert_eq!(config.leaks_rate_limit, 0);

    let raw = from_env(&env(&[
        ("CUSTOS_TLS_DISABLE", "1"),
        (
            "CUSTOS_UNSEAL_ALLOWED_NETWORKS",
            "127.0.0.0/8, 192.168.0.0/16",
        ),
        ("CUSTOS_IDLE_TIMEOUT", "1s"),
    ]))
    .unwrap();
    let config = resolve(raw).unwrap();
    assert_eq!(config.unseal_allowed_networks.unwrap().len(), 2);
    assert_eq!(config.idle_timeout, Duration::from_secs(1));
}

#[test]
fn bad_listener_limits_are_explained() {
    for (pairs, expected) in [
        (
            vec![("CUSTOS_UNSEAL_ALLOWED_NETWORKS", "10.0.0.0/33")],
            "unseal_allowed_networks",
        ),
        (
            vec![("CUSTOS_UNSEAL_ALLOWED_NETWORKS", " , ")],
            "refuse unseal to everyone",
        ),
        (
            vec![
                ("CUSTOS_MAX_REQUEST_BYTES", "2000000"),
                ("CUSTOS_BODY_BUDGET_BYTES", "1000000"),
            ],
            "body_budget_bytes",
        ),
        (vec![("CUSTOS_MAX_CONNECTIONS", "0")], "max_connections"),
        (vec![("CUSTOS_IDLE_TIMEOUT", "0s")], "idle_timeout"),
        (
            vec![("CUSTOS_FIRST_BYTE_TIMEOUT", "soon")],
            "first_byte_timeout",
        ),
    ] {
        let mut pairs = pairs;
        pairs.push(("CUSTOS_TLS_DISABLE", "1"));
        let error = format!(
            "{:#}",
            resolve(from_env(&env(&pairs)).unwrap()).unwrap_err()
        );
        assert!(
            error.contains(expected),
            "{error} should mention {expected}"
        );
    }
}

#[test]
fn the_login_lockout_has_defaults_and_every_layer_sets_it() {
    let raw = from_env(&env(&[("CUSTOS_TLS_DISABLE", "1")])).unwrap();
    let lockout = resolve(raw).unwrap().login_lockout;
    assert_eq!(lockout, custos_engine::LoginLockout::default());
    assert_eq!(lockout.per_user.threshold, 5);
    assert_eq!(lockout.per_user.window, Duration::from_secs(900));
    assert_eq!(lockout.per_address.threshold, 20);

    let file = parse_file(
        "version = 1\n[listener]\ntls_disable = true\n[auth]\nlockout_threshold = 3\nlockout_window = \"5m\"\nlockout_duration = \"1h\"\nlockout_address_threshold = 0\n",
    )
    .unwrap();
    let env_layer = from_env(&env(&[("CUSTOS_AUTH_LOCKOUT_ADDRESS_WINDOW", "10s")])).unwrap();
    let lockout = resolve(merge(file, env_layer)).unwrap().login_lockout;
    assert_eq!(lockout.per_user.threshold, 3);
    assert_eq!(lockout.per_user.window, Duration::from_secs(300));
    assert_eq!(lockout.per_user.duration, Duration::from_secs(3600));
    assert_eq!(lockout.per_address.threshold, 0);
    assert_eq!(lockout.per_address.window, Duration::from_secs(10));

    let raw = from_env(&env(&[
        ("CUSTOS_TLS_DISABLE", "1"),
        ("CUSTOS_AUTH_LOCKOUT_DURATION", "soon"),
    ]))
    .unwrap();
    let error = format!("{:#}", resolve(raw).unwrap_err());
    assert!(error.contains("auth.lockout_duration"), "{error}");
    assert!(parse_file("version = 1\n[auth]\nlockout_treshold = 3\n").is_err());
}

#[test]
fn forwarded_for_is_off_by_default_and_takes_vaults_settings() {
    let config = resolve(from_env(&env(&[("CUSTOS_TLS_DISABLE", "1")])).unwrap()).unwrap();
    assert!(config.forwarded_for.is_none());

    let file = parse_file(
        r#"
version = 1
[listener]
tls_disable = true
x_forwarded_for_authorized_addrs = ["10.0.0.0/8", "192.0.2.7"]
"#,
    )
    .unwrap();
    let forwarded = resolve(file).unwrap().forwarded_for.unwrap();
    assert_eq!(forwarded.authorized_addrs.len(), 2);
    assert_eq!(forwarded.hop_skips, 0);
    assert!(forwarded.reject_not_authorized);
    assert!(forwarded.reject_not_present);

    // Vault's string form works too.
    let file = parse_file(
        r#"
version = 1
[listener]
tls_disable = true
x_forwarded_for_authorized_addrs = "10.0.0.0/8, 192.0.2.7"
x_forwarded_for_hop_skips = 1
"#,
    )
    .unwrap();
    let forwarded = resolve(file).unwrap().forwarded_for.unwrap();
    assert_eq!(forwarded.authorized_addrs.len(), 2);
    assert_eq!(forwarded.hop_skips, 1);

    let raw = from_env(&env(&[
        ("CUSTOS_TLS_DISABLE", "1"),
        ("CUSTOS_X_FORWARDED_FOR_AUTHORIZED_ADDRS", "10.0.0.1, ::1"),
        ("CUSTOS_X_FORWARDED_FOR_HOP_SKIPS", "2"),
        ("CUSTOS_X_FORWARDED_FOR_REJECT_NOT_AUTHORIZED", "false"),
        ("CUSTOS_X_FORWARDED_FOR_REJECT_NOT_PRESENT", "false"),
    ]))
    .unwrap();
    let forwarded = resolve(raw).unwrap().forwarded_for.unwrap();
    assert_eq!(forwarded.authorized_addrs.len(), 2);
    assert_eq!(forwarded.hop_skips, 2);
    assert!(!forwarded.reject_not_authorized);
    assert!(!forwarded.reject_not_present);
}

#[test]
fn bad_forwarded_for_settings_are_explained() {
    for (pairs, expected) in [
        (
            vec![("CUSTOS_X_FORWARDED_FOR_AUTHORIZED_ADDRS", "10.0.0.0/33")],
            "x_forwarded_for_authorized_addrs",
        ),
        (
            vec![("CUSTOS_X_FORWARDED_FOR_AUTHORIZED_ADDRS", " , ")],
            "is empty",
        ),
        (
            vec![("CUSTOS_X_FORWARDED_FOR_HOP_SKIPS", "1")],
            "need listener.x_forwarded_for_authorized_addrs",
        ),
    ] {
        let mut pairs = pairs;
        pairs.push(("CUSTOS_TLS_DISABLE", "1"));
        let error = format!(
            "{:#}",
            resolve(from_env(&env(&pairs)).unwrap()).unwrap_err()
        );
        assert!(error.contains(expected), "{error:?} lacks {expected:?}");
    }
}

#[test]
fn audit_devices_are_read_from_the_file() {
    let file = parse_file(
        r#"version = 1
unsafe_allow_audit_log_raw = true
[[audit]]
path = "file"
type = "file"
file_path = "/var/log/custos/audit.log"
fsync = "every_write"
checkpoint_records = 500
hmac_accessor = false

[[audit]]
path = "stdout/"
type = "file"
description = "to the journal"
options = { file_path = "stdout" }

[listener]
tls_disable = true
"#,
    )
    .unwrap();
    let config = resolve(file).unwrap();
    assert!(config.allow_audit_log_raw);
    assert!(!config.allow_api_audit_creation);
    let [first, second] = config.audit_devices.as_slice() else {
        panic!("{:?}", config.audit_devices);
    };
    assert_eq!(first.path, "file/");
    assert_eq!(first.kind, "file");
    assert_eq!(
        first.options.get("file_path").map(String::as_str),
        Some("/var/log/custos/audit.log")
    );
    assert_eq!(
        first.options.get("fsync").map(String::as_str),
        Some("every_write")
    );
    assert_eq!(
        first.options.get("checkpoint_records").map(String::as_str),
        Some("500")
    );
    assert_eq!(
        first.options.get("hmac_accessor").map(String::as_str),
        Some("false")
    );
    assert_eq!(second.path, "stdout/");
    assert_eq!(second.description, "to the journal");
    assert_eq!(
        second.options.get("file_path").map(String::as_str),
        Some("stdout")
    );
}

#[test]
fn bad_audit_tables_are_refused_with_the_reason() {
    for (text, expected) in [
        (
            "[[audit]]\npath = \"file\"\ntype = \"syslog\"\nfile_path = \"x\"\n",
            "not offered",
        ),
        ("[[audit]]\npath = \"file\"\ntype = \"file\"\n", "file_path"),
        (
            "[[audit]]\npath = \"\"\ntype = \"file\"\nfile_path = \"x\"\n",
            "`path`",
        ),
        (
            "[[audit]]\npath = \"a\"\ntype = \"file\"\nfile_path = \"x\"\n[[audit]]\npath = \"a/\"\ntype = \"file\"\nfile_path = \"y\"\n",
            "two devices",
        ),
        (
            "[[audit]]\npath = \"a\"\ntype = \"file\"\nfile_path = \"x\"\noptions = { file_path = \"y\" }\n",
            "set twice",
        ),
        (
            "[[audit]]\npath = \"a\"\ntype = \"file\"\nfile_pth = \"x\"\n",
            "file_pth",
        ),
    ] {
        let error = parse_file(&format!(
            "version = 1\n{text}\n[listener]\ntls_disable = true\n"
        ))
        .and_then(resolve)
        .unwrap_err();
        assert!(format!("{error:#}").contains(expected), "{text}: {error:#}");
    }
}

/// The P-256 generator point as a public key (valid; nobody signs with it).
const GITHUB_PEM: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEaxfR8uEsQkf4vOblY6RA8ncDfYEt
6zOg9KE5RdiYwpZP40Li/hp/m47n60p8D54WK84zV2sxXs7LtkBoN79R9Q==
-----END PUBLIC KEY-----";

#[test]
fn github_leak_keys_are_read_from_the_file_and_off_by_default() {
    let config =
        resolve(parse_file("version = 1\n[listener]\ntls_disable = true\n").unwrap()).unwrap();
    assert!(config.github_leak_keys.is_empty());
    let text = format!(
        "version = 1\n[listener]\ntls_disable = true\n\
         [[leaks.github_keys]]\nkey_identifier = \"90a4\"\nkey = \"\"\"{GITHUB_PEM}\"\"\"\n\
         [[leaks.github_keys]]\nkey_identifier = \"bcb5\"\nkey = \"\"\"\n{GITHUB_PEM}\n\"\"\"\n"
    );
    let file = parse_file(&text).unwrap();
    // Environment layers never drop the file's keys.
    let config = resolve(merge(
        file,
        from_env(&env(&[("CUSTOS_LOG_LEVEL", "debug")])).unwrap(),
    ))
    .unwrap();
    assert_eq!(config.github_leak_keys.len(), 2);
}

#[test]
fn bad_github_leak_keys_fail_start_with_the_reason() {
    let rsa_like = GITHUB_PEM.replace("MFkwEwYHKoZIzj0CAQYI", "MFkwEwYHKoZIhvcNAQEB");
    for (table, expected) in [
        (
            "key_identifier = \"a\"\nkey = \"not a pem\"".to_owned(),
            "table 1: key \"a\" is not a P-256 public key: malformed input: not a PEM public key",
        ),
        (
            format!("key_identifier = \"a\"\nkey = \"\"\"{rsa_like}\"\"\""),
            "key \"a\" is not a P-256 public key",
        ),
        (
            format!("key_identifier = \" \"\nkey = \"\"\"{GITHUB_PEM}\"\"\""),
            "key_identifier is empty",
        ),
        (
            format!(
                "key_identifier = \"a\"\nkey = \"\"\"{GITHUB_PEM}\"\"\"\n[[leaks.github_keys]]\nkey_identifier = \"a\"\nkey = \"\"\"{GITHUB_PEM}\"\"\""
            ),
            "table 2: key_identifier \"a\" is listed twice",
        ),
        (
            "key_identifier = \"a\"\nkey_pem = \"x\"".to_owned(),
            "key_pem",
        ),
    ] {
        let error = parse_file(&format!(
            "version = 1\n[listener]\ntls_disable = true\n[[leaks.github_keys]]\n{table}\n"
        ))
        .and_then(resolve)
        .unwrap_err();
        assert!(
            format!("{error:#}").contains(expected),
            "{table}: {error:#}"
        );
    }
}
