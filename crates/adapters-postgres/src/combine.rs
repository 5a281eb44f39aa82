//! Several users' writes in one statement and one commit.
//!
//! A change whose write can be combined ([`WriteChange::combinable`]) joins
//! a queue instead of running on its own connection. At most
//! `most_statements` drain tasks per pool take the queue's writes, up to
//! `most_users` at a time and never two of one user, and run each group as
//! one statement ([`CombinedFirst`] for new users' first writes,
//! [`CombinedChange`] for the others; a group of one as the usual
//! single-user statement). Nothing waits for a batch to fill: a drain task
//! takes whatever queued while the statement before it ran, so under light
//! load every write runs alone at once, and under load the commit and the
//! per-statement work are shared by as many users as were waiting.
//!
//! Each user's write still applies only if that user's own compare-and-swap
//! holds, and a combined change never waits on a user's row lock (`SKIP
//! LOCKED`): the statement answers the users it wrote, and a user not among
//! them lost a race or found its row locked, and decides again and writes
//! alone, as without combining; no other user's write fails or waits with
//! it. A statement rolled back whole (SQLSTATE 40001 or 40P01) rolled back
//! every user in it: each decides again and writes alone, so one user's
//! conflict costs another's at most one more round and never fails it.
//! A combined statement that fails otherwise (the database gone, a table
//! lock past `statement_timeout`) fails every write in it, as it would have
//! failed each alone; a write that waited in the queue for longer than
//! `statement_timeout` is answered unavailable, unwritten, so a stalled
//! database answers 503 in bounded time, as before.
//!
//! A combined statement writes several users in one transaction: on a
//! distributed engine that is a cross-shard transaction. There, turn it off
//! (`database.write_batch_size = 1`).
//!
//! The queue and its drain tasks ([`Queued`]) serve any [`Work`]: the
//! writes here ([`Writes`]) and the combined reads (`reads`), each with a
//! queue, drain tasks and connections of its own.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use application::StoreError;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::connect::Redactor;
use crate::error::{pool_error, query_error};
use crate::pooler::{Pinning, pinned};
use crate::retry::{self, Reason};
use crate::statements::{
    Columns, Combine, CombinedAnswer, CombinedChange, CombinedFirst, FoundRow, Head, WriteAnswer,
    WriteChange,
};
use crate::{lost_connection, run_write};

/// Answer of a write whose drain task ended before it ran (the runtime
/// shutting down): whether it ran is unknown.
const ABANDONED: &str = "the combined write was abandoned before it answered";
/// Answer of a write that waited longer than `statement_timeout` for its
/// statement to start (the database stalled): it was not written.
const TOO_LONG: &str = "the write waited too long for the database";

/// What became of one user's write.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    /// It applied and committed.
    Applied,
    /// Another change of the user came first (for a first write: the user
    /// has a stream row), or, in a combined statement, its row was locked
    /// by another transaction: nothing was written. `shared` when other
    /// users' writes were in the statement; `found`, the user's state as
    /// the statement found it, to decide again on without a read.
    Stale { shared: bool, found: Option<Found> },
    /// The statement was rolled back whole (40001, 40P01): nothing was
    /// written. `shared` when other users' writes were in it.
    RolledBack { reason: Reason, shared: bool },
    /// It failed, and whether it committed is unknown.
    Failed(StoreError),
}

impl Outcome {
    /// The outcome of a statement that failed with `error`.
    pub(crate) fn of_error(error: diesel::result::Error, shared: bool) -> Self {
        match retry::transient(&error) {
            Some(reason) => Self::RolledBack { reason, shared },
            None => Self::Failed(query_error(error)),
        }
    }
}

/// The user's state as a write that did not apply found it, in its own
/// statement's snapshot. Its Debug shows the head, never the sealed secret.
#[derive(Clone)]
pub(crate) struct Found(pub Box<FoundRow>);

impl std::fmt::Debug for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Found")
            .field("version", &(self.0).0.0)
            .finish_non_exhaustive()
    }
}

