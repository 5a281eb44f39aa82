//! The PostgreSQL [`FactorStore`]: factors and their per-user event streams in
//! three tables (see `migrations/`), reached through a deadpool pool of
//! diesel-async connections (pure Rust, no libpq).
//!
//! A change of a user is optimistic: one statement reads the user's stream
//! head and factor, the use case decides on them, and one conditional
//! statement in autocommit writes the stream head, the factor and the events
//! only if the head is still the one read (a compare-and-swap on its
//! version). A change that lost the race to another change of the same user
//! reads and decides again; a first try that did not apply decides again on
//! the state its write found, in the same statement, when first tries miss
//! often (see `misses`). So changes of one user are serialised across any
//! number of processes, sequence numbers have no gaps, and no lock is held
//! while the use case decides (or opens a secret). Two round trips and one
//! commit per change, one round trip per read (see `statements`). A change
//! of a user this replica wrote last first decides on the state it wrote,
//! without the read, under the same compare-and-swap (see `known`): one
//! round trip; two if that state went stale and first tries carry the
//! found read, three if not.
//!
//! When several users' changes wait to write at the same moment, their
//! writes run as one statement and one commit (see `combine`), each still
//! applied only if its own compare-and-swap holds. With that off
//! (`write_batch_size` 1) every statement is a transaction of one user only
//! (a page of the re-seal or the purge is one statement per user), so the
//! store distributes by `user_id` on Citus, YugabyteDB or CockroachDB with
//! no cross-shard transaction. A statement rolled back by a serialization failure or a
//! deadlock runs again, a bounded number of times (see `retry`), then the
//! call is answered as unavailable (503).

mod combine;
mod connect;
mod error;
mod known;
mod migrate;
mod misses;
mod pooler;
mod reads;
mod retry;
mod rows;
mod schema;
mod statements;
#[cfg(feature = "testing")]
pub mod testing;
mod tls;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use diesel::dsl::sql;
use diesel::pg::Pg;
use diesel::result::DatabaseErrorKind;
use diesel::sql_types::{Bool, Integer, Text};
use diesel::{ExpressionMethods, IntoSql, QueryDsl, SelectableHelper};
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use secrecy::SecretString;

use application::{
    ApplicationError, Change, ChangeContext, Committed, Current, Decide, FactorStore, FactorWrite,
    NotReady, Readiness, RecoveryWrite, Reseal, SecretStore, StoreError, StoredSecret,
};
use chrono::{DateTime, Utc};
use domain::{Attempts, FactorEvent, OrgId, OtpFactor, RecoveryCodes, RecoveryHash, UserId};

use crate::combine::{Combiner, Found, Limits, Outcome, Writes};
use crate::connect::{Redactor, Target, establish, establish_unprepared, parse_target};
use crate::error::{pool_error, query_error};
use crate::known::{KnownStates, State, Use};
use crate::misses::Misses;
use crate::pooler::{Pinning, pinned};
use crate::reads::{READ_STATEMENTS, ReadOutcome, Readers, Reads};
use crate::retry::{Reason, retrying};
use crate::rows::FactorRow;
use crate::schema::{otp_events, otp_factors, otp_user_streams};
use crate::statements::{
    FactorOp, FactorValues, Head, PurgePending, ReadState, RecoveryOp, StateRow, WriteAlone,
    WriteAnswer, WriteChange, WriteFirst, WriteReseal,
};

pub use crate::connect::describe_database;
pub use crate::error::PgError;
pub use crate::migrate::run_migrations;
pub use crate::pooler::Pooler;

/// How long a readiness check may take before the database counts as
/// unreachable.
const READY_TIMEOUT: Duration = Duration::from_secs(2);
/// Answer of a change that lost every round to other changes of the user.
const CONTENDED: &str = "too many concurrent changes of this user";
/// Pending factors purged per run (the next run goes on).
const PURGE_BATCH: i64 = 1000;

/// Where the database is and how the pool uses it.
#[derive(Debug, Clone)]
pub struct PgSettings {
    /// `postgres://user:password@host:port/database` (or libpq `key=value`
    /// form); secret because it usually holds the password.
    pub url: SecretString,
    /// Most connections each of the store's two pools opens (one for
    /// current-thread runtimes, the REST workers; one for the multi-thread
    /// runtime, gRPC): up to twice this in all.
    pub max_connections: usize,
    /// How long opening a connection, or waiting for a free one, may take.
    pub connect_timeout: Duration,
    /// How long any statement may run, waiting for row locks included
    /// (PostgreSQL's `statement_timeout` for the pool's connections; zero =
    /// no limit). A statement over it fails the call with 503, so a stuck
    /// lock never hangs a request.
    pub statement_timeout: Duration,
    /// Keep statements prepared per connection (diesel's statement cache);
    /// off, every statement is prepared anew (an extra round trip each).
    /// Always off with [`Pooler::Transaction`].
    pub prepared_statements: bool,
    /// What sits between the service and the database (see [`Pooler`]):
    /// with [`Pooler::Transaction`] every statement runs in a transaction of
    /// its own and none is kept prepared.
    pub pooler: Pooler,
    /// Most users' writes combined into one statement and one commit when
    /// changes of several users wait at once (see `combine`); 1 or 0 runs
    /// every write on its own (a statement and a transaction per user, as
    /// a distributed engine wants).
    pub write_batch_size: usize,
    /// Most combined statements in flight at once per pool: writes that
    /// arrive while they all run wait for the next one, which takes them
    /// together.
    pub write_batches: usize,
    /// Most users' reads combined into one statement when reads of several
    /// users wait at once (see `reads`); 1 or 0 runs every read on its own.
    pub read_batch_size: usize,
    /// Most users whose state, as this replica last committed it, a change
    /// may decide on without reading it first (see `known`); 0 keeps none,
    /// so every change of a user who has a stream row reads first.
    pub known_states: usize,
    /// How long such a state is used after it was committed.
    pub known_state_ttl: Duration,
}

