//! The store's hand-written statements: the user's whole state read in one
//! statement, and a change written in one conditional statement (a
//! compare-and-swap on the stream row), each with constant SQL text and a
//! static query id so diesel-async prepares it once per connection and then
//! runs it in a single round trip.

use std::fmt;

use chrono::{DateTime, Utc};
use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{
    Array, BigInt, Bool, Bytea, Integer, Nullable, SmallInt, Text, Timestamptz,
};

/// The Debug of what the statements carry names users, versions and kinds,
/// never a sealed secret or a recovery-code hash.
impl fmt::Debug for FactorValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FactorValues")
            .field("state", &self.state)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for WriteChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteChange")
            .field("user", &self.user)
            .field("expected", &self.expected)
            .field("new_head", &self.new_head)
            .field("op", &self.op)
            .field("factor", &self.factor)
            .field("recovery_op", &self.recovery_op)
            .field("kinds", &self.kinds)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for WriteReseal<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteReseal")
            .field("user", &self.user)
            .field("old_key_id", &self.old_key_id)
            .field("new_key_id", &self.new_key_id)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Columns<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Columns")
            .field("user", &self.user)
            .field("op", &self.op)
            .field("event_kind", &self.event_kind)
            .finish_non_exhaustive()
    }
}

/// The query id and row type of a statement struct whose SQL text never
/// changes: diesel-async then keeps it prepared per connection.
macro_rules! statement {
    ($name:ident, $row:ty) => {
        impl QueryId for $name<'_> {
            type QueryId = $name<'static>;
            const HAS_STATIC_QUERY_ID: bool = true;
        }

        impl Query for $name<'_> {
            type SqlType = $row;
        }
    };
    // A write statement in two texts, with the found read (`FIND`) and
    // without: two query ids, so each is prepared as what it is.
    ($name:ident<FIND>, $row:ty) => {
        impl<const FIND: bool> QueryId for $name<'_, FIND> {
            type QueryId = $name<'static, FIND>;
            const HAS_STATIC_QUERY_ID: bool = true;
        }

        impl<const FIND: bool> Query for $name<'_, FIND> {
            type SqlType = $row;
        }
    };
}

/// The head of a user's stream as read: what the write compares against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    pub version: i64,
    pub last_sequence: i64,
    pub failed_attempts: i32,
    pub last_failure_at: Option<DateTime<Utc>>,
}

impl Head {
    /// The head of a user with no stream row. Its version, -1, is one no
    /// row has (the column is at least 0), so a write that expects it
    /// applies only as the insert of the user's first row.
    pub(crate) const NONE: Self = Self {
        version: -1,
        last_sequence: 0,
        failed_attempts: 0,
        last_failure_at: None,
    };
}

/// The columns of `otp_factors` but the key, as the read returns them (all
/// null when the user has no factor).
pub(crate) type FactorColumns = (
    Option<String>,
    Option<String>,
    Option<Vec<u8>>,
    Option<String>,
    Option<i16>,
    Option<i32>,
    Option<i16>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<i64>,
);

/// The stream row's recovery-code columns: the key id and the hashes.
pub(crate) type RecoveryColumns = (Option<String>, Option<Vec<Vec<u8>>>);

/// What [`ReadState`] returns: the stream head, the factor's columns and
/// the recovery codes.
pub(crate) type StateRow = (
    (i64, i64, i32, Option<DateTime<Utc>>),
    FactorColumns,
    RecoveryColumns,
);

/// `SELECT` of the user's stream head and factor, in one snapshot.
#[derive(Debug)]
pub(crate) struct ReadState<'a> {
    pub user: &'a str,
}

/// The SQL types of [`FactorColumns`].
type FactorSql = (
    Nullable<Text>,
    Nullable<Text>,
    Nullable<Bytea>,
    Nullable<Text>,
    Nullable<SmallInt>,
    Nullable<Integer>,
    Nullable<SmallInt>,
    Nullable<Timestamptz>,
    Nullable<Timestamptz>,
    Nullable<BigInt>,
);

/// The SQL types of [`RecoveryColumns`].
type RecoverySql = (Nullable<Text>, Nullable<Array<Bytea>>);

/// The SQL types of a [`StateRow`].
type StateSql = (
    (BigInt, BigInt, Integer, Nullable<Timestamptz>),
    FactorSql,
    RecoverySql,
);

