//! Statements rolled back by the server (serialization failures, deadlocks)
//! run again a bounded number of times, each retry counted as
//! `otp.store.retries` by `reason`, and then the call is answered as
//! unavailable; a real deadlock with another session costs a retry, not an
//! error. Each use of a known state is counted as `otp.store.known_states`
//! by `outcome`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use adapters_postgres::testing::TestDatabase;
use adapters_postgres::{PgFactorStore, PgSettings};
use application::testing::unique_user;
use application::{ApplicationError, ChangeContext, Current, FactorStore, StatusCode, StoreError};
use chrono::{DateTime, Utc};
use domain::{SealedSecret, UserId};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};

/// The `reason` of every `otp.store.retries` event seen,
/// `known:<outcome>` of every `otp.store.known_states` one, and
/// `span:<db.operation.name>` of every statement's span.
#[derive(Clone, Default)]
struct Counted(Arc<Mutex<Vec<String>>>);

impl Counted {
    /// The write and the read statements seen (their spans).
    fn statements(&self) -> (usize, usize) {
        (
            self.count("span:combined_write"),
            self.count("span:combined_read"),
        )
    }

    /// The counters' labels seen, spans left out.
    fn counters(&self) -> Vec<String> {
        let seen = self.0.lock().unwrap();
        seen.iter()
            .filter(|label| !label.starts_with("span:"))
            .cloned()
            .collect()
    }

    fn count(&self, reason: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|r| *r == reason)
            .count()
    }
}

#[derive(Default)]
struct Fields {
    /// The label's prefix: `Some("")` for a retry, `Some("known:")` for a
    /// known state's use.
    counter: Option<&'static str>,
    label: String,
}

impl Visit for Fields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        if value != 1 {
            return;
        }
        match field.name() {
            "monotonic_counter.otp.store.retries" => self.counter = Some(""),
            "monotonic_counter.otp.store.known_states" => self.counter = Some("known:"),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if matches!(field.name(), "reason" | "outcome") {
            write!(self.label, "{value:?}").unwrap();
            self.label = self.label.trim_matches('"').to_owned();
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if matches!(field.name(), "reason" | "outcome") {
            value.clone_into(&mut self.label);
        }
    }
}

/// A span's `db.operation.name`.
#[derive(Default)]
struct Operation(Option<String>);

impl Visit for Operation {
    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "db.operation.name" {
            self.0 = Some(value.to_owned());
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for Counted {
    fn on_new_span(
        &self,
        attributes: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: Context<'_, S>,
    ) {
        let mut operation = Operation::default();
        attributes.record(&mut operation);
        if let Some(name) = operation.0 {
            self.0.lock().unwrap().push(format!("span:{name}"));
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != "otp.metrics" {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        if let Some(prefix) = fields.counter {
            self.0
                .lock()
                .unwrap()
                .push(format!("{prefix}{}", fields.label));
        }
    }
}

fn store(db: &TestDatabase) -> PgFactorStore {
    store_knowing(db, 0)
}

/// [`store`] keeping `known_states` users' states.
fn store_knowing(db: &TestDatabase, known_states: usize) -> PgFactorStore {
    PgFactorStore::connect(&PgSettings {
        url: db.url.clone(),
        max_connections: 2,
        connect_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(20),
        prepared_statements: true,
        pooler: adapters_postgres::Pooler::Session,
        write_batch_size: 32,
        write_batches: 2,
        read_batch_size: 32,
        known_states,
        known_state_ttl: std::time::Duration::from_secs(60),
    })
    .unwrap()
}

/// Two stores on one fresh database, as two replicas (64 known states
/// each), and what this thread's subscriber counts while the guard lives.
async fn two_counted_replicas() -> Option<(
    TestDatabase,
    Counted,
    tracing::subscriber::DefaultGuard,
    PgFactorStore,
    PgFactorStore,
)> {
    let db = TestDatabase::create().await?;
    let counted = Counted::default();
    let guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(counted.clone()));
    let (here, there) = (store_knowing(&db, 64), store_knowing(&db, 64));
    Some((db, counted, guard, here, there))
}

fn at() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).unwrap()
}

fn context(user: &UserId) -> ChangeContext {
    ChangeContext {
        at: at(),
        actor: user.clone(),
        resource_owner: None,
    }
}

fn add_decision(tag: u8) -> application::Decide {
    Box::new(move |current: Current<'_>| {
        let secret = SealedSecret {
            key_id: "k1".into(),
            sealed: vec![tag; 48],
        };
        application::testing::add_change(&current, secret, at())
    })
}