/// The condition of a pending factor, as the partial index
/// `otp_factors_pending_created_at` states it.
const PENDING: &str = "otp_factors.state = 'not_ready'";

/// The purge's query: the first [`PURGE_BATCH`] users, in order, whose
/// pending factor was added before `added_before`. The state is a literal,
/// not a bind: only so can the generic plan ([`login_options`]) use the
/// partial index of pending factors; with a bind it scanned every factor.
fn stale_pending(added_before: DateTime<Utc>) -> otp_factors::BoxedQuery<'static, Pg, Text> {
    otp_factors::table
        .select(otp_factors::user_id)
        .filter(sql::<Bool>(PENDING))
        .filter(otp_factors::created_at.lt(added_before))
        .order(otp_factors::user_id.asc())
        .limit(PURGE_BATCH)
        .into_boxed()
}

/// The `options` of each connection's login: generic plans for prepared
/// statements, then the URL's own `options` (which so win over it), then
/// the statement bound (which wins over the URL's).
///
/// Generic plans from the first call: every statement here finds its rows
/// by key, so the generic plan is the custom one; but for the combined
/// statements the custom plan, costed on the real array lengths, looks
/// cheaper than the generic one costed on PostgreSQL's guess of 10
/// elements, and PostgreSQL kept planning them anew on every call (a
/// quarter of its CPU per Verify: docs/performance.md).
fn login_options(existing: Option<&str>, statement_timeout: Duration) -> String {
    let generic_plans = "-c plan_cache_mode=force_generic_plan";
    let bound = format!("-c statement_timeout={}", statement_timeout.as_millis());
    match existing {
        Some(existing) if !existing.trim().is_empty() => {
            format!("{generic_plans} {existing} {bound}")
        }
        _ => format!("{generic_plans} {bound}"),
    }
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
    /// Connections opened (and so driven) on current-thread runtimes: the
    /// REST workers.
    current_thread: Pool<AsyncPgConnection>,
    /// Connections opened on the multi-thread runtime: gRPC, background jobs.
    multi_thread: Pool<AsyncPgConnection>,
    redactor: Redactor,
    /// Whether each statement runs in a transaction of its own (`pooler`).
    pinning: Pinning,
    /// The write queues of `current_thread` and `multi_thread`, when
    /// writes are combined.
    combiners: Option<[Arc<Combiner>; 2]>,
    /// The read queues of `current_thread` and `multi_thread`, when reads
    /// are combined.
    readers: Option<[Arc<Readers>; 2]>,
    /// The states this replica last committed of recently changed users,
    /// when kept (`known_states`).
    known: Option<KnownStates>,
    /// How often first tries miss: whether they carry the found read.
    misses: Misses,
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
        if settings.write_batch_size > 1 && settings.write_batches == 0 {
            return Err(PgError::InvalidSettings(
                "write_batches must be at least 1 when write_batch_size is above 1",
            ));
        }
        let mut target = parse_target(&settings.url)?;
        // Bounds the TCP connect of each new connection (the pool's create timeout bounds the whole login).
        target.config.connect_timeout(settings.connect_timeout);
        // Every statement of the pool's connections, lock waits included, is
        // bounded: set at login, so it costs no round trip per request
        // (behind a transaction pooler, which refuses `options`, set in each
        // statement's transaction instead: see `pooler`).
        // Prepared statements use their generic plan (`login_options`).
        if settings.pooler == Pooler::Session {
            let options = login_options(target.config.get_options(), settings.statement_timeout);
            target.config.options(options);
        }
        let redactor = Redactor::new(&target.config);

        let pool = |target: Target| build_pool(target, settings, &redactor);
        let current_thread = pool(target.clone())?;
        let multi_thread = pool(target)?;
        let pinning = Pinning::new(settings.pooler, settings.statement_timeout);
        let limits = Limits {
            most_users: settings.write_batch_size,
            most_statements: settings.write_batches,
            most_wait: (!settings.statement_timeout.is_zero())
                .then_some(settings.statement_timeout),
        };
        let combiners = (settings.write_batch_size > 1).then(|| {
            [&current_thread, &multi_thread].map(|pool| {
                Arc::new(Combiner::new(
                    pool.clone(),
                    redactor.clone(),
                    limits,
                    Writes {
                        pinning: pinning.clone(),
                    },
                ))
            })
        });
        let readers = (settings.read_batch_size > 1).then(|| {
            [&current_thread, &multi_thread].map(|pool| {
                Arc::new(Readers::new(
                    pool.clone(),
                    redactor.clone(),
                    Limits {
                        most_users: settings.read_batch_size,
                        most_statements: READ_STATEMENTS,
                        most_wait: limits.most_wait,
                    },
                    Reads {
                        pinning: pinning.clone(),
                    },
                ))
            })
        });
        Ok(Self {
            current_thread,
            multi_thread,
            redactor,
            pinning,
            combiners,
            readers,
            known: KnownStates::new(settings.known_states, settings.known_state_ttl),
            misses: Misses::new(),
        })
    }

    /// The pool's connections right now, for the connection gauges.
    #[must_use]
    pub fn pool_status(&self) -> PoolStatus {
        let (a, b) = (self.current_thread.status(), self.multi_thread.status());
        PoolStatus {
            max_size: a.max_size + b.max_size,
            size: a.size + b.size,
            available: a.available + b.available,
            waiting: a.waiting + b.waiting,
        }
    }

    /// A connection from the pool of the runtime this task runs on. A
    /// connection's driver task lives on the runtime that opened it; a call
    /// on another runtime's connection would wake that runtime's thread for
    /// every round trip.
    async fn connection(&self) -> Result<Object<AsyncPgConnection>, StoreError> {
        let pool = if on_current_thread_runtime() {
            &self.current_thread
        } else {
            &self.multi_thread
        };
        pool.get()
            .await
            .map_err(|error| pool_error(&error, &self.redactor))
    }

    /// The read queue of the runtime this task runs on (see `connection`).
    fn readers(&self) -> Option<&Arc<Readers>> {
        self.readers
            .as_ref()
            .map(|readers| &readers[usize::from(!on_current_thread_runtime())])
    }

    /// `user`'s read from the read queue; one whose connection was lost
    /// runs again, once (`fresh` records that it did).
    async fn read_queued(readers: &Arc<Readers>, user: &UserId, fresh: &mut bool) -> ReadOutcome {
        match readers.read(user.as_str()).await {
            ReadOutcome::Lost(error) if !*fresh => {
                tracing::debug!(%error, "connection lost under the read; reading again on a fresh one");
                *fresh = true;
                readers.read(user.as_str()).await
            }
            outcome => outcome,
        }
    }

    /// `find` through the read queue: a read rolled back (40001, 40P01)
    /// runs again, up to [`retry::READ_ATTEMPTS`] times in all, as a lone
    /// read does.
    async fn find_queued(
        readers: &Arc<Readers>,
        user: &UserId,
    ) -> Result<Option<OtpFactor>, StoreError> {
        let mut fresh = false;
        let mut attempt: u32 = 1;
        loop {
            match Self::read_queued(readers, user, &mut fresh).await {
                ReadOutcome::Read(Some((_, columns, _))) => {
                    return FactorRow::from_columns(user, columns);
                }
                ReadOutcome::Read(None) => return Ok(None),
                ReadOutcome::RolledBack(reason) if attempt < retry::READ_ATTEMPTS => {
                    retry::count(reason);
                    tokio::time::sleep(retry::pause(attempt)).await;
                    attempt += 1;
                }
                ReadOutcome::RolledBack(reason) => {
                    return Err(StoreError::Unavailable(format!(
                        "the read was rolled back {attempt} times ({})",
                        reason.as_str()
                    )));
                }
                ReadOutcome::Lost(error) | ReadOutcome::Failed(error) => return Err(error),
            }
        }
    }

    /// The user's state for a change: from the read queue when reads are
    /// combined, else on `connection` (taken from the pool if there is none
    /// yet, and kept there for a write that runs alone). A read that lost
    /// its connection runs again, once, on a fresh one (`fresh` records
    /// that it did). `Ok(Err(reason))`: it was rolled back; read again.
    async fn read_for_change(
        &self,
        user: &UserId,
        connection: &mut Option<Object<AsyncPgConnection>>,
        fresh: &mut bool,
    ) -> Result<Result<State, Reason>, StoreError> {
        if let Some(readers) = self.readers() {
            // Back to the pool while the read waits (a connection kept
            // from a lone write of an earlier round): the read queue's
            // tasks need the pool's connections.
            *connection = None;
            return match Self::read_queued(readers, user, fresh).await {
                ReadOutcome::Read(row) => state_of(user, row).map(Ok),
                ReadOutcome::RolledBack(reason) => Ok(Err(reason)),
                ReadOutcome::Lost(error) | ReadOutcome::Failed(error) => Err(error),
            };
        }
        let pinning = &self.pinning;
        let mut conn = match connection.take() {
            Some(conn) => conn,
            None => self.connection().await?,
        };
        let read = match pinned!(pinning, conn, read_state(&mut conn, user).await) {
            Err(error) if lost_connection(&error) && !*fresh => {
                // A connection that died while idle in the pool: drop it
                // and read again, once, on a fresh one.
                tracing::debug!(%error, "connection lost before the read; retrying on a fresh one");
                drop(Object::take(conn));
                conn = self.connection().await?;
                *fresh = true;
                pinned!(pinning, conn, read_state(&mut conn, user).await)
            }
            read => read,
        };
        *connection = Some(conn);
        match read {
            Ok(state) => Ok(Ok(state)),
            Err(error) => retry::transient(&error)
                .map(Err)
                .ok_or_else(|| query_error(error)),
        }
    }

    /// Runs one planned write: with other users' writes when it can be
    /// combined (and `solo` is not asked for), else on `connection` (taken
    /// from the pool if there is none yet).
    async fn write(
        &self,
        write: Box<WriteChange>,
        solo: bool,
        connection: &mut Option<Object<AsyncPgConnection>>,
    ) -> Result<Outcome, StoreError> {
        if !solo
            && let Some(combiners) = &self.combiners
            && let Some(kind) = write.combinable()
        {
            // Back to the pool while the write waits: the combined
            // statement runs on a connection of its own.
            *connection = None;
            let combiner = &combiners[usize::from(!on_current_thread_runtime())];
            return Ok(combiner.submit(write, kind).await);
        }
        let connection = match connection {
            Some(connection) => connection,
            None => connection.insert(self.connection().await?),
        };
        let pinning = &self.pinning;
        Ok(
            match pinned!(
                pinning,
                connection,
                run_write(&write, &mut *connection).await
            ) {
                Ok(answer) => Outcome::of_answer(answer, false, write.find),
                Err(error) => Outcome::of_error(error, false),
            },
        )
    }

    /// Keeps `state` as the one this replica knows `user` in (when known
    /// states are kept).
    fn remember(&self, user: &UserId, state: State) {
        if let Some(known) = &self.known {
            known.remember(user.as_str(), state);
        }
    }

    async fn check_ready(&self) -> Result<(), NotReady> {
        let unreachable = |cause: String| {
            tracing::warn!(%cause, "readiness: database unreachable");
            NotReady::Unreachable
        };
        let mut connection = self
            .connection()
            .await
            .map_err(|error| unreachable(error.to_string()))?;
        let pinning = &self.pinning;
        pinned!(
            pinning,
            connection,
            diesel::select(1_i32.into_sql::<Integer>())
                .get_result::<i32>(&mut connection)
                .await
        )
        .map_err(|error| unreachable(error.to_string()))?;
        match retrying!(pinned!(
            pinning,
            connection,
            migrate::schema_is_current(&mut connection).await
        )) {
            Ok(true) => Ok(()),
            Ok(false) => Err(NotReady::SchemaBehind),
            Err(error) => Err(unreachable(error.to_string())),
        }
    }
}

