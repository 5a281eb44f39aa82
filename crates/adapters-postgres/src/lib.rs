//! The PostgreSQL [`FactorStore`]: factors and their per-user event streams in
//! three tables (see `migrations/`), reached through a deadpool pool of
//! diesel-async connections (pure Rust, no libpq).
//!
//! Every change of a user runs in one READ COMMITTED transaction that first
//! locks the user's `otp_user_streams` row, so changes of one user are
//! serialised across any number of processes and sequence numbers have no
//! gaps.

mod connect;
mod error;
mod migrate;
mod rows;
mod schema;
#[cfg(feature = "testing")]
pub mod testing;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use diesel::sql_types::Integer;
use diesel::upsert::excluded;
use diesel::{ExpressionMethods, IntoSql, OptionalExtension, QueryDsl, SelectableHelper};
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use secrecy::SecretString;

use application::{
    ApplicationError, ChangeContext, Committed, Current, Decide, FactorStore, FactorWrite,
    Readiness, Reseal, SecretStore, StoreError, StoredSecret,
};
use chrono::{DateTime, Utc};
use domain::{Attempts, FactorEvent, FactorState, OtpFactor, SealedSecret, UserId};

use crate::connect::{Redactor, establish, parse_url};
use crate::error::{pool_error, query_error};
use crate::rows::{FactorRow, NewEventRow, state_name};
use crate::schema::{otp_events, otp_factors, otp_user_streams};

pub use crate::connect::describe_database;
pub use crate::error::PgError;
pub use crate::migrate::run_migrations;

/// How long a readiness check may take before the database counts as
/// unreachable.
const READY_TIMEOUT: Duration = Duration::from_secs(2);
/// Readiness answer when the database cannot be queried.
const UNREACHABLE: &str = "database unreachable";
/// Readiness answer when the newest embedded migration is missing.
const SCHEMA_NOT_CURRENT: &str = "schema not current: run `otp-service migrate`";

/// Where the database is and how the pool uses it.
#[derive(Debug, Clone)]
pub struct PgSettings {
    /// `postgres://user:password@host:port/database` (or libpq `key=value`
    /// form); secret because it usually holds the password.
    pub url: SecretString,
    /// Most connections the pool opens.
    pub max_connections: usize,
    /// How long opening a connection, or waiting for a free one, may take.
    pub connect_timeout: Duration,
    /// How long any statement may run, waiting for row locks included
    /// (PostgreSQL's `statement_timeout` for the pool's connections; zero =
    /// no limit). A statement over it fails the call with 503, so a stuck
    /// lock never hangs a request.
    pub statement_timeout: Duration,
}

/// A snapshot of the connection pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    /// Most connections the pool opens.
    pub max_size: usize,
    /// Connections open now (in use + idle).
    pub size: usize,
    /// Open connections idle in the pool.
    pub available: usize,
    /// Requests waiting for a connection.
    pub waiting: usize,
}

/// The [`FactorStore`] on PostgreSQL. Cheap to share behind an `Arc`; the
/// pool inside opens connections on demand.
pub struct PgFactorStore {
    pool: Pool<AsyncPgConnection>,
    redactor: Redactor,
}

