//! The custos engine: every use case, authorised and behind the barrier, with no HTTP in sight.
//!
//! [`Engine`] owns the seal state machine: uninitialised → sealed → unsealed (and back to sealed).
//! While sealed the only storage it touches is the seal configuration and the root-key-sealed
//! keyring; everything else is reached through a [`Barrier`], which only exists after unsealing.

mod apikeys;
mod audit;
mod auth;
mod barrier;
mod clock;
mod error;
mod generate_root;
mod help;
mod index;
mod inventory;
pub mod kv;
mod leaks;
pub mod logical;
mod mirror;
mod mounts;
mod pipeline;
mod policy;
pub mod routes;
mod seal;
mod sys;
mod token;
mod untrusted;
mod wrapping;

pub use apikeys::ApiKeysFlush;
pub use audit::{
    AuditConfig, AuditDevice, AuditDeviceFactory, CheckpointSigner, DeviceSpec, NoDevices,
    default_status,
};
pub use auth::{LockoutPolicy, LoginLockout};
pub use barrier::{Barrier, KeyInfo, Plain};
pub use clock::{Clock, FakeClock, SystemClock};
pub use custos_storage::{Invalidation, Revision};
pub use error::EngineError;
pub use generate_root::{OTP_LENGTH, RootGenerationStatus, decode_unseal_key, xor_with_otp};
pub use index::{read_fresh, track_commits};
pub use inventory::{
    CredentialKind, InventoryFlush, MAX_ADDRESSES, MAX_CERT_FINGERPRINTS, MAX_USER_AGENTS,
};
pub use leaks::{
    GITHUB_LEAKS_PATH, GithubLeakKeys, GithubLeakReport, GithubLeakVerdict,
    MAX_GITHUB_LEAKS_PER_REPORT, MAX_LEAKS_PER_REPORT,
};
pub use mounts::{MountConfig, MountEntry};
pub use pipeline::{
    AuditAuth, AuditEvent, AuditSink, ClientCert, Connection, MAX_PATH_LEN, NoAudit, Request,
    validate_path,
};
pub use token::{Caller, IssuedToken, TokenGrant};
pub use untrusted::{MAX_LOGGED_CHARS, Untrusted};

/// Storage prefixes holding one entry per credential, named by its keyed hash. Anyone can make
/// the engine look up random strings there (a made-up token, a leak report), so a read cache in
/// front of storage should not remember the misses: they would only push real entries out.
pub const CREDENTIAL_PREFIXES: [&str; 3] = [
    token::TOKEN_PREFIX,
    token::ACCESSOR_PREFIX,
    wrapping::WRAP_PREFIX,
];

use std::sync::{Arc, RwLock};

use custos_crypto::KeyedHasher;
use custos_storage::{Storage, StorageError, Transaction};
use jiff::Timestamp;
use zeroize::Zeroizing;

use crate::seal::{Pending, SEAL_CONFIG_KEY, SealConfig};
use crate::token::{HMAC_KEY_PATH, TokenEntry};

/// What `init` was asked for.
#[derive(Clone, Default)]
pub struct InitParams {
    pub secret_shares: u32,
    pub secret_threshold: u32,
    /// Use this root token instead of a random one (dev mode's `--dev-root-token-id`).
    pub root_token: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for InitParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitParams")
            .field("secret_shares", &self.secret_shares)
            .field("secret_threshold", &self.secret_threshold)
            .finish_non_exhaustive()
    }
}

/// What `init` hands back, once: the unseal key shares and the root token.
pub struct InitOutput {
    pub shares: Vec<Zeroizing<Vec<u8>>>,
    pub root_token: Zeroizing<String>,
}

impl std::fmt::Debug for InitOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitOutput")
            .field("shares", &self.shares.len())
            .finish_non_exhaustive()
    }
}

/// Seal state as `sys/seal-status` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealStatus {
    pub initialized: bool,
    pub sealed: bool,
    pub threshold: u32,
    pub shares: u32,
    pub progress: u32,
    pub nonce: String,
    pub storage_type: &'static str,
    pub cluster_name: Option<String>,
    pub cluster_id: Option<String>,
    /// When this node was last unsealed.
    pub active_since: Option<Timestamp>,
}

/// The answer to an unseal submission for a round that is no longer current.
pub const STALE_UNSEAL_NONCE: &str = "unseal nonce does not match the current round: progress was reset by someone else; start again";

/// One submission to `sys/unseal`.
pub enum UnsealInput {
    /// A decoded key share.
    Key(Zeroizing<Vec<u8>>),
    /// Forget the shares submitted so far.
    Reset,
}

struct Unsealed {
    barrier: Arc<Barrier>,
    token_hasher: KeyedHasher,
    active_since: Timestamp,
    mounts: RwLock<Arc<mounts::MountTable>>,
    /// The auth method table (`sys/auth`), the same shape as the mount table.
    auths: RwLock<Arc<mounts::MountTable>>,
    /// Which mirrored tables (mounts, auth methods, keyring, policies) another node may have
    /// changed.
    mirrors: mirror::Mirrors,
    /// The `sys/generate-root` attempt in progress on this node, if any; sealing drops it.
    root_generation: std::sync::Mutex<Option<generate_root::Attempt>>,
    /// ACL policies and the sets compiled from them.
    policies: policy::PolicyStore,
    /// The audit devices of this unsealing.
    audit: audit::Broker,
    /// Node-local state of stateful secrets engines (the API-key indexes), by mount uuid.
    mount_states: Arc<logical::MountStates>,
    /// Token entries as last decoded, by revision (`token::decoded`).
    decoded_tokens: token::DecodedTokens,
}

