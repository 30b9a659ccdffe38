//! Fresh, throwaway databases for tests, in the spirit of `#[sqlx::test]`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use custos_storage::conformance::GuardedStorage;
use custos_storage_postgres::{PostgresConfig, PostgresStorage};
use tokio_postgres::NoTls;

const URL_VARIABLE: &str = "CUSTOS_TEST_POSTGRES_URL";
const NAME_PREFIX: &str = "custos_test_";

/// The server URL tests use, or `None` (after saying so) when it is not configured.
pub(crate) fn admin_url() -> Option<String> {
    match std::env::var(URL_VARIABLE) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            println!("skipped: {URL_VARIABLE} not set");
            None
        }
    }
}

/// `url` pointed at database `name`, for URL and key/value connection strings alike.
pub(crate) fn with_database(url: &str, name: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let (base, query) = match url.find('?') {
            Some(question) => (&url[..question], &url[question..]),
            None => (url, ""),
        };
        let authority_start = scheme_end + 3;
        let authority_end = base[authority_start..]
            .find('/')
            .map_or(base.len(), |slash| authority_start + slash);
        format!("{}/{name}{query}", &base[..authority_end])
    } else {
        // In key/value strings a later setting overrides an earlier one.
        format!("{url} dbname={name}")
    }
}

async fn admin_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|err| panic!("cannot connect to {URL_VARIABLE}: {err}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Drops test databases left behind by test processes that no longer run (killed mid-test).
async fn drop_abandoned(client: &tokio_postgres::Client) {
    let rows = client
        .query(
            "SELECT datname FROM pg_database WHERE starts_with(datname, $1)",
            &[&NAME_PREFIX],
        )
        .await
        .expect("list test databases");
    for row in rows {
        let name: String = row.get(0);
        let pid = name[NAME_PREFIX.len()..]
            .split('_')
            .next()
            .and_then(|pid| pid.parse::<u32>().ok());
        let alive = pid.is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
        if !alive && std::path::Path::new("/proc/self").exists() {
            // Another cleaner may win the race; that is fine.
            let _ = client
                .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await;
        }
    }
}

/// A database created for one test and dropped (forcibly) when this guard is dropped.
pub(crate) struct TestDatabase {
    admin_url: String,
    name: String,
    pub(crate) url: String,
}

impl TestDatabase {
    pub(crate) async fn create() -> Option<TestDatabase> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let admin_url = admin_url()?;
        let client = admin_client(&admin_url).await;
        drop_abandoned(&client).await;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.subsec_nanos());
        let name = format!(
            "{NAME_PREFIX}{}_{}_{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("create test database");
        let url = with_database(&admin_url, &name);
        Some(TestDatabase {
            admin_url,
            name,
            url,
        })
    }

    pub(crate) fn config(&self) -> PostgresConfig {
        PostgresConfig {
            max_connections: 8,
            connect_timeout: Duration::from_secs(10),
            ..PostgresConfig::new(self.url.clone())
        }
    }

    pub(crate) async fn connect(&self) -> PostgresStorage {
        PostgresStorage::connect(self.config())
            .await
            .expect("connect to the test database")
    }

    /// A plain client on the test database, for poking at rows directly.
    pub(crate) async fn raw_client(&self) -> tokio_postgres::Client {
        admin_client(&self.url).await
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) async fn admin(&self) -> tokio_postgres::Client {
        admin_client(&self.admin_url).await
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop may run inside a runtime (even a single-threaded one), so the cleanup gets a
        // thread and a runtime of its own. FORCE ends the pool's connections still open.
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            runtime.block_on(async move {
                let client = admin_client(&admin_url).await;
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await
                    .expect("drop test database");
            });
        });
        if cleanup.join().is_err() && !std::thread::panicking() {
            panic!("dropping the test database failed");
        }
    }
}

/// A store on a fresh database (the guard); the database goes away with the store.
pub(crate) type ScratchStorage = GuardedStorage<PostgresStorage, TestDatabase>;

/// A store on a fresh database, or `None` when PostgreSQL is not configured.
pub(crate) async fn scratch_storage() -> Option<ScratchStorage> {
    let database = TestDatabase::create().await?;
    let storage = database.connect().await;
    Some(GuardedStorage {
        storage,
        guard: database,
    })
}

#[test]
fn database_names_replace_the_url_path() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_database("postgresql://u:p@h/db?sslmode=disable", "x"),
        "postgresql://u:p@h/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://h:1", "x"), "postgres://h:1/x");
    assert_eq!(
        with_database("host=h user=u", "x"),
        "host=h user=u dbname=x"
    );
}
