//! The embedded default backend: custos's sorted map in one SQLite file.
//!
//! Writes go through one writer thread that owns the only write connection and commits
//! requests in groups: everything queued while the previous group was being synced is applied
//! in one SQLite transaction with one fsync (see `writer`). Reads use a small pool of read
//! connections; in WAL mode they never wait for the writer. The file is opened with
//! `journal_mode=WAL` and `synchronous=FULL`, so an `Ok` from `commit` survives power loss.

mod rows;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use custos_storage::{
    Entry, ListPage, Revision, Storage, StorageError, Transaction, validate_key,
    validate_transaction,
};
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{Semaphore, oneshot};

use crate::rows::sqlite_error;
use crate::writer::{Request, Writer};

/// Tuning for [`SqliteStorage`].
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// How long a connection waits for a lock held by another process before giving up with
    /// [`StorageError::Unavailable`].
    pub busy_timeout: Duration,
    /// The most commit requests applied in one SQLite transaction (at least 1).
    pub max_batch: usize,
    /// How many read connections may run at once (at least 1).
    pub read_connections: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            busy_timeout: Duration::from_secs(5),
            max_batch: 256,
            read_connections: 4,
        }
    }
}

/// Counters describing what the writer did since the store was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SqliteStats {
    /// SQLite write transactions committed (each is one fsync of the WAL).
    pub transactions: u64,
    /// Storage commits that succeeded; several share one transaction under group commit.
    pub commits: u64,
    /// Storage commits answered with [`StorageError::Conflict`].
    pub conflicts: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) transactions: AtomicU64,
    pub(crate) commits: AtomicU64,
    pub(crate) conflicts: AtomicU64,
}

/// Storage in a SQLite database file (or in memory, for tests).
pub struct SqliteStorage {
    writer: Writer,
    /// `None` for an in-memory database, whose only connection is the writer's: reads are then
    /// sent to the writer thread too.
    readers: Option<Arc<ReaderPool>>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for SqliteStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStorage")
            .field("path", &self.readers.as_ref().map(|pool| &pool.path))
            .finish_non_exhaustive()
    }
}

impl SqliteStorage {
    /// Opens (creating if needed) the database at `path` and migrates it to the current schema.
    ///
    /// Fails with [`StorageError::Corrupt`] when the file is not a SQLite database, and with
    /// [`StorageError::Invalid`] when it belongs to something else or to a newer custos.
    pub fn open(path: &Path, options: SqliteOptions) -> Result<SqliteStorage, StorageError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        create_private(path)?;
        let mut connection = Connection::open_with_flags(path, flags)
            .map_err(|err| open_error(path, err, "open database"))?;
        configure(&connection, &options).map_err(|err| open_error(path, err, "configure"))?;
        let journal_mode: String = connection
            .pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))
            .map_err(|err| open_error(path, err, "enable WAL"))?;
        if !journal_mode.eq_ignore_ascii_case("wal") {
            return Err(StorageError::Unavailable {
                message: format!(
                    "{} cannot use write-ahead logging (journal_mode is {journal_mode})",
                    path.display()
                ),
                source: None,
            });
        }
        connection
            .pragma_update(None, "synchronous", "FULL")
            .map_err(|err| open_error(path, err, "set synchronous"))?;
        schema::migrate(&mut connection).map_err(|err| match err {
            schema::MigrateError::Sqlite(err) => open_error(path, err, "migrate"),
            schema::MigrateError::Storage(err) => err,
        })?;
        let readers = ReaderPool::new(path.to_owned(), &options);
        // Open one reader now, so a file that cannot be read fails `open`, not the first `get`.
        let first = readers.open_connection()?;
        readers.put_back(first);
        let counters = Arc::new(Counters::default());
        let writer = Writer::spawn(connection, options.max_batch, Arc::clone(&counters))?;
        tracing::debug!(path = %path.display(), "sqlite storage opened");
        Ok(SqliteStorage {
            writer,
            readers: Some(Arc::new(readers)),
            counters,
        })
    }

    /// Opens a private, empty in-memory database. Nothing is durable; meant for tests and `--dev`.
    pub fn open_in_memory() -> Result<SqliteStorage, StorageError> {
        let options = SqliteOptions::default();
        let mut connection = Connection::open_in_memory()
            .map_err(|err| sqlite_error(err, "open in-memory database"))?;
        configure(&connection, &options).map_err(|err| sqlite_error(err, "configure"))?;
        schema::migrate(&mut connection).map_err(|err| match err {
            schema::MigrateError::Sqlite(err) => sqlite_error(err, "migrate"),
            schema::MigrateError::Storage(err) => err,
        })?;
        let counters = Arc::new(Counters::default());
        let writer = Writer::spawn(connection, options.max_batch, Arc::clone(&counters))?;
        Ok(SqliteStorage {
            writer,
            readers: None,
            counters,
        })
    }

    /// What the writer has done so far.
    pub fn stats(&self) -> SqliteStats {
        SqliteStats {
            transactions: self.counters.transactions.load(Ordering::Relaxed),
            commits: self.counters.commits.load(Ordering::Relaxed),
            conflicts: self.counters.conflicts.load(Ordering::Relaxed),
        }
    }

    async fn read<T, F>(&self, read: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StorageError> + Send + 'static,
    {
        match &self.readers {
            Some(pool) => pool.run(read).await,
            None => {
                let (reply, answer) = oneshot::channel();
                self.writer.send(Request::Read(Box::new(move |connection| {
                    // The caller may have gone away; then nobody wants the answer.
                    let _ = reply.send(read(connection));
                })))?;
                answer.await.map_err(|_| writer::writer_gone())?
            }
        }
    }
}

