//! The database connection pool as the semantic conventions' DB-client
//! metrics, read when the metric reader collects: `db.client.connection.count`
//! by `db.client.connection.state` (`used`, `idle`),
//! `db.client.connection.max` and `db.client.connection.pending_requests`.

use std::sync::Arc;

use opentelemetry::KeyValue;

/// The pool's numbers at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolNumbers {
    /// The most connections the pool opens.
    pub max_size: usize,
    /// Connections open now (used and idle).
    pub size: usize,
    /// Idle connections.
    pub available: usize,
    /// Requests waiting for a connection.
    pub waiting: usize,
}

fn count(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Registers the pool metrics on the global meter, reading `numbers` at
/// each collection; `pool_name` (`db.client.connection.pool.name`) says which
/// pool, e.g. `host:port/database` (never a URL with credentials). A no-op
/// while no meter provider is installed.
pub fn observe_pool(pool_name: String, numbers: impl Fn() -> PoolNumbers + Send + Sync + 'static) {
    let meter = opentelemetry::global::meter("otp-service");
    let numbers = Arc::new(numbers);
    let pool = KeyValue::new("db.client.connection.pool.name", pool_name);

    let (read, name) = (numbers.clone(), pool.clone());
    meter
        .i64_observable_up_down_counter("db.client.connection.count")
        .with_unit("{connection}")
        .with_description("Connections of the pool, by state.")
        .with_callback(move |observer| {
            let now = read();
            let idle = now.available.min(now.size);
            observer.observe(
                count(now.size - idle),
                &[
                    name.clone(),
                    KeyValue::new("db.client.connection.state", "used"),
                ],
            );
            observer.observe(
                count(idle),
                &[
                    name.clone(),
                    KeyValue::new("db.client.connection.state", "idle"),
                ],
            );
        })
        .build();

    let (read, name) = (numbers.clone(), pool.clone());
    meter
        .i64_observable_up_down_counter("db.client.connection.max")
        .with_unit("{connection}")
        .with_description("The most connections the pool opens.")
        .with_callback(move |observer| {
            observer.observe(count(read().max_size), std::slice::from_ref(&name))
        })
        .build();

    let (read, name) = (numbers, pool);
    meter
        .i64_observable_up_down_counter("db.client.connection.pending_requests")
        .with_unit("{request}")
        .with_description("Requests waiting for a connection.")
        .with_callback(move |observer| {
            observer.observe(count(read().waiting), std::slice::from_ref(&name))
        })
        .build();
}