impl Found {
    /// The stream head found; `None`: the user has no stream row.
    pub(crate) fn head(&self) -> Option<Head> {
        match (self.0).0 {
            (Some(version), Some(last_sequence), Some(failed_attempts), last_failure_at) => {
                Some(Head {
                    version,
                    last_sequence,
                    failed_attempts,
                    last_failure_at,
                })
            }
            _ => None,
        }
    }

    /// Whether the state found has the stream head `head` (for
    /// [`Head::NONE`]: no stream row).
    pub(crate) fn is_at(&self, head: &Head) -> bool {
        self.head().unwrap_or(Head::NONE) == *head
    }
}

impl Outcome {
    /// The outcome of a write's answer: applied, or stale with what it
    /// found, if its statement had the found read (`find`).
    pub(crate) fn of_answer(answer: Option<WriteAnswer>, shared: bool, find: bool) -> Self {
        match answer {
            Some((true, _)) => Self::Applied,
            Some((false, found)) if find => Self::Stale {
                shared,
                found: Some(Found(Box::new(found))),
            },
            _ => Self::Stale {
                shared,
                found: None,
            },
        }
    }
}

/// How much the combiner combines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Most users' writes in one statement.
    pub most_users: usize,
    /// Most combined statements in flight at once per pool.
    pub most_statements: usize,
    /// Longest a write may wait in the queue before it is answered
    /// unavailable, unwritten (`statement_timeout`; `None`: no limit).
    pub most_wait: Option<Duration>,
}

/// One kind of work a [`Queued`] combines: what one waiting job is, and
/// how a group of them runs as one statement.
pub(crate) trait Work: Send + Sync + 'static {
    /// One caller's waiting job, with the sender of its answer.
    type Job: Send + 'static;
    /// What a job is answered.
    type Answer: Send + 'static;
    /// The name of its statements in traces (`db.operation.name`).
    const OPERATION: &'static str;
    /// The answer of a job whose drain task ended before it ran (the
    /// runtime shutting down): whether it ran is unknown.
    fn abandoned() -> Self::Answer;
    /// The user the job is of: a group holds at most one job per user.
    fn user(job: &Self::Job) -> &str;
    /// Whether the job's caller has gone (it is dropped unrun).
    fn caller_gone(job: &Self::Job) -> bool;
    /// Answers the job `error`, unrun.
    fn fail(job: Self::Job, error: StoreError);
    /// Runs `group` (at most one job per user) and answers every job of
    /// it. False when the connection was lost.
    fn run(
        &self,
        group: Vec<Self::Job>,
        connection: &mut Object<AsyncPgConnection>,
    ) -> impl Future<Output = bool> + Send;
}

/// One job waiting for its statement.
struct Pending<J> {
    job: J,
    /// When it may no longer start.
    deadline: Option<Instant>,
}

struct Queue<J> {
    pending: VecDeque<Pending<J>>,
    /// Drain tasks running.
    draining: usize,
}

/// A queue of one pool's jobs of one kind and the tasks that drain it.
pub(crate) struct Queued<W: Work> {
    pool: Pool<AsyncPgConnection>,
    redactor: Redactor,
    limits: Limits,
    work: W,
    queue: Mutex<Queue<W::Job>>,
}

/// The write queue of one pool.
pub(crate) type Combiner = Queued<Writes>;

