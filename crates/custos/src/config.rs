//! Server configuration: defaults < TOML file < `CUSTOS_*` environment < command-line flags.
//!
//! Parsing happens in two steps, as ripgrep does: [`RawConfig`] mirrors the file (every field
//! optional, unknown fields refused), layers are merged, and [`resolve`] turns the result into a
//! typed [`Config`]. Nothing after startup sees raw strings.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use zeroize::Zeroizing;

/// Reads environment variables; tests pass a map instead of touching the process environment.
pub(crate) trait EnvSource {
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
pub(crate) struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|value| !value.is_empty())
    }
}

impl EnvSource for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// The configuration file, as written. See `docs/configuration.md`.
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub(crate) version: Option<u32>,
    /// The address clients use to reach this node, e.g. `https://custos.example:8200`.
    pub(crate) api_addr: Option<String>,
    /// Accept secret files (`*_file`) that other users can read. Named to be noticed.
    pub(crate) dangerous_allow_readable_secret_files: Option<bool>,
    #[serde(default)]
    pub(crate) listener: RawListener,
    #[serde(default)]
    pub(crate) storage: RawStorage,
    #[serde(default)]
    pub(crate) log: RawLog,
    #[serde(default)]
    pub(crate) secrets: RawSecrets,
    #[serde(default)]
    pub(crate) seal: RawSeal,
    #[serde(default)]
    pub(crate) auth: RawAuth,
    /// `[[audit]]` tables: the audit devices this node writes to (see `docs/audit.md`).
    #[serde(default)]
    pub(crate) audit: Vec<RawAudit>,
    /// Let `sys/audit/<path>` enable and disable audit devices over the API (OpenBao's name).
    pub(crate) unsafe_allow_api_audit_creation: Option<bool>,
    /// Let an audit device set `log_raw = true` (secrets in clear in the audit log).
    pub(crate) unsafe_allow_audit_log_raw: Option<bool>,
    #[serde(default)]
    pub(crate) leaks: RawLeaks,
}

/// `[leaks]`: leak reports (`sys/leaks`, `sys/leaks/github`; see `docs/api.md`).
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLeaks {
    /// `[[leaks.github_keys]]`: GitHub's secret-scanning public keys `sys/leaks/github` trusts.
    #[serde(default)]
    pub(crate) github_keys: Vec<RawGithubKey>,
}

/// One of GitHub's secret-scanning public keys, as GitHub publishes them
/// (`https://api.github.com/meta/public_keys/secret_scanning`).
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGithubKey {
    /// GitHub's `key_identifier`, sent in `Github-Public-Key-Identifier`.
    pub(crate) key_identifier: String,
    /// The PEM `PUBLIC KEY` block (an ECDSA P-256 key).
    pub(crate) key: String,
}

/// One `[[audit]]` table: an audit device declared by the operator. The device's options are
/// its keys other than `path`, `type`, `description` and `local`, plus an optional `options`
/// table for anything the build knows and this list does not name; the engine and the device
/// refuse options they do not know.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAudit {
    /// Its name in `sys/audit` (`file`).
    pub(crate) path: String,
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) description: Option<String>,
    pub(crate) local: Option<bool>,
    pub(crate) file_path: Option<String>,
    pub(crate) mode: Option<String>,
    pub(crate) fsync: Option<String>,
    pub(crate) fsync_interval: Option<String>,
    pub(crate) max_file_size: Option<String>,
    pub(crate) checkpoint_records: Option<u64>,
    pub(crate) checkpoint_interval: Option<String>,
    pub(crate) hmac_accessor: Option<bool>,
    pub(crate) log_raw: Option<bool>,
    pub(crate) elide_list_responses: Option<bool>,
    pub(crate) format: Option<String>,
    #[serde(default)]
    pub(crate) options: std::collections::BTreeMap<String, String>,
}

/// An audit device from the configuration file, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuditDeviceConfig {
    /// With a trailing slash, as `sys/audit` shows it (`file/`).
    pub(crate) path: String,
    pub(crate) kind: String,
    pub(crate) description: String,
    pub(crate) local: bool,
    pub(crate) options: std::collections::BTreeMap<String, String>,
}

