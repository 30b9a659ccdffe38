//! The client inventory: for every credential (token accessor, AppRole role and secret-id
//! accessor, userpass user, certificate fingerprint) when it was first and last used, how often,
//! and from which addresses, user agents and client certificates.
//!
//! The request path only touches memory: [`Inventory::record_token`] and
//! [`Inventory::record_login`] hash the credential to one of [`SHARDS`] shards, take that shard's
//! lock for a few field updates and let go; no storage, no global lock. The sets of addresses,
//! user agents and certificate fingerprints are bounded ([`MAX_ADDRESSES`], [`MAX_USER_AGENTS`],
//! [`MAX_CERT_FINGERPRINTS`]): a new value past the bound evicts the least recently seen one,
//! and the record counts how many were evicted.
//!
//! `Engine::flush_inventory` (called every few seconds by the binary, and once on a graceful
//! shutdown) takes what the shards hold and merges it into the stored records behind the barrier
//! at `sys/inventory/<kind>/<keyed hash of the credential>`, each with a compare-and-swap, so two
//! nodes flushing the same credential both count: requests add up, sets merge, `first_seen`
//! takes the earlier and `last_seen` the later time. What has not been flushed yet is lost when
//! the process dies (at most one flush interval); a flush that fails keeps what it could not
//! write for the next one. While the engine is sealed nothing is recorded (no request
//! authenticates) and a flush refuses with `Sealed`, keeping what memory holds until the next
//! flush after unsealing.
//!
//! `sys/inventory` (`endpoints.rs`) merges the stored records with the unflushed ones and lists
//! every live token, so a token that was never used shows up too.

mod endpoints;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::token::TokenEntry;
use crate::{Connection, Engine, EngineError, Unsealed};

/// Where the stored records live (behind the barrier).
pub(crate) const INVENTORY_PREFIX: &str = "sys/inventory/";

/// How many shards the in-memory aggregate is split into: requests for different credentials
/// rarely wait for each other.
pub(crate) const SHARDS: usize = 32;

/// How many source addresses a credential's record keeps.
pub const MAX_ADDRESSES: usize = 16;
/// How many user agents a credential's record keeps.
pub const MAX_USER_AGENTS: usize = 8;
/// How many client-certificate fingerprints a credential's record keeps.
pub const MAX_CERT_FINGERPRINTS: usize = 8;
/// The longest user agent kept, in bytes; a longer one is cut at a character boundary.
pub(crate) const MAX_USER_AGENT_BYTES: usize = 256;

/// How often a compare-and-swap on a stored record is retried when another node wrote it.
const MAX_RETRIES: usize = 16;

/// What kind of credential a record is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CredentialKind {
    /// A token, named by its accessor.
    Token,
    /// An AppRole role (and the secret id's accessor a login spent).
    Approle,
    /// A userpass user.
    Userpass,
    /// A TLS client certificate, named by its SHA-256 fingerprint.
    Cert,
}

impl CredentialKind {
    /// The name used on the wire and in storage keys.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Token => "token",
            CredentialKind::Approle => "approle",
            CredentialKind::Userpass => "userpass",
            CredentialKind::Cert => "cert",
        }
    }

    /// The kind named `text` (`token`, `approle`, `userpass`, `cert`).
    pub fn parse(text: &str) -> Option<CredentialKind> {
        [
            CredentialKind::Token,
            CredentialKind::Approle,
            CredentialKind::Userpass,
            CredentialKind::Cert,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == text)
    }

    /// The kind of credential a login with an auth method of type `method` presents.
    fn of_method(method: &str) -> Option<CredentialKind> {
        match method {
            "approle" => Some(CredentialKind::Approle),
            "userpass" => Some(CredentialKind::Userpass),
            "cert" => Some(CredentialKind::Cert),
            _ => None,
        }
    }
}

/// One value of a bounded set (an address, a user agent, a fingerprint) and its use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Seen<T> {
    pub(crate) value: T,
    /// Unix seconds.
    pub(crate) first_seen: i64,
    pub(crate) last_seen: i64,
    pub(crate) requests: u64,
}

/// A set of at most `bound` values that forgets the least recently seen one to make room.
/// Linear scans: the sets hold a handful of values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct Bounded<T> {
    pub(crate) items: Vec<Seen<T>>,
}

