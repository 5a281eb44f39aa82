//! Which failed statements are worth running again, how long to pause
//! before doing so, and the retry counter.
//!
//! A statement that failed with a serialization failure (SQLSTATE 40001) or
//! a deadlock (40P01) was rolled back whole: nothing it would have written
//! is there, so deciding again on fresh state (a change) or reading again (a
//! read) is safe. PostgreSQL under `SERIALIZABLE`, CockroachDB and
//! YugabyteDB answer 40001 whenever two transactions could not be ordered;
//! every statement of the store runs again a bounded number of times, with
//! a random pause, before the call is answered as unavailable (503, gRPC
//! code 14).
//!
//! Each retry is counted: `otp.store.retries`, a `tracing` event of target
//! `otp.metrics` that the metrics pipeline turns into an OpenTelemetry
//! counter, with `reason` `serialization`, `deadlock` or `lost_race` (the
//! compare-and-swap of a change found another change of the user first).

use std::time::Duration;

use diesel::result::{DatabaseErrorKind, Error};
use tracing::Level;

/// How many times a read runs before its transient failure is the answer.
pub(crate) const READ_ATTEMPTS: u32 = 8;

/// Why a statement runs again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// SQLSTATE 40001: the transaction could not be serialised with another.
    Serialization,
    /// SQLSTATE 40P01: the server broke a lock cycle by aborting this one.
    Deadlock,
    /// A change's compare-and-swap found that another change of the user
    /// committed after the read.
    LostRace,
}

impl Reason {
    /// The `reason` attribute of the retry counter.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Serialization => "serialization",
            Self::Deadlock => "deadlock",
            Self::LostRace => "lost_race",
        }
    }
}

/// The message PostgreSQL (and YugabyteDB, which shares its code) gives a
/// deadlock. diesel does not keep the SQLSTATE of errors it has no kind for
/// (40P01 becomes `Unknown`), so the message is what is left to tell a
/// deadlock by. On a server whose `lc_messages` is not English the message
/// is translated: a deadlock is then answered 503 without a retry.
/// CockroachDB reports lock cycles as 40001, which is always recognised.
const DEADLOCK_MESSAGE: &str = "deadlock detected";

/// Whether `error` means the statement was rolled back for a reason that
/// running it again can cure, and which.
pub(crate) fn transient(error: &Error) -> Option<Reason> {
    match error {
        Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => {
            Some(Reason::Serialization)
        }
        Error::DatabaseError(DatabaseErrorKind::Unknown, info)
            if info.message().starts_with(DEADLOCK_MESSAGE) =>
        {
            Some(Reason::Deadlock)
        }
        _ => None,
    }
}

/// Counts one retry for `reason`.
pub(crate) fn count(reason: Reason) {
    // `info!(target: .., a.b = ..)` is ambiguous to the macro parser with a
    // dotted field name; `event!` with an explicit level is not.
    tracing::event!(
        target: "otp.metrics",
        Level::INFO,
        monotonic_counter.otp.store.retries = 1_u64,
        reason = reason.as_str()
    );
}

/// A random pause before attempt `attempt` (1 = the first retry): up to a
/// millisecond per attempt so far, at most 20 ms, so that statements that
/// collided do not collide again in lockstep.
pub(crate) fn pause(attempt: u32) -> Duration {
    let ceiling_us = u64::from(attempt.clamp(1, 20)) * 1000;
    Duration::from_micros(rand::random_range(0..=ceiling_us))
}

