//! `custos server`: opens storage, builds the engine, serves HTTP(S) until SIGTERM/SIGINT.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use custos_engine::{Engine, SystemClock};
use custos_server::{AppState, ServeOptions};
use custos_storage::{CachedStorage, Invalidation, MemoryStorage, Storage};
use zeroize::Zeroizing;

use crate::config::{self, Config, StorageConfig, TlsConfig};

/// Flags of `custos server`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServerArgs {
    /// TOML configuration file (see docs/configuration.md).
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// Address to listen on, e.g. 0.0.0.0:8200 (overrides listener.address).
    #[arg(long, value_name = "IP:PORT")]
    listen_address: Option<String>,
    /// Log level or filter, e.g. info, debug, custos_engine=trace.
    #[arg(long, value_name = "FILTER")]
    log_level: Option<String>,
    /// Log format: pretty or json.
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<String>,
    /// Development mode: in-memory storage, initialised and unsealed at start, plain HTTP on
    /// 127.0.0.1:8200, root token printed. Never use it for real secrets.
    #[arg(long)]
    dev: bool,
    /// Address for dev mode (use 127.0.0.1:0 to pick a free port).
    #[arg(long, value_name = "IP:PORT", requires = "dev")]
    dev_listen_address: Option<String>,
    /// Root token for dev mode instead of a random one.
    #[arg(long, value_name = "TOKEN", requires = "dev")]
    dev_root_token_id: Option<String>,
}

/// Resolves the configuration from file, environment and flags.
fn load_config(args: &ServerArgs, env: &dyn config::EnvSource) -> anyhow::Result<Config> {
    if args.dev {
        let raw = config::RawConfig {
            listener: config::RawListener {
                address: Some(
                    args.dev_listen_address
                        .clone()
                        .unwrap_or_else(|| "127.0.0.1:8200".into()),
                ),
                tls_disable: Some(true),
                ..Default::default()
            },
            storage: config::RawStorage {
                backend: Some("memory".into()),
                ..Default::default()
            },
            log: config::RawLog {
                level: args.log_level.clone(),
                format: args.log_format.clone(),
            },
            // As OpenBao's dev mode: `bao audit enable file file_path=...` works, so a dev
            // server can be tried with the vault/bao CLI.
            unsafe_allow_api_audit_creation: Some(true),
            ..Default::default()
        };
        return config::resolve(raw);
    }
    let file = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read configuration file {}", path.display()))?;
            config::parse_file(&text)
                .with_context(|| format!("invalid configuration file {}", path.display()))?
        }
        None => config::RawConfig::default(),
    };
    let flags = config::RawConfig {
        listener: config::RawListener {
            address: args.listen_address.clone(),
            ..Default::default()
        },
        log: config::RawLog {
            level: args.log_level.clone(),
            format: args.log_format.clone(),
        },
        ..Default::default()
    };
    config::resolve(config::merge(
        config::merge(file, config::from_env(env)?),
        flags,
    ))
}

fn init_logging(config: &Config) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .with_context(|| format!("invalid log level {:?}", config.log_level))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match config.log_format {
        config::LogFormat::Json => builder.json().try_init(),
        config::LogFormat::Pretty => builder.try_init(),
    }
    .map_err(|error| anyhow::anyhow!("cannot install the logger: {error}"))
}

/// Storage as the engine sees it, and, when other nodes write it too, the feed of their changes.
struct OpenedStorage {
    storage: Arc<dyn Storage>,
    changes: Option<ChangeFeed>,
}

/// Other nodes' (and this node's) commits, and what mirrors storage in this process besides the
/// engine's tables.
struct ChangeFeed {
    invalidations: tokio::sync::mpsc::UnboundedReceiver<Invalidation>,
    cache: Option<Arc<CachedStorage>>,
    reconcile_interval: std::time::Duration,
}

