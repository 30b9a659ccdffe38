//! The PostgreSQL schema and its migrations, recorded in `custos_schema`.
//!
//! Migrations run at connect inside one transaction that first takes a transaction-scoped
//! advisory lock, so two nodes starting at once apply them one after the other: the second
//! finds the work done. A database whose schema is newer than this build is refused.

use custos_storage::StorageError;
use deadpool_postgres::Object;

use crate::pg_error;

/// The advisory lock that serializes migrations ("cust", "os" as two int4 keys). Per-key
/// commit locks use the one-bigint form, a separate lock space.
const MIGRATION_LOCK: (i32, i32) = (0x6375_7374, 0x6f73);

const MIGRATIONS: &[&str] = &[
    // 1: the sorted map and the revision sequence.
    "CREATE TABLE custos_entries (
        key TEXT COLLATE \"C\" NOT NULL PRIMARY KEY,
        value BYTEA NOT NULL,
        revision BIGINT NOT NULL CHECK (revision > 0)
    );
    CREATE SEQUENCE custos_revision AS BIGINT MINVALUE 1 START WITH 1 NO CYCLE;",
];

pub(crate) async fn migrate(client: &mut Object) -> Result<(), StorageError> {
    let known = i32::try_from(MIGRATIONS.len()).unwrap_or(i32::MAX);
    let db = client
        .transaction()
        .await
        .map_err(|err| pg_error(err, "begin migration"))?;
    db.execute(
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&MIGRATION_LOCK.0, &MIGRATION_LOCK.1],
    )
    .await
    .map_err(|err| pg_error(err, "lock migrations"))?;
    db.batch_execute(
        "CREATE TABLE IF NOT EXISTS custos_schema (
            version INTEGER NOT NULL PRIMARY KEY,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )",
    )
    .await
    .map_err(|err| pg_error(err, "create custos_schema"))?;
    let row = db
        .query_one("SELECT COALESCE(max(version), 0) FROM custos_schema", &[])
        .await
        .map_err(|err| pg_error(err, "read schema version"))?;
    let version: i32 = row
        .try_get(0)
        .map_err(|err| StorageError::Corrupt(format!("schema version: {err}")))?;
    if version > known {
        return Err(StorageError::Invalid(format!(
            "database schema version {version} is newer than this custos supports ({known}); \
             upgrade custos"
        )));
    }
    for (index, migration) in MIGRATIONS.iter().enumerate() {
        let target = i32::try_from(index + 1).unwrap_or(i32::MAX);
        if target <= version {
            continue;
        }
        tracing::info!(version = target, "applying postgres schema migration");
        db.batch_execute(migration)
            .await
            .map_err(|err| pg_error(err, "migrate"))?;
        db.execute(
            "INSERT INTO custos_schema (version) VALUES ($1)",
            &[&target],
        )
        .await
        .map_err(|err| pg_error(err, "record migration"))?;
    }
    db.commit()
        .await
        .map_err(|err| pg_error(err, "commit migration"))?;
    Ok(())
}