impl fmt::Debug for PgFactorStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.pool_status();
        f.debug_struct("PgFactorStore")
            .field("max_connections", &status.max_size)
            .field("open_connections", &status.size)
            .field("idle_connections", &status.available)
            .finish_non_exhaustive()
    }
}

/// Whether this task runs on a current-thread runtime (a REST worker).
fn on_current_thread_runtime() -> bool {
    matches!(
        tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()),
        Ok(tokio::runtime::RuntimeFlavor::CurrentThread)
    )
}

/// A pool of connections opened from `config` with the store's settings.
fn build_pool(
    target: Target,
    settings: &PgSettings,
    redactor: &Redactor,
) -> Result<Pool<AsyncPgConnection>, PgError> {
    // Behind a transaction pooler a statement kept prepared would outlive
    // the transaction that pinned its server connection.
    let prepared_statements = settings.prepared_statements && settings.pooler == Pooler::Session;
    let mut manager_config = ManagerConfig::<AsyncPgConnection>::default();
    // New connections come from the parsed config, so the URL itself never reaches diesel or its instrumentation.
    manager_config.custom_setup = Box::new(move |_unused_url| {
        let target = target.clone();
        Box::pin(async move {
            if prepared_statements {
                establish(&target).await
            } else {
                establish_unprepared(&target).await
            }
        })
    });
    // Recycle check: no query per checkout. A connection whose socket
    // closed (its driver task ended) is replaced; one that dies between
    // the check and the first statement costs that read one retry on a
    // fresh connection (see `change` and `find`).
    manager_config.recycling_method = RecyclingMethod::Fast;
    let manager = AsyncDieselConnectionManager::new_with_config(String::new(), manager_config);

    Pool::builder(manager)
        // At most this many connections to the database per pool (a process keeps two).
        .max_size(settings.max_connections)
        // Wait timeout: how long a request waits for a free connection when all are busy.
        .wait_timeout(Some(settings.connect_timeout))
        // Create timeout: how long opening (connect + login + session setup) a new connection may take.
        .create_timeout(Some(settings.connect_timeout))
        // Recycle timeout: bounds the recycle check (no query with `Fast`).
        .recycle_timeout(Some(settings.connect_timeout))
        // The timeouts above need a runtime to measure time with.
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|error| PgError::Pool(redactor.redact(error.to_string())))
}