impl<T> Default for Bounded<T> {
    fn default() -> Self {
        Bounded { items: Vec::new() }
    }
}

impl<T: PartialEq> Bounded<T> {
    /// Counts one use of `value` at `now`; returns how many values were evicted (0 or 1).
    fn touch<Q>(&mut self, value: &Q, now: i64, bound: usize, owned: impl FnOnce(&Q) -> T) -> u64
    where
        Q: ?Sized,
        T: PartialEq<Q>,
    {
        if let Some(seen) = self.items.iter_mut().find(|seen| seen.value == *value) {
            seen.last_seen = seen.last_seen.max(now);
            seen.requests = seen.requests.saturating_add(1);
            return 0;
        }
        let evicted = self.evict_to(bound.saturating_sub(1));
        self.items.push(Seen {
            value: owned(value),
            first_seen: now,
            last_seen: now,
            requests: 1,
        });
        evicted
    }

    /// Drops the least recently seen values until at most `bound` are left; returns how many.
    fn evict_to(&mut self, bound: usize) -> u64 {
        let mut evicted = 0;
        while self.items.len() > bound {
            let Some(oldest) = self
                .items
                .iter()
                .enumerate()
                .min_by_key(|(_, seen)| (seen.last_seen, seen.first_seen))
                .map(|(index, _)| index)
            else {
                break;
            };
            self.items.swap_remove(oldest);
            evicted += 1;
        }
        evicted
    }

    /// Adds `other`'s values: the same value's counts add up and its times widen; then the set
    /// is cut back to `bound`. Returns how many values were evicted.
    fn merge(&mut self, other: Bounded<T>, bound: usize) -> u64 {
        for seen in other.items {
            match self.items.iter_mut().find(|mine| mine.value == seen.value) {
                Some(mine) => {
                    mine.first_seen = mine.first_seen.min(seen.first_seen);
                    mine.last_seen = mine.last_seen.max(seen.last_seen);
                    mine.requests = mine.requests.saturating_add(seen.requests);
                }
                None => self.items.push(seen),
            }
        }
        self.evict_to(bound)
    }

    fn map<U>(self, convert: impl Fn(T) -> U) -> Bounded<U> {
        Bounded {
            items: self
                .items
                .into_iter()
                .map(|seen| Seen {
                    value: convert(seen.value),
                    first_seen: seen.first_seen,
                    last_seen: seen.last_seen,
                    requests: seen.requests,
                })
                .collect(),
        }
    }
}

/// How many values each bounded set had to forget.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Evicted {
    #[serde(default)]
    pub(crate) addresses: u64,
    #[serde(default)]
    pub(crate) user_agents: u64,
    #[serde(default)]
    pub(crate) cert_fingerprints: u64,
}

impl Evicted {
    fn add(&mut self, other: Evicted) {
        self.addresses = self.addresses.saturating_add(other.addresses);
        self.user_agents = self.user_agents.saturating_add(other.user_agents);
        self.cert_fingerprints = self
            .cert_fingerprints
            .saturating_add(other.cert_fingerprints);
    }
}

/// Which credential a record is about. Never a secret: an accessor, a role or user name, a
/// secret id's accessor, a certificate fingerprint.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct CredentialId {
    pub(crate) kind: CredentialKind,
    /// The auth method's mount path (`approle/`); empty for tokens, whose method is found from
    /// their creation path.
    #[serde(default)]
    pub(crate) mount: String,
    /// The token accessor, role name, user name or certificate fingerprint.
    pub(crate) id: String,
    /// The AppRole secret id a login spent, by its accessor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) secret_id_accessor: Option<String>,
}

/// The stored record of one credential, and the unit flushes and reads merge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    #[serde(flatten)]
    pub(crate) credential: CredentialId,
    /// The auth method type (`approle`), or `token` for tokens not issued by a login.
    #[serde(default)]
    pub(crate) auth_type: String,
    /// For tokens: the path that created them (`auth/approle/login`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) token_path: String,
    #[serde(default)]
    pub(crate) display_name: String,
    #[serde(default)]
    pub(crate) policies: Vec<String>,
    /// Unix seconds.
    pub(crate) first_seen: i64,
    pub(crate) last_seen: i64,
    pub(crate) requests: u64,
    #[serde(default)]
    pub(crate) addresses: Bounded<String>,
    #[serde(default)]
    pub(crate) user_agents: Bounded<String>,
    #[serde(default)]
    pub(crate) cert_fingerprints: Bounded<String>,
    #[serde(default)]
    pub(crate) evicted: Evicted,
}

