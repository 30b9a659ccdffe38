//! The audit broker: Vault-shaped request and response records, HMAC'd, written to every
//! enabled audit device before the request runs and before its answer leaves.
//!
//! The engine formats records and decides what happens when they cannot be written (the request
//! fails: no audit, no service); it knows nothing about files. A device is an [`AuditDevice`]
//! that an [`AuditDeviceFactory`] opens: the binary implements the factory with `custos-audit`'s
//! file device, and tests with an in-memory one.
//!
//! Devices come from two places: the configuration file ([`AuditConfig::declared`], never
//! stored, read again at every unseal) and `sys/audit/<path>` (stored behind the barrier at
//! `core/audit`, a mirrored table, so every node opens the same devices). Each device has its
//! own HMAC key (Vault's "salt"): 32 random bytes stored behind the barrier at
//! `audit/salt/<path>`, created the first time the device is opened and kept across restarts,
//! so the same value hashes the same way in every record the device ever writes.
//!
//! - `format.rs`: the records, and the hashing of every string in them.
//! - `table.rs`: the stored table, the salts, and opening and closing devices.
//! - `endpoints.rs`: `sys/audit`, `sys/audit/<path>`, `sys/audit-hash/<path>`,
//!   `sys/audit-verify/<path>`.

mod endpoints;
mod format;
mod table;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use custos_crypto::PreparedHmac;

use crate::logical::LogicalResponse;
use crate::pipeline::AuditEvent;
use crate::{Engine, EngineError, Unsealed};

pub(crate) use table::{AUDIT_TABLE_PATH, reload};

/// One audit device's output: where formatted records go.
#[async_trait::async_trait]
pub trait AuditDevice: Send + Sync + 'static {
    /// Appends one record, a JSON object (no trailing newline). Resolves once the record is
    /// written as the device's sync policy requires; an error means it was not written.
    async fn append(&self, record: Vec<u8>) -> Result<(), String>;

    /// Reopens the output (SIGHUP): closes the current file with a checkpoint, opens the path
    /// again.
    fn reopen(&self) -> Result<(), String> {
        Ok(())
    }

    /// Writes a closing checkpoint and stops (seal, disable, shutdown). Idempotent.
    async fn close(&self) {}

    /// The chain head, (sequence number, `"sha256:<hex>"` of the last line written), when the
    /// device chains.
    fn head(&self) -> Option<(u64, String)> {
        None
    }
}

/// Signs a checkpoint payload with a key derived from the device's HMAC key (behind the
/// barrier): returns `"hmac-sha256:<hex>"`.
pub type CheckpointSigner = Arc<dyn Fn(&[u8]) -> String + Send + Sync>;

/// An audit device as declared in the config file or enabled over the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceSpec {
    /// Its name in `sys/audit`, with a trailing slash (`file/`).
    pub path: String,
    /// `file` (the only type offered now).
    pub kind: String,
    pub description: String,
    /// Vault-style string options: `file_path`, `mode`, `hmac_accessor`, `log_raw`, `fsync`, ...
    pub options: BTreeMap<String, String>,
    pub local: bool,
}

/// Opens devices of the types the binary offers (the binary implements it with custos-audit).
pub trait AuditDeviceFactory: Send + Sync + 'static {
    /// `options` holds only the options the engine does not interpret itself (the engine
    /// removes `hmac_accessor`, `log_raw`, `format`, `elide_list_responses`, `prefix` first);
    /// the factory refuses unknown ones with a clear message.
    fn open(
        &self,
        spec: &DeviceSpec,
        options: &BTreeMap<String, String>,
        signer: CheckpointSigner,
    ) -> Result<Arc<dyn AuditDevice>, String>;
}

/// The factory of an engine the binary gave none: it offers no device type.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoDevices;

impl AuditDeviceFactory for NoDevices {
    fn open(
        &self,
        spec: &DeviceSpec,
        _: &BTreeMap<String, String>,
        _: CheckpointSigner,
    ) -> Result<Arc<dyn AuditDevice>, String> {
        Err(format!("unknown audit device type {:?}", spec.kind))
    }
}