/// What a write whose compare-and-swap failed found instead, in the same
/// statement: the columns of [`ReadState`], the head's null when the user
/// has no stream row, every column null when the write applied.
pub(crate) type FoundRow = (
    (Option<i64>, Option<i64>, Option<i32>, Option<DateTime<Utc>>),
    FactorColumns,
    RecoveryColumns,
);

/// The SQL types of a [`FoundRow`].
type FoundSql = (
    (
        Nullable<BigInt>,
        Nullable<BigInt>,
        Nullable<Integer>,
        Nullable<Timestamptz>,
    ),
    FactorSql,
    RecoverySql,
);

/// A single user's write's answer: whether it applied, and what it found
/// when it did not.
pub(crate) type WriteAnswer = (bool, FoundRow);

/// A combined write's answer, a row per user of the group: the user,
/// whether that user's write applied, and what it found when it did not.
pub(crate) type CombinedAnswer = (String, bool, FoundRow);

/// A [`FoundRow`] of nothing found, typed: what a statement without the
/// found read answers in its place.
const NOTHING_FOUND: &str = "NULL::bigint, NULL::bigint, NULL::integer, NULL::timestamptz, \
     NULL::text, NULL::text, NULL::bytea, NULL::text, NULL::smallint, NULL::integer, \
     NULL::smallint, NULL::timestamptz, NULL::timestamptz, NULL::bigint, NULL::text, NULL::bytea[]";

/// The end of a statement whose CTE `s` holds the row this user's write
/// put in `otp_user_streams` (none when its compare-and-swap failed): one
/// row, whether it applied, and, with `find` and only when it did not, the
/// user's state as [`ReadState`] reads it, in the statement's snapshot, so
/// a lost race is decided again without a read of its own. The read is
/// behind a one-time filter, so an applied write never runs it (`EXPLAIN
/// ANALYZE`: "never executed"), but its plan is still set up on every
/// execution, which costs PostgreSQL CPU; hence the two texts.
fn push_found<'b>(out: &mut AstPass<'_, 'b, Pg>, user: &'b String, find: bool) -> QueryResult<()> {
    if !find {
        out.push_sql(" SELECT count(*) > 0, ");
        out.push_sql(NOTHING_FOUND);
        out.push_sql(" FROM s");
        return Ok(());
    }
    out.push_sql(" SELECT w.n > 0, r.* FROM (SELECT count(*) AS n FROM s) w");
    push_found_read(out, "w.n = 0", |out| out.push_bind_param::<Text, _>(user))
}

/// ` LEFT JOIN LATERAL (…) r ON true`: the state of the user whose id
/// `push_key` writes, as [`ReadState`] reads it, read only where `gate`
/// (a condition on the outer row) holds.
fn push_found_read<'b>(
    out: &mut AstPass<'_, 'b, Pg>,
    gate: &str,
    push_key: impl FnOnce(&mut AstPass<'_, 'b, Pg>) -> QueryResult<()>,
) -> QueryResult<()> {
    out.push_sql(" LEFT JOIN LATERAL (SELECT ");
    out.push_sql(READ_STATE);
    out.push_sql(" = ");
    push_key(out)?;
    out.push_sql(" AND ");
    out.push_sql(gate);
    // `OFFSET 0` keeps the subquery from being flattened into a join,
    // whose filter would run the read on every write.
    out.push_sql(" OFFSET 0) r ON true");
    Ok(())
}

/// What [`ReadState`] reads, and from where, up to the user condition.
const READ_STATE: &str = "s.version, s.last_sequence, s.failed_attempts, s.last_failure_at, \
     f.state, f.key_id, f.sealed_secret, f.algorithm, f.digits, f.period, f.skew, \
     f.created_at, f.changed_at, f.last_used_step, \
     s.recovery_key_id, s.recovery_hashes \
     FROM otp_user_streams s LEFT JOIN otp_factors f ON f.user_id = s.user_id \
     WHERE s.user_id";

statement!(ReadState, StateSql);

impl QueryFragment<Pg> for ReadState<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("SELECT ");
        out.push_sql(READ_STATE);
        out.push_sql(" = ");
        out.push_bind_param::<Text, _>(&self.user)?;
        Ok(())
    }
}

/// Several users' [`ReadState`] in one statement (one snapshot): a row per
/// user who has a stream row, the user's id first.
#[derive(Debug)]
pub(crate) struct ReadStates<'a> {
    pub users: &'a [&'a str],
}

statement!(ReadStates, (Text, StateSql));

impl QueryFragment<Pg> for ReadStates<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("SELECT s.user_id, ");
        out.push_sql(READ_STATE);
        out.push_sql(" = ANY(");
        out.push_bind_param::<Array<Text>, _>(&self.users)?;
        out.push_sql(")");
        Ok(())
    }
}

