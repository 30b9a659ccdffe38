//! The high-availability backend: custos's sorted map in one PostgreSQL table.
//!
//! Layout: `custos_entries(key TEXT COLLATE "C" PRIMARY KEY, value BYTEA, revision BIGINT)` and a
//! sequence `custos_revision`, migrated at connect under an advisory lock (see `schema`).
//! `COLLATE "C"` makes the primary key compare bytes, which is the order the contract promises,
//! and lets prefix listing be a plain index range scan.
//!
//! A commit is one READ COMMITTED transaction:
//! 1. take a transaction-scoped advisory lock per key it names (conditions and ops), in sorted
//!    order so two commits cannot deadlock. Unlike `SELECT ... FOR UPDATE`, this also locks keys
//!    that do not exist yet, so two commits that both require a key to be absent are serialized
//!    and the second sees the first's insert;
//! 2. check the conditions with a fresh snapshot (taken after the locks were granted);
//! 3. take `nextval` once, after the locks, so writes to one key get increasing revisions in
//!    commit order, and write every op at that revision in one statement.
//!
//! Every writer goes through these locks, so a condition checked in step 2 still holds at
//! COMMIT. Revisions are unique and, for any one key, grow in commit order; two commits on
//! unrelated keys running at the same time may commit in the other order than their revisions.
//! A request that fails on a connection the server had dropped, before it could commit
//! anything, is retried on another connection, so a server restart costs no errors. `synchronous_commit` is left at the server's setting (on by default): an `Ok` is durable.

mod schema;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use custos_storage::{
    Condition, Entry, ListPage, Op, Revision, Storage, StorageError, Transaction, page_from,
    prefix_upper_bound, validate_key, validate_transaction,
};
use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime,
};
mod notify;
pub use custos_storage::Invalidation;

use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

/// How to reach PostgreSQL.
#[derive(Clone)]
pub struct PostgresConfig {
    /// A libpq-style URL or key/value string: `postgres://user@host:5432/db`.
    pub url: String,
    /// The most connections the pool opens (at least 1).
    pub max_connections: usize,
    /// How long to wait for a new connection, and for a free one from the pool, before the
    /// operation fails with [`StorageError::Unavailable`].
    pub connect_timeout: Duration,
    /// Where the LISTEN connection of [`PostgresStorage::invalidations`] goes, when not to `url`
    /// (LISTEN needs a session: it cannot go through a transaction-pooling proxy).
    pub listen_url: Option<String>,
}

impl PostgresConfig {
    /// A config for `url` with 16 connections and a 5 second timeout.
    pub fn new(url: impl Into<String>) -> PostgresConfig {
        PostgresConfig {
            url: url.into(),
            max_connections: 16,
            connect_timeout: Duration::from_secs(5),
            listen_url: None,
        }
    }
}

impl fmt::Debug for PostgresConfig {
    // The URL may carry a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &"<redacted>")
            .field("max_connections", &self.max_connections)
            .field("connect_timeout", &self.connect_timeout)
            .field(
                "listen_url",
                &self.listen_url.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Storage in a PostgreSQL database, through a pool of connections.
pub struct PostgresStorage {
    pool: Pool,
    /// For the LISTEN connection of [`PostgresStorage::invalidations`].
    pg_config: tokio_postgres::Config,
}

impl fmt::Debug for PostgresStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.pool.status();
        f.debug_struct("PostgresStorage")
            .field("connections", &status.size)
            .field("max_connections", &status.max_size)
            .finish()
    }
}

/// Maps a PostgreSQL error to the backend-neutral kind. Connection loss, shutdown, timeouts and
/// everything else the server reports are `Unavailable`, with the driver error as the source;
/// the server's own corruption reports are `Corrupt`.
fn pg_error(err: tokio_postgres::Error, what: &str) -> StorageError {
    if let Some(code) = err.code()
        && (*code == SqlState::DATA_CORRUPTED || *code == SqlState::INDEX_CORRUPTED)
    {
        return StorageError::Corrupt(format!("{what}: {err}"));
    }
    StorageError::unavailable(format!("postgres: {what}"), err)
}

