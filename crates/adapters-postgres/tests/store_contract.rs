//! The store contract against a real PostgreSQL database (one test per
//! property, with and without prepared statements), and the same
//! serialisation property across two stores (two replicas' pools) on one
//! database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use adapters_postgres::testing::TestDatabase;
use adapters_postgres::{PgFactorStore, PgSettings, Pooler};
use application::testing::unique_user;
use application::{ChangeContext, Current, FactorStore};
use chrono::{DateTime, Utc};
use domain::{SealedSecret, UserId};
use secrecy::ExposeSecret;

fn store(db: &TestDatabase, max_connections: usize) -> PgFactorStore {
    store_with(db, max_connections, true)
}

fn store_with(
    db: &TestDatabase,
    max_connections: usize,
    prepared_statements: bool,
) -> PgFactorStore {
    store_pooled(db, max_connections, prepared_statements, Pooler::Session)
}

fn store_pooled(
    db: &TestDatabase,
    max_connections: usize,
    prepared_statements: bool,
    pooler: Pooler,
) -> PgFactorStore {
    store_batched(db, max_connections, prepared_statements, pooler, 32)
}

/// A store that combines up to `batch_size` users' writes per statement,
/// and as many users' reads (1: none, and no change decides on a state it
/// knows without reading it).
fn store_batched(
    db: &TestDatabase,
    max_connections: usize,
    prepared_statements: bool,
    pooler: Pooler,
    batch_size: usize,
) -> PgFactorStore {
    PgFactorStore::connect(&PgSettings {
        url: db.url.clone(),
        max_connections,
        connect_timeout: Duration::from_secs(10),
        statement_timeout: Duration::from_secs(10),
        prepared_statements,
        pooler,
        write_batch_size: batch_size,
        write_batches: 2,
        read_batch_size: batch_size,
        // Alone also means no known state: every change reads first.
        known_states: if batch_size > 1 { 1024 } else { 0 },
        known_state_ttl: std::time::Duration::from_secs(60),
    })
    .unwrap()
}

/// A throwaway database and a store over it, or `None` without PostgreSQL.
async fn contract_store(prepared_statements: bool) -> Option<(TestDatabase, Arc<PgFactorStore>)> {
    let db = TestDatabase::create().await?;
    let store = Arc::new(store_with(&db, 8, prepared_statements));
    Some((db, store))
}

/// A throwaway database and a store over it as behind a transaction pooler.
async fn contract_store_pooled() -> Option<(TestDatabase, Arc<PgFactorStore>)> {
    let db = TestDatabase::create().await?;
    let store = Arc::new(store_pooled(&db, 8, true, Pooler::Transaction));
    Some((db, store))
}

/// A throwaway database and a store over it that runs every write and every
/// read alone (`database.write_batch_size = 1`, `read_batch_size = 1`), and
/// reads before every change (`known_states = 0`).
async fn contract_store_alone() -> Option<(TestDatabase, Arc<PgFactorStore>)> {
    let db = TestDatabase::create().await?;
    let store = Arc::new(store_batched(&db, 8, true, Pooler::Session, 1));
    Some((db, store))
}

/// The store contract, one test per property, with prepared statements...
mod prepared {
    use super::contract_store;

    application::store_contract_tests!(contract_store(true).await);
}

/// ...and without (`database.prepared_statements = false`).
mod unprepared {
    use super::contract_store;

    application::store_contract_tests!(contract_store(false).await);
}

/// ...and with every write alone, never combined with other users' writes...
mod alone {
    use super::contract_store_alone;

    application::store_contract_tests!(contract_store_alone().await);
}

/// ...and as behind a transaction pooler (`database.pooler = transaction`:
/// every statement in a transaction of its own), here straight on
/// PostgreSQL; through a real PgBouncer in the bootstrap crate's API tests.
mod transaction_pooled {
    use super::contract_store_pooled;

    application::store_contract_tests!(contract_store_pooled().await);
}

fn at() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 654_321_000).unwrap()
}

async fn add(store: &PgFactorStore, user: &UserId, tag: u8) -> u64 {
    let decide = Box::new(move |current: Current<'_>| {
        let secret = SealedSecret {
            key_id: format!("key-{tag}"),
            sealed: vec![tag; 48],
        };
        application::testing::add_change(&current, secret, at())
    });
    let context = ChangeContext {
        at: at(),
        actor: user.clone(),
        resource_owner: None,
    };
    store.change(user, context, decide).await.unwrap().events[0].sequence
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_serialise_one_users_changes() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    // Separate pools, as two service replicas would have.
    let replicas = [Arc::new(store(&db, 4)), Arc::new(store(&db, 4))];
    let user = unique_user("two-replicas");
    let tasks: Vec<_> = (1..=32_u8)
        .map(|tag| {
            let (store, user) = (replicas[usize::from(tag % 2)].clone(), user.clone());
            tokio::spawn(async move { (add(&store, &user, tag).await, tag) })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results.sort_unstable();
    let sequences: Vec<u64> = results.iter().map(|(sequence, _)| *sequence).collect();
    assert_eq!(sequences, (1..=32).collect::<Vec<_>>());

    // Whichever replica reads, it sees the last committed change.
    let (_, last_tag) = results[31];
    for replica in &replicas {
        let stored = replica.find(&user).await.unwrap().unwrap();
        assert_eq!(stored.secret().sealed, vec![last_tag; 48]);
    }

    // The database holds exactly the 32 events and the stream head agrees.
    let (client, connection) =
        tokio_postgres::connect(db.url.expose_secret(), tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(connection);
    let rows = client
        .query(
            "SELECT sequence FROM otp_events WHERE user_id = $1 ORDER BY sequence",
            &[&user.as_str()],
        )
        .await
        .unwrap();
    let stored: Vec<i64> = rows.iter().map(|row| row.get(0)).collect();
    assert_eq!(stored, (1..=32).collect::<Vec<i64>>());
    let head: i64 = client
        .query_one(
            "SELECT last_sequence FROM otp_user_streams WHERE user_id = $1",
            &[&user.as_str()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(head, 32);
}