/// How many times a change reads, decides and tries its write before it
/// gives up with 503: each lost round means another change of the same user
/// committed in between (or the engine rolled the statement back with a
/// serialization failure or a deadlock), so this bounds the wait of a user
/// who changes their factor from dozens of clients at once, never a normal
/// call.
const MAX_ROUNDS: u32 = 64;

/// What a change carries from one round to the next.
#[derive(Debug, Default)]
struct Rounds {
    /// Whether the next write runs alone: after a combined statement was
    /// rolled back whole, so another user's conflict fails this one at
    /// most once.
    solo: bool,
    /// Why the next round runs: counted once it does.
    retry_because: Option<Reason>,
    /// The user's state as the last write that did not apply found it:
    /// the next round decides on it instead of reading.
    found: Option<Found>,
}

impl Rounds {
    /// Whether the write of round `round` (`None`: the first try, before
    /// any read), which expected `expected`, applied; if not, why the next
    /// round runs, and on what.
    fn settle(
        &mut self,
        outcome: Outcome,
        round: Option<u32>,
        expected: &Head,
    ) -> Result<bool, StoreError> {
        match outcome {
            Outcome::Applied => Ok(true),
            Outcome::Stale { shared, found } => {
                // Alone next time: a combined statement skips a row another
                // transaction holds, a single one waits for it.
                self.solo |= shared;
                // What the write found, unless it is what it expected: then
                // the row changed after the statement's snapshot (a commit
                // it waited for, a row another transaction held), and only
                // a read of its own sees the change.
                self.found = found.filter(|found| !found.is_at(expected));
                // The first try finding a row is no race: the usual way.
                if let Some(round) = round {
                    tracing::debug!(
                        round,
                        "another change of the user came first; deciding again"
                    );
                    self.retry_because = Some(Reason::LostRace);
                }
                Ok(false)
            }
            // Rolled back whole (SQLSTATE 40001 or 40P01): nothing was
            // written, so deciding again on fresh state is safe.
            Outcome::RolledBack { reason, shared } => {
                tracing::debug!(
                    ?round,
                    reason = reason.as_str(),
                    shared,
                    "the write was rolled back; deciding again"
                );
                self.retry_because = Some(reason);
                self.solo |= shared;
                Ok(false)
            }
            // Whether it committed is unknown: never decided again.
            Outcome::Failed(error) => Err(error),
        }
    }
}

/// Whether a failed statement lost its connection (nothing reached the
/// server, or the server went away), so a fresh connection may succeed.
fn lost_connection(error: &diesel::result::Error) -> bool {
    matches!(
        error,
        diesel::result::Error::DatabaseError(
            DatabaseErrorKind::UnableToSendCommand | DatabaseErrorKind::ClosedConnection,
            _
        )
    )
}

/// The one row (or none) of a statement's answer, read to its end. The
/// answer must be read to the end: an autocommit statement commits after
/// its rows were sent, and a commit that fails (a serialization failure
/// under `SERIALIZABLE`) is reported after them. `get_result` and `first`
/// stop at the first row and drop that error unread, so a write rolled back
/// at commit would be answered as committed.
fn only_row<T>(rows: diesel::QueryResult<Vec<T>>) -> diesel::QueryResult<Option<T>> {
    Ok(rows?.into_iter().next())
}