impl Record {
    /// Adds `other` (the same credential's later or concurrent use): counts add up, times widen,
    /// sets merge within their bounds; the descriptive fields of the more recent use win.
    pub(crate) fn merge(&mut self, other: Record) {
        if other.last_seen >= self.last_seen {
            if !other.auth_type.is_empty() {
                self.auth_type = other.auth_type;
            }
            if !other.token_path.is_empty() {
                self.token_path = other.token_path;
            }
            if !other.display_name.is_empty() {
                self.display_name = other.display_name;
            }
            if !other.policies.is_empty() {
                self.policies = other.policies;
            }
        }
        self.first_seen = self.first_seen.min(other.first_seen);
        self.last_seen = self.last_seen.max(other.last_seen);
        self.requests = self.requests.saturating_add(other.requests);
        self.evicted.add(other.evicted);
        self.evicted.addresses += self.addresses.merge(other.addresses, MAX_ADDRESSES);
        self.evicted.user_agents += self.user_agents.merge(other.user_agents, MAX_USER_AGENTS);
        self.evicted.cert_fingerprints += self
            .cert_fingerprints
            .merge(other.cert_fingerprints, MAX_CERT_FINGERPRINTS);
    }

    fn decode(bytes: &[u8]) -> Result<Record, EngineError> {
        serde_json::from_slice(bytes)
            .map_err(|error| EngineError::Internal(format!("inventory record is corrupt: {error}")))
    }

    fn encode(&self) -> Result<Vec<u8>, EngineError> {
        serde_json::to_vec(self)
            .map_err(|error| EngineError::Internal(format!("encoding inventory record: {error}")))
    }
}

/// What one shard gathers about a credential between two flushes.
#[derive(Debug)]
struct Usage {
    auth_type: String,
    token_path: String,
    display_name: String,
    policies: Vec<String>,
    first_seen: i64,
    last_seen: i64,
    requests: u64,
    addresses: Bounded<IpAddr>,
    user_agents: Bounded<String>,
    cert_fingerprints: Bounded<String>,
    evicted: Evicted,
}

impl Usage {
    fn new(now: i64) -> Usage {
        Usage {
            auth_type: String::new(),
            token_path: String::new(),
            display_name: String::new(),
            policies: Vec::new(),
            first_seen: now,
            last_seen: now,
            requests: 0,
            addresses: Bounded::default(),
            user_agents: Bounded::default(),
            cert_fingerprints: Bounded::default(),
            evicted: Evicted::default(),
        }
    }

    /// Counts one request that came on `connection` at `now`.
    fn count(&mut self, connection: &Connection, now: i64) {
        self.first_seen = self.first_seen.min(now);
        self.last_seen = self.last_seen.max(now);
        self.requests = self.requests.saturating_add(1);
        if let Some(address) = &connection.remote_addr {
            self.evicted.addresses +=
                self.addresses
                    .touch(address, now, MAX_ADDRESSES, |address| *address);
        }
        if let Some(agent) = &connection.user_agent {
            let agent = truncate(agent, MAX_USER_AGENT_BYTES);
            self.evicted.user_agents +=
                self.user_agents
                    .touch(agent, now, MAX_USER_AGENTS, ToOwned::to_owned);
        }
        if let Some(cert) = &connection.client_cert {
            self.evicted.cert_fingerprints += self.cert_fingerprints.touch(
                cert.fingerprint.as_str(),
                now,
                MAX_CERT_FINGERPRINTS,
                ToOwned::to_owned,
            );
        }
    }

    fn into_record(self, credential: CredentialId) -> Record {
        Record {
            credential,
            auth_type: self.auth_type,
            token_path: self.token_path,
            display_name: self.display_name,
            policies: self.policies,
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            requests: self.requests,
            addresses: self.addresses.map(|address| address.to_string()),
            user_agents: self.user_agents,
            cert_fingerprints: self.cert_fingerprints,
            evicted: self.evicted,
        }
    }

