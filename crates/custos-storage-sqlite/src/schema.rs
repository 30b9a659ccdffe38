//! The on-disk schema and its migrations, versioned with `PRAGMA user_version`.
//!
//! Migration `n` (1-based) takes a database from `user_version = n - 1` to `n`. All pending
//! migrations run in one immediate transaction at open, so two processes opening the same file
//! at once cannot both apply them. A file with a newer version than this build knows is refused:
//! an old binary must not write rows it may misread.

use custos_storage::StorageError;
use rusqlite::{Connection, TransactionBehavior};

/// The schema version this build writes.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

const MIGRATIONS: &[&str] = &[
    // 1: the sorted map and the store revision counter.
    "CREATE TABLE entries (
        key TEXT NOT NULL PRIMARY KEY,
        value BLOB NOT NULL,
        revision INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE meta (
        name TEXT NOT NULL PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO meta (name, value) VALUES ('revision', 0), ('schema_version', 1);",
];

pub(crate) enum MigrateError {
    Sqlite(rusqlite::Error),
    Storage(StorageError),
}

impl From<rusqlite::Error> for MigrateError {
    fn from(err: rusqlite::Error) -> Self {
        MigrateError::Sqlite(err)
    }
}

pub(crate) fn migrate(connection: &mut Connection) -> Result<(), MigrateError> {
    let txn = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = txn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(MigrateError::Storage(StorageError::Invalid(format!(
            "database schema version {version} is newer than this custos supports \
             ({SCHEMA_VERSION}); upgrade custos"
        ))));
    }
    if version < 0 {
        return Err(MigrateError::Storage(StorageError::Corrupt(format!(
            "database schema version {version} is negative"
        ))));
    }
    if version == 0 {
        let foreign: i64 = txn.query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
            [],
            |row| row.get(0),
        )?;
        if foreign > 0 {
            return Err(MigrateError::Storage(StorageError::Invalid(
                "the SQLite database already holds tables that are not custos's".into(),
            )));
        }
    }
    let applied = usize::try_from(version).unwrap_or(usize::MAX);
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
        tracing::info!(version = index + 1, "applying sqlite schema migration");
        txn.execute_batch(migration)?;
    }
    if version < SCHEMA_VERSION {
        txn.execute(
            "UPDATE meta SET value = ?1 WHERE name = 'schema_version'",
            [SCHEMA_VERSION],
        )?;
        txn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    }
    txn.commit()?;
    Ok(())
}