/// Evaluates `$statement` (an expression that runs one statement and
/// awaits its `Result<_, diesel::result::Error>`) until it succeeds, fails
/// for good, or has failed transiently [`READ_ATTEMPTS`] times (then that
/// failure is the answer). Only for statements that can run again safely:
/// reads, and conditional writes whose second run does nothing the first
/// already did. A macro rather than a function taking a closure, so the
/// statement can borrow the connection mutably on each run.
macro_rules! retrying {
    ($statement:expr) => {{
        let mut attempt: u32 = 1;
        loop {
            let result = $statement;
            let reason = match &result {
                Err(error) if attempt < $crate::retry::READ_ATTEMPTS => {
                    $crate::retry::transient(error)
                }
                _ => None,
            };
            let Some(reason) = reason else {
                break result;
            };
            $crate::retry::count(reason);
            tracing::debug!(
                attempt,
                reason = reason.as_str(),
                "statement rolled back; running it again"
            );
            tokio::time::sleep($crate::retry::pause(attempt)).await;
            attempt += 1;
        }
    }};
}
pub(crate) use retrying;

#[cfg(test)]
mod tests {
    use super::*;

    struct Info(&'static str);

    impl diesel::result::DatabaseErrorInformation for Info {
        fn message(&self) -> &str {
            self.0
        }
        fn details(&self) -> Option<&str> {
            None
        }
        fn hint(&self) -> Option<&str> {
            None
        }
        fn table_name(&self) -> Option<&str> {
            None
        }
        fn column_name(&self) -> Option<&str> {
            None
        }
        fn constraint_name(&self) -> Option<&str> {
            None
        }
        fn statement_position(&self) -> Option<i32> {
            None
        }
    }

    fn database_error(kind: DatabaseErrorKind, message: &'static str) -> Error {
        Error::DatabaseError(kind, Box::new(Info(message)))
    }

    #[test]
    fn serialization_failures_and_deadlocks_are_transient_and_nothing_else_is() {
        assert_eq!(
            transient(&database_error(
                DatabaseErrorKind::SerializationFailure,
                "could not serialize access due to concurrent update"
            )),
            Some(Reason::Serialization)
        );
        assert_eq!(
            transient(&database_error(
                DatabaseErrorKind::Unknown,
                "deadlock detected"
            )),
            Some(Reason::Deadlock)
        );
        for error in [
            database_error(
                DatabaseErrorKind::Unknown,
                "canceling statement due to statement timeout",
            ),
            database_error(DatabaseErrorKind::UniqueViolation, "deadlock detected"),
            database_error(
                DatabaseErrorKind::ClosedConnection,
                "server closed the connection",
            ),
            Error::NotFound,
        ] {
            assert_eq!(transient(&error), None, "{error}");
        }
    }

    #[test]
    fn pauses_grow_with_the_attempt_and_stay_bounded() {
        for _ in 0..200 {
            assert!(pause(1) <= Duration::from_millis(1));
            assert!(pause(5) <= Duration::from_millis(5));
            assert!(pause(1000) <= Duration::from_millis(20));
        }
    }

    #[tokio::test]
    async fn a_read_runs_again_after_a_transient_failure_and_gives_up_after_the_bound() {
        async fn run(runs: &mut u32, fail_until: u32, error: fn() -> Error) -> Result<u32, Error> {
            *runs += 1;
            if *runs < fail_until {
                Err(error())
            } else {
                Ok(*runs)
            }
        }
        let serialization = || database_error(DatabaseErrorKind::SerializationFailure, "x");
        let deadlock = || database_error(DatabaseErrorKind::Unknown, "deadlock detected");

        let mut runs = 0;
        let answer = retrying!(run(&mut runs, 3, serialization).await);
        assert_eq!(answer.ok(), Some(3));

        let mut runs = 0;
        let answer = retrying!(run(&mut runs, u32::MAX, deadlock).await);
        assert_eq!(transient(&answer.unwrap_err()), Some(Reason::Deadlock));
        assert_eq!(runs, READ_ATTEMPTS);

        let mut runs = 0;
        let answer = retrying!(run(&mut runs, u32::MAX, || Error::NotFound).await);
        assert!(matches!(answer, Err(Error::NotFound)));
        assert_eq!(runs, 1, "a lasting failure is not retried");
    }
}
