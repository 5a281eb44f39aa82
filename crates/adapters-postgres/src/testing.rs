//! Throwaway databases for integration tests (feature `testing`): each
//! [`TestDatabase`] is a fresh, migrated database on the server named by
//! `DATABASE_URL`, dropped again when the value is dropped.
//!
//! With `OTP_TEST_ISOLATION=serializable` (or `repeatable read`) every test
//! database is created with that `default_transaction_isolation`, so every
//! connection the service opens to it runs its statements at that level, as
//! on a distributed engine (CockroachDB is always `SERIALIZABLE`):
//! `OTP_TEST_ISOLATION=serializable cargo test ...` proves a suite under it.
//!
//! ```no_run
//! # async fn example() {
//! let Some(db) = adapters_postgres::testing::TestDatabase::create().await else {
//!     return; // no server here, and not in CI: the test is skipped
//! };
//! // connect a PgFactorStore (or the service) to `db.url` ...
//! # }
//! ```

use std::fmt;
use std::io::Write as _;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio_postgres::{Client, Config, NoTls};

use crate::connect::{parse_url, server_address, with_causes};
use crate::migrate::run_migrations;

/// The server used when `DATABASE_URL` is not set.
pub const DEFAULT_SERVER_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The environment variable naming the default isolation of test databases.
pub const ISOLATION_VAR: &str = "OTP_TEST_ISOLATION";

/// How long connecting to the test server may take before it counts as not
/// reachable.
const ADMIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A fresh database with the service's schema, dropped (forcibly, even with
/// connections still open) when this value is dropped.
pub struct TestDatabase {
    /// The database's name, `otp_test_<16 hex digits>`.
    pub name: String,
    /// A URL of the database: the server's URL with this database's name.
    pub url: SecretString,
    /// The server's admin connection settings, to drop the database with.
    server: Config,
}

impl TestDatabase {
    /// Creates a fresh database with a random name on the server named by the
    /// environment variable `DATABASE_URL` (default [`DEFAULT_SERVER_URL`])
    /// and applies the migrations to it.
    ///
    /// When the server cannot be reached it prints one `SKIPPED: ...` line to
    /// stderr and returns `None`, unless the environment variable `CI` is set
    /// (to anything non-empty): there the database tests must run, so it
    /// panics.
    ///
    /// # Panics
    /// When `DATABASE_URL` is not a PostgreSQL URL, when the server is
    /// unreachable and `CI` is set, or when the reachable server refuses to
    /// create the database or the migrations fail.
    pub async fn create() -> Option<Self> {
        Self::create_with(true, isolation_from_env()).await
    }

    /// Like [`TestDatabase::create`], but the database's connections run
    /// `SERIALIZABLE` whatever `OTP_TEST_ISOLATION` says.
    ///
    /// # Panics
    /// As [`TestDatabase::create`].
    pub async fn create_serializable() -> Option<Self> {
        Self::create_with(true, Some("serializable")).await
    }

    /// Like [`TestDatabase::create`], but leaves the database empty: no
    /// migrations applied (for migration and readiness tests).
    ///
    /// # Panics
    /// As [`TestDatabase::create`].
    pub async fn create_empty() -> Option<Self> {
        Self::create_with(false, isolation_from_env()).await
    }

    /// Runs `sql` in this database and answers the first column of every
    /// row as text (`NULL` as an empty string), for assertions on what is
    /// stored.
    ///
    /// # Panics
    /// When the database cannot be reached or the query fails.
    pub async fn query(&self, sql: &str) -> Vec<String> {
        self.session()
            .await
            .query(sql, &[])
            .await
            .unwrap_or_else(|error| panic!("query failed: {error}"))
            .iter()
            .map(|row| row.get::<_, Option<String>>(0).unwrap_or_default())
            .collect()
    }

    /// A session of its own on this database (its connection driven by a
    /// spawned task), for tests that hold locks, read system columns or
    /// change rows underneath the store.
    ///
    /// # Panics
    /// When the database cannot be reached.
    pub async fn session(&self) -> Client {
        let mut config = self.server.clone();
        config.dbname(&self.name);
        admin_connect(&config)
            .await
            .unwrap_or_else(|error| panic!("cannot connect to {}: {error}", self.name))
    }

    /// Returns once a session of this database waits on a lock (polled
    /// every 20 ms).
    ///
    /// # Panics
    /// When none does within 10 s.
    pub async fn until_a_session_waits_on_a_lock(&self) {
        let watcher = self.session().await;
        for _ in 0..500 {
            let waiting: i64 = watcher
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE datname = current_database() AND wait_event_type = 'Lock'",
                    &[],
                )
                .await
                .unwrap_or_else(|error| panic!("pg_stat_activity: {error}"))
                .get(0);
            if waiting > 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("no session of {} waited on a lock within 10 s", self.name);
    }