impl PgFactorStore {
    /// Builds the pool. Connections are opened lazily, on first use, so this
    /// succeeds while the database is down; a malformed URL fails here.
    ///
    /// # Errors
    /// [`PgError::InvalidUrl`] for a URL that does not parse or names no
    /// host, [`PgError::InvalidSettings`] for a pool of no connections,
    /// [`PgError::Pool`] if the pool cannot be built.
    pub fn connect(settings: &PgSettings) -> Result<Self, PgError> {
        if settings.max_connections == 0 {
            return Err(PgError::InvalidSettings(
                "max_connections must be at least 1",
            ));
        }
        let mut config = parse_url(&settings.url)?;
        // Bounds the TCP connect of each new connection (the pool's create timeout bounds the whole login).
        config.connect_timeout(settings.connect_timeout);
        // Every statement of the pool's connections, lock waits included, is
        // bounded: set at login, so it costs no round trip per request.
        let bound = format!(
            "-c statement_timeout={}",
            settings.statement_timeout.as_millis()
        );
        let options = match config.get_options() {
            Some(existing) if !existing.trim().is_empty() => format!("{existing} {bound}"),
            _ => bound,
        };
        config.options(options);
        let redactor = Redactor::new(&config);

        let mut manager_config = ManagerConfig::<AsyncPgConnection>::default();
        // New connections come from the parsed config, so the URL itself never reaches diesel or its instrumentation.
        manager_config.custom_setup = Box::new(move |_unused_url| {
            let config = config.clone();
            Box::pin(async move { establish(&config).await })
        });
        // Recycle check: `SELECT 1` on an idle connection before it is handed out again, so dead ones are replaced.
        manager_config.recycling_method = RecyclingMethod::Verified;
        let manager = AsyncDieselConnectionManager::new_with_config(String::new(), manager_config);

        let pool = Pool::builder(manager)
            // At most this many connections to the database from this process.
            .max_size(settings.max_connections)
            // Wait timeout: how long a request waits for a free connection when all are busy.
            .wait_timeout(Some(settings.connect_timeout))
            // Create timeout: how long opening (connect + login + session setup) a new connection may take.
            .create_timeout(Some(settings.connect_timeout))
            // Recycle timeout: how long the recycle check (`SELECT 1`) may take before the connection is dropped.
            .recycle_timeout(Some(settings.connect_timeout))
            // The timeouts above need a runtime to measure time with.
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|error| PgError::Pool(redactor.redact(error.to_string())))?;
        Ok(Self { pool, redactor })
    }

    /// The pool's connections right now, for the connection gauges.
    #[must_use]
    pub fn pool_status(&self) -> PoolStatus {
        let status = self.pool.status();
        PoolStatus {
            max_size: status.max_size,
            size: status.size,
            available: status.available,
            waiting: status.waiting,
        }
    }

    async fn connection(&self) -> Result<Object<AsyncPgConnection>, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|error| pool_error(&error, &self.redactor))
    }

    async fn check_ready(&self) -> Result<(), String> {
        let unreachable = |cause: String| {
            tracing::warn!(%cause, "readiness: database unreachable");
            UNREACHABLE.to_owned()
        };
        let mut connection = self
            .connection()
            .await
            .map_err(|error| unreachable(error.to_string()))?;
        diesel::select(1_i32.into_sql::<Integer>())
            .get_result::<i32>(&mut connection)
            .await
            .map_err(|error| unreachable(error.to_string()))?;
        match migrate::schema_is_current(&mut connection).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(SCHEMA_NOT_CURRENT.to_owned()),
            Err(error) => Err(unreachable(error.to_string())),
        }
    }
}

impl fmt::Debug for PgFactorStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.pool.status();
        f.debug_struct("PgFactorStore")
            .field("max_connections", &status.max_size)
            .field("open_connections", &status.size)
            .field("idle_connections", &status.available)
            .finish_non_exhaustive()
    }
}

/// Why a change did not commit: the decision refused it, or the store failed.
enum ChangeError {
    Refused(ApplicationError),
    Store(StoreError),
}

impl From<diesel::result::Error> for ChangeError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Store(query_error(error))
    }
}

impl From<StoreError> for ChangeError {
    fn from(error: StoreError) -> Self {
        Self::Store(error)
    }
}