/// What the binary tells the engine about auditing; takes effect at the next unseal
/// ([`Engine::set_audit_config`]).
#[derive(Clone)]
pub struct AuditConfig {
    /// Opens devices.
    pub factory: Arc<dyn AuditDeviceFactory>,
    /// The devices declared in the configuration file (`[[audit]]`), opened at every unseal.
    pub declared: Vec<DeviceSpec>,
    /// OpenBao's `unsafe_allow_api_audit_creation`: `sys/audit/<path>` may enable devices
    /// (true in `server --dev`).
    pub allow_api_creation: bool,
    /// `unsafe_allow_audit_log_raw`: a device may set `log_raw=true` (records in clear).
    pub allow_log_raw: bool,
    /// The HTTP status the server answers for an error, for the response record's `status`.
    pub status_of: fn(&EngineError) -> u16,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            factory: Arc::new(NoDevices),
            declared: Vec::new(),
            allow_api_creation: false,
            allow_log_raw: false,
            status_of: default_status,
        }
    }
}

impl std::fmt::Debug for AuditConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditConfig")
            .field("declared", &self.declared)
            .field("allow_api_creation", &self.allow_api_creation)
            .field("allow_log_raw", &self.allow_log_raw)
            .finish_non_exhaustive()
    }
}

/// A plain mapping of errors to HTTP statuses, close to the server's, for engines the binary
/// gave none (tests).
pub fn default_status(error: &EngineError) -> u16 {
    match error {
        EngineError::InvalidRequest(_)
        | EngineError::InvalidUnsealKey(_)
        | EngineError::NotInitialized
        | EngineError::AlreadyInitialized => 400,
        EngineError::InvalidSignature(_) => 401,
        EngineError::PermissionDenied => 403,
        EngineError::NotFound(_) | EngineError::NoRoute(_) | EngineError::Expired(_) => 404,
        EngineError::MethodNotAllowed | EngineError::UnsupportedOperation(_) => 405,
        EngineError::Conflict => 409,
        EngineError::IndexNotReached => 412,
        EngineError::LoginLocked { .. } => 429,
        EngineError::Sealed | EngineError::Unavailable(_) | EngineError::AuditUnavailable => 503,
        EngineError::Internal(_) => 500,
    }
}

/// The HTTP status of a successful answer, as the server renders it.
fn answer_status(answer: Option<&LogicalResponse>) -> u16 {
    match answer {
        None => 404,
        Some(answer) if answer.missing => 404,
        Some(answer)
            if answer.data.is_none()
                && answer.auth.is_none()
                && answer.wrap_info.is_none()
                && answer.warnings.is_empty() =>
        {
            204
        }
        Some(_) => 200,
    }
}

/// The options the engine reads itself, removed before the factory sees a device's options.
const ENGINE_OPTIONS: [&str; 5] = [
    "hmac_accessor",
    "log_raw",
    "format",
    "elide_list_responses",
    "prefix",
];

/// How a device formats its records (from the options the engine interprets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Format {
    /// Accessors are hashed too (Vault's default).
    pub(crate) hmac_accessor: bool,
    /// Nothing is hashed.
    pub(crate) log_raw: bool,
    /// A list answer's `keys` (and `key_info`) are replaced by their count.
    pub(crate) elide_list_responses: bool,
}

/// Vault's boolean option values (Go's `strconv.ParseBool`).
fn parse_bool(name: &str, value: &str) -> Result<bool, EngineError> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(EngineError::InvalidRequest(format!(
            "unable to parse {name:?} option {value:?} as a boolean"
        ))),
    }
}

impl Default for Format {
    fn default() -> Self {
        Format {
            hmac_accessor: true,
            log_raw: false,
            elide_list_responses: false,
        }
    }
}

