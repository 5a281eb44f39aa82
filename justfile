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

# Load benchmark: the release service vs. the same transactions written
# straight to PostgreSQL, in one run; prints throughput, ratio, latency,
# memory and CPU. BENCH_SECONDS / BENCH_CONCURRENCY tune it.
bench:
    cargo bench -p bootstrap --bench load

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
