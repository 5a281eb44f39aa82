//! Migrations, readiness, corrupt rows, the stored event and secret hygiene,
//! against a real PostgreSQL server (see `adapters_postgres::testing`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use adapters_postgres::testing::TestDatabase;
use adapters_postgres::{PgError, PgFactorStore, PgSettings, run_migrations};
use application::testing::unique_user;
use application::{
    ApplicationError, Change, ChangeContext, Current, FactorStore, FactorWrite, Readiness,
    StoreError,
};
use chrono::{DateTime, Utc};
use domain::{EventKind, OrgId, SealedSecret, UserId};
use secrecy::SecretString;

fn store_at(url: &SecretString) -> PgFactorStore {
    store_reading(url, 32)
}

/// [`store_at`] combining up to `read_batch_size` users' reads (1: none).
fn store_reading(url: &SecretString, read_batch_size: usize) -> PgFactorStore {
    store_with(url, read_batch_size, 1024)
}

/// [`store_at`] keeping `known_states` users' states (0: none).
fn store_knowing(url: &SecretString, known_states: usize) -> PgFactorStore {
    store_with(url, 32, known_states)
}

fn store_with(url: &SecretString, read_batch_size: usize, known_states: usize) -> PgFactorStore {
    PgFactorStore::connect(&PgSettings {
        url: url.clone(),
        max_connections: 4,
        connect_timeout: Duration::from_secs(1),
        statement_timeout: Duration::from_secs(10),
        prepared_statements: true,
        pooler: adapters_postgres::Pooler::Session,
        write_batch_size: 32,
        write_batches: 2,
        read_batch_size,
        known_states,
        known_state_ttl: Duration::from_secs(60),
    })
    .unwrap()
}

fn at() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 654_321_000).unwrap()
}

fn context(user: &UserId) -> ChangeContext {
    ChangeContext {
        at: at(),
        actor: UserId::parse("admin-7").unwrap(),
        resource_owner: Some(OrgId::parse(format!("org-of-{user}")).unwrap()),
    }
}

/// An Add on `current` of a secret sealed as `byte` repeated.
fn add_sealed(current: &Current<'_>, byte: u8) -> Result<Change, ApplicationError> {
    let secret = SealedSecret {
        key_id: "k1".into(),
        sealed: vec![byte; 48],
    };
    application::testing::add_change(current, secret, at())
}