impl Format {
    /// Reads the options the engine interprets, refusing what it does not support, and returns
    /// the rest for the factory.
    pub(crate) fn parse(
        options: &BTreeMap<String, String>,
        allow_log_raw: bool,
    ) -> Result<(Format, BTreeMap<String, String>), EngineError> {
        let flag = |name: &str, default: bool| {
            options
                .get(name)
                .map_or(Ok(default), |value| parse_bool(name, value))
        };
        let format = Format {
            hmac_accessor: flag("hmac_accessor", true)?,
            log_raw: flag("log_raw", false)?,
            elide_list_responses: flag("elide_list_responses", false)?,
        };
        if format.log_raw && !allow_log_raw {
            return Err(EngineError::InvalidRequest(
                "log_raw is not allowed: the server configuration must set unsafe_allow_audit_log_raw = true first".into(),
            ));
        }
        if let Some(kind) = options.get("format").filter(|kind| kind.as_str() != "json") {
            return Err(EngineError::InvalidRequest(format!(
                "unknown format type {kind:?}: only \"json\" is supported"
            )));
        }
        if options.contains_key("prefix") {
            return Err(EngineError::InvalidRequest(
                "audit log prefixing is not allowed".into(),
            ));
        }
        let rest = options
            .iter()
            .filter(|(name, _)| !ENGINE_OPTIONS.contains(&name.as_str()))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        Ok((format, rest))
    }
}

/// How long a device that failed to open waits before the next attempt, and how often one
/// device's failures are logged.
const RETRY_INTERVAL: Duration = Duration::from_secs(1);
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// One device as the broker holds it: its spec, its keys and its output.
pub(crate) struct Device {
    pub(crate) spec: DeviceSpec,
    /// Declared in the configuration file (not stored; cannot be disabled over the API).
    pub(crate) declared: bool,
    pub(crate) format: Format,
    /// The key string values are hashed with (the salt).
    pub(crate) salt: PreparedHmac,
    /// The hash of the empty string under the salt.
    pub(crate) empty_hash: String,
    /// The key checkpoints are signed with: HMAC(salt, "custos audit checkpoint key").
    checkpoint: PreparedHmac,
    /// The options the factory sees.
    factory_options: BTreeMap<String, String>,
    /// Why the device can never open (options the engine refuses), if so.
    unusable: Option<String>,
    /// `None` while the device could not be opened; records then fail on it.
    output: RwLock<Option<Arc<dyn AuditDevice>>>,
    /// When opening was last tried (failed attempts are retried at most every
    /// [`RETRY_INTERVAL`]).
    last_attempt: Mutex<Option<Instant>>,
    /// When a failure was last logged, and how many were not logged since.
    failures: Mutex<(Option<Instant>, u64)>,
    /// Closed for good (sealed, disabled, shut down): never opened again.
    closed: std::sync::atomic::AtomicBool,
    /// The hashes of recent callers' tokens and accessors, by the engine's keyed hash of the
    /// token: most requests come from a few tokens, and two HMACs per request are a good part
    /// of a record's cost. Holds only hashes; emptied when full.
    callers: RwLock<std::collections::HashMap<String, (String, String)>>,
}

/// How many callers a device's cache holds before it starts over.
const MAX_CACHED_CALLERS: usize = 4096;

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("path", &self.spec.path)
            .field("kind", &self.spec.kind)
            .field("declared", &self.declared)
            .finish_non_exhaustive()
    }
}

/// The label the checkpoint key is derived with; distinct from anything `sys/audit-hash`
/// hashes only by the key it is made with, which is why hashing and checkpoints never share
/// a key.
const CHECKPOINT_KEY_LABEL: &[u8] = b"custos audit checkpoint key";

impl Device {
    /// A device with its salt; not opened yet. A device whose options the engine refuses is
    /// kept (so `sys/audit` shows it and it can be disabled) but never opens.
    pub(crate) fn new(
        spec: DeviceSpec,
        declared: bool,
        salt: &[u8],
        allow_log_raw: bool,
    ) -> Device {
        let (format, factory_options, unusable) = match Format::parse(&spec.options, allow_log_raw)
        {
            Ok((format, rest)) => (format, rest, None),
            Err(error) => (Format::default(), BTreeMap::new(), Some(error.to_string())),
        };
        let salt = PreparedHmac::new(salt);
        let checkpoint = PreparedHmac::new(&salt.sign(CHECKPOINT_KEY_LABEL));
        let empty_hash = format::hmac_string(&salt, "");
        Device {
            spec,
            declared,
            format,
            salt,
            empty_hash,
            checkpoint,
            factory_options,
            unusable,
            output: RwLock::new(None),
            last_attempt: Mutex::new(None),
            failures: Mutex::new((None, 0)),
            closed: std::sync::atomic::AtomicBool::new(false),
            callers: RwLock::new(std::collections::HashMap::new()),
        }
    }

