//! Connection pool gauges, per the database client semantic conventions.

use std::sync::Arc;

use adapters_postgres::PgFactorStore;
use opentelemetry::KeyValue;

/// Registers `db.client.connection.count` (by `db.client.connection.state`
/// = `used` | `idle`), `db.client.connection.max` and
/// `db.client.connection.pending_requests`, read from `store`'s pool at each
/// collection. Without a meter provider (no metrics endpoint) this does
/// nothing.
pub fn observe_pool(store: &Arc<PgFactorStore>) {
    let meter = opentelemetry::global::meter("otp-service");
    let pool = |name: &'static str| KeyValue::new("db.client.connection.pool.name", name);
    let counts = store.clone();
    meter
        .i64_observable_up_down_counter("db.client.connection.count")
        .with_unit("{connection}")
        .with_description("Connections of the pool, by state")
        .with_callback(move |observer| {
            let status = counts.pool_status();
            let used = status.size.saturating_sub(status.available);
            let as_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
            observer.observe(
                as_i64(used),
                &[
                    pool("otp"),
                    KeyValue::new("db.client.connection.state", "used"),
                ],
            );
            observer.observe(
                as_i64(status.available),
                &[
                    pool("otp"),
                    KeyValue::new("db.client.connection.state", "idle"),
                ],
            );
        })
        .build();
    let max = store.clone();
    meter
        .i64_observable_up_down_counter("db.client.connection.max")
        .with_unit("{connection}")
        .with_description("Most connections the pool opens")
        .with_callback(move |observer| {
            let status = max.pool_status();
            observer.observe(
                i64::try_from(status.max_size).unwrap_or(i64::MAX),
                &[pool("otp")],
            );
        })
        .build();
    let waiting = store.clone();
    meter
        .i64_observable_up_down_counter("db.client.connection.pending_requests")
        .with_unit("{request}")
        .with_description("Requests waiting for a connection")
        .with_callback(move |observer| {
            let status = waiting.pool_status();
            observer.observe(
                i64::try_from(status.waiting).unwrap_or(i64::MAX),
                &[pool("otp")],
            );
        })
        .build();
}