/// What a write does to the factor row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FactorOp {
    Keep,
    Put,
    Delete,
}

impl FactorOp {
    /// The name the statement compares, as a bind parameter.
    const fn as_bind(self) -> &'static &'static str {
        match self {
            Self::Keep => &"keep",
            Self::Put => &"put",
            Self::Delete => &"delete",
        }
    }
}

/// What a write does to the stream row's recovery codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecoveryOp {
    Keep,
    Put,
    Delete,
}

/// A factor row to store (every column but the key). Its Debug leaves the
/// sealed secret out.
#[derive(Default)]
pub(crate) struct FactorValues {
    pub state: Option<String>,
    pub key_id: Option<String>,
    pub sealed_secret: Option<Vec<u8>>,
    pub algorithm: Option<String>,
    pub digits: Option<i16>,
    pub period: Option<i32>,
    pub skew: Option<i16>,
    pub created_at: Option<DateTime<Utc>>,
    pub changed_at: Option<DateTime<Utc>>,
    pub last_used_step: Option<i64>,
}

/// One change of one user, in one statement and one commit (autocommit): the
/// stream row is upserted only if its head is still `expected` (a user with
/// no row yet expects [`Head::NONE`]: the insert applies, and a row that
/// exists, a concurrent first change's included, fails the comparison); the factor write
/// and the events apply only through that row. Run as [`WriteAlone`] (or
/// [`WriteFirst`]), it answers a [`WriteAnswer`]: whether it applied, and
/// when another change came first (nothing was written) and `find` asked
/// for it, the state it found.
pub(crate) struct WriteChange {
    pub user: String,
    pub expected: Head,
    pub new_head: Head,
    pub op: FactorOp,
    pub factor: FactorValues,
    /// The recovery codes after the change (as read, when it keeps them).
    pub recovery_key_id: Option<String>,
    pub recovery_hashes: Option<Vec<Vec<u8>>>,
    /// What the change does to the recovery codes (the columns above hold
    /// the outcome; a combined write keeps or clears them in place).
    pub recovery_op: RecoveryOp,
    pub sequences: Vec<i64>,
    pub kinds: Vec<&'static str>,
    pub actor: String,
    pub resource_owner: Option<String>,
    pub at: DateTime<Utc>,
    /// Whether its statement answers, when it does not apply, the state it
    /// found (`push_found`): set by the store where misses are expected.
    pub find: bool,
}

/// A [`WriteChange`] as its own statement (`FIND`: with the found read).
pub(crate) struct WriteAlone<'w, const FIND: bool>(pub &'w WriteChange);

statement!(WriteAlone<FIND>, (Bool, FoundSql));

impl<const FIND: bool> QueryFragment<Pg> for WriteAlone<'_, FIND> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let write = self.0;
        let expected = &write.expected;
        out.push_sql(
            "WITH s AS (INSERT INTO otp_user_streams AS t \
             (user_id, version, last_sequence, failed_attempts, last_failure_at, \
             recovery_key_id, recovery_hashes) VALUES (",
        );
        write.push_stream_values(&mut out)?;
        out.push_sql(
            ") ON CONFLICT (user_id) DO UPDATE SET version = EXCLUDED.version, \
             last_sequence = EXCLUDED.last_sequence, failed_attempts = EXCLUDED.failed_attempts, \
             last_failure_at = EXCLUDED.last_failure_at, \
             recovery_key_id = EXCLUDED.recovery_key_id, \
             recovery_hashes = EXCLUDED.recovery_hashes WHERE t.version = ",
        );
        out.push_bind_param::<BigInt, _>(&expected.version)?;
        // Rows of binaries that predate the version column never move it:
        // comparing the head too keeps a rolling upgrade safe.
        out.push_sql(" AND t.last_sequence = ");
        out.push_bind_param::<BigInt, _>(&expected.last_sequence)?;
        out.push_sql(" AND t.failed_attempts = ");
        out.push_bind_param::<Integer, _>(&expected.failed_attempts)?;
        out.push_sql(" AND t.last_failure_at IS NOT DISTINCT FROM ");
        out.push_bind_param::<Nullable<Timestamptz>, _>(&expected.last_failure_at)?;
        out.push_sql(" RETURNING t.user_id), o AS (SELECT ");
        out.push_bind_param::<Text, _>(write.op.as_bind())?;
        out.push_sql(
            "::text AS op), put AS (INSERT INTO otp_factors (user_id, state, key_id, sealed_secret, \
             algorithm, digits, period, skew, created_at, changed_at, last_used_step) \
             SELECT s.user_id, ",
        );
        write.push_factor_values(&mut out)?;
        out.push_sql(
            " FROM s, o WHERE o.op = 'put' ON CONFLICT (user_id) DO UPDATE SET \
             state = EXCLUDED.state, key_id = EXCLUDED.key_id, \
             sealed_secret = EXCLUDED.sealed_secret, algorithm = EXCLUDED.algorithm, \
             digits = EXCLUDED.digits, period = EXCLUDED.period, skew = EXCLUDED.skew, \
             created_at = EXCLUDED.created_at, changed_at = EXCLUDED.changed_at, \
             last_used_step = EXCLUDED.last_used_step), \
             del AS (DELETE FROM otp_factors f USING s, o \
             WHERE o.op = 'delete' AND f.user_id = s.user_id), \
             ev AS (INSERT INTO otp_events \
             (user_id, sequence, kind, actor, resource_owner, occurred_at) \
             SELECT s.user_id, e.sequence, e.kind, ",
        );
        write.push_events(&mut out, FIND)?;
        Ok(())
    }
}

