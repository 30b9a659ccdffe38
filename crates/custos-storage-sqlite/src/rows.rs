//! Row-level SQL: reading entries and keys back into types, and applying one transaction.
//!
//! Everything read from the file is checked before use: a value that is not a blob, a revision
//! that is not a positive integer or a key that is not UTF-8 text is [`StorageError::Corrupt`],
//! never a panic.

use custos_storage::{
    Condition, Entry, ListPage, Op, Revision, StorageError, Transaction, page_from,
    prefix_upper_bound,
};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OptionalExtension, params};

/// Maps a SQLite error to the backend-neutral kind: damaged data is `Corrupt`, anything else
/// (busy, locked, I/O, full disk) is `Unavailable` with the SQLite error as its source.
pub(crate) fn sqlite_error(err: rusqlite::Error, what: &str) -> StorageError {
    match &err {
        rusqlite::Error::SqliteFailure(failure, _)
            if matches!(
                failure.code,
                ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase
            ) =>
        {
            StorageError::Corrupt(format!("{what}: {err}"))
        }
        rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::Utf8Error(..) => StorageError::Corrupt(format!("{what}: {err}")),
        _ => StorageError::unavailable(format!("sqlite: {what}"), err),
    }
}

fn parse_revision(value: ValueRef<'_>) -> Result<Revision, StorageError> {
    match value {
        ValueRef::Integer(number) => match u64::try_from(number) {
            Ok(revision) if revision > 0 => Ok(Revision(revision)),
            _ => Err(StorageError::Corrupt(format!(
                "stored revision {number} is not positive"
            ))),
        },
        other => Err(StorageError::Corrupt(format!(
            "stored revision has type {}",
            other.data_type()
        ))),
    }
}

fn parse_value(value: ValueRef<'_>) -> Result<Vec<u8>, StorageError> {
    match value {
        ValueRef::Blob(bytes) => Ok(bytes.to_vec()),
        other => Err(StorageError::Corrupt(format!(
            "stored value has type {}",
            other.data_type()
        ))),
    }
}

fn parse_key(value: ValueRef<'_>) -> Result<String, StorageError> {
    match value {
        ValueRef::Text(bytes) => String::from_utf8(bytes.to_vec())
            .map_err(|_| StorageError::Corrupt("stored key is not UTF-8".into())),
        other => Err(StorageError::Corrupt(format!(
            "stored key has type {}",
            other.data_type()
        ))),
    }
}

pub(crate) fn get_entry(connection: &Connection, key: &str) -> Result<Option<Entry>, StorageError> {
    let mut statement = connection
        .prepare_cached("SELECT value, revision FROM entries WHERE key = ?1")
        .map_err(|err| sqlite_error(err, "prepare get"))?;
    let mut rows = statement
        .query(params![key])
        .map_err(|err| sqlite_error(err, "get"))?;
    let Some(row) = rows.next().map_err(|err| sqlite_error(err, "get"))? else {
        return Ok(None);
    };
    let value = parse_value(row.get_ref(0).map_err(|err| sqlite_error(err, "get"))?)?;
    let revision = parse_revision(row.get_ref(1).map_err(|err| sqlite_error(err, "get"))?)?;
    Ok(Some(Entry { value, revision }))
}

fn current_revision_of(
    connection: &Connection,
    key: &str,
) -> Result<Option<Revision>, StorageError> {
    let mut statement = connection
        .prepare_cached("SELECT revision FROM entries WHERE key = ?1")
        .map_err(|err| sqlite_error(err, "prepare condition"))?;
    let mut rows = statement
        .query(params![key])
        .map_err(|err| sqlite_error(err, "check condition"))?;
    match rows
        .next()
        .map_err(|err| sqlite_error(err, "check condition"))?
    {
        None => Ok(None),
        Some(row) => {
            let revision = row
                .get_ref(0)
                .map_err(|err| sqlite_error(err, "check condition"))?;
            parse_revision(revision).map(Some)
        }
    }
}

