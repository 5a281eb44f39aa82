# otp-service tasks. `just --list` shows them.

# Run the whole API in memory with a built-in token issuer (nothing to install).
dev:
    cargo run -p bootstrap --bin otp-service -- dev

# Serve on PostgreSQL (configure with OTP__* variables or --config).
serve *args:
    cargo run --release -p bootstrap --bin otp-service -- serve {{args}}

# Apply database migrations.
migrate:
    cargo run -p bootstrap --bin otp-service -- migrate

# Every test: unit, use cases, store contract on memory and PostgreSQL, API.
test:
    cargo test --workspace

# Load benchmark: the release service under wrk (REST) and HTTP/2 callers
# on the h2 crate (gRPC) against ../shared/bench/ceiling.sh (pgbench on the
# smallest durable SQL per call) in the same run; prints requests/s, ratio
# to the ceiling, p50/p99, CPU per request and RSS (docs/performance.md).
# Needs wrk and pgbench. BENCH_SECONDS / BENCH_CLIENTS / BENCH_USERS tune it.
bench:
    cargo bench -p bootstrap --bench load

# The benchmark plus Add on a database holding 1M users and 10M events.
bench-scale:
    BENCH_SCALE=1 cargo bench -p bootstrap --bench load

# The latency goal alone: Add at half its maximum rate (paced on a
# schedule), pgbench's durable commit at that pace, List at that pace.
bench-latency:
    BENCH_HALF_RATE=1 cargo bench -p bootstrap --bench load

# Formatting and clippy, as CI runs them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Print a new crypto.keys entry.
keygen:
    cargo run -q -p bootstrap --bin otp-service -- keys generate

# What CI runs.
ci:
    bash .ci/run
