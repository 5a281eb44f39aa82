//! Metric events in the form the `tracing-opentelemetry` `MetricsLayer`
//! turns into OpenTelemetry counters (a `monotonic_counter.` field prefix),
//! all with target `otp.metrics`. Fields carry outcomes only: never a token,
//! a URL or its query.

use tracing::Level;

// `tracing::info!(target: .., a.b = ..)` is ambiguous to the macro parser
// with a dotted field name; `event!` with an explicit level is not.

/// One fetch of the issuer's key set, `outcome` `"ok"` or `"error"`.
pub(crate) fn key_set_fetched(outcome: &'static str) {
    tracing::event!(
        target: "otp.metrics",
        Level::INFO,
        monotonic_counter.otp.token_keys.refreshes = 1_u64,
        outcome
    );
}

/// One introspection answer, `outcome` `"active"`, `"inactive"`, `"error"`,
/// `"cached"`, `"cached_inactive"` (a remembered rejection) or `"shed"` (too
/// many requests in flight).
pub(crate) fn introspected(outcome: &'static str) {
    tracing::event!(
        target: "otp.metrics",
        Level::INFO,
        monotonic_counter.otp.token.introspections = 1_u64,
        outcome
    );
}