pub(crate) fn list_keys(
    connection: &Connection,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<ListPage, StorageError> {
    // Every variant is a range scan of the primary key; no `OR` that would hide the bounds
    // from the planner.
    let (lower_sql, lower) = match after {
        Some(after) if after >= prefix => ("key > ?1", after),
        _ => ("key >= ?1", prefix),
    };
    let upper = prefix_upper_bound(prefix);
    let fetch = if limit == 0 {
        -1
    } else {
        i64::try_from(limit).map_or(i64::MAX, |limit| limit.saturating_add(1))
    };
    let mut statement;
    let mut rows = match &upper {
        Some(upper) => {
            statement = connection
                .prepare_cached(&format!(
                    "SELECT key FROM entries WHERE {lower_sql} AND key < ?2 ORDER BY key LIMIT ?3"
                ))
                .map_err(|err| sqlite_error(err, "prepare list"))?;
            statement.query(params![lower, upper, fetch])
        }
        None => {
            statement = connection
                .prepare_cached(&format!(
                    "SELECT key FROM entries WHERE {lower_sql} ORDER BY key LIMIT ?2"
                ))
                .map_err(|err| sqlite_error(err, "prepare list"))?;
            statement.query(params![lower, fetch])
        }
    }
    .map_err(|err| sqlite_error(err, "list"))?;
    let mut keys = Vec::new();
    while let Some(row) = rows.next().map_err(|err| sqlite_error(err, "list"))? {
        keys.push(parse_key(
            row.get_ref(0).map_err(|err| sqlite_error(err, "list"))?,
        )?);
    }
    Ok(page_from(keys, limit))
}

/// Reads the store revision counter kept in `meta`.
pub(crate) fn store_revision(connection: &Connection) -> Result<u64, StorageError> {
    let value = connection
        .query_row(
            "SELECT value FROM meta WHERE name = 'revision'",
            [],
            |row| row.get::<_, rusqlite::types::Value>(0),
        )
        .optional()
        .map_err(|err| sqlite_error(err, "read store revision"))?;
    match value {
        Some(rusqlite::types::Value::Integer(number)) => u64::try_from(number)
            .map_err(|_| StorageError::Corrupt(format!("store revision {number} is negative"))),
        Some(_) => Err(StorageError::Corrupt(
            "store revision is not an integer".into(),
        )),
        None => Err(StorageError::Corrupt("store revision is missing".into())),
    }
}

pub(crate) fn set_store_revision(
    connection: &Connection,
    revision: u64,
) -> Result<(), StorageError> {
    let revision = i64::try_from(revision)
        .map_err(|_| StorageError::Corrupt(format!("store revision {revision} overflows")))?;
    connection
        .prepare_cached("UPDATE meta SET value = ?1 WHERE name = 'revision'")
        .and_then(|mut statement| statement.execute(params![revision]))
        .map_err(|err| sqlite_error(err, "write store revision"))?;
    Ok(())
}

/// Checks the conditions of `txn` against the current state of `connection`.
pub(crate) fn conditions_hold(
    connection: &Connection,
    txn: &Transaction,
) -> Result<bool, StorageError> {
    for condition in &txn.conditions {
        let holds = match condition {
            Condition::Absent(key) => current_revision_of(connection, key)?.is_none(),
            Condition::Revision(key, expected) => {
                current_revision_of(connection, key)? == Some(*expected)
            }
        };
        if !holds {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Applies the ops of `txn`, in order, at `revision`.
pub(crate) fn apply_ops(
    connection: &Connection,
    txn: &Transaction,
    revision: Revision,
) -> Result<(), StorageError> {
    let revision = i64::try_from(revision.0)
        .map_err(|_| StorageError::Corrupt(format!("revision {revision} overflows")))?;
    for op in &txn.ops {
        match op {
            Op::Put(key, value) => {
                connection
                    .prepare_cached(
                        "INSERT INTO entries (key, value, revision) VALUES (?1, ?2, ?3) \
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
                         revision = excluded.revision",
                    )
                    .and_then(|mut statement| {
                        statement.execute(params![key, value.as_slice(), revision])
                    })
                    .map_err(|err| sqlite_error(err, "put"))?;
            }
            Op::Delete(key) => {
                connection
                    .prepare_cached("DELETE FROM entries WHERE key = ?1")
                    .and_then(|mut statement| statement.execute(params![key]))
                    .map_err(|err| sqlite_error(err, "delete"))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