impl WriteChange {
    /// The stream row's values: `user_id` .. `recovery_hashes`, the new head.
    fn push_stream_values<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let new_head = &self.new_head;
        out.push_bind_param::<Text, _>(&self.user)?;
        out.push_sql(", ");
        out.push_bind_param::<BigInt, _>(&new_head.version)?;
        out.push_sql(", ");
        out.push_bind_param::<BigInt, _>(&new_head.last_sequence)?;
        out.push_sql(", ");
        out.push_bind_param::<Integer, _>(&new_head.failed_attempts)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Timestamptz>, _>(&new_head.last_failure_at)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Text>, _>(&self.recovery_key_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Array<Bytea>>, _>(&self.recovery_hashes)
    }

    /// The factor row's values after `user_id`: `state` .. `last_used_step`.
    fn push_factor_values<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let factor = &self.factor;
        out.push_bind_param::<Nullable<Text>, _>(&factor.state)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Text>, _>(&factor.key_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Bytea>, _>(&factor.sealed_secret)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Text>, _>(&factor.algorithm)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<SmallInt>, _>(&factor.digits)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Integer>, _>(&factor.period)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<SmallInt>, _>(&factor.skew)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Timestamptz>, _>(&factor.created_at)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Timestamptz>, _>(&factor.changed_at)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<BigInt>, _>(&factor.last_used_step)
    }

    /// The events' common values and their sequences and kinds, through the
    /// end of the statement (its answer: [`push_found`]).
    fn push_events<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>, find: bool) -> QueryResult<()> {
        out.push_bind_param::<Text, _>(&self.actor)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Text>, _>(&self.resource_owner)?;
        out.push_sql(", ");
        out.push_bind_param::<Timestamptz, _>(&self.at)?;
        out.push_sql(" FROM s, unnest(");
        out.push_bind_param::<Array<BigInt>, _>(&self.sequences)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.kinds)?;
        out.push_sql(") AS e(sequence, kind))");
        push_found(out, &self.user, find)
    }

    /// Whether the smaller [`WriteFirst`] can run this write: a user's first
    /// (no stream row was there: [`Head::NONE`]) that puts the factor, as a
    /// new user's Add and import do.
    pub(crate) fn is_first(&self) -> bool {
        self.expected == Head::NONE && self.op == FactorOp::Put
    }

    /// Which combined statement can carry this write with others': a new
    /// user's first write that puts the factor and no recovery codes
    /// ([`CombinedFirst`]), or a change of a user who has a stream row that
    /// keeps or clears the recovery codes ([`CombinedChange`]). Any other
    /// (rare: recovery codes put, a first change that puts no factor) runs
    /// alone.
    pub(crate) fn combinable(&self) -> Option<Combine> {
        if self.recovery_op == RecoveryOp::Put {
            None
        } else if self.expected == Head::NONE {
            (self.op == FactorOp::Put && self.recovery_key_id.is_none()).then_some(Combine::First)
        } else {
            Some(Combine::Change)
        }
    }
}

/// The combined statement a write can join (see [`WriteChange::combinable`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Combine {
    First,
    Change,
}