    fn snapshot(&self, credential: CredentialId) -> Record {
        Usage {
            auth_type: self.auth_type.clone(),
            token_path: self.token_path.clone(),
            display_name: self.display_name.clone(),
            policies: self.policies.clone(),
            addresses: self.addresses.clone(),
            user_agents: self.user_agents.clone(),
            cert_fingerprints: self.cert_fingerprints.clone(),
            ..*self
        }
        .into_record(credential)
    }
}

/// `text` cut to at most `limit` bytes at a character boundary.
fn truncate(text: &str, limit: usize) -> &str {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// One shard: tokens by accessor (looked up without allocating), login credentials by id.
#[derive(Debug, Default)]
struct Shard {
    tokens: HashMap<String, Usage>,
    logins: HashMap<CredentialId, Usage>,
}

/// A credential a successful login presented.
#[derive(Clone, Debug)]
pub(crate) struct LoginCredential<'a> {
    /// The auth method's type (`approle`).
    pub(crate) method_type: &'a str,
    /// The auth method's mount path (`approle/`).
    pub(crate) mount: &'a str,
    pub(crate) grant: &'a crate::TokenGrant,
    pub(crate) connection: &'a Connection,
}

/// The in-memory aggregate: unflushed usage, by shard, and records a failed flush kept.
#[derive(Debug)]
pub(crate) struct Inventory {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    /// Records a flush could not write, merged by credential, so a long storage outage holds
    /// one record per credential; the next flush tries them first.
    pending: Mutex<HashMap<CredentialId, Record>>,
}