/// The body of [`FactorStore::change`], inside its transaction.
async fn change_in_transaction(
    connection: &mut AsyncPgConnection,
    user: &UserId,
    context: &ChangeContext,
    decide: Decide,
) -> Result<Committed, ChangeError> {
    // Lock the user's stream row (creating it on first use) and read its head
    // and wrong-code count in one statement. Concurrent changers of this user
    // wait here until the holder commits; the DO UPDATE then returns the
    // committed values.
    let (last_sequence, failed_attempts, last_failure_at): (i64, i32, Option<DateTime<Utc>>) =
        diesel::insert_into(otp_user_streams::table)
            .values((
                otp_user_streams::user_id.eq(user.as_str()),
                otp_user_streams::last_sequence.eq(0_i64),
            ))
            .on_conflict(otp_user_streams::user_id)
            .do_update()
            .set(otp_user_streams::user_id.eq(excluded(otp_user_streams::user_id)))
            .returning((
                otp_user_streams::last_sequence,
                otp_user_streams::failed_attempts,
                otp_user_streams::last_failure_at,
            ))
            .get_result(connection)
            .await?;
    let attempts = Attempts {
        failures: u32::try_from(failed_attempts).map_err(|_| {
            StoreError::Corrupt(format!("negative failed_attempts for user {user}"))
        })?,
        last_failure_at,
    };

    // A separate statement, so its READ COMMITTED snapshot is taken after the
    // lock was granted and sees every change committed before ours.
    let current: Option<OtpFactor> = otp_factors::table
        .find(user.as_str())
        .select(FactorRow::as_select())
        .first(connection)
        .await
        .optional()?
        .map(FactorRow::into_factor)
        .transpose()?;

    let change = decide(Current {
        factor: current.as_ref(),
        attempts,
    })
    .map_err(ChangeError::Refused)?;

    match change.factor {
        FactorWrite::Keep => {}
        FactorWrite::Put(factor) => {
            let row = FactorRow::new(user, factor);
            diesel::insert_into(otp_factors::table)
                .values(&row)
                .on_conflict(otp_factors::user_id)
                .do_update()
                .set(&row)
                .execute(connection)
                .await?;
        }
        FactorWrite::Delete => {
            diesel::delete(otp_factors::table.find(user.as_str()))
                .execute(connection)
                .await?;
        }
    }

    let mut sequence = last_sequence;
    let mut events = Vec::with_capacity(change.events.len());
    let mut rows = Vec::with_capacity(change.events.len());
    for kind in change.events {
        sequence = sequence.checked_add(1).ok_or_else(|| {
            StoreError::Corrupt(format!("event sequence of user {user} overflows"))
        })?;
        rows.push(NewEventRow::new(user, sequence, kind, context));
        events.push(FactorEvent {
            kind,
            sequence: u64::try_from(sequence).map_err(|_| {
                StoreError::Corrupt(format!("negative event sequence for user {user}"))
            })?,
            at: context.at,
        });
    }
    if !rows.is_empty() {
        diesel::insert_into(otp_events::table)
            .values(&rows)
            .execute(connection)
            .await?;
    }
    let attempts = change.attempts.unwrap_or(attempts);
    if sequence != last_sequence
        || attempts.failures != u32::try_from(failed_attempts).unwrap_or(u32::MAX)
        || attempts.last_failure_at != last_failure_at
    {
        diesel::update(otp_user_streams::table.find(user.as_str()))
            .set((
                otp_user_streams::last_sequence.eq(sequence),
                otp_user_streams::failed_attempts
                    .eq(i32::try_from(attempts.failures).unwrap_or(i32::MAX)),
                otp_user_streams::last_failure_at.eq(attempts.last_failure_at),
            ))
            .execute(connection)
            .await?;
    }
    Ok(Committed {
        events,
        refusal: change.refusal,
    })
}

#[async_trait]
impl FactorStore for PgFactorStore {
    #[tracing::instrument(
        name = "db.query",
        skip_all,
        fields(otel.kind = "client", db.system.name = "postgresql", db.operation.name = "find")
    )]
    async fn find(&self, user: &UserId) -> Result<Option<OtpFactor>, StoreError> {
        let mut connection = self.connection().await?;
        otp_factors::table
            .find(user.as_str())
            .select(FactorRow::as_select())
            .first(&mut connection)
            .await
            .optional()
            .map_err(query_error)?
            .map(FactorRow::into_factor)
            .transpose()
    }

    #[tracing::instrument(
        name = "db.transaction",
        skip_all,
        fields(otel.kind = "client", db.system.name = "postgresql", db.operation.name = "change")
    )]
    async fn change(
        &self,
        user: &UserId,
        context: ChangeContext,
        decide: Decide,
    ) -> Result<Committed, ApplicationError> {
        let mut connection = self.connection().await?;
        // An error from the body rolls the transaction back: nothing written,
        // no sequence number used.
        let outcome = connection
            .transaction(async move |connection| {
                change_in_transaction(connection, user, &context, decide).await
            })
            .await;
        match outcome {
            Ok(committed) => Ok(committed),
            Err(ChangeError::Refused(error)) => Err(error),
            Err(ChangeError::Store(error)) => Err(error.into()),
        }
    }

    #[tracing::instrument(
        name = "db.query",
        skip_all,
        fields(otel.kind = "client", db.system.name = "postgresql", db.operation.name = "purge_pending")
    )]
    async fn purge_pending(&self, added_before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut connection = self.connection().await?;
        let purged = diesel::delete(
            otp_factors::table
                .filter(otp_factors::state.eq(state_name(FactorState::NotReady)))
                .filter(otp_factors::created_at.lt(added_before)),
        )
        .execute(&mut connection)
        .await
        .map_err(query_error)?;
        Ok(purged as u64)
    }
}