/// Every write of a stream row fails with `sqlstate` and `message`, as an
/// engine that can never order the statement would answer.
async fn fail_stream_writes(db: &TestDatabase, sqlstate: &str, message: &str) {
    db.session()
        .await
        .batch_execute(&format!(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             RAISE EXCEPTION '{message}' USING ERRCODE = '{sqlstate}'; END $$; \
             CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON otp_user_streams \
             FOR EACH ROW EXECUTE FUNCTION refuse();"
        ))
        .await
        .unwrap();
}

// Current-thread runtimes: the capturing subscriber is the thread's default,
// and every task of the test runs on that thread.

#[tokio::test]
async fn a_change_that_keeps_failing_serialization_is_retried_64_times_then_unavailable() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let retries = Counted::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(retries.clone()));
    fail_stream_writes(&db, "40001", "could not serialize access").await;
    let store = store(&db);
    let user = unique_user("always-40001");
    let started = Instant::now();
    let error = store
        .change(&user, context(&user), add_decision(1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            ApplicationError::Unavailable(_) | ApplicationError::Store(StoreError::Unavailable(_))
        ),
        "{error:?}"
    );
    assert_eq!(error.code(), StatusCode::Unavailable);
    assert_eq!(
        retries.count("serialization"),
        64,
        "one per round after the first"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_change_that_keeps_deadlocking_is_retried_then_unavailable() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let retries = Counted::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(retries.clone()));
    fail_stream_writes(&db, "40P01", "deadlock detected").await;
    let store = store(&db);
    let user = unique_user("always-40P01");
    let error = store
        .change(&user, context(&user), add_decision(1))
        .await
        .unwrap_err();
    assert_eq!(error.code(), StatusCode::Unavailable, "{error:?}");
    assert_eq!(retries.count("deadlock"), 64);
}

#[tokio::test]
async fn a_lasting_error_is_not_retried() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let retries = Counted::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(retries.clone()));
    // Raised (P0001), not a serialization failure: answered at once.
    fail_stream_writes(&db, "P0001", "no writes today").await;
    let store = store(&db);
    let user = unique_user("lasting");
    let error = store
        .change(&user, context(&user), add_decision(1))
        .await
        .unwrap_err();
    assert_eq!(error.code(), StatusCode::Unavailable, "{error:?}");
    assert_eq!(retries.counters(), Vec::<String>::new());
}

#[tokio::test]
async fn a_real_deadlock_with_another_session_costs_one_retry_and_the_change_commits() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let retries = Counted::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(retries.clone()));
    let store = Arc::new(store(&db));
    let user = unique_user("deadlock");
    let first = store
        .change(&user, context(&user), add_decision(1))
        .await
        .unwrap();
    assert_eq!(first.events[0].sequence, 1);

    // Another session locks the factor row first (and never runs the
    // deadlock check itself, so the service's statement is the victim).
    let mut other = db.session().await;
    let transaction = other.transaction().await.unwrap();
    transaction
        .batch_execute("SET LOCAL deadlock_timeout = '60s'")
        .await
        .unwrap();
    transaction
        .execute(
            "SELECT 1 FROM otp_factors WHERE user_id = $1 FOR UPDATE",
            &[&user.as_str()],
        )
        .await
        .unwrap();
    // The change locks the stream row, then waits for the factor row.
    let change = {
        let (store, user) = (store.clone(), user.clone());
        tokio::spawn(async move { store.change(&user, context(&user), add_decision(2)).await })
    };
    db.until_a_session_waits_on_a_lock().await;
    // Now the other session wants the stream row: a lock cycle. The server
    // aborts the change's statement (40P01), which lets this one go on.
    transaction
        .execute(
            "UPDATE otp_user_streams SET version = version + 1 WHERE user_id = $1",
            &[&user.as_str()],
        )
        .await
        .unwrap();
    transaction.commit().await.unwrap();

    let committed = change.await.unwrap().unwrap();
    assert_eq!(committed.events[0].sequence, 2);
    // Usually one: the retry may, on a busy scheduler, take the stream row
    // again before the other session woke up to take it, which closes the
    // same cycle once more (seen: two in about one run of ten).
    let deadlocks = retries.count("deadlock");
    assert!((1..=3).contains(&deadlocks), "{:?}", retries.counters());
    let stored = store.find(&user).await.unwrap().unwrap();
    assert_eq!(stored.secret().sealed, vec![2; 48]);
}