/// Runs a planned write: a user's first that puts the factor as the smaller
/// [`WriteFirst`], any other as [`WriteAlone`]; with the found read when
/// the write asks for it (`find`).
/// Answers the statement's one row: whether it applied, and if another
/// change came first, the state found.
async fn run_write(
    write: &WriteChange,
    connection: &mut AsyncPgConnection,
) -> diesel::QueryResult<Option<WriteAnswer>> {
    only_row(match (write.is_first(), write.find) {
        (true, true) => WriteFirst::<true>(write).load(connection).await,
        (true, false) => WriteFirst::<false>(write).load(connection).await,
        (false, true) => WriteAlone::<true>(write).load(connection).await,
        (false, false) => WriteAlone::<false>(write).load(connection).await,
    })
}

/// Reads the user's stream head and factor in one statement (one snapshot).
async fn read_state(
    connection: &mut AsyncPgConnection,
    user: &UserId,
) -> Result<State, diesel::result::Error> {
    let row: Option<StateRow> = only_row(
        ReadState {
            user: user.as_str(),
        }
        .load(connection)
        .await,
    )?;
    state_of(user, row).map_err(|error| diesel::result::Error::DeserializationError(error.into()))
}

/// The user's state from the row a read found (`None`: no stream row).
fn state_of(user: &UserId, row: Option<StateRow>) -> Result<State, StoreError> {
    let Some(((version, last_sequence, failed_attempts, last_failure_at), columns, recovery)) = row
    else {
        return Ok(State {
            head: Head::NONE,
            factor: None,
            recovery: None,
        });
    };
    Ok(State {
        head: Head {
            version,
            last_sequence,
            failed_attempts,
            last_failure_at,
        },
        factor: FactorRow::from_columns(user, columns)?,
        recovery: recovery_of(user, recovery)?,
    })
}

/// The user's state as a write that did not apply found it.
fn found_state(user: &UserId, found: Found) -> Result<State, StoreError> {
    let head = found.head();
    let (_, factor, recovery) = *found.0;
    // No head: no stream row.
    let row = head.map(|head| {
        (
            (
                head.version,
                head.last_sequence,
                head.failed_attempts,
                head.last_failure_at,
            ),
            factor,
            recovery,
        )
    });
    state_of(user, row)
}