impl Unsealed {
    fn mounts(&self) -> Arc<mounts::MountTable> {
        self.mounts
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn auths(&self) -> Arc<mounts::MountTable> {
        self.auths
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Installs a copy of the auth table unless the installed one is newer.
    fn set_auths(&self, table: mounts::MountTable) {
        let mut slot = self
            .auths
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if table.revision >= slot.revision {
            *slot = Arc::new(table);
        }
    }

    /// Installs a copy of the mount table unless the installed one is newer (a reload that
    /// raced a local change must not undo it).
    fn set_mounts(&self, table: mounts::MountTable) {
        let mut slot = self
            .mounts
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if table.revision >= slot.revision {
            *slot = Arc::new(table);
        }
    }
}

enum State {
    Sealed(Pending),
    Unsealed(Arc<Unsealed>),
}

struct Inner {
    storage: Arc<dyn Storage>,
    clock: Arc<dyn Clock>,
    audit: Arc<dyn AuditSink>,
    /// The audit devices to open at the next unseal, and how.
    audit_config: RwLock<audit::AuditConfig>,
    limits: Limits,
    state: RwLock<State>,
    /// Serialises init, unseal and seal; readers never wait for it.
    transition: tokio::sync::Mutex<()>,
    /// The seal configuration, once known (it never changes after init).
    seal_config: RwLock<Option<SealConfig>>,
    /// What this node knows of other nodes' changes.
    follower: mirror::Follower,
    /// Failed-login counters of this node (`auth::lockout`).
    lockout: auth::lockout::Lockout,
    /// Credential usage not flushed to storage yet (`inventory`).
    inventory: inventory::Inventory,
    /// `audit` is the default sink, which records nothing: requests that no audit device
    /// records either may take the verify lane (`apikeys::fast`).
    default_audit_sink: bool,
}

/// Limits the engine enforces: on requests, on the use of a data key, on waiting.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The largest value a secrets engine stores for one request, in bytes (encoded).
    pub max_value_bytes: usize,
    /// How many values one data key term may seal before the barrier rotates to a new term by
    /// itself. AES-GCM with random 96-bit nonces must stay well below 2^32 uses of a key; the
    /// count is kept in storage, so it holds across restarts and for every node together.
    pub max_encryptions_per_key: u64,
    /// How many encryptions a node reserves in storage at a time (one commit per block).
    pub encryption_block: u64,
    /// How long `sys/seal` waits for requests in flight before cutting them off.
    pub seal_drain_timeout: std::time::Duration,
    /// When failed logins lock a user or an address out.
    pub login_lockout: LoginLockout,
}

/// The default of [`Limits::max_encryptions_per_key`]: 2^30, a quarter of AES-GCM's 2^32.
pub const DEFAULT_MAX_ENCRYPTIONS_PER_KEY: u64 = 1 << 30;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_value_bytes: 1024 * 1024,
            max_encryptions_per_key: DEFAULT_MAX_ENCRYPTIONS_PER_KEY,
            encryption_block: 4096,
            seal_drain_timeout: std::time::Duration::from_secs(10),
            login_lockout: LoginLockout::default(),
        }
    }
}

/// The engine. Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("backend", &self.inner.storage.backend_name())
            .finish_non_exhaustive()
    }
}

fn internal(what: &str) -> impl FnOnce(custos_crypto::CryptoError) -> EngineError + '_ {
    move |error| EngineError::Internal(format!("{what}: {error}"))
}

impl Engine {
    /// A sealed engine over `storage`. Nothing is read until the first request.
    pub fn new(storage: Arc<dyn Storage>, clock: Arc<dyn Clock>) -> Engine {
        Engine::with_limits(storage, clock, Limits::default())
    }

    /// An engine with its own limits (the defaults suit tests).
    pub fn with_limits(storage: Arc<dyn Storage>, clock: Arc<dyn Clock>, limits: Limits) -> Engine {
        Engine::build(storage, clock, limits, Arc::new(NoAudit), true)
    }

    /// An engine with its own limits and audit sink.
    pub fn with_audit(
        storage: Arc<dyn Storage>,
        clock: Arc<dyn Clock>,
        limits: Limits,
        audit: Arc<dyn AuditSink>,
    ) -> Engine {
        Engine::build(storage, clock, limits, audit, false)
    }

