//! Concurrent users' writes combined into one statement and one commit
//! (`database.write_batch_size`): made to queue behind a write held on a
//! row lock, then told apart by the transaction that wrote each row
//! (PostgreSQL's `xmin`: rows of one commit share it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use adapters_postgres::testing::TestDatabase;
use adapters_postgres::{PgFactorStore, PgSettings, Pooler};
use application::testing::unique_user;
use application::{ChangeContext, Current, FactorStore};
use chrono::{DateTime, Utc};
use domain::{SealedSecret, UserId};
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

/// How long the writes of a test get to reach the queue behind the held
/// write (they make no round trip before it).
const QUEUE_TIME: Duration = Duration::from_millis(500);

/// One combined statement in flight at a time, so writes queue behind it.
fn store(db: &TestDatabase) -> Arc<PgFactorStore> {
    store_timing_out(db, Duration::from_secs(30))
}

/// [`store`] with `statement_timeout`.
fn store_timing_out(db: &TestDatabase, statement_timeout: Duration) -> Arc<PgFactorStore> {
    Arc::new(
        PgFactorStore::connect(&PgSettings {
            url: db.url.clone(),
            max_connections: 4,
            connect_timeout: Duration::from_secs(10),
            statement_timeout,
            prepared_statements: true,
            pooler: Pooler::Session,
            write_batch_size: 32,
            write_batches: 1,
            read_batch_size: 32,
            known_states: 0,
            known_state_ttl: std::time::Duration::from_secs(60),
        })
        .unwrap(),
    )
}

fn at() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).unwrap()
}

/// An Add (replacing a pending factor) sealed as `tag`: the event's sequence.
async fn add(store: &PgFactorStore, user: &UserId, tag: u8) -> u64 {
    let decide = Box::new(move |current: Current<'_>| {
        let secret = SealedSecret {
            key_id: "k1".into(),
            sealed: vec![tag; 48],
        };
        application::testing::add_change(&current, secret, at())
    });
    let committed = store.change(user, context(user), decide).await;
    committed.unwrap().events[0].sequence
}

/// Another session's transaction holding `user`'s stream row locked.
async fn lock_row(db: &TestDatabase, user: &UserId) -> Client {
    let session = db.session().await;
    session.batch_execute("BEGIN").await.unwrap();
    session
        .execute(
            "SELECT 1 FROM otp_user_streams WHERE user_id = $1 FOR UPDATE",
            &[&user.as_str()],
        )
        .await
        .unwrap();
    session
}

/// A new secret for a user's pending factor, refused (and so tried only
/// after a read) while the user has none.
fn replacement(tag: u8) -> application::Decide {
    Box::new(move |current: Current<'_>| {
        if current.factor.is_none() {
            return Err(domain::FactorError::NothingToVerify.into());
        }
        let secret = SealedSecret {
            key_id: "k1".into(),
            sealed: vec![tag; 48],
        };
        application::testing::add_change(&current, secret, at())
    })
}

fn context(user: &UserId) -> ChangeContext {
    ChangeContext {
        at: at(),
        actor: user.clone(),
        resource_owner: None,
    }
}

/// [`replacement`] written: the event's sequence.
async fn replace(store: &PgFactorStore, user: &UserId, tag: u8) -> u64 {
    let committed = store.change(user, context(user), replacement(tag)).await;
    committed.unwrap().events[0].sequence
}

/// The combiner's one statement slot held: `holder`'s write waits on a row
/// lock of another session until [`Held::release`].
struct Held {
    session: Client,
    write: tokio::task::JoinHandle<u64>,
}

impl Held {
    async fn new(db: &TestDatabase, store: &Arc<PgFactorStore>, holder: &UserId) -> Self {
        assert_eq!(add(store, holder, 1).await, 1);
        let session = lock_row(db, holder).await;
        let write = {
            let (store, holder) = (store.clone(), holder.clone());
            tokio::spawn(async move { replace(&store, &holder, 2).await })
        };
        // Until the write waits on the lock.
        db.until_a_session_waits_on_a_lock().await;
        Self { session, write }
    }

