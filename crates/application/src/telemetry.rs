//! Conventions every driving adapter's telemetry shares, so REST and gRPC
//! report durations on the same scale.

/// Bucket boundaries (seconds) of the request duration histograms, as the
/// HTTP and RPC semantic conventions recommend.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
