//! Running the store's statements behind a connection pooler (`database.pooler`).
//!
//! diesel-async prepares every statement under a name (`s0`, `s1`, ...; a
//! counter per process) and, with its statement cache off, closes it again
//! after use: Parse, then Bind/Execute, then Close, each ended by its own Sync.
//! A pooler in session mode (or none) keeps a client on one server
//! connection, so that is safe. A pooler in transaction mode (PgBouncer
//! `pool_mode = transaction`, CloudNativePG's Pooler by default) hands the
//! server connection back at every Sync outside a transaction: the Bind can
//! reach another server connection than its Parse ("prepared statement s3
//! does not exist"), and a statement left on one server connection collides
//! with the same name from another replica ("prepared statement s3 already
//! exists").
//!
//! [`Pooler::Transaction`] therefore runs every statement of the store in an
//! explicit transaction of its own, `BEGIN; SET LOCAL statement_timeout = ..`
//! first and `COMMIT` last, with the statement cache off: the Parse, the
//! Bind and the Close (sent when the statement's last row is dropped, inside
//! the call, so before the `COMMIT`) all reach the one server connection the
//! pooler pins for the transaction, and nothing outlives it. The statement
//! bound comes with the transaction, not the login (PgBouncer refuses the
//! startup parameter `options`). Nothing else of the store needs a session:
//! no `LISTEN`, no temporary tables, no session-level advisory lock (the
//! migrations take a transaction-level one), no session `SET` but the
//! `TimeZone` and `client_encoding` diesel sets at login, which PgBouncer
//! tracks and replays on whichever server connection it hands out.
//!
//! A statement that is one transaction of its own stays one: the change's
//! conditional write still commits alone, after the use case decided, and a
//! failure at `COMMIT` (a serialization failure under `SERIALIZABLE`) is the
//! statement's failure, retried the same way.

use diesel::QueryResult;
use diesel_async::{AnsiTransactionManager, AsyncPgConnection, TransactionManager};
use std::time::Duration;

/// What sits between the service and PostgreSQL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Pooler {
    /// Nothing, or a pooler that keeps a client on one server connection for
    /// its whole session (PgBouncer `pool_mode = session`): statements run
    /// in autocommit, the statement bound is set at login.
    #[default]
    Session,
    /// A pooler that hands server connections out per transaction (PgBouncer
    /// `pool_mode = transaction`): every statement runs in a transaction of
    /// its own with its bound set in it, and statements are never kept
    /// prepared.
    Transaction,
}

impl Pooler {
    /// The setting's value: `session` or `transaction`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Transaction => "transaction",
        }
    }
}

/// How each statement of the store meets the server.
#[derive(Debug, Clone)]
pub(crate) struct Pinning {
    /// The simple query that opens a statement's transaction, or `None` when
    /// statements run in autocommit.
    begin: Option<String>,
}

impl Pinning {
    pub(crate) fn new(pooler: Pooler, statement_timeout: Duration) -> Self {
        let begin = match pooler {
            Pooler::Session => None,
            Pooler::Transaction => Some(begin_sql(statement_timeout)),
        };
        Self { begin }
    }

    /// Whether statements run in transactions of their own.
    pub(crate) const fn per_transaction(&self) -> bool {
        self.begin.is_some()
    }

    /// Opens the transaction the next statement runs in, if statements run
    /// in transactions; answers whether it did. One round trip.
    pub(crate) async fn begin(&self, connection: &mut AsyncPgConnection) -> QueryResult<bool> {
        match &self.begin {
            None => Ok(false),
            Some(sql) => {
                AnsiTransactionManager::begin_transaction_sql(connection, sql).await?;
                Ok(true)
            }
        }
    }
}

/// `BEGIN` with the statement bound of the transaction (0 = no limit).
fn begin_sql(statement_timeout: Duration) -> String {
    format!(
        "BEGIN; SET LOCAL statement_timeout = {}",
        statement_timeout.as_millis()
    )
}

/// Ends the transaction [`Pinning::begin`] opened: commits after a
/// statement that succeeded (a failed commit is the answer), rolls back
/// after one that failed (the statement's error is the answer). A rollback
/// that fails leaves the connection marked broken, so the pool drops it.
pub(crate) async fn finish<T>(
    connection: &mut AsyncPgConnection,
    result: QueryResult<T>,
) -> QueryResult<T> {
    match result {
        Ok(value) => AnsiTransactionManager::commit_transaction(connection)
            .await
            .map(|()| value),
        Err(error) => {
            if let Err(rollback) = AnsiTransactionManager::rollback_transaction(connection).await {
                tracing::debug!(%rollback, "rollback after a failed statement failed; the connection is dropped");
            }
            Err(error)
        }
    }
}

/// Evaluates `$statement` (an expression that runs statements on
/// `$connection`, a `&mut AsyncPgConnection` or a pooled connection, and
/// awaits a `QueryResult`) in a transaction of its own when `$pinning` asks
/// for it, else as it is. A macro rather than a function taking a closure,
/// so the statement can borrow the connection mutably.
macro_rules! pinned {
    ($pinning:expr, $connection:ident, $statement:expr) => {{
        match $pinning.begin(&mut *$connection).await {
            Err(error) => Err(error),
            Ok(false) => $statement,
            Ok(true) => {
                let result = $statement;
                $crate::pooler::finish(&mut *$connection, result).await
            }
        }
    }};
}
pub(crate) use pinned;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_transaction_mode_opens_transactions_with_the_bound_in_them() {
        assert!(!Pinning::new(Pooler::Session, Duration::from_secs(5)).per_transaction());
        let pinning = Pinning::new(Pooler::Transaction, Duration::from_millis(2500));
        assert!(pinning.per_transaction());
        assert_eq!(
            pinning.begin.as_deref(),
            Some("BEGIN; SET LOCAL statement_timeout = 2500")
        );
        assert_eq!(
            begin_sql(Duration::ZERO),
            "BEGIN; SET LOCAL statement_timeout = 0"
        );
        assert_eq!(Pooler::default(), Pooler::Session);
        assert_eq!(Pooler::Transaction.as_str(), "transaction");
    }
}