/// The recovery codes of a stream row's columns.
fn recovery_of(
    user: &UserId,
    (key_id, hashes): (Option<String>, Option<Vec<Vec<u8>>>),
) -> Result<Option<RecoveryCodes>, StoreError> {
    let (Some(key_id), Some(hashes)) = (key_id, hashes) else {
        return Ok(None);
    };
    let hashes = hashes
        .into_iter()
        .map(|hash| {
            <[u8; 32]>::try_from(hash.as_slice())
                .map(RecoveryHash)
                .map_err(|_| {
                    StoreError::Corrupt(format!(
                        "a recovery-code hash of user {user} is not 32 bytes"
                    ))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(any_left(RecoveryCodes { key_id, hashes }))
}

/// `codes`, unless no code is left: a set with none is stored as no set.
fn any_left(codes: RecoveryCodes) -> Option<RecoveryCodes> {
    (!codes.hashes.is_empty()).then_some(codes)
}

/// The recovery-code columns to write for `codes`.
fn recovery_columns(codes: Option<&RecoveryCodes>) -> (Option<String>, Option<Vec<Vec<u8>>>) {
    codes.map_or((None, None), |codes| {
        (
            Some(codes.key_id.clone()),
            Some(codes.hashes.iter().map(|hash| hash.0.to_vec()).collect()),
        )
    })
}

/// What a decision comes to in the store.
enum Plan {
    /// It writes nothing (a refusal without writes): answered as is.
    Nothing(Committed),
    /// The conditional write, what the call answers once it applied, and
    /// the user's state it then leaves (for [`KnownStates`]).
    Write(Box<WriteChange>, Committed, State),
}

/// Turns a decision into the conditional write on the state it was made on.
fn plan(
    user: &UserId,
    context: &ChangeContext,
    state: &State,
    change: Change,
) -> Result<Plan, StoreError> {
    let (head, recovery) = (state.head, state.recovery.as_ref());
    let stored_attempts = attempts_of(user, &head)?;
    let attempts = change.attempts.unwrap_or(stored_attempts);
    if matches!(change.factor, FactorWrite::Keep)
        && matches!(change.recovery, RecoveryWrite::Keep)
        && change.events.is_empty()
        && attempts == stored_attempts
    {
        return Ok(Plan::Nothing(Committed {
            events: Vec::new(),
            refusal: change.refusal,
        }));
    }
    let mut sequence = head.last_sequence;
    let mut events = Vec::with_capacity(change.events.len());
    let mut sequences = Vec::with_capacity(change.events.len());
    let mut kinds = Vec::with_capacity(change.events.len());
    for kind in change.events {
        sequence = sequence.checked_add(1).ok_or_else(|| {
            StoreError::Corrupt(format!("event sequence of user {user} overflows"))
        })?;
        sequences.push(sequence);
        kinds.push(kind.as_str());
        events.push(FactorEvent {
            kind,
            sequence: u64::try_from(sequence).map_err(|_| {
                StoreError::Corrupt(format!("negative event sequence for user {user}"))
            })?,
            at: context.at,
        });
    }
    let (op, factor, factor_after) = match change.factor {
        FactorWrite::Keep => (
            FactorOp::Keep,
            FactorValues::default(),
            state.factor.clone(),
        ),
        FactorWrite::Put(factor) => (
            FactorOp::Put,
            FactorRow::new(user, factor.clone()).into_values(),
            Some(factor),
        ),
        FactorWrite::Delete => (FactorOp::Delete, FactorValues::default(), None),
    };
    // The whole recovery state is written: a kept one as read (the write
    // applies only if nothing changed since the read).
    let (recovery_op, (recovery_key_id, recovery_hashes), recovery_after) = match change.recovery {
        RecoveryWrite::Keep => (
            RecoveryOp::Keep,
            recovery_columns(recovery),
            recovery.cloned(),
        ),
        RecoveryWrite::Put(codes) => (
            RecoveryOp::Put,
            recovery_columns(Some(&codes)),
            // As a read answers it.
            any_left(codes),
        ),
        RecoveryWrite::Delete => (RecoveryOp::Delete, (None, None), None),
    };
    let new_head = Head {
        version: head.version.checked_add(1).ok_or_else(|| {
            StoreError::Corrupt(format!("stream version of user {user} overflows"))
        })?,
        last_sequence: sequence,
        failed_attempts: i32::try_from(attempts.failures).unwrap_or(i32::MAX),
        last_failure_at: attempts.last_failure_at,
    };
    Ok(Plan::Write(
        Box::new(WriteChange {
            user: user.as_str().to_owned(),
            expected: head,
            new_head,
            op,
            factor,
            recovery_key_id,
            recovery_hashes,
            recovery_op,
            sequences,
            kinds,
            actor: context.actor.as_str().to_owned(),
            resource_owner: context
                .resource_owner
                .as_ref()
                .map(|org| org.as_str().to_owned()),
            at: context.at,
            find: false,
        }),
        Committed {
            events,
            refusal: change.refusal,
        },
        State {
            head: new_head,
            factor: factor_after,
            recovery: recovery_after,
        },
    ))
}

/// The wrong-code count a stream head holds.
fn attempts_of(user: &UserId, head: &Head) -> Result<Attempts, StoreError> {
    Ok(Attempts {
        failures: u32::try_from(head.failed_attempts).map_err(|_| {
            StoreError::Corrupt(format!("negative failed_attempts for user {user}"))
        })?,
        last_failure_at: head.last_failure_at,
    })
}

/// A read under the store's retry rules (`retrying!`), in its own
/// transaction where the pooler needs one (`pinned!`), and once more on a
/// fresh connection when the pooled one turns out to have died while idle.
/// `$connection` names the connection inside `$read`.
macro_rules! read_with_fresh_retry {
    ($store:expr, |$connection:ident| $read:expr) => {{
        let pinning = &$store.pinning;
        let mut $connection = $store.connection().await?;
        match retrying!(pinned!(pinning, $connection, $read)) {
            Err(error) if lost_connection(&error) => {
                tracing::debug!(%error, "connection lost before the read; retrying on a fresh one");
                drop(Object::take($connection));
                let mut $connection = $store.connection().await?;
                retrying!(pinned!(pinning, $connection, $read))
            }
            row => row,
        }
    }};
}

#[async_trait]
impl FactorStore for PgFactorStore {
    #[tracing::instrument(
        name = "db.query",
        skip_all,
        fields(otel.kind = "client", db.system.name = "postgresql", db.operation.name = "find")
    )]
    async fn find(&self, user: &UserId) -> Result<Option<OtpFactor>, StoreError> {
        if let Some(readers) = self.readers() {
            return Self::find_queued(readers, user).await;
        }
        let query = || {
            otp_factors::table
                .find(user.as_str())
                .select(FactorRow::as_select())
        };
        let row = read_with_fresh_retry!(self, |connection| only_row(
            query().load(&mut connection).await
        ));
        row.map_err(query_error)?
            .map(FactorRow::into_factor)
            .transpose()
    }

    #[tracing::instrument(
        name = "db.query",
        skip_all,
        fields(otel.kind = "client", db.system.name = "postgresql", db.operation.name = "recovery_codes")
    )]
    async fn recovery_codes(&self, user: &UserId) -> Result<Option<RecoveryCodes>, StoreError> {
        let query = || {
            otp_user_streams::table.find(user.as_str()).select((
                otp_user_streams::recovery_key_id,
                otp_user_streams::recovery_hashes,
            ))
        };
        let row = read_with_fresh_retry!(self, |connection| only_row(
            query().load(&mut connection).await
        ));
        match row.map_err(query_error)? {
            Some(columns) => recovery_of(user, columns),
            None => Ok(None),
        }
    }

    #[tracing::instrument(
        name = "db.query",
        skip_all,
        fields(otel.kind = "client", db.system.name = "postgresql", db.operation.name = "resource_owner")
    )]
    async fn resource_owner(&self, user: &UserId) -> Result<Option<OrgId>, StoreError> {
        // The newest event naming an organisation: a backward scan of the
        // primary key (user_id, sequence) that stops at the first hit.
        let query = || {
            otp_events::table
                .filter(otp_events::user_id.eq(user.as_str()))
                .filter(otp_events::resource_owner.is_not_null())
                .order(otp_events::sequence.desc())
                .select(otp_events::resource_owner)
        };
        let row = read_with_fresh_retry!(self, |connection| only_row(
            query()
                .limit(1)
                .load::<Option<String>>(&mut connection)
                .await
        ));
        row.map_err(query_error)?
            .flatten()
            .map(|org| {
                OrgId::parse(org).map_err(|error| {
                    StoreError::Corrupt(format!(
                        "otp_events of user {user:?} name an invalid resource owner: {error}"
                    ))
                })
            })
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
        // Taken for the first read (unless reads are combined); back in the
        // pool while a combined write waits (see `write`).
        let mut connection: Option<Object<AsyncPgConnection>> = None;
        let mut rounds = Rounds::default();
        // First, without a read: on the state this replica last committed
        // for the user (see `known`), else as if the user had never changed
        // anything. A decision that writes on it (an Add of a new user, a
        // Verify after an Add here, the next login check) is tried as is,
        // one statement and one round trip; it applies only if that is
        // still the user's state. Otherwise the change decides again on
        // the state the write found, if it carried the found read (see
        // `misses`); else, or if the decision writes nothing (never
        // answered unread), it goes the usual way: read, decide, write.
        let known = self
            .known
            .as_ref()
            .and_then(|known| known.take(user.as_str()));
        let from_known = known.is_some();
        let guess = known.unwrap_or(State {
            head: Head::NONE,
            factor: None,
            recovery: None,
        });
        let decided = decide(Current {
            factor: guess.factor.as_ref(),
            attempts: attempts_of(user, &guess.head)?,
            recovery: guess.recovery.as_ref(),
        });
        let planned = match decided {
            Ok(change) => Some(plan(user, &context, &guess, change)?),
            Err(_) => None,
        };
        if let Some(Plan::Write(mut write, committed, after)) = planned {
            let expected = write.expected;
            write.find = self.misses.carry_found_read();
            let outcome = self.write(write, rounds.solo, &mut connection).await?;
            if matches!(outcome, Outcome::Applied | Outcome::Stale { .. }) {
                self.misses.record(!matches!(outcome, Outcome::Applied));
            }
            let applied = rounds.settle(outcome, None, &expected)?;
            // Rolled back (no version compared) counts as a retry, not here.
            if from_known && (applied || rounds.retry_because.is_none()) {
                known::count(if applied { Use::Applied } else { Use::Stale });
            }
            if applied {
                self.remember(user, after);
                return Ok(committed);
            }
        } else if from_known {
            known::count(Use::Unused);
        }
        let mut fresh_connection = false;
        for round in 0..MAX_ROUNDS {
            let after_deadlock = rounds.retry_because == Some(Reason::Deadlock);
            if let Some(reason) = rounds.retry_because.take() {
                retry::count(reason);
            }
            if round > 1 || after_deadlock {
                // Several changes of this user raced, or a lock cycle was
                // broken by aborting this one: spread the retries, and let
                // the other side take the locks it was waiting for.
                tokio::time::sleep(retry::pause(round.max(1))).await;
            }
            // What the last write found, else a read.
            let state = match rounds.found.take() {
                Some(found) => found_state(user, found)?,
                None => match self
                    .read_for_change(user, &mut connection, &mut fresh_connection)
                    .await?
                {
                    Ok(state) => state,
                    Err(reason) => {
                        tracing::debug!(
                            round,
                            reason = reason.as_str(),
                            "the read was rolled back; reading again"
                        );
                        rounds.retry_because = Some(reason);
                        continue;
                    }
                },
            };
            let attempts = attempts_of(user, &state.head)?;
            let change = decide(Current {
                factor: state.factor.as_ref(),
                attempts,
                recovery: state.recovery.as_ref(),
            })?;
            let (write, committed, after) = match plan(user, &context, &state, change)? {
                Plan::Nothing(committed) => {
                    self.remember(user, state);
                    return Ok(committed);
                }
                Plan::Write(write, committed, after) => (write, committed, after),
            };
            let expected = write.expected;
            let outcome = self.write(write, rounds.solo, &mut connection).await?;
            if rounds.settle(outcome, Some(round), &expected)? {
                self.remember(user, after);
                return Ok(committed);
            }
        }
        tracing::warn!(
            rounds = MAX_ROUNDS,
            "a change kept losing races with changes of the same user"
        );
        Err(ApplicationError::Unavailable(CONTENDED))
    }

    #[tracing::instrument(
        name = "db.query",
        skip_all,
        fields(otel.kind = "client", db.system.name = "postgresql", db.operation.name = "purge_pending")
    )]
    async fn purge_pending(&self, added_before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut connection = self.connection().await?;
        let pinning = &self.pinning;
        let stale: Vec<String> = retrying!(pinned!(
            pinning,
            connection,
            stale_pending(added_before).load(&mut connection).await
        ))
        .map_err(query_error)?;
        if pinning.per_transaction() {
            // Behind a transaction pooler: one transaction per user, one
            // after the other (a pipeline would share one transaction).
            let mut purged = 0_u64;
            for user in &stale {
                let n = retrying!(pinned!(
                    pinning,
                    connection,
                    PurgePending { user, added_before }
                        .load::<i64>(&mut connection)
                        .await
                        .map(|rows| rows.into_iter().sum::<i64>())
                ))
                .map_err(query_error)?;
                purged += u64::try_from(n).unwrap_or(0);
            }
            return Ok(purged);
        }
        // One statement per user (each a change of one user only), sent
        // together on the connection as a pipeline; each runs again on its
        // own if rolled back (it is conditional: a second run after the
        // first applied deletes nothing).
        let shared: &AsyncPgConnection = &connection;
        let purged = futures::future::try_join_all(stale.iter().map(|user| async move {
            retrying!(
                PurgePending { user, added_before }
                    .load::<i64>(&mut &*shared)
                    .await
                    .map(|rows| rows.into_iter().sum::<i64>())
            )
        }));
        let purged = purged.await.map_err(query_error)?;
        Ok(purged
            .into_iter()
            .map(|n| u64::try_from(n).unwrap_or(0))
            .sum())
    }
}