    /// The cached hashes of the caller whose token the engine hashes to `token_key`.
    pub(crate) fn cached_caller(&self, token_key: &str) -> Option<(String, String)> {
        self.callers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(token_key)
            .cloned()
    }

    /// Remembers a caller's hashed token and accessor.
    pub(crate) fn cache_caller(&self, token_key: &str, token: &str, accessor: &str) {
        let mut callers = self
            .callers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if callers.len() >= MAX_CACHED_CALLERS {
            callers.clear();
        }
        callers.insert(
            token_key.to_owned(),
            (token.to_owned(), accessor.to_owned()),
        );
    }

    /// `"hmac-sha256:<hex>"` of `value` under the device's salt: what records show in place of
    /// a secret, and what `sys/audit-hash` answers.
    pub(crate) fn hash(&self, value: &str) -> String {
        format::hmac_string(&self.salt, value)
    }

    /// The signer handed to the factory.
    fn signer(&self) -> CheckpointSigner {
        let key = self.checkpoint.clone();
        Arc::new(move |payload: &[u8]| format!("hmac-sha256:{}", key.sign_hex(payload)))
    }

    /// Whether `signature` (`"hmac-sha256:<hex>"`) signs `payload` under the checkpoint key.
    pub(crate) fn verify_checkpoint(&self, payload: &[u8], signature: &str) -> bool {
        signature
            .strip_prefix("hmac-sha256:")
            .and_then(|hex_tag| hex::decode(hex_tag).ok())
            .is_some_and(|tag| self.checkpoint.verify(payload, &tag))
    }

    /// Opens the output through `factory`; a failure is logged and leaves the device closed
    /// (records then fail on it until an attempt succeeds).
    pub(crate) fn open(&self, factory: &dyn AuditDeviceFactory) -> Result<(), String> {
        *self
            .last_attempt
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
        let opened = match &self.unusable {
            Some(reason) => Err(reason.clone()),
            None => factory.open(&self.spec, &self.factory_options, self.signer()),
        };
        match opened {
            Ok(output) => {
                *self
                    .output
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(output);
                Ok(())
            }
            Err(error) => {
                tracing::error!(device = %self.spec.path, %error, "audit device cannot be opened; requests fail until it can (no audit, no service)");
                Err(error)
            }
        }
    }