fn add_decision() -> application::Decide {
    Box::new(|current: Current<'_>| add_sealed(&current, 1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_once_and_then_nothing() {
    let Some(db) = TestDatabase::create_empty().await else {
        return;
    };
    assert_eq!(run_migrations(&db.url).await.unwrap(), 4);
    assert_eq!(run_migrations(&db.url).await.unwrap(), 0);
}

// Current-thread runtime on purpose: other crates' plain `#[tokio::test]`s
// create test databases, so migrating must work there too.
#[tokio::test]
async fn concurrent_migrations_all_succeed_and_apply_once() {
    let Some(db) = TestDatabase::create_empty().await else {
        return;
    };
    let runs = (0..4).map(|_| {
        let url = db.url.clone();
        tokio::spawn(async move { run_migrations(&url).await })
    });
    let applied: Vec<usize> = futures::future::join_all(runs)
        .await
        .into_iter()
        .map(|run| run.unwrap().unwrap())
        .collect();
    assert_eq!(applied.iter().sum::<usize>(), 4, "{applied:?}");
    let store = store_at(&db.url);
    assert_eq!(store.ready().await, Ok(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_needs_a_reachable_and_migrated_database() {
    let Some(db) = TestDatabase::create_empty().await else {
        return;
    };
    let store = store_at(&db.url);
    assert_eq!(
        store.ready().await,
        Err(application::NotReady::SchemaBehind)
    );
    run_migrations(&db.url).await.unwrap();
    assert_eq!(store.ready().await, Ok(()));

    // Nothing listens on port 1.
    let down = store_at(&SecretString::from(
        "postgres://postgres@127.0.0.1:1/postgres",
    ));
    let started = std::time::Instant::now();
    assert_eq!(down.ready().await, Err(application::NotReady::Unreachable));
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_writes_the_event_row_with_its_context() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = store_at(&db.url);
    let user = unique_user("event-row");
    let event = store
        .change(&user, context(&user), add_decision())
        .await
        .unwrap()
        .events[0];
    assert_eq!(
        (event.kind, event.sequence, event.at),
        (EventKind::OtpAdded, 1, at())
    );

    let row = db
        .session()
        .await
        .query_one(
            "SELECT sequence, kind, actor, resource_owner, \
             (extract(epoch FROM occurred_at) * 1000000)::bigint \
             FROM otp_events WHERE user_id = $1",
            &[&user.as_str()],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    assert_eq!(row.get::<_, &str>(1), "otp.added");
    assert_eq!(row.get::<_, &str>(2), "admin-7");
    assert_eq!(
        row.get::<_, Option<String>>(3),
        Some(format!("org-of-{user}"))
    );
    assert_eq!(row.get::<_, i64>(4), at().timestamp_micros());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_rows_are_errors_not_panics() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let client = db.session().await;
    let user = unique_user("corrupt");
    client
        .batch_execute(&format!(
            "INSERT INTO otp_user_streams (user_id, last_sequence) VALUES ('{user}', 0);
             INSERT INTO otp_factors (user_id, state, key_id, sealed_secret, algorithm,
                 digits, period, skew, created_at, changed_at)
             VALUES ('{user}', 'ready', 'k1', '\\x00', 'SHA1', 7, 30, 1, now(), now());"
        ))
        .await
        .unwrap();
    let store = store_at(&db.url);

    assert!(
        matches!(store.find(&user).await, Err(StoreError::Corrupt(_))),
        "find must answer Corrupt"
    );
    assert!(matches!(
        store
            .change(&user, context(&user), add_decision())
            .await
            .err(),
        Some(ApplicationError::Store(StoreError::Corrupt(_)))
    ));
    // Nothing was written and no sequence number was used.
    let head: i64 = client
        .query_one(
            "SELECT last_sequence FROM otp_user_streams WHERE user_id = $1",
            &[&user.as_str()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(head, 0);
    let events: i64 = client
        .query_one(
            "SELECT count(*) FROM otp_events WHERE user_id = $1",
            &[&user.as_str()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(events, 0);
}

#[tokio::test]
async fn no_password_in_debug_output_or_errors() {
    const PASSWORD: &str = "hunter2-sup3r-secret";
    let url = SecretString::from(format!("postgres://otp:{PASSWORD}@127.0.0.1:1/otp"));

    let store = store_at(&url);
    let debug = format!("{store:?}");
    assert!(debug.contains("PgFactorStore"), "{debug}");
    assert!(
        !debug.contains(PASSWORD) && !debug.contains("127.0.0.1"),
        "{debug}"
    );
    let settings = PgSettings {
        url: url.clone(),
        max_connections: 1,
        connect_timeout: Duration::from_secs(1),
        statement_timeout: Duration::from_secs(10),
        prepared_statements: true,
        pooler: adapters_postgres::Pooler::Session,
        write_batch_size: 32,
        write_batches: 2,
        read_batch_size: 32,
        known_states: 1024,
        known_state_ttl: std::time::Duration::from_secs(60),
    };
    assert!(!format!("{settings:?}").contains(PASSWORD));

    let StoreError::Unavailable(cause) =
        store.find(&UserId::parse("u").unwrap()).await.unwrap_err()
    else {
        panic!("an unreachable database is Unavailable");
    };
    assert!(!cause.contains(PASSWORD), "{cause}");

    let error = run_migrations(&url).await.unwrap_err();
    assert!(matches!(error, PgError::Connect(_)), "{error:?}");
    for text in [error.to_string(), format!("{error:?}")] {
        assert!(!text.contains(PASSWORD), "{text}");
    }

    let bad = SecretString::from(format!("postgres://otp:{PASSWORD}@db:notaport/otp"));
    let error = PgFactorStore::connect(&PgSettings {
        url: bad.clone(),
        ..settings
    })
    .unwrap_err();
    assert!(matches!(error, PgError::InvalidUrl(_)), "{error:?}");
    let migrate_error = run_migrations(&bad).await.unwrap_err();
    for text in [
        error.to_string(),
        format!("{error:?}"),
        migrate_error.to_string(),
    ] {
        assert!(
            !text.contains(PASSWORD) && !text.contains("notaport"),
            "{text}"
        );
    }
}

#[test]
fn a_pool_needs_at_least_one_connection() {
    let error = PgFactorStore::connect(&PgSettings {
        url: SecretString::from("postgres://postgres@127.0.0.1/postgres"),
        max_connections: 0,
        connect_timeout: Duration::from_secs(1),
        statement_timeout: Duration::from_secs(10),
        prepared_statements: true,
        pooler: adapters_postgres::Pooler::Session,
        write_batch_size: 32,
        write_batches: 2,
        read_batch_size: 32,
        known_states: 1024,
        known_state_ttl: std::time::Duration::from_secs(60),
    })
    .unwrap_err();
    assert!(matches!(error, PgError::InvalidSettings(_)), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_row_lock_fails_the_change_with_unavailable_instead_of_hanging() {
    a_stuck_row_lock_fails_the_change(adapters_postgres::Pooler::Session).await;
}

/// The bound holds with `pooler = transaction` too, where it is set per
/// transaction (`SET LOCAL`) rather than at login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_row_lock_fails_the_change_behind_a_transaction_pooler_too() {
    a_stuck_row_lock_fails_the_change(adapters_postgres::Pooler::Transaction).await;
}

async fn a_stuck_row_lock_fails_the_change(pooler: adapters_postgres::Pooler) {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = PgFactorStore::connect(&PgSettings {
        url: db.url.clone(),
        max_connections: 2,
        connect_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_millis(300),
        prepared_statements: true,
        pooler,
        write_batch_size: 32,
        write_batches: 2,
        read_batch_size: 32,
        known_states: 1024,
        known_state_ttl: std::time::Duration::from_secs(60),
    })
    .unwrap();
    let user = unique_user("stuck-lock");
    // Another session holds the user's stream row and does not let go.
    let mut holder = db.session().await;
    let transaction = holder.transaction().await.unwrap();
    transaction
        .execute(
            "INSERT INTO otp_user_streams (user_id, last_sequence) VALUES ($1, 0)",
            &[&user.as_str()],
        )
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let error = store
        .change(&user, context(&user), add_decision())
        .await
        .unwrap_err();
    assert!(
        matches!(error, ApplicationError::Store(StoreError::Unavailable(_))),
        "{error:?}"
    );
    assert_eq!(
        error.status_message(),
        "Errors.Store.Unavailable (OTP-UNAVAILABLE)"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // Once the lock is gone, the same change goes through.
    transaction.rollback().await.unwrap();
    let committed = store
        .change(&user, context(&user), add_decision())
        .await
        .unwrap();
    assert_eq!(committed.events[0].sequence, 1);
}

/// Runs `write` (another writer of the user's rows) the first time the
/// decision is asked, then decides `Put` of whatever factor it was shown
/// (marked READY): the store must notice the other write, not commit the
/// stale decision, and ask again on the fresh state.
fn racing_decision(
    write: impl Fn() + Send + Sync + 'static,
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> application::Decide {
    Box::new(move |current: Current<'_>| {
        use std::sync::atomic::Ordering::SeqCst;
        // The store may first ask about the empty state (a new user's
        // one-step write): counted from the first call that sees the factor.
        if calls.load(SeqCst) == 0 && current.factor.is_none() {
            return Err(ApplicationError::Internal);
        }
        if calls.fetch_add(1, SeqCst) == 0 {
            write();
        }
        let factor = current.factor.cloned().ok_or(ApplicationError::Internal)?;
        Ok(Change::accepted(
            FactorWrite::Put(factor.verified(at())),
            EventKind::OtpVerified,
        ))
    })
}

/// Blocks on `future` from inside a (synchronous) decision.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(future))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_decided_before_a_reseal_never_writes_the_old_secret_back() {
    use application::{Reseal, SecretStore};
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = std::sync::Arc::new(store_at(&db.url));
    let user = unique_user("reseal-race");
    store
        .change(&user, context(&user), add_decision())
        .await
        .unwrap();
    let old = SealedSecret {
        key_id: "k1".into(),
        sealed: vec![1; 48],
    };
    let new = SealedSecret {
        key_id: "k2".into(),
        sealed: vec![2; 48],
    };
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (rotator, owner, old_secret, new_secret) =
        (store.clone(), user.clone(), old.clone(), new.clone());
    let decide = racing_decision(
        move || {
            let written = block_on(rotator.reseal(vec![Reseal {
                user: owner.clone(),
                old: old_secret.clone(),
                new: new_secret.clone(),
            }]))
            .unwrap();
            assert_eq!(written, 1);
        },
        calls.clone(),
    );
    let committed = store.change(&user, context(&user), decide).await.unwrap();
    assert_eq!(committed.events[0].sequence, 2);
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "decided again"
    );
    let stored = store.find(&user).await.unwrap().unwrap();
    assert_eq!(stored.secret(), &new, "the re-sealed secret survives");
}

/// A new user's first write (the one-statement insert) whose stream row
/// another change of the user created between the decision and the write
/// inserts nothing: the change is decided again on the fresh state, and
/// the events number on without a gap or a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_write_that_lost_the_race_writes_nothing_and_decides_again() {
    use std::sync::{Arc, Mutex};
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = Arc::new(store_at(&db.url));
    let user = unique_user("first-race");
    // Whether each decision was shown a factor.
    let shown: Arc<Mutex<Vec<bool>>> = Arc::default();
    let (other, owner, log) = (store.clone(), user.clone(), shown.clone());
    let decide: application::Decide = Box::new(move |current: Current<'_>| {
        let first = {
            let mut log = log.lock().unwrap();
            log.push(current.factor.is_some());
            log.len() == 1
        };
        if first {
            // Another change of the user commits before this one writes.
            block_on(other.change(&owner, context(&owner), add_decision())).unwrap();
        }
        add_sealed(&current, 2)
    });
    let committed = store.change(&user, context(&user), decide).await.unwrap();
    assert_eq!(*shown.lock().unwrap(), [false, true], "decided again");
    assert_eq!(committed.events[0].sequence, 2);
    assert_eq!(sequences(&db, &user).await, [1, 2]);
    let head = db
        .session()
        .await
        .query_one(
            "SELECT s.last_sequence, f.sealed_secret FROM otp_user_streams s \
             JOIN otp_factors f USING (user_id) WHERE s.user_id = $1",
            &[&user.as_str()],
        )
        .await
        .unwrap();
    assert_eq!(head.get::<_, i64>(0), 2);
    assert_eq!(
        head.get::<_, Vec<u8>>(1),
        vec![2; 48],
        "the second decision's factor"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_decided_before_a_purge_sees_the_factor_gone() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = std::sync::Arc::new(store_at(&db.url));
    let user = unique_user("purge-race");
    store
        .change(&user, context(&user), add_decision())
        .await
        .unwrap();
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let purger = store.clone();
    let decide = racing_decision(
        move || {
            let purged = block_on(purger.purge_pending(at() + chrono::TimeDelta::seconds(1)));
            assert_eq!(purged.unwrap(), 1);
        },
        calls.clone(),
    );
    // The second decision sees no factor and refuses: nothing written.
    let answer = store.change(&user, context(&user), decide).await;
    assert_eq!(answer.unwrap_err(), ApplicationError::Internal);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(store.find(&user).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_killed_while_idle_costs_a_read_no_error() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    // Reads combined (the read queue's task reads again on a fresh
    // connection) and alone (the caller does).
    for read_batch_size in [32, 1] {
        let store = store_reading(&db.url, read_batch_size);
        let user = unique_user("killed");
        store
            .change(&user, context(&user), add_decision())
            .await
            .unwrap();
        // Every idle connection of the pool dies (as in a failover or an
        // idle timeout of a proxy); the next calls still answer.
        db.session()
            .await
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            store.find(&user).await.unwrap().is_some(),
            "read_batch_size {read_batch_size}"
        );
        store
            .change(&user, context(&user), add_decision())
            .await
            .unwrap();
    }
}

/// A decision that marks whatever factor it is shown READY (refusing when
/// there is none), logging the state of the factor each call was shown.
fn logged_verify(
    log: std::sync::Arc<std::sync::Mutex<Vec<Option<domain::FactorState>>>>,
) -> application::Decide {
    Box::new(move |current: Current<'_>| {
        log.lock().unwrap().push(current.factor.map(|f| f.state()));
        let factor = current.factor.ok_or(ApplicationError::Internal)?;
        Ok(Change::accepted(
            FactorWrite::Put(factor.verified(at())),
            EventKind::OtpVerified,
        ))
    })
}

/// The user's event sequences, in order.
async fn sequences(db: &TestDatabase, user: &UserId) -> Vec<i64> {
    let rows = db
        .session()
        .await
        .query(
            "SELECT sequence FROM otp_events WHERE user_id = $1 ORDER BY sequence",
            &[&user.as_str()],
        )
        .await
        .unwrap();
    rows.iter().map(|row| row.get(0)).collect()
}

/// After a change here, the next change of the user is decided once, on
/// what this replica wrote (a pending factor), and written without a read;
/// with no known states kept it is first asked about the empty state (the
/// one-step first write), then about the state it read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_change_decides_on_the_state_this_replica_wrote_without_reading_it() {
    use std::sync::{Arc, Mutex};
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let pending = Some(domain::FactorState::NotReady);
    for (known_states, shown) in [(1024, vec![pending]), (0, vec![None, pending])] {
        let store = store_knowing(&db.url, known_states);
        let user = unique_user("known-state");
        store
            .change(&user, context(&user), add_decision())
            .await
            .unwrap();
        let log: Arc<Mutex<Vec<_>>> = Arc::default();
        let committed = store
            .change(&user, context(&user), logged_verify(log.clone()))
            .await
            .unwrap();
        assert_eq!(*log.lock().unwrap(), shown, "known_states {known_states}");
        assert_eq!(committed.events[0].sequence, 2);
        assert_eq!(sequences(&db, &user).await, [1, 2]);
        let stored = store.find(&user).await.unwrap().unwrap();
        assert_eq!(stored.state(), domain::FactorState::Ready);
    }
}

/// Two replicas: the state one of them knows goes stale when the other
/// changes the user. Its next change, decided on the stale state, writes
/// nothing; it is decided again on the state that write found (the other
/// replica's) and numbers on without a gap. A decision that writes nothing
/// is never answered from a known state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_another_replica_changed_since_is_decided_again_on_the_state_found() {
    use std::sync::{Arc, Mutex};
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let (here, there) = (store_knowing(&db.url, 1024), store_knowing(&db.url, 1024));
    let user = unique_user("stale-known");
    here.change(&user, context(&user), add_decision())
        .await
        .unwrap();
    // The other replica verifies: this one still knows the pending factor.
    there
        .change(&user, context(&user), logged_verify(Arc::default()))
        .await
        .unwrap();
    let log: Arc<Mutex<Vec<_>>> = Arc::default();
    let committed = here
        .change(&user, context(&user), logged_verify(log.clone()))
        .await
        .unwrap();
    let (pending, ready) = (
        Some(domain::FactorState::NotReady),
        Some(domain::FactorState::Ready),
    );
    assert_eq!(*log.lock().unwrap(), [pending, ready], "decided again");
    assert_eq!(committed.events[0].sequence, 3);
    assert_eq!(sequences(&db, &user).await, [1, 2, 3]);

    // The other replica removes the factor. Here, a decision that refuses
    // on the factor this replica knows is not answered: it is made again
    // on the state read, which has no factor.
    there
        .change(
            &user,
            context(&user),
            Box::new(|_: Current<'_>| {
                Ok(Change::accepted(FactorWrite::Delete, EventKind::OtpRemoved))
            }),
        )
        .await
        .unwrap();
    let removed_there = Box::new(|current: Current<'_>| {
        // Refuses (writing nothing) on a factor, writes on none.
        if current.factor.is_some() {
            return Err(ApplicationError::Internal);
        }
        Ok(Change::accepted(FactorWrite::Keep, EventKind::OtpRemoved))
    });
    let committed = here
        .change(&user, context(&user), removed_there)
        .await
        .unwrap();
    assert_eq!(committed.events[0].sequence, 5);
    assert_eq!(sequences(&db, &user).await, [1, 2, 3, 4, 5]);
}

/// The state a change leaves known is the state a read then finds: the
/// factor, the wrong-code count and the recovery codes a decision is shown
/// first (known, no read) equal those it is shown once it refused and is
/// decided again on the read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_a_change_leaves_known_is_the_state_a_read_finds() {
    use std::sync::{Arc, Mutex};
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = store_knowing(&db.url, 1024);
    let user = unique_user("known-equals-read");
    store
        .change(&user, context(&user), add_decision())
        .await
        .unwrap();
    // A wrong code that also stores recovery codes: every part of the state.
    store
        .change(
            &user,
            context(&user),
            Box::new(|current: Current<'_>| {
                Ok(Change {
                    factor: FactorWrite::Keep,
                    attempts: Some(domain::Attempts {
                        failures: current.attempts.failures + 2,
                        last_failure_at: Some(at()),
                    }),
                    recovery: application::RecoveryWrite::Put(domain::RecoveryCodes {
                        key_id: "r1".into(),
                        hashes: vec![domain::RecoveryHash([7; 32])],
                    }),
                    events: vec![EventKind::CheckFailed],
                    refusal: None,
                })
            }),
        )
        .await
        .unwrap();
    type Shown = (
        Option<domain::OtpFactor>,
        domain::Attempts,
        Option<domain::RecoveryCodes>,
    );
    let shown: Arc<Mutex<Vec<Shown>>> = Arc::default();
    let log = shown.clone();
    let answer = store
        .change(
            &user,
            context(&user),
            Box::new(move |current: Current<'_>| {
                log.lock().unwrap().push((
                    current.factor.cloned(),
                    current.attempts,
                    current.recovery.cloned(),
                ));
                Err(ApplicationError::Internal)
            }),
        )
        .await;
    assert_eq!(answer.unwrap_err(), ApplicationError::Internal);
    let shown = shown.lock().unwrap();
    assert_eq!(shown.len(), 2, "known, then read");
    assert_eq!(shown[0], shown[1], "the known state is the read one");
    assert_eq!(shown[1].1.failures, 2);
    assert!(shown[1].0.is_some() && shown[1].2.is_some());
}
