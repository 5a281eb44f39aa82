//! Several users' reads in one statement.
//!
//! When reads are combined (`read_batch_size` above 1), a change's read
//! and a `find` join a queue instead of taking a connection of their own:
//! at most [`READ_STATEMENTS`] drain tasks per pool take up to
//! `read_batch_size` queued reads at a time (never two of one user) and
//! read them with one [`ReadStates`] statement: one round trip, one
//! snapshot, one (read-only) commit for all. A group of one runs the usual
//! [`ReadState`]. As with the write queue (`combine`), nothing waits for a
//! group to fill: a drain task takes whatever queued while the statement
//! before it ran, so under light load every read runs alone at once.
//!
//! A read is a snapshot the change then writes against under its own
//! compare-and-swap, so sharing the statement changes no answer: each
//! user's rows are read as they were committed, and a change that read
//! them just before another change committed loses the compare-and-swap
//! and reads again, as before. Reads never wait behind a commit: they have
//! their own queue, drain tasks and connections.

use std::sync::Arc;

use application::StoreError;
use diesel_async::AsyncPgConnection;
use diesel_async::RunQueryDsl;
use diesel_async::pooled_connection::deadpool::Object;
use tokio::sync::oneshot;

use crate::combine::{Queued, Work};
use crate::error::query_error;
use crate::lost_connection;
use crate::pooler::{Pinning, pinned};
use crate::retry::{self, Reason};
use crate::statements::{ReadState, ReadStates, StateRow};

/// Most combined reads in flight at once per pool. One, two and four
/// measured the same (docs/performance.md); two lets a read start while
/// another's answer is on its way back.
pub(crate) const READ_STATEMENTS: usize = 2;

/// Answer of a read whose drain task ended before it ran (the runtime
/// shutting down).
const ABANDONED: &str = "the combined read was abandoned before it answered";

/// What became of one user's read.
pub(crate) enum ReadOutcome {
    /// The user's row as the statement read it (`None`: no stream row).
    Read(Option<StateRow>),
    /// The statement was rolled back (40001, 40P01): read again.
    RolledBack(Reason),
    /// The connection was lost (the next group runs on a fresh one): read
    /// again, once.
    Lost(StoreError),
    /// It failed.
    Failed(StoreError),
}

/// One read waiting for its statement.
pub(crate) struct ReadJob {
    user: String,
    answer: oneshot::Sender<ReadOutcome>,
}

/// Reads, combined: a group as one [`ReadStates`].
pub(crate) struct Reads {
    pub pinning: Pinning,
}

/// The read queue of one pool.
pub(crate) type Readers = Queued<Reads>;

impl Readers {
    /// Reads `user`'s state in the next read statement.
    pub(crate) async fn read(self: &Arc<Self>, user: &str) -> ReadOutcome {
        self.ask(|answer| ReadJob {
            user: user.to_owned(),
            answer,
        })
        .await
    }
}

impl Work for Reads {
    type Job = ReadJob;
    type Answer = ReadOutcome;
    const OPERATION: &'static str = "combined_read";

    fn abandoned() -> ReadOutcome {
        ReadOutcome::Failed(StoreError::Unavailable(ABANDONED.to_owned()))
    }

    fn user(job: &ReadJob) -> &str {
        &job.user
    }

    fn caller_gone(job: &ReadJob) -> bool {
        job.answer.is_closed()
    }

    fn fail(job: ReadJob, error: StoreError) {
        let _gone = job.answer.send(ReadOutcome::Failed(error));
    }

    async fn run(&self, group: Vec<ReadJob>, connection: &mut Object<AsyncPgConnection>) -> bool {
        match self.statement(&group, connection).await {
            Ok(mut rows) => {
                for job in group {
                    let row = rows
                        .iter()
                        .position(|(user, _)| *user == job.user)
                        .map(|at| rows.swap_remove(at).1);
                    let _gone = job.answer.send(ReadOutcome::Read(row));
                }
                true
            }
            Err(error) => {
                let lost = lost_connection(&error);
                let reason = retry::transient(&error);
                let failed = query_error(error);
                for job in group {
                    let _gone = job.answer.send(match reason {
                        Some(reason) => ReadOutcome::RolledBack(reason),
                        None if lost => ReadOutcome::Lost(failed.clone()),
                        None => ReadOutcome::Failed(failed.clone()),
                    });
                }
                !lost
            }
        }
    }
}

impl Reads {
    /// The rows of `group`'s users who have a stream row, each with its
    /// user, from one statement.
    async fn statement(
        &self,
        group: &[ReadJob],
        connection: &mut Object<AsyncPgConnection>,
    ) -> diesel::QueryResult<Vec<(String, StateRow)>> {
        let pinning = &self.pinning;
        if let [single] = group {
            let user = single.user.as_str();
            // Read to the end (`load`), as every answer is.
            return pinned!(
                pinning,
                connection,
                ReadState { user }.load::<StateRow>(&mut *connection).await
            )
            .map(|rows| {
                rows.into_iter()
                    .map(|row| (single.user.clone(), row))
                    .collect()
            });
        }
        let users: Vec<&str> = group.iter().map(|job| job.user.as_str()).collect();
        pinned!(
            pinning,
            connection,
            ReadStates { users: &users }
                .load::<(String, StateRow)>(&mut *connection)
                .await
        )
    }
}