impl<W: Work> Queued<W> {
    pub(crate) fn new(
        pool: Pool<AsyncPgConnection>,
        redactor: Redactor,
        limits: Limits,
        work: W,
    ) -> Self {
        Self {
            pool,
            redactor,
            limits,
            work,
            queue: Mutex::new(Queue {
                pending: VecDeque::new(),
                draining: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue<W::Job>> {
        // The queue's state stays consistent even if a holder panicked
        // (every change under the lock is a single push, pop or count).
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues the job `job` makes of its answer's sender for the next
    /// statement and waits for its answer. A call dropped before its
    /// statement is sent has its job dropped unrun.
    pub(crate) async fn ask(
        self: &Arc<Self>,
        job: impl FnOnce(oneshot::Sender<W::Answer>) -> W::Job,
    ) -> W::Answer {
        let (answer, outcome) = oneshot::channel();
        self.enqueue(job(answer));
        outcome.await.unwrap_or_else(|_| W::abandoned())
    }

    /// Queues `job` for the next statement, starting a drain task if fewer
    /// than `most_statements` run.
    fn enqueue(self: &Arc<Self>, job: W::Job) {
        let start = {
            let mut queue = self.lock();
            queue.pending.push_back(Pending {
                job,
                deadline: self.limits.most_wait.map(|wait| Instant::now() + wait),
            });
            let start = queue.draining < self.limits.most_statements;
            if start {
                queue.draining += 1;
            }
            start
        };
        if start {
            // A task of its own, so a caller dropped mid-statement (its
            // client went away) never strands the other users' answers.
            tokio::spawn(Arc::clone(self).drain());
        }
    }

    /// Takes the queue's jobs, a group at a time, until it is empty.
    async fn drain(self: Arc<Self>) {
        let mut guard = Draining {
            queued: &self,
            counted: true,
        };
        let mut connection: Option<Object<AsyncPgConnection>> = None;
        loop {
            let group = {
                let mut queue = self.lock();
                let group = take::<W>(&mut queue.pending, self.limits.most_users, Instant::now());
                if group.is_empty() {
                    queue.draining -= 1;
                    guard.counted = false;
                    return;
                }
                group
            };
            let conn = match connection.as_mut() {
                Some(conn) => conn,
                None => match self.pool.get().await {
                    Ok(conn) => connection.insert(conn),
                    Err(error) => {
                        let error = pool_error(&error, &self.redactor);
                        for job in group {
                            W::fail(job, error.clone());
                        }
                        continue;
                    }
                },
            };
            let span = tracing::info_span!(
                "db.query",
                otel.kind = "client",
                db.system.name = "postgresql",
                db.operation.name = W::OPERATION,
                db.operation.batch.size = group.len(),
            );
            if !self.work.run(group, conn).instrument(span).await {
                // Lost: a fresh one for the next group.
                connection.take().map(Object::take);
            }
        }
    }
}

/// Up to `most` waiting jobs, oldest first, at most one per user (a
/// user's second job waits for the next group, after the first has
/// run). A job whose caller is gone is dropped unrun; one past its
/// deadline at `now` is answered unavailable, unrun.
fn take<W: Work>(
    pending: &mut VecDeque<Pending<W::Job>>,
    most: usize,
    now: Instant,
) -> Vec<W::Job> {
    let mut group: Vec<W::Job> = Vec::new();
    let mut index = 0;
    while index < pending.len() && group.len() < most {
        let candidate = &pending[index];
        if W::caller_gone(&candidate.job) {
            pending.remove(index);
        } else if candidate.deadline.is_some_and(|deadline| deadline <= now) {
            if let Some(late) = pending.remove(index) {
                W::fail(late.job, StoreError::Unavailable(TOO_LONG.to_owned()));
            }
        } else if group
            .iter()
            .any(|taken| W::user(taken) == W::user(&candidate.job))
        {
            index += 1;
        } else if let Some(taken) = pending.remove(index) {
            group.push(taken.job);
        }
    }
    group
}

/// Keeps the drain-task count right when a drain task is dropped before it
/// finished (its runtime shut down): the jobs still queued then are
/// answered as abandoned, since no task may be left to run them.
struct Draining<'a, W: Work> {
    queued: &'a Queued<W>,
    counted: bool,
}

impl<W: Work> Drop for Draining<'_, W> {
    fn drop(&mut self) {
        if self.counted {
            let mut queue = self.queued.lock();
            queue.draining -= 1;
            if queue.draining == 0 {
                // Dropping the answers' senders answers `ABANDONED`.
                queue.pending.clear();
            }
        }
    }
}

/// One write waiting for its statement.
pub(crate) struct WriteJob {
    write: Box<WriteChange>,
    kind: Combine,
    answer: oneshot::Sender<Outcome>,
}

/// Writes, combined: new users' first writes as [`CombinedFirst`], the
/// others as [`CombinedChange`].
pub(crate) struct Writes {
    pub pinning: Pinning,
}

impl Combiner {
    /// Runs `write` in the next statement of its kind and answers what
    /// became of it. A call dropped before its statement is sent writes
    /// nothing.
    pub(crate) async fn submit(
        self: &Arc<Self>,
        write: Box<WriteChange>,
        kind: Combine,
    ) -> Outcome {
        self.ask(|answer| WriteJob {
            write,
            kind,
            answer,
        })
        .await
    }
}

impl Work for Writes {
    type Job = WriteJob;
    type Answer = Outcome;
    const OPERATION: &'static str = "combined_write";

    fn abandoned() -> Outcome {
        Outcome::Failed(StoreError::Unavailable(ABANDONED.to_owned()))
    }

    fn user(job: &WriteJob) -> &str {
        &job.write.user
    }

    fn caller_gone(job: &WriteJob) -> bool {
        job.answer.is_closed()
    }

    fn fail(job: WriteJob, error: StoreError) {
        let _gone = job.answer.send(Outcome::Failed(error));
    }

    /// First writes and changes as a statement each.
    async fn run(&self, group: Vec<WriteJob>, connection: &mut Object<AsyncPgConnection>) -> bool {
        let (firsts, changes): (Vec<WriteJob>, Vec<WriteJob>) = group
            .into_iter()
            .partition(|job| job.kind == Combine::First);
        let mut alive = true;
        for (kind, mut group) in [(Combine::First, firsts), (Combine::Change, changes)] {
            if group.is_empty() {
                continue;
            }
            // In key order, so two statements lock their users' rows in
            // the same order.
            group.sort_unstable_by(|a, b| a.write.user.cmp(&b.write.user));
            let outcomes = self.statement(kind, &group, connection).await;
            alive &= !outcomes.lost_connection;
            for (job, outcome) in group.into_iter().zip(outcomes.each) {
                let _gone = job.answer.send(outcome);
            }
        }
        alive
    }
}

impl Writes {
    /// The outcome of each write of `group`, in its order, from one statement.
    async fn statement(
        &self,
        kind: Combine,
        group: &[WriteJob],
        connection: &mut Object<AsyncPgConnection>,
    ) -> Outcomes {
        let pinning = &self.pinning;
        let shared = group.len() > 1;
        // With the found read if any write of the group asks for it.
        let find = group.iter().any(|job| job.write.find);
        let written = async {
            if let [single] = group {
                let write = &single.write;
                return pinned!(
                    pinning,
                    connection,
                    run_write(write, &mut *connection).await
                )
                .map(|answer| {
                    answer.map_or_else(Vec::new, |(applied, found)| {
                        vec![(write.user.clone(), applied, found)]
                    })
                });
            }
            let writes: Vec<&WriteChange> = group.iter().map(|job| &*job.write).collect();
            let columns = Columns::of(&writes);
            pinned!(pinning, connection, {
                let connection = &mut *connection;
                match (kind, find) {
                    (Combine::First, true) => {
                        CombinedFirst::<true>(columns)
                            .load::<CombinedAnswer>(connection)
                            .await
                    }
                    (Combine::First, false) => {
                        CombinedFirst::<false>(columns)
                            .load::<CombinedAnswer>(connection)
                            .await
                    }
                    (Combine::Change, true) => {
                        CombinedChange::<true>(columns)
                            .load::<CombinedAnswer>(connection)
                            .await
                    }
                    (Combine::Change, false) => {
                        CombinedChange::<false>(columns)
                            .load::<CombinedAnswer>(connection)
                            .await
                    }
                }
            })
        }
        .await;
        match written {
            Ok(mut answers) => Outcomes {
                each: group
                    .iter()
                    .map(|job| {
                        let answer = answers
                            .iter()
                            .position(|(user, ..)| *user == job.write.user)
                            .map(|at| {
                                let (_, applied, found) = answers.swap_remove(at);
                                (applied, found)
                            });
                        Outcome::of_answer(answer, shared, find)
                    })
                    .collect(),
                lost_connection: false,
            },
            Err(error) => {
                let lost = lost_connection(&error);
                let outcome = Outcome::of_error(error, shared);
                Outcomes {
                    each: group.iter().map(|_| outcome.clone()).collect(),
                    lost_connection: lost,
                }
            }
        }
    }
}

/// What one statement answered for each write of its group.
struct Outcomes {
    each: Vec<Outcome>,
    lost_connection: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statements::{FactorOp, FactorValues, Head, RecoveryOp};

    fn write(user: &str) -> Box<WriteChange> {
        Box::new(WriteChange {
            user: user.to_owned(),
            expected: Head::NONE,
            new_head: Head::NONE,
            op: FactorOp::Put,
            factor: FactorValues::default(),
            recovery_key_id: None,
            recovery_hashes: None,
            recovery_op: RecoveryOp::Keep,
            sequences: Vec::new(),
            kinds: Vec::new(),
            actor: user.to_owned(),
            resource_owner: None,
            at: chrono::DateTime::UNIX_EPOCH,
            find: false,
        })
    }

    #[test]
    fn a_found_state_is_at_its_head_and_no_row_is_at_none() {
        let head = Head {
            version: 3,
            last_sequence: 5,
            failed_attempts: 1,
            last_failure_at: None,
        };
        let found = Found(Box::new((
            (Some(3), Some(5), Some(1), None),
            Default::default(),
            (None, None),
        )));
        assert_eq!(found.head(), Some(head));
        assert!(found.is_at(&head));
        assert!(!found.is_at(&Head { version: 4, ..head }));
        assert!(!found.is_at(&Head::NONE));
        let nothing = Found(Box::new((
            (None, None, None, None),
            Default::default(),
            (None, None),
        )));
        assert_eq!(nothing.head(), None);
        assert!(nothing.is_at(&Head::NONE));
        assert!(!nothing.is_at(&head));
        assert!(!format!("{found:?}").contains("sealed"), "{found:?}");
    }

    type Waiting = VecDeque<Pending<WriteJob>>;

    fn queue(users: &[&str]) -> (Waiting, Vec<oneshot::Receiver<Outcome>>) {
        let mut pending = VecDeque::new();
        let mut answers = Vec::new();
        for user in users {
            let (answer, outcome) = oneshot::channel();
            pending.push_back(Pending {
                job: WriteJob {
                    write: write(user),
                    kind: Combine::First,
                    answer,
                },
                deadline: None,
            });
            answers.push(outcome);
        }
        (pending, answers)
    }

    fn take(pending: &mut Waiting, most: usize, now: Instant) -> Vec<WriteJob> {
        super::take::<Writes>(pending, most, now)
    }

    fn users(group: &[WriteJob]) -> Vec<&str> {
        group.iter().map(|job| job.write.user.as_str()).collect()
    }

    #[test]
    fn a_group_takes_the_oldest_writes_up_to_its_size() {
        let (mut pending, _answers) = queue(&["a", "b", "c", "d"]);
        assert_eq!(
            users(&take(&mut pending, 3, Instant::now())),
            ["a", "b", "c"]
        );
        assert_eq!(users(&take(&mut pending, 3, Instant::now())), ["d"]);
        assert!(take(&mut pending, 3, Instant::now()).is_empty());
    }

    #[test]
    fn a_users_second_write_waits_for_the_next_group() {
        let (mut pending, _answers) = queue(&["a", "b", "a", "c", "a"]);
        assert_eq!(
            users(&take(&mut pending, 8, Instant::now())),
            ["a", "b", "c"]
        );
        assert_eq!(users(&take(&mut pending, 8, Instant::now())), ["a"]);
        assert_eq!(users(&take(&mut pending, 8, Instant::now())), ["a"]);
        assert!(pending.is_empty());
    }

    #[test]
    fn a_write_past_its_deadline_is_answered_unavailable_unwritten() {
        let (mut pending, mut answers) = queue(&["a", "b", "c"]);
        let now = Instant::now();
        pending[1].deadline = Some(now);
        pending[2].deadline = Some(now + Duration::from_secs(1));
        assert_eq!(users(&take(&mut pending, 8, now)), ["a", "c"]);
        assert!(matches!(
            answers[1].try_recv(),
            Ok(Outcome::Failed(StoreError::Unavailable(_)))
        ));
        assert!(answers[0].try_recv().is_err(), "still to be answered");
    }

    #[test]
    fn a_write_whose_caller_is_gone_is_dropped_unwritten() {
        let (mut pending, mut answers) = queue(&["a", "b", "c"]);
        drop(answers.remove(1));
        assert_eq!(users(&take(&mut pending, 8, Instant::now())), ["a", "c"]);
        assert!(pending.is_empty());
    }
}