    async fn release(self) {
        self.session.batch_execute("COMMIT").await.unwrap();
        assert_eq!(self.write.await.unwrap(), 2);
    }
}

/// The one count `sql` answers.
async fn count(client: &Client, sql: &str, params: &[&(dyn ToSql + Sync)]) -> i64 {
    client.query_one(sql, params).await.unwrap().get(0)
}

/// The distinct transactions that wrote these users' rows of `table`.
async fn writers(client: &Client, table: &str, users: &[UserId]) -> i64 {
    let users: Vec<&str> = users.iter().map(UserId::as_str).collect();
    count(
        client,
        &format!("SELECT count(DISTINCT xmin::text) FROM {table} WHERE user_id = ANY($1)"),
        &[&users],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_users_waiting_together_are_written_in_one_commit() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = store(&db);
    let held = Held::new(&db, &store, &unique_user("combined-holder")).await;

    let users: Vec<UserId> = (0..20).map(|_| unique_user("combined-new")).collect();
    let adds: Vec<_> = users
        .iter()
        .map(|user| {
            let (store, user) = (store.clone(), user.clone());
            tokio::spawn(async move { add(&store, &user, 7).await })
        })
        .collect();
    // A write whose caller goes away while it waits is never written.
    let gone = unique_user("combined-gone");
    let abandoned = {
        let (store, gone) = (store.clone(), gone.clone());
        tokio::spawn(async move { add(&store, &gone, 7).await })
    };
    tokio::time::sleep(QUEUE_TIME).await;
    abandoned.abort();
    held.release().await;
    for add in adds {
        assert_eq!(add.await.unwrap(), 1, "every user's own first event");
    }

    let client = db.session().await;
    for table in ["otp_user_streams", "otp_factors", "otp_events"] {
        assert_eq!(writers(&client, table, &users).await, 1, "{table}");
    }
    let names: Vec<&str> = users.iter().map(UserId::as_str).collect();
    let rows = client
        .query(
            "SELECT s.version, s.last_sequence, f.state, f.sealed_secret, e.sequence, e.kind, \
             e.actor = s.user_id FROM otp_user_streams s JOIN otp_factors f USING (user_id) \
             JOIN otp_events e USING (user_id) WHERE s.user_id = ANY($1)",
            &[&names],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), users.len(), "one stream, factor and event each");
    for row in rows {
        assert_eq!(row.get::<_, i64>(0), 0);
        assert_eq!(row.get::<_, i64>(1), 1);
        assert_eq!(row.get::<_, String>(2), "not_ready");
        assert_eq!(row.get::<_, Vec<u8>>(3), vec![7; 48]);
        assert_eq!(row.get::<_, i64>(4), 1);
        assert_eq!(row.get::<_, String>(5), "otp.added");
        assert!(row.get::<_, bool>(6), "each event names its own user");
    }
    let written: i64 = client
        .query_one(
            "SELECT count(*) FROM otp_user_streams WHERE user_id = $1",
            &[&gone.as_str()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(written, 0, "the abandoned write was dropped unwritten");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_users_lost_race_in_a_combined_write_fails_no_other() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = store(&db);
    let users: Vec<UserId> = (0..6).map(|_| unique_user("combined-change")).collect();
    for user in &users {
        assert_eq!(add(&store, user, 1).await, 1);
    }
    let held = Held::new(&db, &store, &unique_user("combined-holder")).await;

    // Each learns its head (a read, or what its first try found) and
    // waits with its write behind the held one...
    let changes: Vec<_> = users
        .iter()
        .map(|user| {
            let (store, user) = (store.clone(), user.clone());
            tokio::spawn(async move { replace(&store, &user, 9).await })
        })
        .collect();
    tokio::time::sleep(QUEUE_TIME).await;
    // ...when another writer (a re-seal on another replica, say) moves the
    // first user's version.
    let client = db.session().await;
    client
        .execute(
            "UPDATE otp_user_streams SET version = version + 1 WHERE user_id = $1",
            &[&users[0].as_str()],
        )
        .await
        .unwrap();
    held.release().await;
    for change in changes {
        assert_eq!(change.await.unwrap(), 2, "every change applied, in order");
    }

    // The others committed together; the first user lost its compare-and-
    // swap in that statement, decided again and wrote alone, later.
    assert_eq!(writers(&client, "otp_user_streams", &users[1..]).await, 1);
    assert_eq!(writers(&client, "otp_user_streams", &users).await, 2);
    let names: Vec<&str> = users.iter().map(UserId::as_str).collect();
    let rows = client
        .query(
            "SELECT s.user_id, s.version, s.last_sequence, f.sealed_secret, \
             array_agg(e.sequence ORDER BY e.sequence) \
             FROM otp_user_streams s JOIN otp_factors f USING (user_id) \
             JOIN otp_events e USING (user_id) WHERE s.user_id = ANY($1) \
             GROUP BY s.user_id, s.version, s.last_sequence, f.sealed_secret",
            &[&names],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), users.len());
    for row in rows {
        let user: String = row.get(0);
        let moved = i64::from(user == users[0].as_str());
        assert_eq!(row.get::<_, i64>(1), 1 + moved, "{user}: version");
        assert_eq!(row.get::<_, i64>(2), 2, "{user}: last sequence");
        assert_eq!(
            row.get::<_, Vec<u8>>(3),
            vec![9; 48],
            "{user}: the new secret"
        );
        assert_eq!(row.get::<_, Vec<i64>>(4), [1, 2], "{user}: no gap");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_lock_held_on_one_user_delays_and_fails_only_that_users_write() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = store_timing_out(&db, Duration::from_secs(2));
    let users: Vec<UserId> = (0..4).map(|_| unique_user("combined-timeout")).collect();
    for user in &users {
        assert_eq!(add(&store, user, 1).await, 1);
    }
    // The first user's row stays locked by another session throughout.
    let stuck = lock_row(&db, &users[0]).await;
    let held = Held::new(&db, &store, &unique_user("combined-holder")).await;
    let changes: Vec<_> = users
        .iter()
        .map(|user| {
            let (store, user) = (store.clone(), user.clone());
            tokio::spawn(async move { store.change(&user, context(&user), replacement(5)).await })
        })
        .collect();
    tokio::time::sleep(QUEUE_TIME).await;
    // All four queued together behind the held write: their combined
    // statement skips the stuck row and writes the other three at once;
    // the stuck user decides again and waits alone, until its timeout.
    held.release().await;
    let mut outcomes = Vec::new();
    for change in changes {
        outcomes.push(
            change
                .await
                .unwrap()
                .map(|committed| committed.events[0].sequence),
        );
    }
    assert!(
        matches!(&outcomes[0], Err(error) if error.code() == application::StatusCode::Unavailable),
        "the stuck user's write timed out: {outcomes:?}"
    );
    assert!(
        outcomes[1..].iter().all(|outcome| *outcome == Ok(2)),
        "the others wrote: {outcomes:?}"
    );
    let client = db.session().await;
    assert_eq!(
        writers(&client, "otp_user_streams", &users[1..]).await,
        1,
        "the others shared one commit"
    );
    stuck.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(
        store
            .find(&users[0])
            .await
            .unwrap()
            .unwrap()
            .secret()
            .sealed,
        vec![1; 48],
        "the stuck user's factor is as it was"
    );
}

/// The backends of this database waiting on a lock.
async fn lock_waiters(client: &Client) -> i64 {
    count(
        client,
        "SELECT count(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND wait_event_type = 'Lock'",
        &[],
    )
    .await
}

/// The read queue's two statement slots held: `otp_user_streams` locked
/// by another session, and a read of a user in each slot, waiting on the
/// lock until [`ReadsHeld::release`].
struct ReadsHeld {
    session: Client,
    watcher: Client,
    reads: Vec<tokio::task::JoinHandle<()>>,
}

impl ReadsHeld {
    async fn new(db: &TestDatabase, store: &Arc<PgFactorStore>) -> Self {
        let session = db.session().await;
        session
            .batch_execute("BEGIN; LOCK TABLE otp_user_streams IN ACCESS EXCLUSIVE MODE")
            .await
            .unwrap();
        let watcher = db.session().await;
        let mut reads = Vec::new();
        for _ in 0..2 {
            let waiting = lock_waiters(&watcher).await;
            let (store, user) = (store.clone(), unique_user("combined-read-holder"));
            reads.push(tokio::spawn(async move {
                assert_eq!(store.find(&user).await, Ok(None));
            }));
            // Until it waits: the next read finds one slot fewer free.
            for _ in 0..500 {
                if lock_waiters(&watcher).await > waiting {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        assert_eq!(lock_waiters(&watcher).await, 2, "both read slots held");
        Self {
            session,
            watcher,
            reads,
        }
    }

    /// How many statements wait on the lock now.
    async fn waiting(&self) -> i64 {
        lock_waiters(&self.watcher).await
    }

    /// Releases the lock once the holders' reads have answered; answers
    /// the watching session.
    async fn release(self) -> Client {
        self.session.batch_execute("COMMIT").await.unwrap();
        for read in self.reads {
            read.await.unwrap();
        }
        self.watcher
    }
}

/// How many of this database's connections last ran a combined read
/// (`… s.user_id = ANY(…)`).
async fn ran_combined_read(client: &Client) -> i64 {
    count(
        client,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND pid <> pg_backend_pid() AND query LIKE '%s.user_id = ANY(%'",
        &[],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_waiting_together_share_a_statement_and_each_gets_its_own_users_row() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = store(&db);
    // Two users in three have a factor (sealed with their own tag); the
    // third has no rows at all.
    let users: Vec<UserId> = (0..12).map(|_| unique_user("combined-read")).collect();
    let tag = |index: usize| u8::try_from(index + 10).unwrap();
    for (index, user) in users.iter().enumerate() {
        if index % 3 != 0 {
            assert_eq!(add(&store, user, tag(index)).await, 1);
        }
    }
    let held = ReadsHeld::new(&db, &store).await;
    let finds: Vec<_> = users
        .iter()
        .map(|user| {
            let (store, user) = (store.clone(), user.clone());
            tokio::spawn(async move { store.find(&user).await })
        })
        .collect();
    tokio::time::sleep(QUEUE_TIME).await;
    // Alone, four of them would wait on the lock too (the pool's size).
    assert_eq!(
        held.waiting().await,
        2,
        "the twelve reads wait in the queue"
    );
    let watcher = held.release().await;
    let mut found = Vec::new();
    for find in finds {
        found.push(find.await.unwrap().unwrap());
    }
    // The first holder's read to end took all twelve at once.
    assert_eq!(
        ran_combined_read(&watcher).await,
        1,
        "the queued reads ran as one statement"
    );
    for (index, found) in found.into_iter().enumerate() {
        if index % 3 == 0 {
            assert!(found.is_none(), "user {index} has no factor");
        } else {
            let secret = found.expect("a factor").into_secret();
            assert_eq!(secret.sealed, vec![tag(index); 48], "user {index}'s own");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_that_read_together_each_decide_on_their_own_users_state() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = store(&db);
    let users: Vec<UserId> = (0..8)
        .map(|_| unique_user("combined-read-change"))
        .collect();
    let tag = |index: usize| u8::try_from(index + 20).unwrap();
    for user in &users {
        assert_eq!(add(&store, user, 1).await, 1);
    }
    let held = ReadsHeld::new(&db, &store).await;
    // Each replaces its pending factor: a decision that needs the read.
    let changes: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(index, user)| {
            let (store, user) = (store.clone(), user.clone());
            tokio::spawn(async move { replace(&store, &user, tag(index)).await })
        })
        .collect();
    tokio::time::sleep(QUEUE_TIME).await;
    assert_eq!(held.waiting().await, 2, "the eight reads wait in the queue");
    held.release().await;
    for change in changes {
        assert_eq!(change.await.unwrap(), 2, "each user's own second event");
    }
    for (index, user) in users.iter().enumerate() {
        let secret = store.find(user).await.unwrap().unwrap().into_secret();
        assert_eq!(secret.sealed, vec![tag(index); 48], "user {index}'s own");
    }
}