/// A known state's uses, counted: the next Add here is written on it
/// (`applied`); after another replica's change, it is `stale`; a decision
/// that writes nothing on it is `unused` (decided again on a read). A user
/// this replica does not know counts nothing.
#[tokio::test]
async fn each_use_of_a_known_state_is_counted_by_outcome() {
    let Some((_db, counted, _guard, here, there)) = two_counted_replicas().await else {
        return;
    };
    let user = unique_user("known-counted");
    here.change(&user, context(&user), add_decision(1))
        .await
        .unwrap();
    assert_eq!(counted.count("known:applied"), 0, "unknown before");
    here.change(&user, context(&user), add_decision(2))
        .await
        .unwrap();
    assert_eq!(counted.count("known:applied"), 1);
    there
        .change(&user, context(&user), add_decision(3))
        .await
        .unwrap();
    here.change(&user, context(&user), add_decision(4))
        .await
        .unwrap();
    assert_eq!(counted.count("known:stale"), 1, "the other replica wrote");
    let refuse: application::Decide = Box::new(|_: Current<'_>| Err(ApplicationError::Internal));
    assert!(here.change(&user, context(&user), refuse).await.is_err());
    assert_eq!(counted.count("known:unused"), 1);
    assert_eq!(
        (counted.count("known:applied"), counted.count("known:stale")),
        (1, 1),
        "nothing else counted"
    );
}

/// A write that does not apply answers the state it found in the same
/// statement, and the change is decided again on it: a user this replica
/// does not know, who has a row (an Add by a user enrolled elsewhere), and
/// a known state another replica has changed since, each cost two writes
/// and no read, numbered on without a gap.
#[tokio::test]
async fn a_write_that_finds_another_state_decides_again_on_it_without_a_read() {
    let Some((_db, counted, _guard, here, there)) = two_counted_replicas().await else {
        return;
    };
    let user = unique_user("found-state");
    // Each Add: the store, and the write and read statements so far. First
    // a new user (one write); then there, where the user is unknown, its
    // first write (a new user's) finds the row; then here, where the state
    // known is stale, the write finds what the other replica wrote.
    let steps = [(&here, 1, 0), (&there, 3, 0), (&here, 5, 0)];
    for (tag, (store, writes, reads)) in (1..).zip(steps) {
        let committed = store
            .change(&user, context(&user), add_decision(tag))
            .await
            .unwrap();
        assert_eq!(committed.events[0].sequence, u64::from(tag));
        assert_eq!(counted.statements(), (writes, reads), "Add {tag}");
    }
    assert_eq!(counted.count("known:stale"), 1);
    assert_eq!(counted.count("lost_race"), 0, "no race lost: a stale guess");

    // What each replica stored is what the last write put.
    let stored = there.find(&user).await.unwrap().unwrap();
    assert_eq!(stored.secret().sealed, vec![3; 48]);
}

/// A first try carries the found read only while first tries miss: on a
/// replica whose writes apply (new users' Adds) a miss costs a read again,
/// and a few misses in a row bring the found read back.
#[tokio::test]
async fn first_tries_carry_the_found_read_only_while_they_miss() {
    let Some((_db, counted, _guard, here, there)) = two_counted_replicas().await else {
        return;
    };
    for n in 0..100 {
        let user = unique_user(&format!("new-{n}"));
        here.change(&user, context(&user), add_decision(1))
            .await
            .unwrap();
    }
    // Users enrolled on the other replica, then added again here: each
    // first try here finds a row.
    let mut costs = Vec::new();
    for n in 0..8 {
        let user = unique_user(&format!("elsewhere-{n}"));
        there
            .change(&user, context(&user), add_decision(1))
            .await
            .unwrap();
        let before = counted.statements();
        let committed = here
            .change(&user, context(&user), add_decision(2))
            .await
            .unwrap();
        assert_eq!(committed.events[0].sequence, 2);
        let after = counted.statements();
        costs.push((after.0 - before.0, after.1 - before.1));
    }
    assert_eq!(costs[0], (2, 1), "after 100 hits: a write, a read, a write");
    let found_from = costs
        .iter()
        .position(|cost| *cost == (2, 0))
        .expect("the found read comes back");
    assert!((1..=4).contains(&found_from), "{costs:?}");
    assert!(
        costs[found_from..].iter().all(|cost| *cost == (2, 0)),
        "{costs:?}"
    );
}