/// Several users' writes as one array per column, for the combined
/// statements: each user's row of every array at the same index, the
/// events flattened with their user beside them.
#[derive(Default)]
pub(crate) struct Columns<'w> {
    user: Vec<&'w str>,
    expected_version: Vec<i64>,
    expected_last_sequence: Vec<i64>,
    expected_failed_attempts: Vec<i32>,
    expected_last_failure_at: Vec<Option<DateTime<Utc>>>,
    version: Vec<i64>,
    last_sequence: Vec<i64>,
    failed_attempts: Vec<i32>,
    last_failure_at: Vec<Option<DateTime<Utc>>>,
    clear_recovery: Vec<bool>,
    op: Vec<&'static str>,
    state: Vec<Option<&'w str>>,
    key_id: Vec<Option<&'w str>>,
    sealed_secret: Vec<Option<&'w [u8]>>,
    algorithm: Vec<Option<&'w str>>,
    digits: Vec<Option<i16>>,
    period: Vec<Option<i32>>,
    skew: Vec<Option<i16>>,
    created_at: Vec<Option<DateTime<Utc>>>,
    changed_at: Vec<Option<DateTime<Utc>>>,
    last_used_step: Vec<Option<i64>>,
    actor: Vec<&'w str>,
    resource_owner: Vec<Option<&'w str>>,
    at: Vec<DateTime<Utc>>,
    event_user: Vec<&'w str>,
    event_sequence: Vec<i64>,
    event_kind: Vec<&'static str>,
}

impl<'w> Columns<'w> {
    /// The columns of `writes`, in their order (one write per user).
    pub(crate) fn of(writes: &[&'w WriteChange]) -> Self {
        let mut columns = Self::default();
        for write in writes {
            columns.push(write);
        }
        columns
    }

    fn push(&mut self, write: &'w WriteChange) {
        let (expected, new_head, factor) = (&write.expected, &write.new_head, &write.factor);
        self.user.push(&write.user);
        self.expected_version.push(expected.version);
        self.expected_last_sequence.push(expected.last_sequence);
        self.expected_failed_attempts.push(expected.failed_attempts);
        self.expected_last_failure_at.push(expected.last_failure_at);
        self.version.push(new_head.version);
        self.last_sequence.push(new_head.last_sequence);
        self.failed_attempts.push(new_head.failed_attempts);
        self.last_failure_at.push(new_head.last_failure_at);
        self.clear_recovery
            .push(write.recovery_op == RecoveryOp::Delete);
        self.op.push(write.op.as_bind());
        self.state.push(factor.state.as_deref());
        self.key_id.push(factor.key_id.as_deref());
        self.sealed_secret.push(factor.sealed_secret.as_deref());
        self.algorithm.push(factor.algorithm.as_deref());
        self.digits.push(factor.digits);
        self.period.push(factor.period);
        self.skew.push(factor.skew);
        self.created_at.push(factor.created_at);
        self.changed_at.push(factor.changed_at);
        self.last_used_step.push(factor.last_used_step);
        self.actor.push(&write.actor);
        self.resource_owner.push(write.resource_owner.as_deref());
        self.at.push(write.at);
        for (sequence, kind) in write.sequences.iter().zip(&write.kinds) {
            self.event_user.push(&write.user);
            self.event_sequence.push(*sequence);
            self.event_kind.push(kind);
        }
    }

    /// `factor columns`: `state` .. `last_used_step` as arrays.
    fn push_factor<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.state)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.key_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Bytea>>, _>(&self.sealed_secret)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.algorithm)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<SmallInt>>, _>(&self.digits)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Integer>>, _>(&self.period)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<SmallInt>>, _>(&self.skew)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Timestamptz>>, _>(&self.created_at)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Timestamptz>>, _>(&self.changed_at)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<BigInt>>, _>(&self.last_used_step)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.actor)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.resource_owner)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Timestamptz>, _>(&self.at)
    }

    /// The new stream heads: `version` .. `last_failure_at` as arrays.
    fn push_new_heads<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_bind_param::<Array<BigInt>, _>(&self.version)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&self.last_sequence)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Integer>, _>(&self.failed_attempts)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Timestamptz>>, _>(&self.last_failure_at)
    }

    /// The factor upsert, the events and the answer (a [`CombinedAnswer`]
    /// per input row), after the CTE `s` (the users whose stream row was
    /// written) and `v` (the input rows).
    fn push_tail<'b>(
        &'b self,
        out: &mut AstPass<'_, 'b, Pg>,
        op_filter: &str,
        find: bool,
    ) -> QueryResult<()> {
        out.push_sql(
            ", put AS (INSERT INTO otp_factors (user_id, state, key_id, sealed_secret, \
             algorithm, digits, period, skew, created_at, changed_at, last_used_step) \
             SELECT v.user_id, v.state, v.key_id, v.sealed_secret, v.algorithm, v.digits, \
             v.period, v.skew, v.created_at, v.changed_at, v.last_used_step \
             FROM v JOIN s ON s.user_id = v.user_id",
        );
        out.push_sql(op_filter);
        out.push_sql(
            "), ev AS (INSERT INTO otp_events \
             (user_id, sequence, kind, actor, resource_owner, occurred_at) \
             SELECT e.user_id, e.sequence, e.kind, v.actor, v.resource_owner, v.occurred_at \
             FROM unnest(",
        );
        out.push_bind_param::<Array<Text>, _>(&self.event_user)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&self.event_sequence)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.event_kind)?;
        out.push_sql(
            ") AS e(user_id, sequence, kind) JOIN s ON s.user_id = e.user_id \
             JOIN v ON v.user_id = e.user_id)",
        );
        if !find {
            // The users written; one not among them found nothing.
            out.push_sql(" SELECT s.user_id, true, ");
            out.push_sql(NOTHING_FOUND);
            out.push_sql(" FROM s");
            return Ok(());
        }
        // As `push_found`, per user: the state of those not written.
        out.push_sql(
            " SELECT v.user_id, w.user_id IS NOT NULL, r.* FROM v \
             LEFT JOIN s w ON w.user_id = v.user_id",
        );
        push_found_read(out, "w.user_id IS NULL", |out| {
            out.push_sql("v.user_id");
            Ok(())
        })
    }
}

