//! The embedded schema migrations: applying them (`otp-service migrate`, or
//! at start-up; in one transaction under a transaction-scoped advisory
//! lock) and telling whether a database has them all (readiness).

use std::time::Duration;

use diesel::pg::Pg;
use diesel::sql_types::{BigInt, Bool};
use diesel::{Connection as _, ExpressionMethods, QueryDsl};
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use secrecy::SecretString;

use crate::connect::{Redactor, establish_unprepared, parse_target};
use crate::error::PgError;

/// Every migration in `migrations/`, compiled into the binary.
pub(crate) const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// The key of the transaction-scoped advisory lock (`pg_advisory_xact_lock`)
/// held while migrating, so that replicas starting together migrate one
/// after the other. Any fixed value works as long as no other code uses it:
/// this is "otp-migr" in ASCII.
const MIGRATION_LOCK_KEY: i64 = 0x6f74_702d_6d69_6772;

/// How long `run_migrations` waits to connect when the URL sets no
/// `connect_timeout` of its own.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

// diesel's bookkeeping table (created by the first migration run): one row per
// applied migration.
diesel::table! {
    __diesel_schema_migrations (version) {
        version -> VarChar,
    }
}

/// Applies every pending embedded migration and returns how many were
/// applied (0 when the schema was already current).
///
/// Safe to run from several processes at once: all pending migrations are
/// applied in one transaction that first takes a transaction-scoped
/// advisory lock (`pg_advisory_xact_lock`, released by the commit or
/// rollback), so migrators run one after the other and the later ones find
/// nothing pending. No session-level lock is taken and no statement is kept
/// prepared past the statement, so this works through a transaction pooler
/// (PgBouncer `pool_mode = transaction`) and on engines without
/// session-level locks. Works on both tokio runtime flavours (the
/// synchronous migration harness runs on a blocking thread).
///
/// # Errors
/// [`PgError::InvalidUrl`], [`PgError::Connect`] when the server cannot be
/// reached, [`PgError::Migration`] when a migration fails (all of this run's
/// migrations are rolled back).
pub async fn run_migrations(url: &SecretString) -> Result<usize, PgError> {
    let mut target = parse_target(url)?;
    let redactor = Redactor::new(&target.config);
    let connect_timeout = *target
        .config
        .get_connect_timeout()
        .unwrap_or(&DEFAULT_CONNECT_TIMEOUT);
    target.config.connect_timeout(connect_timeout);
    let connection = tokio::time::timeout(connect_timeout, establish_unprepared(&target))
        .await
        .map_err(|_| PgError::Connect(format!("timed out after {connect_timeout:?}")))?
        .map_err(|error| PgError::Connect(redactor.redact(error.to_string())))?;
    // No statement is kept prepared (each is closed right after it ran,
    // inside the transaction): behind a transaction pooler one kept would
    // stay on the server connection after the commit, and the next migrator
    // handed that connection would collide with its name ("prepared
    // statement \"s0\" already exists"; seen with PgBouncer 1.18).
    let applied = tokio::task::spawn_blocking(move || migrate_locked(connection))
        .await
        .map_err(|error| PgError::Migration(format!("the migration task failed: {error}")))?
        .map_err(|cause| PgError::Migration(redactor.redact(cause)))?;
    tracing::info!(applied, "database schema is current");
    Ok(applied)
}

/// Why a migration run failed: a statement of its own, or a migration.
enum Failure {
    Statement(diesel::result::Error),
    Migration(String),
}

impl From<diesel::result::Error> for Failure {
    fn from(error: diesel::result::Error) -> Self {
        Self::Statement(error)
    }
}

/// In one transaction on `connection`: takes the migration lock and applies
/// what is pending (each migration in a savepoint of its own). Blocking: run
/// it on a blocking thread.
fn migrate_locked(connection: AsyncPgConnection) -> Result<usize, String> {
    let mut connection: AsyncConnectionWrapper<AsyncPgConnection> =
        AsyncConnectionWrapper::from(connection);
    let applied = connection.transaction::<usize, Failure, _>(|connection| {
        // READ COMMITTED whatever the database's default (a database set to
        // SERIALIZABLE, as distributed engines are): the snapshot of a
        // serializable transaction is taken by its first statement, before
        // the lock wait, and would not show what the migrator that held the
        // lock applied; each READ COMMITTED statement after the wait does.
        let isolation = diesel::sql_query("SET TRANSACTION ISOLATION LEVEL READ COMMITTED");
        diesel::RunQueryDsl::execute(isolation, connection)?;
        let lock = diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
            .bind::<BigInt, _>(MIGRATION_LOCK_KEY);
        diesel::RunQueryDsl::execute(lock, connection)?;
        connection
            .run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.len())
            .map_err(|error| Failure::Migration(error.to_string()))
    });
    applied.map_err(|failure| match failure {
        Failure::Statement(error) => error.to_string(),
        Failure::Migration(cause) => cause,
    })
}

/// The version of the newest embedded migration, as diesel records it.
fn newest_version() -> Option<String> {
    diesel::migration::MigrationSource::<Pg>::migrations(&MIGRATIONS)
        .ok()?
        .iter()
        .map(|migration| migration.name().version().to_string())
        .max()
}

/// Whether the newest embedded migration has been applied to the database
/// `connection` is on.
pub(crate) async fn schema_is_current(
    connection: &mut AsyncPgConnection,
) -> diesel::QueryResult<bool> {
    let Some(newest) = newest_version() else {
        return Ok(true);
    };
    let has_table: bool = diesel::select(diesel::dsl::sql::<Bool>(
        "to_regclass('__diesel_schema_migrations') IS NOT NULL",
    ))
    .get_result(connection)
    .await?;
    if !has_table {
        return Ok(false);
    }
    diesel::select(diesel::dsl::exists(
        __diesel_schema_migrations::table.filter(__diesel_schema_migrations::version.eq(newest)),
    ))
    .get_result(connection)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_migration_has_a_version() {
        assert_eq!(newest_version().as_deref(), Some("20261202000000"));
    }
}
