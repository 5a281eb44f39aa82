//! The adapter's own errors (connecting, migrating) and how database
//! failures become the application's [`StoreError`]. No message ever holds
//! the database URL or its password.

use application::StoreError;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use crate::connect::Redactor;

/// Why the store could not be set up or the schema migrated.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The database URL cannot be parsed; the reason quotes nothing from it.
    #[error("invalid database URL: {0}")]
    InvalidUrl(&'static str),
    /// The URL's TLS settings cannot be used (such as an unreadable
    /// `sslrootcert` file); the reason quotes nothing from the URL.
    #[error("invalid database TLS settings: {0}")]
    Tls(String),
    /// A pool setting is out of range.
    #[error("invalid database settings: {0}")]
    InvalidSettings(&'static str),
    /// The connection pool could not be built.
    #[error("cannot build the database connection pool: {0}")]
    Pool(String),
    /// No connection could be opened.
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    /// A migration, or the lock that serialises migrations, failed.
    #[error("database migration failed: {0}")]
    Migration(String),
}

/// A failed query as the application sees it: integrity and decoding
/// failures mean the stored data or this code is wrong ([`StoreError::Corrupt`]);
/// everything else (lost connection, timeouts, server shutting down, missing
/// tables before `migrate`) is worth retrying ([`StoreError::Unavailable`]).
pub(crate) fn query_error(error: DieselError) -> StoreError {
    match error {
        DieselError::DeserializationError(cause) => {
            StoreError::Corrupt(format!("a stored value cannot be read: {cause}"))
        }
        DieselError::NotFound => StoreError::Corrupt("an expected row is missing".to_owned()),
        DieselError::DatabaseError(
            kind @ (DatabaseErrorKind::UniqueViolation
            | DatabaseErrorKind::ForeignKeyViolation
            | DatabaseErrorKind::NotNullViolation
            | DatabaseErrorKind::CheckViolation),
            info,
        ) => StoreError::Corrupt(format!("{kind:?}: {}", info.message())),
        other => StoreError::Unavailable(other.to_string()),
    }
}

/// A connection that could not be had from the pool.
pub(crate) fn pool_error(
    error: &diesel_async::pooled_connection::deadpool::PoolError,
    redactor: &Redactor,
) -> StoreError {
    use deadpool::managed::PoolError;
    let cause = match error {
        PoolError::Timeout(kind) => format!("timed out getting a database connection ({kind:?})"),
        PoolError::Backend(cause) => format!("cannot open a database connection: {cause}"),
        other => format!("database connection pool: {other}"),
    };
    StoreError::Unavailable(redactor.redact(cause))
}