fn pool_error(err: deadpool_postgres::PoolError) -> StorageError {
    StorageError::unavailable("postgres: no connection available", err)
}

/// A failed attempt, and whether it may be retried on another connection: the server had
/// dropped the connection (restart, failover, idle kill) before anything could be committed.
struct Failed {
    error: StorageError,
    stale: bool,
}

impl From<StorageError> for Failed {
    fn from(error: StorageError) -> Self {
        Failed {
            error,
            stale: false,
        }
    }
}

/// Like [`pg_error`], remembering whether the connection was dead. Only for steps that cannot
/// have committed anything: never for the `COMMIT` of a transaction that wrote.
fn failed(err: tokio_postgres::Error, what: &str) -> Failed {
    let stale = err.is_closed()
        || err.code().is_some_and(|code| {
            *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || code.code().starts_with("08")
        });
    Failed {
        error: pg_error(err, what),
        stale,
    }
}

fn corrupt_column(err: tokio_postgres::Error, column: &str) -> StorageError {
    StorageError::Corrupt(format!("stored {column} cannot be read: {err}"))
}

fn parse_revision(revision: i64) -> Result<Revision, StorageError> {
    match u64::try_from(revision) {
        Ok(revision) if revision > 0 => Ok(Revision(revision)),
        _ => Err(StorageError::Corrupt(format!(
            "stored revision {revision} is not positive"
        ))),
    }
}

fn to_db_revision(revision: Revision) -> Result<i64, StorageError> {
    i64::try_from(revision.0)
        .map_err(|_| StorageError::Invalid(format!("revision {revision} is out of range")))
}

/// The advisory lock id of a key: 64-bit FNV-1a of its bytes. Every custos node computes the
/// same id, and two keys that collide only wait for each other.
fn lock_id(key: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// What a transaction does, reduced to the shape of the SQL that runs it.
struct Plan<'a> {
    lock_ids: Vec<i64>,
    condition_keys: Vec<&'a str>,
    put_keys: Vec<&'a str>,
    put_values: Vec<&'a [u8]>,
    delete_keys: Vec<&'a str>,
}