/// The factor columns of the input rows `v`, after `user_id`.
const FACTOR_COLUMNS: &str = "state, key_id, sealed_secret, algorithm, digits, period, skew, \
     created_at, changed_at, last_used_step, actor, resource_owner, occurred_at";

/// New users' first writes, one commit for all: what [`WriteFirst`] does
/// for each of them, with every user's rows inserted only if that user had
/// no stream row. Answers each user written and, with `FIND`, each user who
/// had a row with the state found (decided again on it), which fails no
/// other user's write.
#[derive(Debug)]
pub(crate) struct CombinedFirst<'w, const FIND: bool>(pub Columns<'w>);

statement!(CombinedFirst<FIND>, (Text, Bool, FoundSql));

impl<const FIND: bool> QueryFragment<Pg> for CombinedFirst<'_, FIND> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let columns = &self.0;
        out.push_sql("WITH v AS (SELECT * FROM unnest(");
        out.push_bind_param::<Array<Text>, _>(&columns.user)?;
        out.push_sql(", ");
        columns.push_new_heads(&mut out)?;
        out.push_sql(", ");
        columns.push_factor(&mut out)?;
        out.push_sql(") AS v(user_id, version, last_sequence, failed_attempts, last_failure_at, ");
        out.push_sql(FACTOR_COLUMNS);
        out.push_sql(
            ")), s AS (INSERT INTO otp_user_streams \
             (user_id, version, last_sequence, failed_attempts, last_failure_at) \
             SELECT user_id, version, last_sequence, failed_attempts, last_failure_at FROM v \
             ON CONFLICT (user_id) DO NOTHING RETURNING user_id)",
        );
        columns.push_tail(&mut out, "", FIND)?;
        Ok(())
    }
}

/// Changes of users who have a stream row, one commit for all: each user's
/// stream row is updated only if its head is still the one that user's
/// change read (the compare-and-swap of [`WriteChange`], per row) and no
/// other transaction holds it locked (`SKIP LOCKED`: one user's row lock
/// never makes the others wait; each row is locked once, in a materialised
/// step before the update), the factor put or deleted and the events
/// inserted only through the rows updated. The recovery codes are kept in
/// place or cleared. Answers each user written and, with `FIND`, each user
/// who lost a race or found its row locked with the state found (decided
/// again on it, or on a read, alone), which fails no other user's write.
#[derive(Debug)]
pub(crate) struct CombinedChange<'w, const FIND: bool>(pub Columns<'w>);

statement!(CombinedChange<FIND>, (Text, Bool, FoundSql));