impl Default for Inventory {
    fn default() -> Self {
        Inventory {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            pending: Mutex::default(),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A shard holds counters; a panic elsewhere cannot leave one half-updated in a way that
    // matters more than losing the count.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Inventory {
    fn shard(&self, key: &(impl Hash + ?Sized)) -> &Mutex<Shard> {
        let index = (self.hasher.hash_one(key) as usize) % self.shards.len();
        &self.shards[index]
    }

    /// Counts one authenticated request with the token `entry` on `connection` at `now` (unix
    /// seconds). Allocates only the first time a token is seen between two flushes.
    pub(crate) fn record_token(&self, entry: &TokenEntry, connection: &Connection, now: i64) {
        let mut shard = lock(self.shard(entry.accessor.as_str()));
        let usage = match shard.tokens.get_mut(entry.accessor.as_str()) {
            Some(usage) => usage,
            None => {
                let mut usage = Usage::new(now);
                usage.display_name.clone_from(&entry.display_name);
                usage.policies.clone_from(&entry.policies);
                usage.token_path.clone_from(&entry.path);
                shard.tokens.entry(entry.accessor.clone()).or_insert(usage)
            }
        };
        usage.count(connection, now);
    }

    /// Counts one successful login. Methods whose credential the inventory does not know are
    /// ignored (their tokens are still counted).
    pub(crate) fn record_login(&self, login: &LoginCredential<'_>, now: i64) {
        let Some(kind) = CredentialKind::of_method(login.method_type) else {
            return;
        };
        let metadata = |key: &str| login.grant.metadata.get(key).cloned();
        let (id, secret_id_accessor) = match kind {
            CredentialKind::Approle => (
                metadata("role_name").unwrap_or_default(),
                login.grant.secret_id_accessor.clone(),
            ),
            CredentialKind::Userpass => (metadata("username").unwrap_or_default(), None),
            CredentialKind::Cert => {
                let Some(fingerprint) = login.grant.bound_cert_fingerprint.clone().or_else(|| {
                    login
                        .connection
                        .client_cert
                        .as_ref()
                        .map(|cert| cert.fingerprint.clone())
                }) else {
                    return;
                };
                (fingerprint, None)
            }
            CredentialKind::Token => return,
        };
        let credential = CredentialId {
            kind,
            mount: login.mount.to_owned(),
            id,
            secret_id_accessor,
        };
        let mut shard = lock(self.shard(&credential));
        let usage = shard
            .logins
            .entry(credential)
            .or_insert_with(|| Usage::new(now));
        usage.auth_type = login.method_type.to_owned();
        usage.display_name.clone_from(&login.grant.display_name);
        usage.policies.clone_from(&login.grant.policies);
        usage.count(login.connection, now);
    }

    /// Takes everything not flushed yet (the shards are left empty).
    fn drain(&self) -> Vec<Record> {
        let mut records: Vec<Record> = std::mem::take(&mut *lock(&self.pending))
            .into_values()
            .collect();
        for shard in &self.shards {
            let taken = std::mem::take(&mut *lock(shard));
            records.extend(taken.tokens.into_iter().map(|(accessor, usage)| {
                usage.into_record(CredentialId {
                    kind: CredentialKind::Token,
                    mount: String::new(),
                    id: accessor,
                    secret_id_accessor: None,
                })
            }));
            records.extend(
                taken
                    .logins
                    .into_iter()
                    .map(|(credential, usage)| usage.into_record(credential)),
            );
        }
        records
    }

    /// A copy of everything not flushed yet, for reads.
    pub(crate) fn snapshot(&self) -> Vec<Record> {
        let mut records: Vec<Record> = lock(&self.pending).values().cloned().collect();
        for shard in &self.shards {
            let shard = lock(shard);
            records.extend(shard.tokens.iter().map(|(accessor, usage)| {
                usage.snapshot(CredentialId {
                    kind: CredentialKind::Token,
                    mount: String::new(),
                    id: accessor.clone(),
                    secret_id_accessor: None,
                })
            }));
            records.extend(
                shard
                    .logins
                    .iter()
                    .map(|(credential, usage)| usage.snapshot(credential.clone())),
            );
        }
        records
    }

    /// Gives records a flush could not write back, for the next flush.
    fn keep(&self, records: impl IntoIterator<Item = Record>) {
        let mut pending = lock(&self.pending);
        for record in records {
            match pending.get_mut(&record.credential) {
                Some(kept) => kept.merge(record),
                None => {
                    pending.insert(record.credential.clone(), record);
                }
            }
        }
    }
}

/// What one flush did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InventoryFlush {
    /// How many credentials' records were written.
    pub written: usize,
}

/// Where the record of `credential` is stored: named by a keyed hash, so the keys say nothing
/// about the credentials.
pub(crate) fn record_path(
    hasher: &custos_crypto::KeyedHasher,
    credential: &CredentialId,
) -> String {
    let name = format!(
        "inventory:{}\u{0}{}\u{0}{}\u{0}{}",
        credential.kind.as_str(),
        credential.mount,
        credential.id,
        credential.secret_id_accessor.as_deref().unwrap_or_default()
    );
    format!(
        "{INVENTORY_PREFIX}{}/{}",
        credential.kind.as_str(),
        hasher.hash_hex(name.as_bytes())
    )
}

impl Engine {
    /// Writes the usage gathered since the last flush into the stored records (see the module
    /// documentation). Sealed: refuses with [`EngineError::Sealed`] and keeps what it holds. A
    /// storage failure keeps what was not written for the next flush.
    pub async fn flush_inventory(&self) -> Result<InventoryFlush, EngineError> {
        let unsealed = self.unsealed().ok_or(EngineError::Sealed)?;
        let records = self.inner.inventory.drain();
        let mut written = 0;
        let mut records = records.into_iter();
        while let Some(record) = records.next() {
            if let Err(error) = self.flush_record(&unsealed, &record).await {
                self.inner
                    .inventory
                    .keep(std::iter::once(record).chain(records));
                return Err(error);
            }
            written += 1;
        }
        Ok(InventoryFlush { written })
    }

    /// Merges `record` into its stored copy with a compare-and-swap.
    async fn flush_record(&self, unsealed: &Unsealed, record: &Record) -> Result<(), EngineError> {
        let path = record_path(&unsealed.token_hasher, &record.credential);
        for _ in 0..MAX_RETRIES {
            let txn = match unsealed.barrier.get(&path).await? {
                Some(plain) => {
                    let mut stored = Record::decode(&plain.value)?;
                    stored.merge(record.clone());
                    custos_storage::Transaction::new()
                        .require_revision(path.clone(), plain.revision)
                        .put(path.clone(), stored.encode()?)
                }
                None => custos_storage::Transaction::new()
                    .require_absent(path.clone())
                    .put(path.clone(), record.encode()?),
            };
            match unsealed.barrier.commit(txn).await {
                Ok(_) => return Ok(()),
                Err(EngineError::Conflict) => continue,
                Err(error) => return Err(error),
            }
        }
        Err(EngineError::Conflict)
    }
}