#[async_trait]
impl SecretStore for PgFactorStore {
    #[tracing::instrument(
        name = "db.query",
        skip_all,
        fields(otel.kind = "client", db.system.name = "postgresql", db.operation.name = "stored_secrets")
    )]
    async fn stored_secrets(
        &self,
        after: Option<&UserId>,
        limit: usize,
    ) -> Result<Vec<StoredSecret>, StoreError> {
        let mut connection = self.connection().await?;
        let query = || {
            let mut query = otp_factors::table
                .select(FactorRow::as_select())
                .order(otp_factors::user_id.asc())
                .limit(i64::try_from(limit).unwrap_or(i64::MAX))
                .into_boxed();
            if let Some(after) = after {
                query = query.filter(otp_factors::user_id.gt(after.as_str().to_owned()));
            }
            query
        };
        let pinning = &self.pinning;
        let rows: Vec<FactorRow> = retrying!(pinned!(
            pinning,
            connection,
            query().load(&mut connection).await
        ))
        .map_err(query_error)?;
        rows.into_iter()
            .map(|row| {
                let user = UserId::parse(row.user_id.clone()).map_err(|error| {
                    StoreError::Corrupt(format!("otp_factors row with a bad user id: {error}"))
                })?;
                let factor = row.into_factor()?;
                Ok(StoredSecret {
                    user,
                    params: factor.params(),
                    created_at: factor.created_at(),
                    sealed: factor.into_secret(),
                })
            })
            .collect()
    }

    #[tracing::instrument(
        name = "db.transaction",
        skip_all,
        fields(otel.kind = "client", db.system.name = "postgresql", db.operation.name = "reseal")
    )]
    async fn reseal(&self, batch: Vec<Reseal>) -> Result<u64, StoreError> {
        if batch.is_empty() {
            return Ok(0);
        }
        let mut connection = self.connection().await?;
        fn statement(reseal: &Reseal) -> WriteReseal<'_> {
            WriteReseal {
                user: reseal.user.as_str(),
                old_key_id: &reseal.old.key_id,
                old_sealed: &reseal.old.sealed,
                new_key_id: &reseal.new.key_id,
                new_sealed: &reseal.new.sealed,
            }
        }
        let pinning = &self.pinning;
        if pinning.per_transaction() {
            // Behind a transaction pooler: one transaction per user, one
            // after the other (a pipeline would share one transaction).
            let mut written = 0_u64;
            for reseal in &batch {
                let n = retrying!(pinned!(
                    pinning,
                    connection,
                    statement(reseal)
                        .load::<i64>(&mut connection)
                        .await
                        .map(|rows| rows.into_iter().sum::<i64>())
                ))
                .map_err(query_error)?;
                written += u64::try_from(n).unwrap_or(0);
            }
            return Ok(written);
        }
        // One statement per user, pipelined on one connection; each runs
        // again on its own if rolled back (it is conditional on the old
        // seal: a second run after the first applied writes nothing).
        let shared: &AsyncPgConnection = &connection;
        let written = futures::future::try_join_all(batch.iter().map(|reseal| async move {
            retrying!(
                statement(reseal)
                    .load::<i64>(&mut &*shared)
                    .await
                    .map(|rows| rows.into_iter().sum::<i64>())
            )
        }));
        let written = written.await.map_err(query_error)?;
        Ok(written
            .into_iter()
            .map(|n| u64::try_from(n).unwrap_or(0))
            .sum())
    }
}

