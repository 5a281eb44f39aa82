//! Connection pool gauges, per the database client semantic conventions.

use std::sync::Arc;

use adapters_postgres::{PgFactorStore, PoolStatus};
use opentelemetry::KeyValue;
use opentelemetry::metrics::Meter;

/// What one gauge reads off the pool's status: values, each with its
/// `db.client.connection.state` where the convention gives the gauge one.
type Reading = fn(&PoolStatus) -> Vec<(usize, Option<&'static str>)>;

/// Registers `db.client.connection.count` (by `db.client.connection.state`
/// = `used` | `idle`), `db.client.connection.max` and
/// `db.client.connection.pending_requests`, read from `store`'s pool at each
/// collection. Without a meter provider (no metrics endpoint) this does
/// nothing.
pub fn observe_pool(store: &Arc<PgFactorStore>) {
    let meter = opentelemetry::global::meter("otp-service");
    let gauges: [(&'static str, &'static str, &'static str, Reading); 3] = [
        (
            "db.client.connection.count",
            "{connection}",
            "Connections of the pool, by state",
            |status| {
                vec![
                    (status.size.saturating_sub(status.available), Some("used")),
                    (status.available, Some("idle")),
                ]
            },
        ),
        (
            "db.client.connection.max",
            "{connection}",
            "Most connections the pool opens",
            |status| vec![(status.max_size, None)],
        ),
        (
            "db.client.connection.pending_requests",
            "{request}",
            "Requests waiting for a connection",
            |status| vec![(status.waiting, None)],
        ),
    ];
    for (name, unit, description, reading) in gauges {
        gauge(&meter, store, name, unit, description, reading);
    }
}

/// One pool gauge: `reading` applied to the pool's status at each collection.
fn gauge(
    meter: &Meter,
    store: &Arc<PgFactorStore>,
    name: &'static str,
    unit: &'static str,
    description: &'static str,
    reading: Reading,
) {
    let store = store.clone();
    meter
        .i64_observable_up_down_counter(name)
        .with_unit(unit)
        .with_description(description)
        .with_callback(move |observer| {
            for (value, state) in reading(&store.pool_status()) {
                let mut attributes = vec![KeyValue::new("db.client.connection.pool.name", "otp")];
                if let Some(state) = state {
                    attributes.push(KeyValue::new("db.client.connection.state", state));
                }
                observer.observe(i64::try_from(value).unwrap_or(i64::MAX), &attributes);
            }
        })
        .build();
}