/// `[auth]`: the login lockout (see `docs/auth.md`).
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuth {
    /// Failed logins of one user (per auth mount) within `lockout_window` that lock it out.
    pub(crate) lockout_threshold: Option<u32>,
    pub(crate) lockout_window: Option<String>,
    pub(crate) lockout_duration: Option<String>,
    /// Failed logins from one address within `lockout_address_window` that lock it out.
    pub(crate) lockout_address_threshold: Option<u32>,
    pub(crate) lockout_address_window: Option<String>,
    pub(crate) lockout_address_duration: Option<String>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSeal {
    /// Values one data key may seal before it is rotated automatically.
    pub(crate) max_encryptions_per_key: Option<u64>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSecrets {
    /// The largest secret one request may store, in bytes (JSON-encoded).
    pub(crate) max_value_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListener {
    pub(crate) address: Option<String>,
    pub(crate) tls_cert_file: Option<PathBuf>,
    pub(crate) tls_key_file: Option<PathBuf>,
    pub(crate) tls_client_ca_file: Option<PathBuf>,
    pub(crate) tls_require_client_cert: Option<bool>,
    pub(crate) tls_disable: Option<bool>,
    pub(crate) max_request_bytes: Option<usize>,
    pub(crate) request_timeout: Option<String>,
    pub(crate) shutdown_grace: Option<String>,
    pub(crate) first_byte_timeout: Option<String>,
    pub(crate) idle_timeout: Option<String>,
    pub(crate) max_connections: Option<usize>,
    pub(crate) body_budget_bytes: Option<usize>,
    /// CIDR networks allowed to call `sys/init`, `sys/unseal` and `sys/generate-root/*`.
    pub(crate) unseal_allowed_networks: Option<Vec<String>>,
    /// Requests per minute per source address to `sys/unseal` (0: no limit).
    pub(crate) unseal_rate_limit: Option<u32>,
    /// Requests per minute per source address to `sys/leaks` (0: no limit).
    pub(crate) leaks_rate_limit: Option<u32>,
    /// Proxies (CIDR networks) whose `X-Forwarded-For` names the client, as in Vault: a list,
    /// or (as Vault also takes it) one comma-separated string.
    #[serde(default, deserialize_with = "list_or_string")]
    pub(crate) x_forwarded_for_authorized_addrs: Option<Vec<String>>,
    /// Entries to skip from the end of the `X-Forwarded-For` chain (default 0).
    pub(crate) x_forwarded_for_hop_skips: Option<u32>,
    /// Refuse `X-Forwarded-For` from a peer that is not an authorised proxy (default true).
    pub(crate) x_forwarded_for_reject_not_authorized: Option<bool>,
    /// Refuse a request without `X-Forwarded-For` once proxies are set (default true).
    pub(crate) x_forwarded_for_reject_not_present: Option<bool>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStorage {
    pub(crate) backend: Option<String>,
    /// SQLite database file.
    pub(crate) path: Option<PathBuf>,
    /// PostgreSQL connection URL (may hold a password: prefer `url_file`).
    pub(crate) url: Option<String>,
    pub(crate) url_file: Option<PathBuf>,
    /// PostgreSQL URL for the LISTEN connection only (defaults to `url`).
    pub(crate) listen_url: Option<String>,
    pub(crate) max_connections: Option<usize>,
    pub(crate) connect_timeout: Option<String>,
    /// Bytes of read cache in front of the backend (0 turns it off).
    pub(crate) cache_bytes: Option<usize>,
    /// PostgreSQL: how often every in-memory table is reloaded to catch a missed notification.
    pub(crate) reconcile_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLog {
    pub(crate) level: Option<String>,
    pub(crate) format: Option<String>,
}

/// A secret setting. Its `Debug` never shows the value.
#[derive(Clone)]
pub(crate) struct Secret(pub(crate) Zeroizing<String>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone)]
pub(crate) enum StorageConfig {
    Memory,
    Sqlite {
        path: PathBuf,
        cache_bytes: usize,
    },
    Postgres {
        url: Secret,
        listen_url: Option<Secret>,
        max_connections: usize,
        connect_timeout: Duration,
        cache_bytes: usize,
        /// How often the in-memory tables are reloaded whatever the notifications said.
        reconcile_interval: Duration,
    },
}

#[derive(Debug, Clone)]
pub(crate) enum TlsConfig {
    /// Plain HTTP: only with `--dev` or an explicit `tls_disable = true`.
    Disabled,
    Enabled(custos_server::TlsFiles),
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) address: SocketAddr,
    pub(crate) api_addr: Option<String>,
    pub(crate) tls: TlsConfig,
    pub(crate) max_request_bytes: usize,
    pub(crate) request_timeout: Duration,
    pub(crate) shutdown_grace: Duration,
    pub(crate) first_byte_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) max_connections: usize,
    pub(crate) body_budget_bytes: usize,
    /// `None`: any source address.
    pub(crate) unseal_allowed_networks: Option<Vec<custos_core::Cidr>>,
    pub(crate) unseal_rate_limit: u32,
    pub(crate) leaks_rate_limit: u32,
    /// `None`: `X-Forwarded-For` is ignored.
    pub(crate) forwarded_for: Option<custos_server::ForwardedFor>,
    pub(crate) storage: StorageConfig,
    pub(crate) log_level: String,
    pub(crate) log_format: LogFormat,
    pub(crate) max_secret_bytes: usize,
    pub(crate) max_encryptions_per_key: u64,
    pub(crate) login_lockout: custos_engine::LoginLockout,
    /// Audit devices declared in the file (`[[audit]]`).
    pub(crate) audit_devices: Vec<AuditDeviceConfig>,
    pub(crate) allow_api_audit_creation: bool,
    pub(crate) allow_audit_log_raw: bool,
    /// GitHub's keys for `sys/leaks/github`; empty: the endpoint is off.
    pub(crate) github_leak_keys: custos_engine::GithubLeakKeys,
}

/// Overlays `top` on `base`: every field `top` sets wins.
pub(crate) fn merge(base: RawConfig, top: RawConfig) -> RawConfig {
    macro_rules! pick {
        ($($field:ident).+) => { top.$($field).+.or(base.$($field).+) };
    }
    RawConfig {
        version: pick!(version),
        api_addr: pick!(api_addr),
        dangerous_allow_readable_secret_files: pick!(dangerous_allow_readable_secret_files),
        listener: RawListener {
            address: pick!(listener.address),
            tls_cert_file: pick!(listener.tls_cert_file),
            tls_key_file: pick!(listener.tls_key_file),
            tls_client_ca_file: pick!(listener.tls_client_ca_file),
            tls_require_client_cert: pick!(listener.tls_require_client_cert),
            tls_disable: pick!(listener.tls_disable),
            max_request_bytes: pick!(listener.max_request_bytes),
            request_timeout: pick!(listener.request_timeout),
            shutdown_grace: pick!(listener.shutdown_grace),
            first_byte_timeout: pick!(listener.first_byte_timeout),
            idle_timeout: pick!(listener.idle_timeout),
            max_connections: pick!(listener.max_connections),
            body_budget_bytes: pick!(listener.body_budget_bytes),
            unseal_allowed_networks: pick!(listener.unseal_allowed_networks),
            unseal_rate_limit: pick!(listener.unseal_rate_limit),
            leaks_rate_limit: pick!(listener.leaks_rate_limit),
            x_forwarded_for_authorized_addrs: pick!(listener.x_forwarded_for_authorized_addrs),
            x_forwarded_for_hop_skips: pick!(listener.x_forwarded_for_hop_skips),
            x_forwarded_for_reject_not_authorized: pick!(
                listener.x_forwarded_for_reject_not_authorized
            ),
            x_forwarded_for_reject_not_present: pick!(listener.x_forwarded_for_reject_not_present),
        },
        storage: RawStorage {
            backend: pick!(storage.backend),
            path: pick!(storage.path),
            url: pick!(storage.url),
            url_file: pick!(storage.url_file),
            listen_url: pick!(storage.listen_url),
            max_connections: pick!(storage.max_connections),
            connect_timeout: pick!(storage.connect_timeout),
            cache_bytes: pick!(storage.cache_bytes),
            reconcile_interval: pick!(storage.reconcile_interval),
        },
        log: RawLog {
            level: pick!(log.level),
            format: pick!(log.format),
        },
        secrets: RawSecrets {
            max_value_bytes: pick!(secrets.max_value_bytes),
        },
        seal: RawSeal {
            max_encryptions_per_key: pick!(seal.max_encryptions_per_key),
        },
        auth: RawAuth {
            lockout_threshold: pick!(auth.lockout_threshold),
            lockout_window: pick!(auth.lockout_window),
            lockout_duration: pick!(auth.lockout_duration),
            lockout_address_threshold: pick!(auth.lockout_address_threshold),
            lockout_address_window: pick!(auth.lockout_address_window),
            lockout_address_duration: pick!(auth.lockout_address_duration),
        },
        // Audit devices are declared in the file only; a later layer never drops them.
        audit: if top.audit.is_empty() {
            base.audit
        } else {
            top.audit
        },
        unsafe_allow_api_audit_creation: pick!(unsafe_allow_api_audit_creation),
        unsafe_allow_audit_log_raw: pick!(unsafe_allow_audit_log_raw),
        // GitHub's keys are declared in the file only, like audit devices.
        leaks: if top.leaks.github_keys.is_empty() {
            base.leaks
        } else {
            top.leaks
        },
    }
}

/// Reads `[[leaks.github_keys]]`: every key must be a P-256 public key in PEM, each
/// identifier listed once.
fn github_leak_keys(raw: &RawLeaks) -> anyhow::Result<custos_engine::GithubLeakKeys> {
    let mut keys = custos_engine::GithubLeakKeys::new();
    for (index, key) in raw.github_keys.iter().enumerate() {
        keys.add_pem(&key.key_identifier, &key.key)
            .map_err(|why| anyhow::anyhow!("[[leaks.github_keys]] table {}: {why}", index + 1))?;
    }
    Ok(keys)
}

/// Checks the `[[audit]]` tables: a path each, no path twice, a type this build offers, and
/// the device's options as the strings the engine and the device read (Vault's shape).
fn audit_devices(raw: &[RawAudit]) -> anyhow::Result<Vec<AuditDeviceConfig>> {
    let mut devices: Vec<AuditDeviceConfig> = Vec::with_capacity(raw.len());
    for (index, table) in raw.iter().enumerate() {
        let name = table.path.trim_matches('/');
        if name.is_empty() || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
            bail!(
                "[[audit]] table {}: `path` must be a name such as \"file\"",
                index + 1
            );
        }
        let path = format!("{name}/");
        if devices.iter().any(|device| device.path == path) {
            bail!("[[audit]]: two devices have the path {path:?}");
        }
        if table.kind != "file" {
            bail!(
                "[[audit]] {path:?}: type {:?} is not offered (this build has \"file\")",
                table.kind
            );
        }
        let mut options = table.options.clone();
        let mut set = |key: &str, value: Option<String>| -> anyhow::Result<()> {
            if let Some(value) = value
                && options.insert(key.to_owned(), value).is_some()
            {
                bail!("[[audit]] {path:?}: {key} is set twice (as a key and in `options`)");
            }
            Ok(())
        };
        set("file_path", table.file_path.clone())?;
        set("mode", table.mode.clone())?;
        set("fsync", table.fsync.clone())?;
        set("fsync_interval", table.fsync_interval.clone())?;
        set("max_file_size", table.max_file_size.clone())?;
        set(
            "checkpoint_records",
            table.checkpoint_records.map(|n| n.to_string()),
        )?;
        set("checkpoint_interval", table.checkpoint_interval.clone())?;
        set("hmac_accessor", table.hmac_accessor.map(|b| b.to_string()))?;
        set("log_raw", table.log_raw.map(|b| b.to_string()))?;
        set(
            "elide_list_responses",
            table.elide_list_responses.map(|b| b.to_string()),
        )?;
        set("format", table.format.clone())?;
        if !options.contains_key("file_path") && !options.contains_key("path") {
            bail!("[[audit]] {path:?}: a file device needs `file_path` (a file, or \"stdout\")");
        }
        devices.push(AuditDeviceConfig {
            path,
            kind: table.kind.clone(),
            description: table.description.clone().unwrap_or_default(),
            local: table.local.unwrap_or(false),
            options,
        });
    }
    Ok(devices)
}

/// Parses a TOML configuration file's text.
pub(crate) fn parse_file(text: &str) -> anyhow::Result<RawConfig> {
    let raw: RawConfig = toml::from_str(text)?;
    match raw.version {
        Some(1) => Ok(raw),
        Some(other) => {
            bail!("unsupported configuration version {other} (this build reads version 1)")
        }
        None => bail!("the configuration file must start with `version = 1`"),
    }
}

fn parse_bool(name: &str, value: &str) -> anyhow::Result<bool> {
    match value {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => bail!("{name}={value:?} is not a boolean (true/false)"),
    }
}

/// A list of strings, or one comma-separated string (Vault's listener options take both).
fn list_or_string<'de, D>(deserializer: D) -> Result<Option<Vec<String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrString {
        List(Vec<String>),
        String(String),
    }
    Ok(Some(match ListOrString::deserialize(deserializer)? {
        ListOrString::List(list) => list,
        ListOrString::String(text) => split_list(&text),
    }))
}