impl<'a> Plan<'a> {
    fn new(txn: &'a Transaction) -> Plan<'a> {
        let mut lock_ids = Vec::new();
        let mut condition_keys = Vec::new();
        for condition in &txn.conditions {
            let (Condition::Absent(key) | Condition::Revision(key, _)) = condition;
            lock_ids.push(lock_id(key));
            condition_keys.push(key.as_str());
        }
        // Ops apply in order and the last one on a key wins, so only the final state per key
        // is written; that lets all puts be one INSERT and all deletes one DELETE.
        let mut last: BTreeMap<&str, Option<&[u8]>> = BTreeMap::new();
        for op in &txn.ops {
            match op {
                Op::Put(key, value) => last.insert(key.as_str(), Some(value.as_slice())),
                Op::Delete(key) => last.insert(key.as_str(), None),
            };
        }
        let mut put_keys = Vec::new();
        let mut put_values = Vec::new();
        let mut delete_keys = Vec::new();
        for (key, value) in last {
            lock_ids.push(lock_id(key));
            match value {
                Some(value) => {
                    put_keys.push(key);
                    put_values.push(value);
                }
                None => delete_keys.push(key),
            }
        }
        lock_ids.sort_unstable();
        lock_ids.dedup();
        condition_keys.sort_unstable();
        condition_keys.dedup();
        Plan {
            lock_ids,
            condition_keys,
            put_keys,
            put_values,
            delete_keys,
        }
    }
}

/// Reads the current revision of every key the conditions name and checks them all.
async fn conditions_hold<C: GenericClient>(
    db: &C,
    plan: &Plan<'_>,
    txn: &Transaction,
) -> Result<bool, Failed> {
    let check = db
        .prepare_cached(CONDITIONS_SQL)
        .await
        .map_err(|err| failed(err, "prepare conditions"))?;
    let rows = db
        .query(&check, &[&plan.condition_keys])
        .await
        .map_err(|err| failed(err, "check conditions"))?;
    let mut current = HashMap::with_capacity(rows.len());
    for row in &rows {
        let key: &str = row.try_get(0).map_err(|err| corrupt_column(err, "key"))?;
        let revision: i64 = row
            .try_get(1)
            .map_err(|err| corrupt_column(err, "revision"))?;
        current.insert(key, parse_revision(revision)?);
    }
    Ok(txn.conditions.iter().all(|condition| match condition {
        Condition::Absent(key) => !current.contains_key(key.as_str()),
        Condition::Revision(key, expected) => current.get(key.as_str()) == Some(expected),
    }))
}

const LOCK_KEYS_SQL: &str = "SELECT pg_advisory_xact_lock(id) FROM unnest($1::bigint[]) WITH ORDINALITY AS t(id, n) \
     ORDER BY n";
const CONDITIONS_SQL: &str = "SELECT key, revision FROM custos_entries WHERE key = ANY($1)";
const CURRENT_REVISION_SQL: &str =
    "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM custos_revision";
const WRITE_SQL: &str = "\
    WITH revision AS (SELECT nextval('custos_revision') AS value), \
    written AS ( \
        INSERT INTO custos_entries (key, value, revision) \
        SELECT put.key, put.value, revision.value \
        FROM unnest($1::text[], $2::bytea[]) AS put(key, value), revision \
        ON CONFLICT (key) DO UPDATE SET value = excluded.value, revision = excluded.revision \
        RETURNING 1 \
    ), \
    deleted AS (DELETE FROM custos_entries WHERE key = ANY($3::text[]) RETURNING 1) \
    SELECT value FROM revision";

impl PostgresStorage {
    /// Connects, checks the server answers, and migrates the schema.
    ///
    /// Fails with [`StorageError::Invalid`] for a malformed URL or a schema newer than this
    /// build knows, and with [`StorageError::Unavailable`] when the server cannot be reached.
    pub async fn connect(config: PostgresConfig) -> Result<PostgresStorage, StorageError> {
        let mut pg_config: tokio_postgres::Config = config
            .url
            .parse()
            .map_err(|err| StorageError::Invalid(format!("invalid PostgreSQL URL: {err}")))?;
        pg_config.connect_timeout(config.connect_timeout);
        if pg_config.get_application_name().is_none() {
            pg_config.application_name("custos");
        }
        let manager = Manager::from_config(
            pg_config.clone(),
            NoTls,
            ManagerConfig {
                // A connection the server closed is noticed (`is_closed`) and replaced when it
                // is next taken from the pool, so the pool heals after a restart.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.max_connections.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(config.connect_timeout))
            .create_timeout(Some(config.connect_timeout))
            .recycle_timeout(Some(config.connect_timeout))
            .build()
            .map_err(|err| StorageError::Invalid(format!("cannot build the pool: {err}")))?;
        let listen_config = match &config.listen_url {
            None => pg_config.clone(),
            Some(url) => {
                let mut listen_config: tokio_postgres::Config = url.parse().map_err(|err| {
                    StorageError::Invalid(format!("invalid PostgreSQL listen URL: {err}"))
                })?;
                listen_config.connect_timeout(config.connect_timeout);
                listen_config
            }
        };
        let storage = PostgresStorage {
            pool,
            pg_config: listen_config,
        };
        let mut client = storage.client().await?;
        schema::migrate(&mut client).await?;
        tracing::debug!(
            max_connections = config.max_connections,
            "postgres storage connected"
        );
        Ok(storage)
    }

    /// Starts listening for the writes of every node (this one included) and returns them as
    /// they commit, each with its commit's revision. [`Invalidation::All`] arrives at every (re)connection of the listener, since
    /// writes may have been missed. The listener stops when the receiver is dropped.
    pub fn invalidations(&self) -> tokio::sync::mpsc::UnboundedReceiver<Invalidation> {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(notify::listen(self.pg_config.clone(), sender));
        receiver
    }

    /// Applies a stream of [`Invalidation`]s to a read cache until the stream ends (for a node
    /// that mirrors nothing else; the server fans the stream out itself).
    pub async fn follow(
        mut invalidations: tokio::sync::mpsc::UnboundedReceiver<Invalidation>,
        cache: std::sync::Arc<custos_storage::CachedStorage>,
    ) {
        while let Some(invalidation) = invalidations.recv().await {
            cache.apply(&invalidation);
        }
    }

    async fn client(&self) -> Result<Object, StorageError> {
        self.pool.get().await.map_err(pool_error)
    }

    /// Runs `attempt`, again on another connection while it fails on a connection the server
    /// had dropped. Each dead connection fails once and leaves the pool (`is_closed`), so one
    /// more attempt than the pool size always reaches a fresh connection.
    async fn retrying<T, F, Fut>(&self, attempt: F) -> Result<T, StorageError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, Failed>>,
    {
        let attempts = self.pool.status().max_size + 1;
        let mut tries = 0;
        loop {
            tries += 1;
            match attempt().await {
                Ok(value) => return Ok(value),
                Err(Failed { stale: true, error }) if tries < attempts => {
                    tracing::debug!(attempt = tries, error = %error, "retrying on another postgres connection");
                }
                Err(failed) => return Err(failed.error),
            }
        }
    }

    async fn try_commit(&self, txn: &Transaction) -> Result<Revision, Failed> {
        let plan = Plan::new(txn);
        let mut client = self.client().await?;
        // A condition that already fails fails for good (revisions are never reused), so a
        // lock-free check first lets losing compare-and-swaps return at once instead of queueing
        // for the locks of the key they lost. The check under the locks below is the real one.
        if !plan.condition_keys.is_empty() && !conditions_hold(&client, &plan, txn).await? {
            return Err(StorageError::Conflict.into());
        }
        let db = client
            .transaction()
            .await
            .map_err(|err| failed(err, "begin"))?;
        if !plan.lock_ids.is_empty() {
            let lock = db
                .prepare_cached(LOCK_KEYS_SQL)
                .await
                .map_err(|err| failed(err, "prepare lock"))?;
            db.execute(&lock, &[&plan.lock_ids])
                .await
                .map_err(|err| failed(err, "lock keys"))?;
        }
        if !plan.condition_keys.is_empty() && !conditions_hold(&db, &plan, txn).await? {
            // The conditions failed and nothing was written, whether or not the rollback
            // (which frees the locks right away) reaches the server.
            if let Err(err) = db.rollback().await {
                tracing::debug!(error = %err, "postgres rollback after a conflict failed");
            }
            return Err(StorageError::Conflict.into());
        }
        if txn.ops.is_empty() {
            let row = db
                .query_one(CURRENT_REVISION_SQL, &[])
                .await
                .map_err(|err| failed(err, "read revision"))?;
            let current: i64 = row
                .try_get(0)
                .map_err(|err| corrupt_column(err, "revision counter"))?;
            // Nothing was written, so even this commit may be retried.
            db.commit().await.map_err(|err| failed(err, "commit"))?;
            return u64::try_from(current).map(Revision).map_err(|_| {
                StorageError::Corrupt(format!("revision counter {current} is negative")).into()
            });
        }
        let write = db
            .prepare_cached(WRITE_SQL)
            .await
            .map_err(|err| failed(err, "prepare write"))?;
        let row = db
            .query_one(
                &write,
                &[&plan.put_keys, &plan.put_values, &plan.delete_keys],
            )
            .await
            .map_err(|err| failed(err, "write"))?;
        let revision: i64 = row
            .try_get(0)
            .map_err(|err| corrupt_column(err, "revision counter"))?;
        let revision = parse_revision(revision)?;
        // Delivered to listeners when (and only if) this transaction commits.
        let keys = txn.ops.iter().map(|op| match op {
            custos_storage::Op::Put(key, _) | custos_storage::Op::Delete(key) => key.as_str(),
        });
        db.execute(
            "SELECT pg_notify($1, $2)",
            &[&notify::CHANNEL, &notify::payload(revision, keys)],
        )
        .await
        .map_err(|err| failed(err, "notify"))?;
        // A failed COMMIT of a write may still have committed: report it, never retry it.
        db.commit().await.map_err(|err| pg_error(err, "commit"))?;
        Ok(revision)
    }

    async fn try_get(&self, key: &str) -> Result<Option<Entry>, Failed> {
        let client = self.client().await?;
        let statement = client
            .prepare_cached("SELECT value, revision FROM custos_entries WHERE key = $1")
            .await
            .map_err(|err| failed(err, "prepare get"))?;
        let row = client
            .query_opt(&statement, &[&key])
            .await
            .map_err(|err| failed(err, "get"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let value: Vec<u8> = row.try_get(0).map_err(|err| corrupt_column(err, "value"))?;
        let revision: i64 = row
            .try_get(1)
            .map_err(|err| corrupt_column(err, "revision"))?;
        Ok(Some(Entry {
            value,
            revision: parse_revision(revision)?,
        }))
    }

    async fn try_list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage, Failed> {
        // PostgreSQL text cannot hold NUL and no key contains one: a prefix with NUL matches
        // nothing, and an `after` with NUL sorts like its part before the NUL.
        if prefix.contains('\0') {
            return Ok(ListPage::default());
        }
        let (lower_sql, lower) = match after {
            Some(after) if after >= prefix => {
                let before_nul = after.split('\0').next().unwrap_or_default();
                ("key > $1", before_nul)
            }
            _ => ("key >= $1", prefix),
        };
        let upper = prefix_upper_bound(prefix);
        let fetch: Option<i64> = if limit == 0 {
            None
        } else {
            Some(i64::try_from(limit).map_or(i64::MAX, |limit| limit.saturating_add(1)))
        };
        let client = self.client().await?;
        // Every variant is a range scan of the primary key index.
        let rows = match &upper {
            Some(upper) => {
                let statement = client
                    .prepare_cached(&format!(
                        "SELECT key FROM custos_entries WHERE {lower_sql} AND key < $2 \
                         ORDER BY key LIMIT $3"
                    ))
                    .await
                    .map_err(|err| failed(err, "prepare list"))?;
                client.query(&statement, &[&lower, upper, &fetch]).await
            }
            None => {
                let statement = client
                    .prepare_cached(&format!(
                        "SELECT key FROM custos_entries WHERE {lower_sql} ORDER BY key LIMIT $2"
                    ))
                    .await
                    .map_err(|err| failed(err, "prepare list"))?;
                client.query(&statement, &[&lower, &fetch]).await
            }
        }
        .map_err(|err| failed(err, "list"))?;
        let mut keys = Vec::with_capacity(rows.len());
        for row in &rows {
            keys.push(
                row.try_get::<_, String>(0)
                    .map_err(|err| corrupt_column(err, "key"))?,
            );
        }
        Ok(page_from(keys, limit))
    }
}

#[async_trait::async_trait]
impl Storage for PostgresStorage {
    fn backend_name(&self) -> &'static str {
        "postgres"
    }

    async fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        validate_key(key)?;
        self.retrying(|| self.try_get(key)).await
    }

    async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage, StorageError> {
        self.retrying(|| self.try_list(prefix, after, limit)).await
    }

    async fn commit(&self, txn: Transaction) -> Result<Revision, StorageError> {
        validate_transaction(&txn)?;
        for condition in &txn.conditions {
            if let Condition::Revision(_, revision) = condition {
                to_db_revision(*revision)?;
            }
        }
        self.retrying(|| self.try_commit(&txn)).await
    }
}

#[cfg(test)]
mod tests;