async fn open_storage(config: &StorageConfig) -> anyhow::Result<OpenedStorage> {
    let storage: Arc<dyn Storage> = match config {
        StorageConfig::Memory => Arc::new(MemoryStorage::new()),
        StorageConfig::Sqlite { path, cache_bytes } => {
            let path = path.clone();
            let storage = tokio::task::spawn_blocking(move || {
                custos_storage_sqlite::SqliteStorage::open(
                    &path,
                    custos_storage_sqlite::SqliteOptions::default(),
                )
                .with_context(|| format!("cannot open SQLite storage at {}", path.display()))
            })
            .await??;
            if *cache_bytes == 0 {
                Arc::new(storage)
            } else {
                // Only this process writes a SQLite file, so the cache sees every write.
                Arc::new(
                    CachedStorage::new(Arc::new(storage), *cache_bytes)
                        .without_caching_misses_under(custos_engine::CREDENTIAL_PREFIXES),
                )
            }
        }
        StorageConfig::Postgres {
            url,
            listen_url,
            max_connections,
            connect_timeout,
            cache_bytes,
            reconcile_interval,
        } => {
            let mut pg = custos_storage_postgres::PostgresConfig::new(url.0.as_str());
            pg.max_connections = *max_connections;
            pg.connect_timeout = *connect_timeout;
            pg.listen_url = listen_url.as_ref().map(|url| url.0.to_string());
            let storage = custos_storage_postgres::PostgresStorage::connect(pg)
                .await
                .context("cannot connect to PostgreSQL storage")?;
            // Other nodes write the same database: their commits reach this node's cache and
            // in-memory tables through LISTEN/NOTIFY (see `follow_changes`).
            let invalidations = storage.invalidations();
            let (storage, cache): (Arc<dyn Storage>, _) = if *cache_bytes == 0 {
                (Arc::new(storage), None)
            } else {
                let cached = Arc::new(
                    CachedStorage::new(Arc::new(storage), *cache_bytes)
                        .without_caching_misses_under(custos_engine::CREDENTIAL_PREFIXES),
                );
                (cached.clone(), Some(cached))
            };
            return Ok(OpenedStorage {
                storage,
                changes: Some(ChangeFeed {
                    invalidations,
                    cache,
                    reconcile_interval: *reconcile_interval,
                }),
            });
        }
    };
    Ok(OpenedStorage {
        storage,
        changes: None,
    })
}

/// Fans every message of the change feed out, in order: first to the read cache (so what the
/// engine reloads next is read fresh), then to the engine's mirrored tables. A periodic reconcile
/// reloads the tables whatever the feed said.
fn follow_changes(changes: ChangeFeed, engine: &Engine) {
    engine.attach_change_feed();
    let ChangeFeed {
        mut invalidations,
        cache,
        reconcile_interval,
    } = changes;
    let follower = engine.clone();
    tokio::spawn(async move {
        while let Some(invalidation) = invalidations.recv().await {
            if let Some(cache) = &cache {
                cache.apply(&invalidation);
            }
            follower.apply_invalidation(&invalidation).await;
        }
    });
    let reconciler = engine.clone();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(reconcile_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            reconciler.reconcile();
        }
    });
}

/// How often the client inventory's in-memory usage is written to storage: what a crash loses.
const INVENTORY_FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Flushes the client inventory every [`INVENTORY_FLUSH_INTERVAL`] (`docs/inventory.md`).
fn flush_inventory_periodically(engine: &Engine) {
    let flusher = engine.clone();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(INVENTORY_FLUSH_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            flush_inventory_once(&flusher).await;
        }
    });
}

/// One inventory flush. Sealed, the engine keeps what it holds for a flush after unsealing; a
/// storage failure keeps it for the next one. Neither stops the server.
async fn flush_inventory_once(engine: &Engine) {
    match engine.flush_inventory().await {
        Ok(flush) => {
            if flush.written > 0 {
                tracing::debug!(written = flush.written, "inventory flushed");
            }
        }
        Err(custos_engine::EngineError::Sealed) => {}
        Err(error) => {
            tracing::warn!(error = %error, "inventory flush failed; its records are kept for the next one");
        }
    }
}

/// How often API-key usage (uses left, last use) and analytics are written to storage: what
/// a crash can lose, and so the bound on uses spent twice after one (`docs/apikeys.md`).
const APIKEYS_FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Flushes API-key usage every [`APIKEYS_FLUSH_INTERVAL`].
fn flush_apikeys_periodically(engine: &Engine) {
    let flusher = engine.clone();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(APIKEYS_FLUSH_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            flush_apikeys_once(&flusher).await;
        }
    });
}