#[async_trait]
impl SecretStore for PgFactorStore {
    #[tracing::instrument(
        name = "db.query",
        skip_all,
        fields(otel.kind = "client", db.system.name = "postgresql", db.operation.name = "sealed_under_other_keys")
    )]
    async fn sealed_under_other_keys(
        &self,
        key_id: &str,
        after: Option<&UserId>,
        limit: usize,
    ) -> Result<Vec<StoredSecret>, StoreError> {
        let mut connection = self.connection().await?;
        let mut query = otp_factors::table
            .filter(otp_factors::key_id.ne(key_id))
            .select((
                otp_factors::user_id,
                otp_factors::key_id,
                otp_factors::sealed_secret,
            ))
            .order(otp_factors::user_id.asc())
            .limit(i64::try_from(limit).unwrap_or(i64::MAX))
            .into_boxed();
        if let Some(after) = after {
            query = query.filter(otp_factors::user_id.gt(after.as_str().to_owned()));
        }
        let rows: Vec<(String, String, Vec<u8>)> =
            query.load(&mut connection).await.map_err(query_error)?;
        rows.into_iter()
            .map(|(user_id, key_id, sealed)| {
                let user = UserId::parse(user_id).map_err(|error| {
                    StoreError::Corrupt(format!("otp_factors row with a bad user id: {error}"))
                })?;
                Ok(StoredSecret {
                    user,
                    sealed: SealedSecret { key_id, sealed },
                })
            })
            .collect()
    }

    #[tracing::instrument(
        name = "db.transaction",
        skip_all,
        fields(otel.kind = "client", db.system.name = "postgresql", db.operation.name = "reseal")
    )]
    async fn reseal(&self, mut batch: Vec<Reseal>) -> Result<u64, StoreError> {
        if batch.is_empty() {
            return Ok(0);
        }
        // Lock the users' stream rows in user id order (the order every
        // transaction that takes several of them uses, so no deadlock), so a
        // re-seal serialises with the users' changes.
        batch.sort_by(|a, b| a.user.cmp(&b.user));
        let mut connection = self.connection().await?;
        let written = connection
            .transaction(async move |connection| {
                let users: Vec<&str> = batch.iter().map(|r| r.user.as_str()).collect();
                otp_user_streams::table
                    .filter(otp_user_streams::user_id.eq_any(&users))
                    .select(otp_user_streams::user_id)
                    .order(otp_user_streams::user_id.asc())
                    .for_update()
                    .load::<String>(connection)
                    .await?;
                let mut written = 0_u64;
                for reseal in &batch {
                    let updated = diesel::update(
                        otp_factors::table
                            .filter(otp_factors::user_id.eq(reseal.user.as_str()))
                            .filter(otp_factors::key_id.eq(&reseal.old.key_id))
                            .filter(otp_factors::sealed_secret.eq(&reseal.old.sealed)),
                    )
                    .set((
                        otp_factors::key_id.eq(&reseal.new.key_id),
                        otp_factors::sealed_secret.eq(&reseal.new.sealed),
                    ))
                    .execute(connection)
                    .await?;
                    written += updated as u64;
                }
                Ok::<u64, diesel::result::Error>(written)
            })
            .await
            .map_err(query_error)?;
        Ok(written)
    }
}

#[async_trait]
impl Readiness for PgFactorStore {
    /// Ok when `SELECT 1` answers and the newest embedded migration is
    /// applied, within two seconds.
    async fn ready(&self) -> Result<(), String> {
        tokio::time::timeout(READY_TIMEOUT, self.check_ready())
            .await
            .unwrap_or_else(|_| {
                tracing::warn!(timeout = ?READY_TIMEOUT, "readiness: database check timed out");
                Err(UNREACHABLE.to_owned())
            })
    }
}