    /// The open output, opening it again first if it is closed and the last attempt is old.
    fn output(&self, factory: &dyn AuditDeviceFactory) -> Option<Arc<dyn AuditDevice>> {
        if let Some(output) = self
            .output
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
        {
            return Some(output);
        }
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        let due = self
            .last_attempt
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_none_or(|last| last.elapsed() >= RETRY_INTERVAL);
        if due && self.open(factory).is_ok() {
            tracing::info!(device = %self.spec.path, "audit device opened");
        }
        self.output
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The chain head of the open output, if it has one.
    pub(crate) fn head(&self) -> Option<(u64, String)> {
        self.output
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .and_then(|output| output.head())
    }

    /// Closes the output (a closing checkpoint); the device stays closed.
    pub(crate) async fn close(&self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        let output = self
            .output
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(output) = output {
            output.close().await;
        }
    }

    /// Writes one record; a failure is logged (at most every [`FAILURE_LOG_INTERVAL`] per
    /// device, with the count of those not logged) and reported as `false`.
    async fn append(&self, factory: &dyn AuditDeviceFactory, record: Vec<u8>) -> bool {
        let result = match self.output(factory) {
            Some(output) => output.append(record).await,
            None => Err("the device is not open".to_owned()),
        };
        match result {
            Ok(()) => true,
            Err(error) => {
                let mut failures = self
                    .failures
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let (last, suppressed) = &mut *failures;
                if last.is_none_or(|last| last.elapsed() >= FAILURE_LOG_INTERVAL) {
                    tracing::error!(device = %self.spec.path, %error, suppressed = *suppressed, "audit device failed to write a record");
                    *last = Some(Instant::now());
                    *suppressed = 0;
                } else {
                    *suppressed += 1;
                }
                false
            }
        }
    }
}

/// The devices of one unsealing, and what opens them.
pub(crate) struct Broker {
    config: AuditConfig,
    /// Every device: the declared ones first, then those enabled over the API, by path.
    devices: RwLock<Arc<Vec<Arc<Device>>>>,
    /// The stored table as last read or written.
    stored: RwLock<table::AuditTable>,
    /// Serialises enabling, disabling and reloading devices.
    changing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("devices", &self.devices().len())
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// Every device, in order.
    pub(crate) fn devices(&self) -> Arc<Vec<Arc<Device>>> {
        self.devices
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The device at `path` (with or without its trailing slash).
    pub(crate) fn device(&self, path: &str) -> Option<Arc<Device>> {
        let path = format!("{}/", path.trim_matches('/'));
        self.devices()
            .iter()
            .find(|device| device.spec.path == path)
            .cloned()
    }

    fn set_devices(&self, devices: Vec<Arc<Device>>) {
        *self
            .devices
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(devices);
    }

    /// Writes `record(device)` to every device at once: `Ok` when at least one wrote it, as in
    /// Vault; with no device enabled nothing is written and nothing is required.
    async fn write_all(
        &self,
        devices: &[(Arc<Device>, Vec<u8>)],
        record: impl Fn(&Device, &[u8]) -> Result<Vec<u8>, EngineError>,
    ) -> Result<(), EngineError> {
        if devices.is_empty() {
            return Ok(());
        }
        let factory = &*self.config.factory;
        let mut writes = Vec::with_capacity(devices.len());
        for (device, fragment) in devices {
            writes.push(device.append(factory, record(device, fragment)?));
        }
        let written = join_all(writes).await;
        if written.contains(&true) {
            Ok(())
        } else {
            Err(EngineError::AuditUnavailable)
        }
    }
}

/// Runs every future to completion together (the devices of one record write in parallel).
async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    if futures.len() == 1 {
        let mut outputs = Vec::with_capacity(1);
        for future in futures {
            outputs.push(future.await);
        }
        return outputs;
    }
    let mut pending: Vec<Option<std::pin::Pin<Box<F>>>> = futures
        .into_iter()
        .map(|future| Some(Box::pin(future)))
        .collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|context| {
        let mut done = true;
        for (slot, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(context) {
                    std::task::Poll::Ready(value) => {
                        *output = Some(value);
                        *slot = None;
                    }
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// What a request's record left for its response record: per device, the formatted `auth` and
/// `request` blocks (so the caller's token is hashed once per device per request, and request
/// data is formatted once), and the mount the request went to.
#[derive(Default)]
pub(crate) struct Trail {
    devices: Vec<(Arc<Device>, Vec<u8>)>,
    mount: format::MountInfo,
}

/// How a request ended, for its response record.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Outcome<'a> {
    /// The answer (`None`: nothing at the path).
    Answer(Option<&'a LogicalResponse>),
    Failed(&'a EngineError),
}

impl<'a> Outcome<'a> {
    pub(crate) fn of(result: &'a Result<Option<LogicalResponse>, EngineError>) -> Outcome<'a> {
        match result {
            Ok(answer) => Outcome::Answer(answer.as_ref()),
            Err(error) => Outcome::Failed(error),
        }
    }
}

impl Engine {
    /// Replaces the audit configuration; it takes effect at the next unseal (the devices open
    /// then). Call it before the first unseal.
    pub fn set_audit_config(&self, config: AuditConfig) {
        *self
            .inner
            .audit_config
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = config;
    }

    pub(crate) fn audit_config(&self) -> AuditConfig {
        self.inner
            .audit_config
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Reopens every open audit device's output (the binary's SIGHUP handler: log rotation by
    /// an outside tool). Failures are logged and returned as one message per device.
    pub fn reopen_audit_devices(&self) -> Result<(), Vec<String>> {
        let Some(unsealed) = self.unsealed() else {
            return Ok(());
        };
        let mut errors = Vec::new();
        for device in unsealed.audit.devices().iter() {
            let output = device
                .output
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            if let Some(output) = output
                && let Err(error) = output.reopen()
            {
                tracing::error!(device = %device.spec.path, %error, "audit device cannot be reopened");
                errors.push(format!("{}: {error}", device.spec.path));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Closes every audit device (a closing checkpoint each), for shutdown after the last
    /// request. Requests after this fail while a device is enabled.
    pub async fn close_audit_devices(&self) {
        if let Some(unsealed) = self.unsealed() {
            unsealed.audit.close_all().await;
        }
    }

    /// Records a request, before it runs: to the audit sink, then to every device. Fails
    /// (and the request must not run) when devices are enabled and none wrote it.
    pub(crate) async fn audit_request(
        &self,
        unsealed: &Unsealed,
        event: &AuditEvent<'_>,
    ) -> Result<Trail, EngineError> {
        self.inner.audit.record(event).await?;
        let devices = unsealed.audit.devices();
        if devices.is_empty() {
            return Ok(Trail::default());
        }
        let mount = format::MountInfo::of(unsealed, event.path);
        let mut trail = Trail {
            devices: Vec::with_capacity(devices.len()),
            mount,
        };
        for device in devices.iter() {
            let fragment = format::request_fragment(device, event, &trail.mount)?;
            trail.devices.push((device.clone(), fragment));
        }
        let time = format::time(self.now());
        unsealed
            .audit
            .write_all(&trail.devices, |_, fragment| {
                format::request_record(&time, fragment, event.error)
            })
            .await?;
        Ok(trail)
    }

    /// Records how a request ended, before the answer leaves: to the audit sink, then to the
    /// devices that took its request record.
    pub(crate) async fn audit_response(
        &self,
        unsealed: &Unsealed,
        trail: Trail,
        event: &AuditEvent<'_>,
        outcome: Outcome<'_>,
    ) -> Result<(), EngineError> {
        let mut event = event.clone();
        event.outcome = Some(match outcome {
            Outcome::Answer(_) => Ok(()),
            Outcome::Failed(error) => Err(error.to_string()),
        });
        event.response = match outcome {
            Outcome::Answer(answer) => answer,
            Outcome::Failed(_) => None,
        };
        event.error = match outcome {
            Outcome::Failed(error) => Some(error),
            Outcome::Answer(_) => None,
        };
        self.inner.audit.record(&event).await?;
        if trail.devices.is_empty() {
            return Ok(());
        }
        // A device disabled while the request ran (this request may be the one disabling it)
        // is no longer asked; one closed by sealing still is, and fails.
        let mut trail = trail;
        let current = unsealed.audit.devices();
        trail
            .devices
            .retain(|(device, _)| current.iter().any(|kept| Arc::ptr_eq(kept, device)));
        if trail.devices.is_empty() {
            return Ok(());
        }
        let status = match outcome {
            Outcome::Answer(answer) => answer_status(answer),
            Outcome::Failed(error) => (unsealed.audit.config.status_of)(error),
        };
        let time = format::time(self.now());
        let response = format::Response {
            operation: event.operation,
            mount: &trail.mount,
            outcome,
            status,
        };
        unsealed
            .audit
            .write_all(&trail.devices, |device, fragment| {
                format::response_record(device, &time, fragment, &response)
            })
            .await
    }

    /// Records `event` (the request), runs `work`, then records its outcome. A failing audit
    /// fails the request: no audit, no answer (and, for the request record, no work done).
    pub(crate) async fn audited(
        &self,
        unsealed: &Unsealed,
        event: AuditEvent<'_>,
        work: impl std::future::Future<Output = Result<Option<LogicalResponse>, EngineError>>,
    ) -> Result<Option<LogicalResponse>, EngineError> {
        let trail = self.audit_request(unsealed, &event).await?;
        let result = work.await;
        self.audit_response(unsealed, trail, &event, Outcome::of(&result))
            .await?;
        result
    }
}