/// One API-key flush; like the inventory's, a failure keeps what it holds for the next one.
async fn flush_apikeys_once(engine: &Engine) {
    match engine.flush_apikeys().await {
        Ok(flush) => {
            if flush.usage_records + flush.analytics_records + flush.expired_keys > 0 {
                tracing::debug!(
                    usage = flush.usage_records,
                    analytics = flush.analytics_records,
                    expired = flush.expired_keys,
                    "API key usage flushed"
                );
            }
        }
        Err(custos_engine::EngineError::Sealed) => {}
        Err(error) => {
            tracing::warn!(error = %error, "API key usage flush failed; it is kept for the next one");
        }
    }
}

/// On SIGHUP, every audit device closes its file with a checkpoint and opens its path again,
/// so a log rotated by an outside tool (logrotate's `postrotate`) continues the chain in a
/// new file. Devices also notice a moved file by themselves before each write.
fn reopen_audit_devices_on_hangup(engine: &Engine) {
    #[cfg(unix)]
    {
        let engine = engine.clone();
        tokio::spawn(async move {
            let Ok(mut hangups) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                tracing::warn!(
                    "cannot listen for SIGHUP; audit files are reopened only when moved"
                );
                return;
            };
            while hangups.recv().await.is_some() {
                let engine = engine.clone();
                // Reopening waits for each device's writer; off the async workers.
                let outcome =
                    tokio::task::spawn_blocking(move || engine.reopen_audit_devices()).await;
                match outcome {
                    Ok(Ok(())) => tracing::info!("SIGHUP: audit devices reopened"),
                    Ok(Err(errors)) => {
                        tracing::error!(
                            ?errors,
                            "SIGHUP: some audit devices could not be reopened"
                        );
                    }
                    Err(error) => tracing::error!(%error, "SIGHUP: reopening audit devices failed"),
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = engine;
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received");
}

pub(crate) async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let config = load_config(&args, &config::ProcessEnv)?;
    init_logging(&config)?;
    let open_files = raise_open_file_limit();
    let tls = match &config.tls {
        TlsConfig::Disabled => {
            if !args.dev {
                tracing::warn!(
                    "TLS is disabled: tokens and secrets cross the network in the clear. Only do this behind a TLS-terminating proxy on the same host."
                );
            }
            None
        }
        TlsConfig::Enabled(files) => {
            Some(custos_server::server_tls_config(files).context("invalid TLS configuration")?)
        }
    };
    let opened = open_storage(&config.storage).await?;
    let engine = Engine::with_limits(
        opened.storage,
        Arc::new(SystemClock),
        custos_engine::Limits {
            max_value_bytes: config.max_secret_bytes,
            max_encryptions_per_key: config.max_encryptions_per_key,
            login_lockout: config.login_lockout,
            ..custos_engine::Limits::default()
        },
    );
    engine.set_audit_config(custos_engine::AuditConfig {
        factory: Arc::new(crate::audit_devices::Devices),
        declared: config
            .audit_devices
            .iter()
            .map(|device| custos_engine::DeviceSpec {
                path: device.path.clone(),
                kind: device.kind.clone(),
                description: device.description.clone(),
                options: device.options.clone(),
                local: device.local,
            })
            .collect(),
        allow_api_creation: config.allow_api_audit_creation,
        allow_log_raw: config.allow_audit_log_raw,
        status_of: custos_server::engine_status,
    });
    if let Some(changes) = opened.changes {
        follow_changes(changes, &engine);
    }
    flush_inventory_periodically(&engine);
    flush_apikeys_periodically(&engine);
    reopen_audit_devices_on_hangup(&engine);

    let listener = tokio::net::TcpListener::bind(config.address)
        .await
        .with_context(|| format!("cannot listen on {}", config.address))?;
    let bound = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let api_address = config
        .api_addr
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{bound}"));

    if args.dev {
        let output = engine
            .dev_init(args.dev_root_token_id.clone().map(Zeroizing::new))
            .await
            .context("dev mode initialisation failed")?;
        // As Vault's dev mode: a KV v2 engine at secret/.
        engine
            .mount(&output.root_token, "secret", "kv", &[("version", "2")])
            .await
            .context("dev mode could not mount secret/")?;
        print_dev_banner(&api_address, &output);
    }

    let flusher = engine.clone();
    let mut state = AppState::new(engine);
    state.max_request_bytes = config.max_request_bytes;
    state.request_timeout = config.request_timeout;
    state.api_address = api_address.clone();
    state.body_budget = custos_server::BodyBudget::new(config.body_budget_bytes);
    state.seal_allowed_networks = config.unseal_allowed_networks.clone().map(Arc::new);
    state.unseal_rate_limit = Arc::new(custos_server::RateLimiter::new(config.unseal_rate_limit));
    state.leaks_rate_limit = Arc::new(custos_server::RateLimiter::new(config.leaks_rate_limit));
    if !config.github_leak_keys.is_empty() {
        tracing::info!(
            keys = config.github_leak_keys.len(),
            "sys/leaks/github accepts GitHub secret-scanning reports"
        );
    }
    state.github_leak_keys = Arc::new(config.github_leak_keys.clone());
    state.forwarded_for = config.forwarded_for.clone().map(Arc::new);
    let app = custos_server::router(state);
    let options = ServeOptions {
        tls,
        shutdown_grace: config.shutdown_grace,
        first_byte_timeout: config.first_byte_timeout,
        idle_timeout: config.idle_timeout,
        max_connections: connection_cap(config.max_connections, open_files),
        ..ServeOptions::default()
    };
    tracing::info!(
        address = %bound,
        storage = ?config.storage,
        startup_ms = started.elapsed().as_millis() as u64,
        "custos server started"
    );
    // Scripts and tests wait for this exact line; keep its shape.
    println!("custos: listening on {api_address}");
    custos_server::serve(listener, app, options, shutdown_signal()).await?;
    // What the inventory gathered since the last flush is written once more before exiting.
    flush_inventory_once(&flusher).await;
    // And what API-key verifications spent: a clean shutdown loses no use.
    flush_apikeys_once(&flusher).await;
    // After the last request: each audit file ends with a closing checkpoint.
    flusher.close_audit_devices().await;
    tracing::info!("custos server stopped");
    Ok(())
}

/// Raises the soft limit of open files to the hard limit (every connection is a file) and
/// returns the soft limit in force, when known.
#[cfg(unix)]
fn raise_open_file_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    // "Unlimited" is not a value the kernel accepts for open files; 2^20 is Linux's default
    // ceiling (fs.nr_open).
    let target = limit.maximum.unwrap_or(1 << 20);
    if let Some(current) = limit.current
        && current < target
    {
        let raised = Rlimit {
            current: Some(target),
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => {
                tracing::debug!(from = current, to = target, "raised the open-file limit");
                return Some(target);
            }
            Err(error) => {
                tracing::warn!(%error, current, target, "cannot raise the open-file limit");
            }
        }
    }
    limit.current
}

#[cfg(not(unix))]
fn raise_open_file_limit() -> Option<u64> {
    None
}

/// The connection cap that leaves files for storage, logs and the listener itself: a quarter of
/// the open-file limit, at most 64, is kept back.
fn connection_cap(configured: usize, open_files: Option<u64>) -> usize {
    let Some(open_files) = open_files.and_then(|limit| usize::try_from(limit).ok()) else {
        return configured;
    };
    let reserve = (open_files / 4).min(64);
    let fits = open_files.saturating_sub(reserve).max(1);
    if configured > fits {
        tracing::warn!(
            configured,
            open_files,
            cap = fits,
            "listener.max_connections is above what the open-file limit allows; capping it"
        );
        return fits;
    }
    configured
}

fn print_dev_banner(address: &str, output: &custos_engine::InitOutput) {
    use base64::Engine as _;
    let unseal_key = output
        .shares
        .first()
        .map(|share| base64::engine::general_purpose::STANDARD.encode(share.as_slice()))
        .unwrap_or_default();
    println!(
        "custos: dev mode. Everything is in memory and lost at exit; never put real secrets here.\n\
         \n\
         \x20   export VAULT_ADDR='{address}'\n\
         \x20   export CUSTOS_ADDR='{address}'\n\
         \n\
         Unseal Key: {unseal_key}\n\
         Root Token: {}\n",
        output.root_token.as_str()
    );
}