impl<const FIND: bool> QueryFragment<Pg> for CombinedChange<'_, FIND> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let columns = &self.0;
        out.push_sql("WITH v AS (SELECT * FROM unnest(");
        out.push_bind_param::<Array<Text>, _>(&columns.user)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&columns.expected_version)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&columns.expected_last_sequence)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Integer>, _>(&columns.expected_failed_attempts)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Timestamptz>>, _>(&columns.expected_last_failure_at)?;
        out.push_sql(", ");
        columns.push_new_heads(&mut out)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Bool>, _>(&columns.clear_recovery)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&columns.op)?;
        out.push_sql(", ");
        columns.push_factor(&mut out)?;
        out.push_sql(
            ") AS v(user_id, expected_version, expected_last_sequence, \
             expected_failed_attempts, expected_last_failure_at, \
             version, last_sequence, failed_attempts, last_failure_at, clear_recovery, op, ",
        );
        out.push_sql(FACTOR_COLUMNS);
        out.push_sql(
            ")), lk AS MATERIALIZED (SELECT l.user_id FROM otp_user_streams l \
             JOIN v ON v.user_id = l.user_id FOR UPDATE OF l SKIP LOCKED), \
             s AS (UPDATE otp_user_streams t SET version = v.version, \
             last_sequence = v.last_sequence, failed_attempts = v.failed_attempts, \
             last_failure_at = v.last_failure_at, \
             recovery_key_id = CASE WHEN v.clear_recovery THEN NULL ELSE t.recovery_key_id END, \
             recovery_hashes = CASE WHEN v.clear_recovery THEN NULL ELSE t.recovery_hashes END \
             FROM v JOIN lk ON lk.user_id = v.user_id WHERE t.user_id = v.user_id \
             AND t.version = v.expected_version \
             AND t.last_sequence = v.expected_last_sequence \
             AND t.failed_attempts = v.expected_failed_attempts \
             AND t.last_failure_at IS NOT DISTINCT FROM v.expected_last_failure_at \
             RETURNING t.user_id, v.op), \
             del AS (DELETE FROM otp_factors f USING s \
             WHERE s.op = 'delete' AND f.user_id = s.user_id)",
        );
        columns.push_tail(
            &mut out,
            " WHERE s.op = 'put' ON CONFLICT (user_id) DO UPDATE SET \
             state = EXCLUDED.state, key_id = EXCLUDED.key_id, \
             sealed_secret = EXCLUDED.sealed_secret, algorithm = EXCLUDED.algorithm, \
             digits = EXCLUDED.digits, period = EXCLUDED.period, skew = EXCLUDED.skew, \
             created_at = EXCLUDED.created_at, changed_at = EXCLUDED.changed_at, \
             last_used_step = EXCLUDED.last_used_step",
            FIND,
        )?;
        Ok(())
    }
}

/// A user's first change that puts the factor, in one statement and one
/// commit: the stream row is inserted only if the user has none
/// (`ON CONFLICT DO NOTHING`: any row there, a concurrent first change's
/// included, makes it insert nothing), the factor and the events only
/// through the row it inserted. What [`WriteChange`] does for
/// [`Head::NONE`] and [`FactorOp::Put`], without the compare-and-swap on a
/// row that cannot exist yet and without the other branches: PostgreSQL
/// sets up a smaller plan for it on every call (run by pgbench, 154 µs of
/// the machine per call against 171 to 212 for `WriteChange`; the `add`
/// ceiling 130). Answers a [`WriteAnswer`], with `FIND` the state found
/// when the user had a row.
#[derive(Debug)]
pub(crate) struct WriteFirst<'w, const FIND: bool>(pub &'w WriteChange);

statement!(WriteFirst<FIND>, (Bool, FoundSql));

impl<const FIND: bool> QueryFragment<Pg> for WriteFirst<'_, FIND> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let write = self.0;
        out.push_sql(
            "WITH s AS (INSERT INTO otp_user_streams \
             (user_id, version, last_sequence, failed_attempts, last_failure_at, \
             recovery_key_id, recovery_hashes) VALUES (",
        );
        write.push_stream_values(&mut out)?;
        out.push_sql(
            ") ON CONFLICT (user_id) DO NOTHING RETURNING user_id), \
             put AS (INSERT INTO otp_factors (user_id, state, key_id, sealed_secret, \
             algorithm, digits, period, skew, created_at, changed_at, last_used_step) \
             SELECT s.user_id, ",
        );
        write.push_factor_values(&mut out)?;
        out.push_sql(
            " FROM s), ev AS (INSERT INTO otp_events \
             (user_id, sequence, kind, actor, resource_owner, occurred_at) \
             SELECT s.user_id, e.sequence, e.kind, ",
        );
        write.push_events(&mut out, FIND)?;
        Ok(())
    }
}