    async fn create_with(migrate: bool, isolation: Option<&'static str>) -> Option<Self> {
        let server_url = std::env::var("DATABASE_URL")
            .ok()
            .filter(|url| !url.is_empty())
            .unwrap_or_else(|| DEFAULT_SERVER_URL.to_owned());
        let server_url = SecretString::from(server_url);
        let mut server =
            parse_url(&server_url).unwrap_or_else(|error| panic!("DATABASE_URL: {error}"));
        server.connect_timeout(ADMIN_CONNECT_TIMEOUT);
        let address = server_address(&server);

        let admin = match admin_connect(&server).await {
            Ok(admin) => admin,
            Err(cause) => {
                let in_ci = std::env::var_os("CI").is_some_and(|value| !value.is_empty());
                if in_ci {
                    panic!(
                        "PostgreSQL not reachable at {address} ({cause}); CI is set, so the \
                         database tests must run: start PostgreSQL or set DATABASE_URL"
                    );
                }
                // Straight to the process's stderr, past the test harness's
                // output capture, so the skip shows even when the test passes;
                // one write, so the line is not torn by other output.
                let line = format!(
                    "SKIPPED: PostgreSQL not reachable at {address}; database tests did not run\n"
                );
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
                return None;
            }
        };

        let name = format!("otp_test_{:016x}", rand::random::<u64>());
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap_or_else(|error| {
                panic!("cannot create test database {name} on {address}: {error}")
            });
        let database = Self {
            url: with_database_name(&server_url, &name),
            name,
            server,
        };
        // From here on a panic drops `database`, which drops the database again.
        if let Some(level) = isolation {
            // Before the migrations: they too must work on such a database.
            admin
                .batch_execute(&format!(
                    "ALTER DATABASE \"{}\" SET default_transaction_isolation = '{level}'",
                    database.name
                ))
                .await
                .unwrap_or_else(|error| panic!("cannot set {level} on {}: {error}", database.name));
        }
        if migrate {
            run_migrations(&database.url).await.unwrap_or_else(|error| {
                panic!("cannot migrate test database {}: {error}", database.name)
            });
        }
        Some(database)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // Its own thread and runtime: Drop may run inside or outside a
        // runtime, of either flavour, and must not block one.
        let dropper = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(admin) = admin_connect(&server).await {
                    let _ = admin
                        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                        .await;
                }
            });
        });
        let _ = dropper.join();
    }
}

impl fmt::Debug for TestDatabase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestDatabase")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The isolation `OTP_TEST_ISOLATION` asks for, if any.
///
/// # Panics
/// When it names no isolation level PostgreSQL has.
fn isolation_from_env() -> Option<&'static str> {
    let value = std::env::var(ISOLATION_VAR).ok()?;
    let value = value.trim().to_ascii_lowercase().replace(['-', '_'], " ");
    match value.as_str() {
        "" => None,
        "serializable" => Some("serializable"),
        "repeatable read" => Some("repeatable read"),
        "read committed" => Some("read committed"),
        other => panic!(
            "{ISOLATION_VAR}={other}: expected serializable, repeatable read or read committed"
        ),
    }
}

/// A plain tokio-postgres connection to the server's maintenance database,
/// driven by a task on the current runtime.
async fn admin_connect(server: &Config) -> Result<Client, String> {
    let connect = server.connect(NoTls);
    let (client, connection) = tokio::time::timeout(ADMIN_CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| format!("timed out after {ADMIN_CONNECT_TIMEOUT:?}"))?
        .map_err(|error| with_causes(&error))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// `server_url` naming database `name` instead: the URL's path replaced, or
/// for the `key=value` form a `dbname` added (a later key wins).
fn with_database_name(server_url: &SecretString, name: &str) -> SecretString {
    let url = server_url.expose_secret();
    let Some(scheme_end) = url.find("://") else {
        return SecretString::from(format!("{url} dbname={name}"));
    };
    let authority_start = scheme_end + 3;
    let authority_end = url[authority_start..]
        .find(['/', '?'])
        .map_or(url.len(), |offset| authority_start + offset);
    let query = url[authority_end..]
        .find('?')
        .map_or("", |offset| &url[authority_end + offset..]);
    SecretString::from(format!("{}/{name}{query}", &url[..authority_end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_replaces_the_path_and_keeps_the_query() {
        let cases = [
            (
                "postgres://postgres@127.0.0.1:5432/postgres",
                "postgres://postgres@127.0.0.1:5432/otp_test_1",
            ),
            (
                "postgresql://u:p@db:6543/admin?sslmode=disable&connect_timeout=3",
                "postgresql://u:p@db:6543/otp_test_1?sslmode=disable&connect_timeout=3",
            ),
            ("postgres://u@db", "postgres://u@db/otp_test_1"),
            (
                "postgres://u@db?application_name=x",
                "postgres://u@db/otp_test_1?application_name=x",
            ),
            (
                "host=db user=postgres dbname=postgres",
                "host=db user=postgres dbname=postgres dbname=otp_test_1",
            ),
        ];
        for (server, want) in cases {
            let url = with_database_name(&SecretString::from(server), "otp_test_1");
            assert_eq!(url.expose_secret(), want);
            let config = parse_url(&url).unwrap();
            assert_eq!(config.get_dbname(), Some("otp_test_1"), "{server}");
        }
    }
}