    /// `default_audit_sink`: `audit` records nothing (the verify lane may skip building records).
    fn build(
        storage: Arc<dyn Storage>,
        clock: Arc<dyn Clock>,
        limits: Limits,
        audit: Arc<dyn AuditSink>,
        default_audit_sink: bool,
    ) -> Engine {
        Engine {
            inner: Arc::new(Inner {
                storage,
                clock,
                audit,
                audit_config: RwLock::new(audit::AuditConfig::default()),
                limits,
                state: RwLock::new(State::Sealed(Pending::default())),
                transition: tokio::sync::Mutex::new(()),
                seal_config: RwLock::new(None),
                follower: mirror::Follower::default(),
                lockout: auth::lockout::Lockout::default(),
                inventory: inventory::Inventory::default(),
                default_audit_sink,
            }),
        }
    }

    pub fn storage_type(&self) -> &'static str {
        self.inner.storage.backend_name()
    }

    pub fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    fn unsealed(&self) -> Option<Arc<Unsealed>> {
        match &*self.read_state() {
            State::Unsealed(unsealed) => Some(unsealed.clone()),
            State::Sealed(_) => None,
        }
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // State transitions are single assignments; a panic elsewhere cannot leave it half-set.
        self.inner
            .state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.inner
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The seal configuration, or `None` when not initialised.
    async fn seal_config(&self) -> Result<Option<SealConfig>, EngineError> {
        if let Some(config) = self
            .inner
            .seal_config
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
        {
            return Ok(Some(config));
        }
        let Some(entry) = self.inner.storage.get(SEAL_CONFIG_KEY).await? else {
            return Ok(None);
        };
        let config = SealConfig::decode(&entry.value)?;
        *self
            .inner
            .seal_config
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(config.clone());
        Ok(Some(config))
    }

    /// Whether the engine is initialised (reads storage until it is).
    pub async fn is_initialized(&self) -> Result<bool, EngineError> {
        Ok(self.seal_config().await?.is_some())
    }

    pub fn is_sealed(&self) -> bool {
        self.unsealed().is_none()
    }

    /// The seal status. Fails only when storage cannot be read.
    pub async fn seal_status(&self) -> Result<SealStatus, EngineError> {
        let config = self.seal_config().await?;
        let state = self.read_state();
        let (sealed, progress, nonce, active_since) = match &*state {
            State::Sealed(pending) => (true, pending.progress(), pending.nonce.clone(), None),
            State::Unsealed(unsealed) => (false, 0, String::new(), Some(unsealed.active_since)),
        };
        Ok(SealStatus {
            initialized: config.is_some(),
            sealed,
            threshold: config.as_ref().map_or(0, |c| c.secret_threshold),
            shares: config.as_ref().map_or(0, |c| c.secret_shares),
            progress,
            nonce,
            storage_type: self.storage_type(),
            cluster_name: config
                .as_ref()
                .filter(|_| !sealed)
                .map(|c| c.cluster_name.clone()),
            cluster_id: config
                .as_ref()
                .filter(|_| !sealed)
                .map(|c| c.cluster_id.clone()),
            active_since,
        })
    }

    /// Initialises storage: a new root key split into shares, a keyring, a root token.
    /// The engine stays sealed afterwards, as Vault does.
    #[tracing::instrument(skip_all, fields(shares = params.secret_shares, threshold = params.secret_threshold))]
    pub async fn init(&self, params: InitParams) -> Result<InitOutput, EngineError> {
        let _transition = self.inner.transition.lock().await;
        let (n_shares, threshold) =
            seal::validate_split(params.secret_shares, params.secret_threshold)?;
        if self.seal_config().await?.is_some() {
            return Err(EngineError::AlreadyInitialized);
        }
        let now = self.now();
        let genesis = seal::genesis(n_shares, threshold, now.as_second())?;
        let config = SealConfig {
            version: 1,
            seal_type: "shamir".into(),
            secret_shares: u32::from(n_shares),
            secret_threshold: u32::from(threshold),
            cluster_name: format!(
                "custos-cluster-{}",
                &custos_crypto::random_uuid().map_err(internal("random"))?[..8]
            ),
            cluster_id: custos_crypto::random_uuid().map_err(internal("random"))?,
        };
        let sealed_keyring = genesis
            .root_key
            .seal_keyring(&genesis.keyring)
            .map_err(internal("sealing keyring"))?;

        // The barrier-side records are sealed with the new keyring and committed in the same
        // transaction as the seal itself, so a crash never leaves a half-initialised store.
        let root_key_copy = custos_crypto::RootKey::from_bytes(genesis.root_key.as_bytes())
            .map_err(internal("root key"))?;
        let barrier = Barrier::new(
            self.inner.storage.clone(),
            root_key_copy,
            genesis.keyring.clone(),
        );
        let hasher = KeyedHasher::generate().map_err(internal("generating token key"))?;
        let root_token = match params.root_token {
            Some(token) if !token.is_empty() => token,
            Some(_) => return Err(EngineError::InvalidRequest("root token id is empty".into())),
            None => Zeroizing::new(token::new_token()?),
        };
        let entry = TokenEntry::root(random_id()?, now);
        let root_hash = hasher.hash_hex(root_token.as_bytes());
        let index = serde_json::to_vec(&token::AccessorIndex {
            accessor: entry.accessor.clone(),
            token_hash: root_hash.clone(),
        })
        .map_err(|error| EngineError::Internal(format!("encoding accessor index: {error}")))?;
        let barrier_part = barrier.seal_genesis(
            Transaction::new()
                .put(HMAC_KEY_PATH, hasher.to_bytes().to_vec())
                .put(token::token_path_for_hash(&root_hash), entry.encode()?)
                .put(token::accessor_path(&hasher, &entry.accessor), index),
        )?;
        let mut txn = Transaction::new()
            .require_absent(SEAL_CONFIG_KEY)
            .put(SEAL_CONFIG_KEY, config.encode())
            .put(barrier::KEYRING_KEY, sealed_keyring);
        txn.ops.extend(barrier_part.ops);
        match self.inner.storage.commit(txn).await {
            Ok(_) => {}
            Err(StorageError::Conflict) => return Err(EngineError::AlreadyInitialized),
            Err(error) => return Err(error.into()),
        }
        *self
            .inner
            .seal_config
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(config);
        tracing::info!("custos initialised");
        Ok(InitOutput {
            shares: genesis
                .shares
                .iter()
                .map(|share| Zeroizing::new(share.as_bytes().to_vec()))
                .collect(),
            root_token,
        })
    }

    /// Takes one unseal key share (or a reset) and unseals once the threshold is reached.
    pub async fn unseal(&self, input: UnsealInput) -> Result<SealStatus, EngineError> {
        self.unseal_in_round(input, None).await
    }

    /// [`Engine::unseal`] for a submission that names the round it belongs to: the `nonce`
    /// `sys/seal-status` showed. A submission for another round (someone reset the progress, or
    /// a round failed and a new one began) is refused and changes nothing, so an operator's
    /// share never lands in a round they did not start. No nonce (or an empty one, as at the
    /// start of a round) means "whatever round is current", which is what `bao operator unseal`
    /// sends.
    #[tracing::instrument(skip_all)]
    pub async fn unseal_in_round(
        &self,
        input: UnsealInput,
        nonce: Option<&str>,
    ) -> Result<SealStatus, EngineError> {
        let _transition = self.inner.transition.lock().await;
        if self.unsealed().is_some() {
            return self.seal_status().await;
        }
        let Some(config) = self.seal_config().await? else {
            return Err(EngineError::NotInitialized);
        };
        if let Some(nonce) = nonce.filter(|nonce| !nonce.is_empty()) {
            let current = match &*self.read_state() {
                State::Sealed(pending) => pending.nonce.clone(),
                State::Unsealed(_) => String::new(),
            };
            if nonce != current {
                return Err(EngineError::InvalidRequest(STALE_UNSEAL_NONCE.into()));
            }
        }
        let key = match input {
            UnsealInput::Reset => {
                if let State::Sealed(pending) = &mut *self.write_state() {
                    pending.clear();
                }
                return self.seal_status().await;
            }
            UnsealInput::Key(key) => key,
        };
        // Failures and resets are logged by the caller, which knows the source address; the
        // errors say what was wrong with a key's shape, never its bytes.
        let share = seal::parse_unseal_key(&key)?;
        let Some(root_key) = self.add_share(share, config.secret_threshold)? else {
            return self.seal_status().await;
        };
        let unsealed = Arc::new(self.open(root_key).await?);
        *self.write_state() = State::Unsealed(unsealed.clone());
        tracing::info!("custos unsealed");
        // The API-key indexes are built now rather than by the first verification.
        tokio::spawn(async move { apikeys::warm(&unsealed).await });
        self.seal_status().await
    }

    /// Records a share; once the threshold is reached, combines all of them into a root key
    /// candidate and forgets the shares. Synchronous, so no lock guard lives across an await.
    fn add_share(
        &self,
        share: custos_crypto::shamir::Share,
        threshold: u32,
    ) -> Result<Option<custos_crypto::RootKey>, EngineError> {
        let mut state = self.write_state();
        let State::Sealed(pending) = &mut *state else {
            return Err(EngineError::Internal("state changed during unseal".into()));
        };
        pending.add(share)?;
        if pending.progress() < threshold {
            return Ok(None);
        }
        let combined = pending.combine();
        // Whatever happens next, these shares have been used up.
        pending.clear();
        combined.map(Some)
    }

    /// Opens the keyring with a candidate root key and loads what the unsealed engine needs.
    async fn open(&self, root_key: custos_crypto::RootKey) -> Result<Unsealed, EngineError> {
        let entry = self
            .inner
            .storage
            .get(barrier::KEYRING_KEY)
            .await?
            .ok_or_else(|| EngineError::Internal("keyring missing from storage".into()))?;
        let keyring = root_key.open_keyring(&entry.value).map_err(|_| {
            EngineError::InvalidUnsealKey(
                "unable to retrieve stored keys: invalid key: the combined unseal keys do not open the keyring".into(),
            )
        })?;
        let limits = self.inner.limits;
        let barrier = Barrier::new(self.inner.storage.clone(), root_key, keyring).with_budget(
            barrier::Budget {
                max_per_term: limits.max_encryptions_per_key,
                block: limits.encryption_block,
            },
            self.inner.clock.clone(),
        );
        let hmac_key = barrier
            .get(HMAC_KEY_PATH)
            .await?
            .ok_or_else(|| EngineError::Internal("token key missing from storage".into()))?;
        let token_hasher =
            KeyedHasher::from_bytes(&hmac_key.value).map_err(internal("token key"))?;
        let table = mounts::MountTable::load(&barrier).await?;
        let auths = auth::load_or_create(&barrier).await?;
        let policies = policy::open(&barrier).await?;
        let audit = audit::Broker::open(&barrier, self.audit_config()).await?;
        Ok(Unsealed {
            barrier: Arc::new(barrier),
            token_hasher,
            active_since: self.now(),
            mounts: RwLock::new(Arc::new(table)),
            auths: RwLock::new(Arc::new(auths)),
            mirrors: mirror::Mirrors::default(),
            root_generation: std::sync::Mutex::new(None),
            policies,
            audit,
            mount_states: Arc::default(),
            decoded_tokens: token::DecodedTokens::default(),
        })
    }

    /// Seals the engine: key material is dropped (and zeroized); only status endpoints answer.
    ///
    /// New requests see the engine sealed at once. Requests already in flight may finish, for up
    /// to [`Limits::seal_drain_timeout`]; then the barrier is closed, and any request still
    /// holding it fails with [`EngineError::Sealed`] on its next storage access.
    pub async fn seal(&self, token: Option<&str>) -> Result<(), EngineError> {
        self.seal_from(token, &Connection::default()).await
    }

    /// [`Engine::seal`] for a request that came on `connection` (policy conditions see its
    /// address).
    #[tracing::instrument(skip_all)]
    pub async fn seal_from(
        &self,
        token: Option<&str>,
        connection: &Connection,
    ) -> Result<(), EngineError> {
        let _transition = self.inner.transition.lock().await;
        if self.unsealed().is_none() {
            // Sealing a sealed node succeeds, as in Vault.
            return Ok(());
        }
        // Authorised and recorded (request and answer) before the devices close with the seal.
        self.audited_operation(
            token,
            "sys/seal",
            logical::Operation::Update,
            connection,
            async |_| Ok(()),
            |()| logical::LogicalResponse::default(),
        )
        .await?;
        let previous =
            std::mem::replace(&mut *self.write_state(), State::Sealed(Pending::default()));
        let State::Unsealed(unsealed) = previous else {
            return Ok(());
        };
        // Every request holds the unsealed state for as long as it runs, and no new request can
        // take it any more: when this is the only reference left, nothing is in flight.
        let deadline = tokio::time::Instant::now() + self.inner.limits.seal_drain_timeout;
        while Arc::strong_count(&unsealed) > 1 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let in_flight = Arc::strong_count(&unsealed) - 1;
        // What API-key verifications spent is written before the barrier closes.
        if let Err(error) = apikeys::flush_all(&unsealed, self.now().as_second()).await {
            tracing::warn!(%error, "API key usage could not be written before sealing");
        }
        // The devices write their closing checkpoints; a request still running fails on its
        // next record.
        unsealed.audit.close_all().await;
        unsealed.barrier.close();
        if in_flight > 0 {
            tracing::warn!(
                in_flight,
                "requests still running when sealing gave up waiting for them; they fail with \"sealed\" from now on"
            );
        }
        drop(unsealed);
        tracing::info!("custos sealed");
        Ok(())
    }

    /// `sys/rotate`: installs a new data key term.
    #[tracing::instrument(skip_all)]
    pub async fn rotate(&self, token: Option<&str>) -> Result<KeyInfo, EngineError> {
        self.rotate_at("sys/rotate", token, &Connection::default())
            .await
    }

    /// [`Engine::rotate`] for a request that came on `connection` to `path` (`sys/rotate` or
    /// its alias `sys/rotate/keyring`), which the caller's policies are asked about, as Vault asks them
    /// about the path requested.
    pub async fn rotate_at(
        &self,
        path: &str,
        token: Option<&str>,
        connection: &Connection,
    ) -> Result<KeyInfo, EngineError> {
        if !matches!(path, "sys/rotate" | "sys/rotate/keyring") {
            return Err(EngineError::NoRoute(path.to_owned()));
        }
        self.audited_operation(
            token,
            path,
            logical::Operation::Update,
            connection,
            async |unsealed| unsealed.barrier.rotate(self.now().as_second()).await,
            key_info_answer,
        )
        .await
    }

    /// `sys/key-status`.
    pub async fn key_status(&self, token: Option<&str>) -> Result<KeyInfo, EngineError> {
        self.key_status_from(token, &Connection::default()).await
    }

    /// [`Engine::key_status`] for a request that came on `connection`.
    pub async fn key_status_from(
        &self,
        token: Option<&str>,
        connection: &Connection,
    ) -> Result<KeyInfo, EngineError> {
        self.audited_operation(
            token,
            "sys/key-status",
            logical::Operation::Read,
            connection,
            async |unsealed| unsealed.barrier.key_info(),
            key_info_answer,
        )
        .await
    }

    /// Dev mode: initialise with one share, unseal, and return the share and root token.
    pub async fn dev_init(
        &self,
        root_token: Option<Zeroizing<String>>,
    ) -> Result<InitOutput, EngineError> {
        let output = self
            .init(InitParams {
                secret_shares: 1,
                secret_threshold: 1,
                root_token,
            })
            .await?;
        let share = output
            .shares
            .first()
            .ok_or_else(|| EngineError::Internal("init returned no share".into()))?;
        self.unseal(UnsealInput::Key(share.clone())).await?;
        Ok(output)
    }

    /// Runs one logical request through the pipeline: authenticate, authorise, audit, route.
    /// `Ok(None)` means nothing is at that path.
    pub async fn handle(
        &self,
        request: Request,
    ) -> Result<Option<logical::LogicalResponse>, EngineError> {
        // The pipeline's state is kilobytes; the HTTP layer and tower move a request's future a
        // few times, so it is allocated once here and only a pointer travels.
        Box::pin(self.run_pipeline(request)).await
    }

    #[tracing::instrument(name = "handle", skip_all, fields(operation = ?request.operation, path = %Untrusted(&request.path)))]
    async fn run_pipeline(
        &self,
        request: Request,
    ) -> Result<Option<logical::LogicalResponse>, EngineError> {
        let unsealed = self.unsealed().ok_or(EngineError::Sealed)?;
        // Another node may have changed a table this request depends on.
        self.refresh_tables(&unsealed).await?;
        // Only routes the table declares public are served without authenticating the token.
        if let Some(route) =
            routes::unauthenticated(&request.path, request.operation, has_body_token(&request))
        {
            return Box::pin(self.serve_unauthenticated(&unsealed, route, request)).await;
        }
        // An auth method's login paths need no token.
        //
        // Paths off the hot path (logins, the token store, `sys/`, wrapping) are served by boxed
        // futures: inlined, their state would make every request's future several kilobytes
        // larger, and futures are moved (copied) a few times on the way through axum and tower.
        let request = if request.path.starts_with("auth/") {
            match Box::pin(self.try_login(&unsealed, request)).await? {
                Ok(answer) => return Ok(answer),
                Err(request) => request,
            }
        } else {
            request
        };
        // Authenticate first, so an anonymous caller learns nothing, not even that a path is
        // malformed. A token that does not authenticate is audited too (as Vault does): a
        // request record with its hash, and a response record with the error.
        let mut authenticated = match self.authenticate_request(&unsealed, &request).await {
            Ok(authenticated) => authenticated,
            Err(error) => {
                return Err(Box::pin(self.audit_refused(&unsealed, &request, error)).await);
            }
        };
        // Memory only (a shard lock and a few counters); flushed later.
        self.inner.inventory.record_token(
            &authenticated.entry,
            &request.connection,
            self.now().as_second(),
        );
        let caller = authenticated.caller.clone();
        let request_id = request.request_id.clone();
        let path = request.path.clone();
        let operation = request.operation;
        let event = AuditEvent {
            auth: Some(token::audit_auth(&authenticated.entry, &authenticated.hash)),
            ..AuditEvent::of_request(&request, &caller.display_name)
        };
        // The request is recorded before it runs; a record no device wrote stops it here.
        let trail = self.audit_request(&unsealed, &event).await?;
        let event = AuditEvent::new(&request_id, operation, &path, &caller.display_name);
        // Checked and authorised after the request record, so a malformed or denied request is
        // audited too.
        let result = async {
            pipeline::validate_path(&path)?;
            let wrap_ttl = request.wrap_ttl.map(wrapping::check_ttl).transpose()?;
            let acl_operation = self.acl_operation(&unsealed, &caller, &request).await?;
            let decision = self.authorize(&unsealed, &caller, &request, acl_operation)?;
            authenticated.sudo = decision.sudo;
            // The engine serves only the `sys/` and `auth/token/` routes its table declares.
            routes::check_declared(&path, operation)?;
            // Only an authorised request spends one of a limited token's uses.
            self.spend_use(&unsealed, &mut authenticated).await?;
            let routed = if token::is_token_store_path(&path) {
                // Tokens created through a rule with a `max_ttl` condition are capped by it.
                Box::pin(self.handle_token_store(
                    &unsealed,
                    request,
                    &authenticated,
                    decision.max_ttl,
                ))
                .await
            } else {
                self.route(&unsealed, request, &caller).await
            };
            let result = match routed {
                Ok(Some(answer)) if answer.grant.is_some() => {
                    Box::pin(self.issue_granted(&unsealed, answer, &path))
                        .await
                        .map(Some)
                }
                other => other,
            };
            // Only answers that carry data or a token are wrapped; `sys/wrapping/wrap` wrapped
            // already.
            let wrappable = |answer: &logical::LogicalResponse| {
                (answer.data.is_some() || answer.auth.is_some())
                    && answer.wrap_info.is_none()
                    && !answer.missing
            };
            match (wrap_ttl, result) {
                (Some(ttl), Ok(Some(answer))) if wrappable(&answer) => {
                    Box::pin(self.wrap(&unsealed, answer, ttl, &path))
                        .await
                        .map(Some)
                }
                (_, result) => result,
            }
        }
        .await;
        self.audit_response(&unsealed, trail, &event, audit::Outcome::of(&result))
            .await?;
        result
    }

    /// Audits a request whose token did not authenticate, and hands back the error to answer:
    /// the audit's own error when it could not be written.
    async fn audit_refused(
        &self,
        unsealed: &Unsealed,
        request: &Request,
        error: EngineError,
    ) -> EngineError {
        let event = AuditEvent {
            error: Some(&error),
            ..AuditEvent::of_request(request, "")
        };
        let written = match self.audit_request(unsealed, &event).await {
            Ok(trail) => {
                self.audit_response(unsealed, trail, &event, audit::Outcome::Failed(&error))
                    .await
            }
            Err(audit_error) => Err(audit_error),
        };
        match written {
            Ok(()) => error,
            Err(audit_error) => audit_error,
        }
    }

    /// Turns a login's grant into a token: the answer then carries the `auth` block.
    async fn issue_granted(
        &self,
        unsealed: &Unsealed,
        mut answer: logical::LogicalResponse,
        path: &str,
    ) -> Result<logical::LogicalResponse, EngineError> {
        if let Some(mut grant) = answer.grant.take() {
            grant.path = path.to_owned();
            answer.auth = Some(self.issue_token(unsealed, grant).await?);
        }
        Ok(answer)
    }

    async fn route(
        &self,
        unsealed: &Unsealed,
        request: Request,
        caller: &Caller,
    ) -> Result<Option<logical::LogicalResponse>, EngineError> {
        if let Some(operation) = request.path.strip_prefix("sys/wrapping/") {
            let operation = operation.trim_end_matches('/').to_owned();
            return Box::pin(self.handle_wrapping(
                unsealed,
                &operation,
                request.data.as_ref(),
                request.wrap_ttl,
            ))
            .await;
        }
        if let Some(rest) = request.path.strip_prefix("sys/generate-root-token/") {
            return Box::pin(self.generate_root_logical(
                rest,
                request.operation,
                request.data.as_ref(),
                &request.request_id,
            ))
            .await;
        }
        if let Some(rest) = request.path.strip_prefix("sys/") {
            let rest = rest.to_owned();
            if let Some(answer) =
                Box::pin(self.handle_policy(unsealed, &rest, &request, caller)).await
            {
                return answer;
            }
            return Box::pin(self.handle_sys(unsealed, &rest, request)).await;
        }
        let request = if request.path.starts_with("auth/") {
            match Box::pin(self.route_auth(unsealed, request)).await? {
                Ok(answer) => return Ok(answer),
                Err(request) => request,
            }
        } else {
            request
        };
        let table = unsealed.mounts();
        let Some(entry) = table.route(&request.path) else {
            return Err(EngineError::NoRoute(request.path));
        };
        let backend = mounts::backend_for(entry)?;
        let context = self.mount_context(unsealed, entry);
        let mount_path = entry.path.clone();
        drop(table);
        backend
            .handle(&context, pipeline::to_logical(request, &mount_path))
            .await
    }

    /// What a backend sees of the mount serving a request.
    fn mount_context(&self, unsealed: &Unsealed, entry: &MountEntry) -> logical::MountContext {
        logical::MountContext {
            storage: logical::MountStorage::new(unsealed.barrier.clone(), &entry.uuid),
            mount_path: entry.path.clone(),
            options: entry.options.clone(),
            config: entry.config.clone(),
            now: self.now(),
            max_value_bytes: self.inner.limits.max_value_bytes,
            mount_uuid: entry.uuid.clone(),
            states: unsealed.mount_states.clone(),
            feed_lost: self.inner.follower.deaf() || index::reading_fresh(),
        }
    }

    /// The operation a request is authorised as: a write to a mount path where nothing exists
    /// yet is `create` (Vault's existence check, asked of the backend); anything else is the
    /// request's own operation. Root tokens skip the check (they may do both).
    async fn acl_operation(
        &self,
        unsealed: &Unsealed,
        caller: &Caller,
        request: &Request,
    ) -> Result<logical::Operation, EngineError> {
        if request.operation != logical::Operation::Update
            || caller.is_root()
            || request.path.starts_with("sys/")
        {
            return Ok(request.operation);
        }
        if request.path.starts_with("auth/") {
            return Ok(match self.auth_method_exists(unsealed, request).await? {
                Some(false) => logical::Operation::Create,
                _ => request.operation,
            });
        }
        let table = unsealed.mounts();
        let Some(entry) = table.route(&request.path) else {
            return Ok(request.operation);
        };
        let backend = mounts::backend_for(entry)?;
        let context = self.mount_context(unsealed, entry);
        // The check sees the path, operation, query and connection; not the body.
        let probe = logical::LogicalRequest {
            operation: request.operation,
            path: request
                .path
                .strip_prefix(entry.path.as_str())
                .unwrap_or_default()
                .to_owned(),
            data: None,
            query: request.query.clone(),
            merge_patch: request.merge_patch,
            connection: request.connection.clone(),
        };
        drop(table);
        Ok(match backend.exists(&context, &probe).await? {
            Some(false) => logical::Operation::Create,
            _ => request.operation,
        })
    }

    /// Serves a request for a route [`routes::unauthenticated`] picked out: no token is
    /// authenticated, the request carries its own proof.
    async fn serve_unauthenticated(
        &self,
        unsealed: &Unsealed,
        route: &routes::Route,
        request: Request,
    ) -> Result<Option<logical::LogicalResponse>, EngineError> {
        if !route.serves(request.operation) {
            return Err(EngineError::MethodNotAllowed);
        }
        match route.pattern {
            "sys/leaks" => self.leak_report(unsealed, request).await,
            "sys/wrapping/lookup" | "sys/wrapping/unwrap" => {
                self.unauthenticated_wrapping(unsealed, request).await
            }
            // A route declared public that nothing serves without a token.
            _ => Err(EngineError::NoRoute(request.path)),
        }
    }

    /// Serves `sys/wrapping/lookup`, and `sys/wrapping/unwrap` with the wrapping token as the
    /// request token (no token in the body), audited like every other request, with the
    /// wrapping token standing in for the caller.
    async fn unauthenticated_wrapping(
        &self,
        unsealed: &Unsealed,
        request: Request,
    ) -> Result<Option<logical::LogicalResponse>, EngineError> {
        let path = request.path.trim_end_matches('/');
        let event = AuditEvent {
            path,
            ..AuditEvent::of_request(&request, "wrapping-token")
        };
        self.audited(unsealed, event, async {
            if path == "sys/wrapping/lookup" {
                self.wrapping_lookup(unsealed, request.data.as_ref(), request.token.as_deref())
                    .await
            } else {
                match request.token.as_deref().filter(|token| !token.is_empty()) {
                    Some(token) => self.unwrap_with_token(unsealed, token).await,
                    None => Err(EngineError::PermissionDenied),
                }
            }
        })
        .await
    }

    /// `sys/leaks` needs no token (holding a credential is the authority to revoke it) but is
    /// audited like every other request.
    async fn leak_report(
        &self,
        unsealed: &Unsealed,
        request: Request,
    ) -> Result<Option<logical::LogicalResponse>, EngineError> {
        if request.operation != logical::Operation::Update {
            return Err(EngineError::MethodNotAllowed);
        }
        let event = AuditEvent {
            path: "sys/leaks",
            ..AuditEvent::of_request(&request, "leak-report")
        };
        self.audited(
            unsealed,
            event,
            self.report_leaks(unsealed, &request.request_id, request.data.as_ref()),
        )
        .await
    }

    /// Mounts a secrets engine as the root token would (dev mode mounts `secret/` this way), with
    /// the description Vault's dev mode gives `secret/` (`key/value secret storage` for kv).
    pub async fn mount(
        &self,
        token: &str,
        path: &str,
        kind: &str,
        options: &[(&str, &str)],
    ) -> Result<(), EngineError> {
        let options: serde_json::Map<String, serde_json::Value> = options
            .iter()
            .map(|(key, value)| {
                (
                    (*key).to_owned(),
                    serde_json::Value::String((*value).to_owned()),
                )
            })
            .collect();
        let request = Request::new(logical::Operation::Update, format!("sys/mounts/{path}"))
            .token(token)
            .data(serde_json::json!({
                "type": kind,
                "options": options,
                "description": mounts::default_description(kind),
            }));
        self.handle(request).await.map(drop)
    }

    /// Checks that storage answers (for health checks).
    pub async fn ping_storage(&self) -> Result<(), EngineError> {
        Ok(self.inner.storage.ping().await?)
    }
}