#[async_trait]
impl Readiness for PgFactorStore {
    /// Ok when `SELECT 1` answers and the newest embedded migration is
    /// applied, within two seconds.
    async fn ready(&self) -> Result<(), NotReady> {
        tokio::time::timeout(READY_TIMEOUT, self.check_ready())
            .await
            .unwrap_or_else(|_| {
                tracing::warn!(timeout = ?READY_TIMEOUT, "readiness: database check timed out");
                Err(NotReady::Unreachable)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pending_condition_names_the_stored_pending_state() {
        let state = crate::rows::state_name(domain::FactorState::NotReady);
        assert_eq!(PENDING, format!("otp_factors.state = '{state}'"));
    }

    /// Under the login's generic plans, the purge's query reads the partial
    /// index of pending factors, not every factor (with the state bound as
    /// a parameter, PostgreSQL cannot prove the index's condition and scans
    /// the primary key instead).
    #[tokio::test]
    async fn the_purge_finds_stale_pending_factors_through_their_index_under_generic_plans() {
        let Some(db) = testing::TestDatabase::create().await else {
            return;
        };
        let session = db.session().await;
        session
            .batch_execute(
                "SET plan_cache_mode = force_generic_plan;
                 INSERT INTO otp_user_streams (user_id, last_sequence)
                   SELECT 'u' || i, 1 FROM generate_series(1, 20000) i;
                 INSERT INTO otp_factors (user_id, state, key_id, sealed_secret, algorithm,
                   digits, period, skew, created_at, changed_at)
                   SELECT 'u' || i, CASE WHEN i % 100 = 0 THEN 'not_ready' ELSE 'ready' END,
                   'k1', '\\x00', 'SHA1', 6, 30, 1, now(), now()
                   FROM generate_series(1, 20000) i;
                 ANALYZE otp_factors",
            )
            .await
            .unwrap();
        let query = diesel::debug_query::<Pg, _>(&stale_pending(DateTime::UNIX_EPOCH)).to_string();
        let (statement, _binds) = query.split_once(" -- binds:").unwrap();
        session
            .batch_execute(&format!("PREPARE stale AS {statement}"))
            .await
            .unwrap();
        let plan: Vec<String> = session
            .query("EXPLAIN EXECUTE stale(now(), 1000)", &[])
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        let plan = plan.join("\n");
        assert!(plan.contains("otp_factors_pending_created_at"), "{plan}");
    }

    #[test]
    fn logins_ask_for_generic_plans_and_bound_statements_after_the_urls_own_options() {
        let bound = Duration::from_millis(2500);
        assert_eq!(
            login_options(None, bound),
            "-c plan_cache_mode=force_generic_plan -c statement_timeout=2500"
        );
        assert_eq!(
            login_options(Some("  "), bound),
            "-c plan_cache_mode=force_generic_plan -c statement_timeout=2500"
        );
        // The URL's plan_cache_mode comes later, so PostgreSQL takes it; the
        // bound comes last, so no URL lifts it.
        assert_eq!(
            login_options(
                Some("-c plan_cache_mode=auto -c statement_timeout=0"),
                bound
            ),
            "-c plan_cache_mode=force_generic_plan -c plan_cache_mode=auto \
             -c statement_timeout=0 -c statement_timeout=2500"
        );
    }
}