/// Creates the database file readable by its owner only, when it does not exist yet. SQLite
/// gives the `-wal` and `-shm` files the mode of the database file, so they stay private too.
fn create_private(path: &Path) -> Result<(), StorageError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(StorageError::unavailable(
            format!("cannot create {}", path.display()),
            err,
        )),
    }
}

fn configure(connection: &Connection, options: &SqliteOptions) -> rusqlite::Result<()> {
    connection.busy_timeout(options.busy_timeout)?;
    // Keep the statement cache large enough for every statement we prepare.
    connection.set_prepared_statement_cache_capacity(32);
    Ok(())
}

/// Explains a failure to open `path`, naming the most common cause when SQLite knows it.
fn open_error(path: &Path, err: rusqlite::Error, what: &str) -> StorageError {
    if let rusqlite::Error::SqliteFailure(failure, _) = &err
        && failure.code == rusqlite::ErrorCode::NotADatabase
    {
        return StorageError::Corrupt(format!(
            "{} is not a SQLite database ({err})",
            path.display()
        ));
    }
    sqlite_error(err, &format!("{what} {}", path.display()))
}

#[async_trait::async_trait]
impl Storage for SqliteStorage {
    fn backend_name(&self) -> &'static str {
        "sqlite"
    }

    async fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        validate_key(key)?;
        let key = key.to_owned();
        self.read(move |connection| rows::get_entry(connection, &key))
            .await
    }

    async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage, StorageError> {
        let prefix = prefix.to_owned();
        let after = after.map(str::to_owned);
        self.read(move |connection| rows::list_keys(connection, &prefix, after.as_deref(), limit))
            .await
    }

    async fn commit(&self, txn: Transaction) -> Result<Revision, StorageError> {
        validate_transaction(&txn)?;
        let (reply, answer) = oneshot::channel();
        self.writer.send(Request::Commit { txn, reply })?;
        answer.await.map_err(|_| writer::writer_gone())?
    }
}

/// Read connections, opened on demand up to `read_connections`, each used by one blocking task
/// at a time.
struct ReaderPool {
    path: PathBuf,
    busy_timeout: Duration,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl ReaderPool {
    fn new(path: PathBuf, options: &SqliteOptions) -> ReaderPool {
        ReaderPool {
            path,
            busy_timeout: options.busy_timeout,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(options.read_connections.max(1))),
        }
    }

    fn open_connection(&self) -> Result<Connection, StorageError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let connection = Connection::open_with_flags(&self.path, flags)
            .map_err(|err| open_error(&self.path, err, "open read connection to"))?;
        connection
            .busy_timeout(self.busy_timeout)
            .and_then(|()| connection.pragma_update(None, "query_only", true))
            .map_err(|err| open_error(&self.path, err, "configure read connection to"))?;
        connection.set_prepared_statement_cache_capacity(32);
        Ok(connection)
    }

    fn take(&self) -> Option<Connection> {
        // A connection is only pushed and popped under the lock, so a poisoned lock still
        // holds a valid list.
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
    }

    fn put_back(&self, connection: Connection) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(connection);
    }

    async fn run<T, F>(self: &Arc<Self>, read: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StorageError> + Send + 'static,
    {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|err| StorageError::unavailable("sqlite read pool closed", err))?;
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let connection = match pool.take() {
                Some(connection) => connection,
                None => pool.open_connection()?,
            };
            let result = read(&connection);
            pool.put_back(connection);
            result
        })
        .await
        .map_err(|err| StorageError::unavailable("sqlite read task failed", err))?
    }
}