/// Whether the request's body names a token (`sys/wrapping/unwrap` with one needs the caller's
/// own token).
fn has_body_token(request: &Request) -> bool {
    request
        .data
        .as_ref()
        .and_then(|data| data.get("token"))
        .is_some_and(|token| !token.is_null() && token.as_str() != Some(""))
}

/// What the audit records of `sys/rotate` and `sys/key-status` show of their answer.
fn key_info_answer(info: &KeyInfo) -> logical::LogicalResponse {
    pipeline::object(serde_json::json!({
        "term": info.term,
        "install_time": info.installed_at,
        "encryptions": info.encryptions,
    }))
}

/// A random UUID for ids that must not collide (mounts, accessors).
pub(crate) fn random_id() -> Result<String, EngineError> {
    custos_crypto::random_uuid().map_err(|error| EngineError::Internal(format!("random: {error}")))
}

/// A fresh request id, for responses and logs: shaped as a version 4 UUID, unique within the
/// process and, with its random half, between processes.
pub fn new_request_id() -> String {
    // Ids only need to be unique (they correlate a response with its log lines and audit
    // records), not secret: a random per-process half and a scrambled counter, so minting one
    // costs no system call on the hot path.
    static SEED: std::sync::OnceLock<[u8; 8]> = std::sync::OnceLock::new();
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seed = SEED.get_or_init(|| {
        let mut seed = [0u8; 8];
        if custos_crypto::fill_random(&mut seed).is_err() {
            // The OS generator failing is no reason to refuse requests: the time will do.
            seed = (Timestamp::now().as_nanosecond() as u64).to_le_bytes();
        }
        seed
    });
    let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(seed);
    bytes[8..].copy_from_slice(&splitmix64(count).to_be_bytes());
    bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// A bijection of 64-bit numbers that scrambles consecutive ones (Steele et al.'s SplitMix64
/// finaliser): distinct counters give distinct ids that do not look sequential.
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
