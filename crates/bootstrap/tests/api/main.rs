//! API tests: the real HTTP stack on port 0, real PostgreSQL (one throwaway
//! database per test), real RS256 tokens whose keys a local JWKS endpoint serves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]
#![allow(
    clippy::disallowed_methods,
    reason = "tests compute codes for the wall clock the service uses"
)]

mod auth;
mod behaviour;
mod callers;
mod clients;
mod concurrency;
mod dev;
mod enroll;
mod faults;
mod hardening;
mod helpers;
mod import;
mod interop;
mod parity;
mod pgbouncer;
mod processes;
mod recovery;
mod security;
mod storage;
mod telemetry;