/// A comma-separated list, without blanks.
fn split_list(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `listener.x_forwarded_for_*`: `None` unless proxies are listed (the other settings alone
/// mean nothing, as in Vault, and are refused so a typo does not go unnoticed).
fn forwarded_for(listener: &RawListener) -> anyhow::Result<Option<custos_server::ForwardedFor>> {
    let Some(list) = &listener.x_forwarded_for_authorized_addrs else {
        if listener.x_forwarded_for_hop_skips.is_some()
            || listener.x_forwarded_for_reject_not_authorized.is_some()
            || listener.x_forwarded_for_reject_not_present.is_some()
        {
            bail!(
                "listener.x_forwarded_for_* settings need listener.x_forwarded_for_authorized_addrs, the proxies to trust"
            );
        }
        return Ok(None);
    };
    if list.is_empty() {
        bail!(
            "listener.x_forwarded_for_authorized_addrs is empty: list the proxies to trust, or remove the key to ignore X-Forwarded-For"
        );
    }
    let authorized_addrs = list
        .iter()
        .map(|text| {
            text.parse::<custos_core::Cidr>().map_err(|error| {
                anyhow::anyhow!("listener.x_forwarded_for_authorized_addrs: {error}")
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut config = custos_server::ForwardedFor::new(authorized_addrs);
    if let Some(skips) = listener.x_forwarded_for_hop_skips {
        config.hop_skips = skips as usize;
    }
    if let Some(reject) = listener.x_forwarded_for_reject_not_authorized {
        config.reject_not_authorized = reject;
    }
    if let Some(reject) = listener.x_forwarded_for_reject_not_present {
        config.reject_not_present = reject;
    }
    Ok(Some(config))
}

/// Reads the `CUSTOS_*` variables into a layer.
pub(crate) fn from_env(env: &dyn EnvSource) -> anyhow::Result<RawConfig> {
    let path = |name: &str| env.var(name).map(PathBuf::from);
    let flag = |name: &str| -> anyhow::Result<Option<bool>> {
        env.var(name)
            .map(|value| parse_bool(name, &value))
            .transpose()
    };
    let number = |name: &str| -> anyhow::Result<Option<usize>> {
        env.var(name)
            .map(|value| {
                value
                    .parse()
                    .with_context(|| format!("{name}={value:?} is not a number"))
            })
            .transpose()
    };
    let small_number = |name: &str| -> anyhow::Result<Option<u32>> {
        env.var(name)
            .map(|value| {
                value
                    .parse()
                    .with_context(|| format!("{name}={value:?} is not a number"))
            })
            .transpose()
    };
    Ok(RawConfig {
        version: None,
        api_addr: env.var("CUSTOS_API_ADDR"),
        dangerous_allow_readable_secret_files: flag(
            "CUSTOS_DANGEROUS_ALLOW_READABLE_SECRET_FILES",
        )?,
        listener: RawListener {
            address: env.var("CUSTOS_LISTEN_ADDRESS"),
            tls_cert_file: path("CUSTOS_TLS_CERT_FILE"),
            tls_key_file: path("CUSTOS_TLS_KEY_FILE"),
            tls_client_ca_file: path("CUSTOS_TLS_CLIENT_CA_FILE"),
            tls_require_client_cert: flag("CUSTOS_TLS_REQUIRE_CLIENT_CERT")?,
            tls_disable: flag("CUSTOS_TLS_DISABLE")?,
            max_request_bytes: number("CUSTOS_MAX_REQUEST_BYTES")?,
            request_timeout: env.var("CUSTOS_REQUEST_TIMEOUT"),
            shutdown_grace: env.var("CUSTOS_SHUTDOWN_GRACE"),
            first_byte_timeout: env.var("CUSTOS_FIRST_BYTE_TIMEOUT"),
            idle_timeout: env.var("CUSTOS_IDLE_TIMEOUT"),
            max_connections: number("CUSTOS_MAX_CONNECTIONS")?,
            body_budget_bytes: number("CUSTOS_BODY_BUDGET_BYTES")?,
            unseal_allowed_networks: env.var("CUSTOS_UNSEAL_ALLOWED_NETWORKS").map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|network| !network.is_empty())
                    .map(str::to_owned)
                    .collect()
            }),
            unseal_rate_limit: small_number("CUSTOS_UNSEAL_RATE_LIMIT")?,
            leaks_rate_limit: small_number("CUSTOS_LEAKS_RATE_LIMIT")?,
            x_forwarded_for_authorized_addrs: env
                .var("CUSTOS_X_FORWARDED_FOR_AUTHORIZED_ADDRS")
                .map(|list| split_list(&list)),
            x_forwarded_for_hop_skips: small_number("CUSTOS_X_FORWARDED_FOR_HOP_SKIPS")?,
            x_forwarded_for_reject_not_authorized: flag(
                "CUSTOS_X_FORWARDED_FOR_REJECT_NOT_AUTHORIZED",
            )?,
            x_forwarded_for_reject_not_present: flag("CUSTOS_X_FORWARDED_FOR_REJECT_NOT_PRESENT")?,
        },
        storage: RawStorage {
            backend: env.var("CUSTOS_STORAGE_BACKEND"),
            path: path("CUSTOS_STORAGE_PATH"),
            url: env.var("CUSTOS_STORAGE_URL"),
            url_file: path("CUSTOS_STORAGE_URL_FILE"),
            listen_url: env.var("CUSTOS_STORAGE_LISTEN_URL"),
            max_connections: number("CUSTOS_STORAGE_MAX_CONNECTIONS")?,
            connect_timeout: env.var("CUSTOS_STORAGE_CONNECT_TIMEOUT"),
            cache_bytes: number("CUSTOS_STORAGE_CACHE_BYTES")?,
            reconcile_interval: env.var("CUSTOS_STORAGE_RECONCILE_INTERVAL"),
        },
        log: RawLog {
            level: env.var("CUSTOS_LOG_LEVEL"),
            format: env.var("CUSTOS_LOG_FORMAT"),
        },
        secrets: RawSecrets {
            max_value_bytes: number("CUSTOS_MAX_SECRET_BYTES")?,
        },
        seal: RawSeal {
            max_encryptions_per_key: number("CUSTOS_SEAL_MAX_ENCRYPTIONS_PER_KEY")?
                .map(|count| u64::try_from(count).unwrap_or(u64::MAX)),
        },
        auth: RawAuth {
            lockout_threshold: small_number("CUSTOS_AUTH_LOCKOUT_THRESHOLD")?,
            lockout_window: env.var("CUSTOS_AUTH_LOCKOUT_WINDOW"),
            lockout_duration: env.var("CUSTOS_AUTH_LOCKOUT_DURATION"),
            lockout_address_threshold: small_number("CUSTOS_AUTH_LOCKOUT_ADDRESS_THRESHOLD")?,
            lockout_address_window: env.var("CUSTOS_AUTH_LOCKOUT_ADDRESS_WINDOW"),
            lockout_address_duration: env.var("CUSTOS_AUTH_LOCKOUT_ADDRESS_DURATION"),
        },
        // Audit devices and the switches that loosen them are set in the file only, where
        // they are reviewed with the rest of the deployment.
        audit: Vec::new(),
        unsafe_allow_api_audit_creation: None,
        unsafe_allow_audit_log_raw: None,
        leaks: RawLeaks::default(),
    })
}

/// Parses durations like `90s`, `5m`, `1h30m`, `250ms`.
pub(crate) fn parse_duration(name: &str, text: &str) -> anyhow::Result<Duration> {
    let span: jiff::SignedDuration = text
        .trim()
        .parse()
        .with_context(|| format!("{name} = {text:?} is not a duration like \"30s\" or \"5m\""))?;
    if span.is_negative() || span.is_zero() {
        bail!("{name} = {text:?} must be positive");
    }
    Duration::try_from(span).with_context(|| format!("{name} = {text:?} is out of range"))
}

/// Refuses a secret file that users other than its owner may read, unless told otherwise.
fn check_secret_file_mode(
    metadata: &std::fs::Metadata,
    path: &Path,
    allow_readable: bool,
) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode();
        if mode & 0o077 != 0 && !allow_readable {
            bail!(
                "secret file {} is readable by other users (mode {:o}); run `chmod 600` on it, or set dangerous_allow_readable_secret_files = true",
                path.display(),
                mode & 0o777
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (metadata, path, allow_readable);
    Ok(())
}

/// Reads a secret from a file, refusing files other users may read unless told otherwise.
pub(crate) fn read_secret_file(path: &Path, allow_readable: bool) -> anyhow::Result<Secret> {
    let metadata = std::fs::metadata(path)
        .with_context(|| format!("cannot read secret file {}", path.display()))?;
    check_secret_file_mode(&metadata, path, allow_readable)?;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read secret file {}", path.display()))?;
    Ok(Secret(Zeroizing::new(
        text.trim_end_matches(['\r', '\n']).to_owned(),
    )))
}

/// Turns merged raw settings into a typed configuration.
pub(crate) fn resolve(raw: RawConfig) -> anyhow::Result<Config> {
    let listener = raw.listener;
    let forwarded_for = forwarded_for(&listener)?;
    let address_text = listener.address.unwrap_or_else(|| "127.0.0.1:8200".into());
    let address: SocketAddr = address_text.parse().with_context(|| {
        format!("listener.address = {address_text:?} is not an IP:port address")
    })?;
    let allow_readable = raw.dangerous_allow_readable_secret_files.unwrap_or(false);
    let tls = if listener.tls_disable.unwrap_or(false) {
        if listener.tls_client_ca_file.is_some() || listener.tls_require_client_cert == Some(true) {
            bail!(
                "listener.tls_disable = true cannot be combined with listener.tls_client_ca_file or listener.tls_require_client_cert: client certificates need TLS (remove them, or enable TLS)"
            );
        }
        TlsConfig::Disabled
    } else {
        let (Some(cert_file), Some(key_file)) = (listener.tls_cert_file, listener.tls_key_file)
        else {
            bail!(
                "TLS needs listener.tls_cert_file and listener.tls_key_file (or set listener.tls_disable = true to serve plain HTTP, which exposes tokens and secrets on the network)"
            );
        };
        // The private key is a secret file like the others. A missing file is reported when
        // the TLS material is loaded.
        if let Ok(metadata) = std::fs::metadata(&key_file) {
            check_secret_file_mode(&metadata, &key_file, allow_readable)
                .context("listener.tls_key_file")?;
        }
        TlsConfig::Enabled(custos_server::TlsFiles {
            cert_file,
            key_file,
            client_ca_file: listener.tls_client_ca_file,
            require_client_cert: listener.tls_require_client_cert.unwrap_or(false),
        })
    };
    let storage = raw.storage;
    let backend = storage.backend.as_deref().unwrap_or("sqlite");
    let storage = match backend {
        "memory" | "inmem" => StorageConfig::Memory,
        "sqlite" => StorageConfig::Sqlite {
            path: storage.path.unwrap_or_else(|| PathBuf::from("custos.db")),
            cache_bytes: storage.cache_bytes.unwrap_or(64 * 1024 * 1024),
        },
        "postgres" | "postgresql" => {
            let url = match (storage.url, storage.url_file) {
                (Some(_), Some(_)) => bail!("set storage.url or storage.url_file, not both"),
                (Some(url), None) => Secret(Zeroizing::new(url)),
                (None, Some(file)) => read_secret_file(&file, allow_readable)?,
                (None, None) => {
                    bail!("storage.backend = \"postgres\" needs storage.url or storage.url_file")
                }
            };
            StorageConfig::Postgres {
                url,
                listen_url: storage.listen_url.map(|url| Secret(Zeroizing::new(url))),
                max_connections: storage.max_connections.unwrap_or(16).max(1),
                connect_timeout: storage
                    .connect_timeout
                    .map(|text| parse_duration("storage.connect_timeout", &text))
                    .transpose()?
                    .unwrap_or(Duration::from_secs(5)),
                cache_bytes: storage.cache_bytes.unwrap_or(64 * 1024 * 1024),
                reconcile_interval: match storage
                    .reconcile_interval
                    .map(|text| parse_duration("storage.reconcile_interval", &text))
                    .transpose()?
                {
                    None => Duration::from_secs(30),
                    Some(interval) if interval.is_zero() => {
                        bail!("storage.reconcile_interval must be positive")
                    }
                    Some(interval) => interval,
                },
            }
        }
        other => bail!("storage.backend = {other:?} is not one of sqlite, postgres, memory"),
    };
    let log_format = match raw.log.format.as_deref().unwrap_or("pretty") {
        "pretty" | "text" => LogFormat::Pretty,
        "json" => LogFormat::Json,
        other => bail!("log.format = {other:?} is not one of pretty, json"),
    };
    let max_secret_bytes = match raw.secrets.max_value_bytes {
        None => 1024 * 1024,
        Some(0) => bail!("secrets.max_value_bytes must be positive"),
        Some(bytes) => bytes,
    };
    // The largest legitimate body is one secret plus the request around it.
    let max_request_bytes = match listener.max_request_bytes {
        None => max_secret_bytes.saturating_add(64 * 1024),
        Some(0) => bail!("listener.max_request_bytes must be positive"),
        Some(bytes) => bytes,
    };
    // A body of the largest size must fit in the budget, or it could never be read.
    let needed = max_request_bytes.max(custos_server::LEAKS_BODY_BYTES);
    let body_budget_bytes = match listener.body_budget_bytes {
        None => custos_server::DEFAULT_BODY_BUDGET_BYTES.max(needed),
        Some(bytes) if bytes < needed => bail!(
            "listener.body_budget_bytes = {bytes} is smaller than {needed} (listener.max_request_bytes, or the 256 KiB of a sys/leaks report): the largest body could never be read"
        ),
        Some(bytes) => bytes,
    };
    let unseal_allowed_networks = match listener.unseal_allowed_networks {
        None => None,
        Some(list) if list.is_empty() => bail!(
            "listener.unseal_allowed_networks is empty, which would refuse unseal to everyone; list networks, or remove the key to allow any"
        ),
        Some(list) => Some(
            list.iter()
                .map(|text| {
                    text.parse::<custos_core::Cidr>().map_err(|error| {
                        anyhow::anyhow!("listener.unseal_allowed_networks: {error}")
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?,
        ),
    };
    let duration = |name: &str, value: Option<String>, default: Duration| {
        value
            .map(|text| parse_duration(name, &text))
            .transpose()
            .map(|value| value.unwrap_or(default))
    };
    let lockout_defaults = custos_engine::LoginLockout::default();
    let login_lockout = custos_engine::LoginLockout {
        per_user: custos_engine::LockoutPolicy {
            threshold: raw
                .auth
                .lockout_threshold
                .unwrap_or(lockout_defaults.per_user.threshold),
            window: duration(
                "auth.lockout_window",
                raw.auth.lockout_window.clone(),
                lockout_defaults.per_user.window,
            )?,
            duration: duration(
                "auth.lockout_duration",
                raw.auth.lockout_duration.clone(),
                lockout_defaults.per_user.duration,
            )?,
        },
        per_address: custos_engine::LockoutPolicy {
            threshold: raw
                .auth
                .lockout_address_threshold
                .unwrap_or(lockout_defaults.per_address.threshold),
            window: duration(
                "auth.lockout_address_window",
                raw.auth.lockout_address_window.clone(),
                lockout_defaults.per_address.window,
            )?,
            duration: duration(
                "auth.lockout_address_duration",
                raw.auth.lockout_address_duration.clone(),
                lockout_defaults.per_address.duration,
            )?,
        },
    };
    let audit_devices = audit_devices(&raw.audit)?;
    let github_leak_keys = github_leak_keys(&raw.leaks)?;
    Ok(Config {
        github_leak_keys,
        login_lockout,
        audit_devices,
        allow_api_audit_creation: raw.unsafe_allow_api_audit_creation.unwrap_or(false),
        allow_audit_log_raw: raw.unsafe_allow_audit_log_raw.unwrap_or(false),
        address,
        api_addr: raw.api_addr,
        tls,
        max_request_bytes,
        request_timeout: duration(
            "listener.request_timeout",
            listener.request_timeout,
            Duration::from_secs(90),
        )?,
        shutdown_grace: duration(
            "listener.shutdown_grace",
            listener.shutdown_grace,
            Duration::from_secs(30),
        )?,
        first_byte_timeout: duration(
            "listener.first_byte_timeout",
            listener.first_byte_timeout,
            Duration::from_secs(10),
        )?,
        idle_timeout: duration(
            "listener.idle_timeout",
            listener.idle_timeout,
            Duration::from_secs(300),
        )?,
        max_connections: match listener.max_connections {
            None => 1024,
            Some(0) => bail!("listener.max_connections must be positive"),
            Some(count) => count,
        },
        body_budget_bytes,
        unseal_allowed_networks,
        unseal_rate_limit: listener
            .unseal_rate_limit
            .unwrap_or(custos_server::DEFAULT_UNSEAL_RATE_LIMIT),
        leaks_rate_limit: listener
            .leaks_rate_limit
            .unwrap_or(custos_server::DEFAULT_LEAKS_RATE_LIMIT),
        forwarded_for,
        storage,
        log_level: raw.log.level.unwrap_or_else(|| "info".into()),
        log_format,
        max_secret_bytes,
        max_encryptions_per_key: match raw.seal.max_encryptions_per_key {
            None => custos_engine::DEFAULT_MAX_ENCRYPTIONS_PER_KEY,
            Some(count) if (MIN_ENCRYPTIONS_PER_KEY..=MAX_ENCRYPTIONS_PER_KEY).contains(&count) => {
                count
            }
            Some(count) => bail!(
                "seal.max_encryptions_per_key = {count} is outside {MIN_ENCRYPTIONS_PER_KEY}..={MAX_ENCRYPTIONS_PER_KEY} (AES-GCM with random nonces must stay well below 2^32 per key)"
            ),
        },
    })
}

/// Bounds of `seal.max_encryptions_per_key`: below the lower one the keyring would grow by a key
/// every few writes; above 2^32 random 96-bit nonces are no longer safe to use with one key.
const MIN_ENCRYPTIONS_PER_KEY: u64 = 1 << 16;
const MAX_ENCRYPTIONS_PER_KEY: u64 = 1 << 32;

#[cfg(test)]
mod tests;