/// Moves the stream version of a user whose factor is still sealed as read
/// and writes the re-sealed secret, in one statement: the stream row is
/// locked first (the order every change takes), so a re-seal serialises with
/// the user's changes and an optimistic change that read the old secret can
/// never write it back. Answers 1 when written, 0 when the factor changed.
pub(crate) struct WriteReseal<'a> {
    pub user: &'a str,
    pub old_key_id: &'a str,
    pub old_sealed: &'a [u8],
    pub new_key_id: &'a str,
    pub new_sealed: &'a [u8],
}

statement!(WriteReseal, BigInt);

impl QueryFragment<Pg> for WriteReseal<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(
            "WITH s AS (UPDATE otp_user_streams SET version = version + 1 WHERE user_id = ",
        );
        out.push_bind_param::<Text, _>(&self.user)?;
        out.push_sql(
            " AND EXISTS (SELECT 1 FROM otp_factors f WHERE f.user_id = otp_user_streams.user_id \
             AND f.key_id = ",
        );
        out.push_bind_param::<Text, _>(&self.old_key_id)?;
        out.push_sql(" AND f.sealed_secret = ");
        out.push_bind_param::<Bytea, _>(&self.old_sealed)?;
        out.push_sql(") RETURNING user_id), w AS (UPDATE otp_factors f SET key_id = ");
        out.push_bind_param::<Text, _>(&self.new_key_id)?;
        out.push_sql(", sealed_secret = ");
        out.push_bind_param::<Bytea, _>(&self.new_sealed)?;
        out.push_sql(" FROM s WHERE f.user_id = s.user_id AND f.key_id = ");
        out.push_bind_param::<Text, _>(&self.old_key_id)?;
        out.push_sql(" AND f.sealed_secret = ");
        out.push_bind_param::<Bytea, _>(&self.old_sealed)?;
        out.push_sql(" RETURNING f.user_id) SELECT count(*) FROM w");
        Ok(())
    }
}

/// Deletes one user's pending factor if it was added before a time, moving
/// the stream version in the same statement (stream row first, as every
/// change). Answers 1 when deleted.
#[derive(Debug)]
pub(crate) struct PurgePending<'a> {
    pub user: &'a str,
    pub added_before: DateTime<Utc>,
}

statement!(PurgePending, BigInt);

impl QueryFragment<Pg> for PurgePending<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(
            "WITH s AS (UPDATE otp_user_streams SET version = version + 1 WHERE user_id = ",
        );
        out.push_bind_param::<Text, _>(&self.user)?;
        out.push_sql(
            " AND EXISTS (SELECT 1 FROM otp_factors f WHERE f.user_id = otp_user_streams.user_id \
             AND f.state = 'not_ready' AND f.created_at < ",
        );
        out.push_bind_param::<Timestamptz, _>(&self.added_before)?;
        out.push_sql(
            ") RETURNING user_id), d AS (DELETE FROM otp_factors f USING s \
             WHERE f.user_id = s.user_id AND f.state = 'not_ready' AND f.created_at < ",
        );
        out.push_bind_param::<Timestamptz, _>(&self.added_before)?;
        out.push_sql(" RETURNING f.user_id) SELECT count(*) FROM d");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_names_the_write_but_never_its_secret_or_hashes() {
        let write = WriteChange {
            user: "u1".into(),
            expected: Head::NONE,
            new_head: Head::NONE,
            op: FactorOp::Put,
            factor: FactorValues {
                sealed_secret: Some(vec![0xAB; 4]),
                ..FactorValues::default()
            },
            recovery_key_id: Some("k1".into()),
            recovery_hashes: Some(vec![vec![0xCD; 4]]),
            recovery_op: RecoveryOp::Keep,
            sequences: vec![1],
            kinds: vec!["otp.added"],
            actor: "u1".into(),
            resource_owner: None,
            at: DateTime::UNIX_EPOCH,
            find: false,
        };
        let columns = Columns::of(&[&write]);
        let reseal = WriteReseal {
            user: "u1",
            old_key_id: "k1",
            old_sealed: &[0xAB; 4],
            new_key_id: "k2",
            new_sealed: &[0xCD; 4],
        };
        for shown in [
            format!("{write:?}"),
            format!("{columns:?}"),
            format!("{reseal:?}"),
        ] {
            assert!(shown.contains("u1"), "{shown}");
            for secret in ["171", "205", "ab", "AB", "cd", "CD"] {
                assert!(!shown.contains(secret), "{secret} in {shown}");
            }
        }
    }
}
