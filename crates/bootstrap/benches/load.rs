//! `just bench` (or `cargo bench -p bootstrap --bench load`): the release
//! `otp-service serve` on a fresh PostgreSQL database under load from `wrk`
//! (REST) and callers on the `h2` crate (gRPC), with different users per request
//! (pre-minted tokens, pre-seeded factors), compared in the same run with the
//! physical limit: `../shared/bench/ceiling.sh`, pgbench running the smallest
//! durable SQL for each call, each of the four calls' ceilings right after
//! the call's own run (the machine's speed drifts within minutes). Prints one table (call, requests/s, ceiling,
//! ratio, p50/p99, CPU per request, peak RSS) and writes it as JSON to
//! `target/bench/load.json`.
//!
//! Needs `wrk` (`apt-get install wrk`) and `pgbench` (PostgreSQL's client
//! tools). `BENCH_SECONDS` (10) and `BENCH_CLIENTS` (16) tune the runs,
//! `BENCH_USERS` (200000) the users seeded per call, `DATABASE_URL` the
//! server (default `postgres://postgres@127.0.0.1:5432/postgres`).
//! After the table's usual runs, Add runs again on a second database whose
//! connections default to `SERIALIZABLE` (`REST Add, SERIALIZABLE`, with
//! its rate as a multiple of the default isolation's Add in the note;
//! `BENCH_SERIALIZABLE=0` skips it). Then Add runs with
//! `database.pooler = transaction`, straight on PostgreSQL and through a
//! PgBouncer the benchmark starts (`pool_mode = transaction`, as many
//! server connections as clients; skipped with a note when `pgbouncer` is
//! not installed), each note giving its rate as a multiple of the first
//! Add's.
//! `BENCH_SCALE=1` adds the scale run: on a database of its own, Add
//! while it is empty, then Add again once it holds 1M enrolled users and
//! 10M events (`BENCH_SCALE=2`: only that, and the ceilings).
//! Every user-token row sends a fresh token per request (the verified-token
//! cache never hits) except `REST List, reused tokens` (1,000 tokens
//! cycling); the login check's one caller token is reused throughout.
//! `BENCH_SERVICE_ENV="KEY=VALUE,..."` sets environment variables of the
//! service under test (experiments: `TOKIO_WORKER_THREADS=1`, settings).
//! `BENCH_PROFILE="REST Add,gRPC Add"` (calls' names) records a `perf`
//! profile of the service during each of those calls' runs
//! (`BENCH_PROFILE_ALL=1`: of the whole machine, PostgreSQL included).
//! `BENCH_ADD_PAIR=1` runs only REST Add, gRPC Add and the `add` ceiling.
//! `BENCH_GRPC_CLIENT=tonic` drives gRPC Add with tonic's generated client
//! instead of the `h2` callers; `BENCH_GRPC_CHANNELS=N` puts that client's
//! callers on N connections (one each).
//! `BENCH_HALF_RATE=1` runs only REST Add, Add at half its rate (or at
//! `BENCH_PACE` requests/s), the paced ceiling and List at that pace.
//! `BENCH_STOP_AFTER="REST Verify"` ends the benchmark after that call
//! and its ceiling (REST Add, Verify, login check or List).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "a benchmark program: it prints, and fails loudly"
)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use adapters_crypto::AesGcmCipher;
use adapters_grpc::proto::zitadel::auth::v1::AddMyAuthFactorOtpRequest;
use adapters_grpc::proto::zitadel::auth::v1::auth_service_client::AuthServiceClient;
use adapters_grpc::proto::zitadel::auth::v1::auth_service_server::SERVICE_NAME;
use adapters_postgres::testing::TestDatabase;
use adapters_token::DevIssuer;
use adapters_token::testing::Server;
use application::{SealBinding, SecretCipher};
use domain::{TotpKey, TotpParams, TotpSecret, UserId};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

const AUDIENCE: &str = "bench";
const KEYS: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// The trusted caller of the login check (an RS256 service-account token).
const CALLER: &str = "bench-login-service";
/// REST Verify's path.
const VERIFY_PATH: &str = "/auth/v1/users/me/auth_factors/otp/_verify";

/// The login check's path for `user`.
fn check_path(user: &str) -> String {
    format!("/v1/users/{user}/otp/_check")
}
const RSA_PRIVATE: &str = include_str!("../tests/api/fixtures/rs256-private.pem");
const RSA_MODULUS: &str = include_str!("../tests/api/fixtures/rs256-jwk-n.txt");
const RSA_KID: &str = "bench-rsa";

/// The wrk script: each thread takes every n-th line of the request file
/// (`path \t token \t body`), sends them in order (wrapping), and prints
/// one JSON line at the end. Answers that are not 2xx/3xx are counted by
/// wrk itself (`summary.errors.status`); a Lua `response()` callback makes
/// wrk hand every answer's headers and body to Lua, which cost about as
/// much CPU per request as the service itself here, on the same two cores,
/// so it is only added ([`WRK_RESPONSE`]) with `BENCH_WRK_BODIES=1`, to see
/// the first failure's body.
const WRK_SCRIPT: &str = r#"
local ffi = require("ffi")
ffi.cdef[[
int usleep(unsigned int usec);
]]
local threads = {}
local counter = 0
local started = false
-- wrk starts each thread as soon as its init has run, and runs the next
-- thread's init (reading the whole request file) meanwhile: without this
-- gate the first thread sent for half a second before the run's clock
-- started, which counted about 3% more requests than the run's seconds
-- allow. The last thread's init opens the gate; each thread's first
-- request (or delay) waits for it, except the call wrk makes of the first
-- thread's request() on the main thread right after that thread's init,
-- to check the request (it is not sent; gating it would stop wrk before
-- the last init ever ran). A gate still shut after a minute (a wrk that
-- orders its start-up otherwise) is passed, so the run ends, ungated.
local checked = false
local function gate()
  if started then return end
  if id == 0 and not checked then checked = true; return end
  for _ = 1, 60000 do
    local open = io.open(go, "r")
    if open then open:close(); break end
    ffi.C.usleep(1000)
  end
  started = true
end
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end
function init(args)
  local nthreads = tonumber(args[2])
  reqs = {}
  local n = 0
  for line in io.lines(args[1]) do
    if n % nthreads == id then
      local path, token, body = line:match("([^\t]*)\t([^\t]*)\t(.*)")
      reqs[#reqs + 1] = wrk.format("POST", path, {
        ["Authorization"] = "Bearer " .. token,
        ["Content-Type"] = "application/json",
        ["Accept"] = "application/json"}, body)
    end
    n = n + 1
  end
  i = 0
  failures = 0
  wrapped = 0
  first_failure = ""
  go = args[3]
  if id == nthreads - 1 then
    local open = assert(io.open(go, "w"))
    open:write(string.format("%.6f\n", os.clock()))
    open:close()
  end
end
function request()
  gate()
  i = i + 1
  if i > #reqs then i = 1; wrapped = 1 end
  return reqs[i]
end
function done(summary, latency, requests)
  local failed, wraps, first = 0, 0, ""
  for _, t in ipairs(threads) do
    failed = failed + t:get("failures")
    wraps = wraps + t:get("wrapped")
    if first == "" then first = t:get("first_failure") end
  end
  local e = summary.errors
  if failed == 0 then failed = e.status end
  io.write(string.format('\nRESULT {"requests":%d,"duration_us":%d,"failed":%d,"socket_errors":%d,"wrapped":%d,"p50_us":%d,"p99_us":%d,"first_failure":%q}\n',
    summary.requests, summary.duration, failed, e.connect + e.read + e.write + e.timeout, wraps,
    latency:percentile(50), latency:percentile(99), first))
end
"#;

/// The per-answer callback of [`WRK_SCRIPT`] (`BENCH_WRK_BODIES=1`).
const WRK_RESPONSE: &str = r#"
function response(status, headers, body)
  if status ~= 200 then
    failures = failures + 1
    if first_failure == "" then first_failure = status .. " " .. string.sub(body, 1, 160) end
  end
end
"#;

/// Pacing for [`WRK_SCRIPT`]: each wrk thread sends its share of the rate
/// on a fixed schedule, one request every `INTERVAL_MS` (replaced), the
/// delay before each request taken from the schedule rather than from the
/// last answer, so the rate holds whatever the latency (a fixed pause per
/// connection, as before, sent a rate that fell as latency rose: 0.31 of
/// the maximum for a "half" rate). Behind schedule (every connection
/// waiting on an answer), the next requests go at once until it is caught
/// up, as `pgbench -R` does; the latency wrk reports starts at the send,
/// so, as for the paced ceiling's, the schedule lag is left out. wrk asks
/// for whole milliseconds: each delay is rounded, the schedule is not.
const WRK_PACED: &str = r#"
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock, bench_timespec *now);
]]
local clock = ffi.new("bench_timespec")
local slot = nil
function delay()
  gate()
  ffi.C.clock_gettime(1, clock)
  local now = tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
  slot = (slot or now) + INTERVAL_MS
  local wait = slot - now
  if wait <= 0 then return 0 end
  return math.floor(wait + 0.5)
end
"#;

/// The 1, 5 and 15 minute load averages (how busy the shared machine was).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The issuer: discovery and a JWKS with a fresh Ed25519 key (users'
/// tokens, cheap to mint by the hundred thousand) and the RSA fixture key
/// (the trusted caller's token).
fn spawn_issuer() -> (String, Arc<DevIssuer>) {
    let server = Server::start();
    let url = server.issuer();
    let issuer = Arc::new(DevIssuer::generate(&url, AUDIENCE).unwrap());
    let mut jwks = issuer.public_jwks();
    jwks["keys"].as_array_mut().unwrap().push(json!({
        "kty": "RSA", "use": "sig", "alg": "RS256", "kid": RSA_KID,
        "n": RSA_MODULUS.trim(), "e": "AQAB"
    }));
    server.serve_discovery();
    server.set_jwks(&jwks);
    (url, issuer)
}

/// The trusted caller's token: scope `otp.check`, client id on the allowlist.
fn caller_token(issuer: &str) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = json!({
        "iss": issuer, "aud": AUDIENCE, "sub": CALLER, "client_id": CALLER, "azp": CALLER,
        "scope": "openid otp.check", "iat": now, "nbf": now, "exp": now + 3600,
    });
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(RSA_KID.into());
    jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// Tokens for `users`, minted on every core.
fn mint(issuer: &DevIssuer, users: &[String]) -> Vec<String> {
    let chunk = users.len().div_ceil(2).max(1);
    std::thread::scope(|scope| {
        let parts: Vec<_> = users
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|user| {
                            issuer
                                .issue(user, Some("org1"), None, Duration::from_secs(3600))
                                .unwrap()
                                .expose_secret()
                                .to_owned()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        parts.into_iter().flat_map(|p| p.join().unwrap()).collect()
    })
}

fn users(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// Seeds `users` with a factor in `state` whose secret is `secret_of(i)`,
/// sealed as the service seals, with one `otp.added` event each.
async fn seed(client: &tokio_postgres::Client, users: &[String], state: &str) -> Vec<TotpKey> {
    let cipher = AesGcmCipher::from_config(&SecretString::from(KEYS)).unwrap();
    // Whole seconds: the creation time is bound into the sealed secret.
    let created_at = chrono::DateTime::from_timestamp(chrono::Utc::now().timestamp(), 0).unwrap();
    let created_text = created_at.to_rfc3339();
    let mut keys = Vec::with_capacity(users.len());
    for batch in users.chunks(20_000) {
        let mut sealed = Vec::with_capacity(batch.len());
        for user in batch {
            let secret = TotpSecret::from_bytes(rand::random::<[u8; 20]>().to_vec()).unwrap();
            sealed.push(
                cipher
                    .seal(
                        &SealBinding {
                            owner: &UserId::parse(user.clone()).unwrap(),
                            params: TotpParams::default(),
                            created_at,
                        },
                        &secret,
                    )
                    .unwrap()
                    .sealed,
            );
            keys.push(TotpKey::new(secret, TotpParams::default()));
        }
        client
            .execute(
                "WITH u AS (SELECT * FROM unnest($1::text[], $2::bytea[]) AS x(user_id, sealed)),
                 s AS (INSERT INTO otp_user_streams (user_id, last_sequence, version)
                       SELECT user_id, 1, 1 FROM u RETURNING user_id),
                 f AS (INSERT INTO otp_factors (user_id, state, key_id, sealed_secret, algorithm,
                       digits, period, skew, created_at, changed_at, last_used_step)
                       SELECT user_id, $3, 'k1', sealed, 'SHA1', 6, 30, 1, $4::text::timestamptz,
                              $4::text::timestamptz, NULL FROM u)
                 INSERT INTO otp_events (user_id, sequence, kind, actor, resource_owner, occurred_at)
                 SELECT user_id, 1, 'otp.added', user_id, 'org1', now() FROM s",
                &[&batch, &sealed, &state, &created_text],
            )
            .await
            .unwrap();
    }
    keys
}

/// [`seed`], then `ANALYZE`, announced.
async fn seed_now(client: &tokio_postgres::Client, users: &[String], state: &str) -> Vec<TotpKey> {
    let started = Instant::now();
    let keys = seed(client, users, state).await;
    client.batch_execute("ANALYZE").await.unwrap();
    println!(
        "  seeded {} users ({state}) in {:.1} s",
        users.len(),
        started.elapsed().as_secs_f64()
    );
    keys
}

/// `VmRSS`/`VmHWM` (KiB) and user+system CPU seconds of `pid`.
fn process_figures(pid: u32) -> (u64, u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find(|line| line.starts_with(key))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().map(|v| v.parse::<f64>().unwrap_or(0.0)).sum()
    });
    (kb("VmRSS:"), kb("VmHWM:"), ticks / 100.0)
}

/// User+system seconds in a `/proc/PID/stat` line, with the waited-for
/// children's when `children` (fields 14-17 of stat(5)).
fn stat_seconds(stat: &str, children: bool) -> f64 {
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let end = if children { 15 } else { 13 };
    let ticks: f64 = fields.get(11..end).map_or(0.0, |f| {
        f.iter().map(|v| v.parse::<f64>().unwrap_or(0.0)).sum()
    });
    ticks / 100.0
}

/// Where the machine's CPU went so far: PostgreSQL (every `postgres`
/// process: backends, WAL writer, checkpointer), the load generator (this
/// process and its waited-for children: `wrk`, `ceiling.sh`'s pgbench), and
/// the whole machine (`/proc/stat`: busy and all time, in seconds of one
/// core).
#[derive(Debug, Clone, Copy)]
struct Machine {
    db: f64,
    load: f64,
    busy: f64,
    total: f64,
}

impl Machine {
    fn now() -> Self {
        let db = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|entry| {
                std::fs::read_to_string(entry.path().join("comm"))
                    .is_ok_and(|comm| comm.trim() == "postgres")
            })
            .map(|entry| {
                stat_seconds(
                    &std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default(),
                    false,
                )
            })
            .sum();
        let load = stat_seconds(
            &std::fs::read_to_string("/proc/self/stat").unwrap_or_default(),
            true,
        );
        // cpu  user nice system idle iowait irq softirq steal ...
        let totals = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let jiffies: Vec<f64> = totals
            .lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(|v| v.parse().unwrap_or(0.0))
            .collect();
        let total: f64 = jiffies.iter().sum();
        // Idle, waiting for I/O, and stolen (the hypervisor ran someone
        // else on the core): none of it is work done here.
        let idle = [3, 4, 7]
            .iter()
            .map(|&column| jiffies.get(column).copied().unwrap_or(0.0))
            .sum::<f64>();
        Self {
            db,
            load,
            busy: (total - idle) / 100.0,
            total: total / 100.0,
        }
    }

    /// What went where since `before`, per request of `requests`: the
    /// database's, the load generator's and the whole machine's µs, and the
    /// machine's busy share.
    fn spent_since(&self, before: &Self, requests: u64) -> Spent {
        let per = |seconds: f64| seconds * 1e6 / requests.max(1) as f64;
        Spent {
            db_us: per(self.db - before.db),
            load_us: per(self.load - before.load),
            machine_us: per(self.busy - before.busy),
            busy: (self.busy - before.busy) / (self.total - before.total).max(1e-9),
            commits: None,
            fpi: None,
        }
    }
}

/// PostgreSQL's cumulative counts, in every database: transactions
/// committed (reads in autocommit included) and full-page images written
/// to the WAL (the first change of a page after a checkpoint writes the
/// whole page: what makes an update of a long-untouched row cost more than
/// one of a freshly written row).
#[derive(Debug, Clone, Copy)]
struct Counters {
    commits: f64,
    fpi: f64,
}

impl Counters {
    /// The counts once every backend has reported them: a backend still
    /// connected reports at most once a second, so with `wait` this waits
    /// that long first (a backend that disconnected reported as it left).
    /// `None` without `psql`.
    fn read(wait: bool) -> Option<Self> {
        if wait {
            std::thread::sleep(Duration::from_millis(1200));
        }
        let server = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let output = Command::new("psql")
            .arg(server)
            .args([
                "-XAtc",
                "SELECT (SELECT sum(xact_commit) FROM pg_stat_database) || ' ' || wal_fpi \
                 FROM pg_stat_wal",
            ])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&output.stdout);
        let mut numbers = text.split_whitespace().map(|n| n.parse::<f64>().ok());
        Some(Self {
            commits: numbers.next()??,
            fpi: numbers.next()??,
        })
    }

    /// Commits and full-page images per request since `before`.
    fn per(after: Option<Self>, before: Option<Self>, requests: u64) -> (Option<f64>, Option<f64>) {
        let per = |value: f64| value / requests.max(1) as f64;
        match (after, before) {
            (Some(after), Some(before)) => (
                Some(per(after.commits - before.commits)),
                Some(per(after.fpi - before.fpi)),
            ),
            _ => (None, None),
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Spent {
    /// PostgreSQL's CPU per request, µs.
    db_us: f64,
    /// The load generator's CPU per request, µs.
    load_us: f64,
    /// The whole machine's busy CPU per request, µs (everything above, the
    /// kernel's interrupts, and anything else running).
    machine_us: f64,
    /// The machine's busy share over the run (1.0: every core busy).
    busy: f64,
    /// PostgreSQL's commits per request (each read is one too): below 1
    /// for a write, several users' writes shared a commit.
    commits: Option<f64>,
    /// Full-page images PostgreSQL wrote to the WAL per request.
    fpi: Option<f64>,
}

/// One measured run.
#[derive(Debug, Clone)]
struct Run {
    call: String,
    ceiling_op: Option<&'static str>,
    requests: u64,
    seconds: f64,
    failed: u64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_us_per_request: f64,
    /// PostgreSQL's and the load generator's (wrk, or the gRPC caller
    /// threads) CPU per request, and how busy the machine was.
    spent: Spent,
    note: String,
}

impl Run {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds.max(1e-9)
    }

    /// Printed as each run ends, so a later failure loses no figure.
    fn announced(self) -> Self {
        println!(
            "  {}: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, service {} µs/req, PostgreSQL {} µs/req, load {} µs/req, machine {:.0}% busy, {} commits/req, {} FPI/req {}",
            self.call,
            self.rate(),
            self.p50_ms,
            self.p99_ms,
            us_text(self.cpu_us_per_request),
            us_text(self.spent.db_us),
            us_text(self.spent.load_us),
            self.spent.busy * 100.0,
            figure_text(self.spent.commits),
            figure_text(self.spent.fpi),
            self.note
        );
        self
    }
}

/// The service under test.
struct Service {
    child: Child,
    http: String,
    /// The listener of the trusted calls (the login check).
    internal: String,
    grpc: String,
}

impl Service {
    fn start(db: &TestDatabase, issuer: &str, clients: u64, extra: &[(&str, String)]) -> Self {
        let (http, grpc, internal) = (free_port(), free_port(), free_port());
        let mut command = Command::new(env!("CARGO_BIN_EXE_otp-service"));
        command
            .arg("serve")
            .env("OTP__HTTP__ADDR", format!("127.0.0.1:{http}"))
            .env("OTP__GRPC__ADDR", format!("127.0.0.1:{grpc}"))
            // The login check on the same listeners as the rest: one port
            // per protocol to drive (production splits it off).
            .env("OTP__HTTP__INTERNAL_ADDR", format!("127.0.0.1:{internal}"))
            .env(
                "OTP__GRPC__INTERNAL_ADDR",
                format!("127.0.0.1:{}", free_port()),
            )
            .env("OTP__AUTH__CHECK_CLIENTS", CALLER)
            .env("OTP__DATABASE__URL", db.url.expose_secret())
            .env("OTP__DATABASE__MAX_CONNECTIONS", clients.to_string())
            .env("OTP__AUTH__ISSUER", issuer)
            .env("OTP__AUTH__AUDIENCE", AUDIENCE)
            .env("OTP__CRYPTO__KEYS", KEYS)
            .env("OTP__LOG__FILTER", "warn")
            .env("OTEL_SDK_DISABLED", "true")
            .stdout(Stdio::null());
        for (key, value) in extra {
            command.env(key, value);
        }
        // Experiments: `BENCH_SERVICE_ENV="TOKIO_WORKER_THREADS=1,OTP__..."`.
        let experiment = std::env::var("BENCH_SERVICE_ENV").unwrap_or_default();
        for pair in experiment.split(',').filter(|pair| !pair.trim().is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .expect("BENCH_SERVICE_ENV: KEY=VALUE,...");
            command.env(key.trim(), value.trim());
        }
        let child = command.spawn().unwrap();
        Self {
            child,
            http: format!("127.0.0.1:{http}"),
            internal: format!("127.0.0.1:{internal}"),
            grpc: format!("http://127.0.0.1:{grpc}"),
        }
    }

    async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        for _ in 0..300 {
            if client
                .get(format!("http://{}/readyz", self.http))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the service did not become ready");
    }

    fn figures(&self) -> (u64, u64, f64) {
        process_figures(self.child.id())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs wrk against `base` with the request lines; `pace` > 0 holds the
/// connections together to `pace` requests a second ([`WRK_PACED`]).
/// Also answers the machine as wrk's start gate opened (its threads had
/// read the request file and started sending), with wrk's CPU until then
/// counted as already spent: wrk's CPU reaches this process's children's
/// time only once it has exited, start-up included, and the start-up
/// (about a second) is not the call's. A gate that never opened leaves
/// the machine as before wrk started.
fn wrk(
    base: &str,
    lines: &[String],
    clients: u64,
    seconds: u64,
    pace: u64,
    name: &str,
) -> (Value, Machine) {
    let dir = workspace().join("target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{name}.requests"));
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let script = dir.join(format!("{name}.lua"));
    // The start gate of [`WRK_SCRIPT`]: absent until the last thread's init.
    let gate = dir.join(format!("{name}.go"));
    let _ = std::fs::remove_file(&gate);
    let mut text = WRK_SCRIPT.to_owned();
    if env_number("BENCH_WRK_BODIES", 0) == 1 {
        text.push_str(WRK_RESPONSE);
    }
    let threads = 2;
    if pace > 0 {
        let interval_ms = threads as f64 * 1000.0 / pace as f64;
        text.push_str(&WRK_PACED.replace("INTERVAL_MS", &format!("{interval_ms:.4}")));
    }
    std::fs::write(&script, text).unwrap();
    let mut started = Machine::now();
    let mut child = Command::new("wrk")
        .args([
            format!("-t{threads}"),
            format!("-c{clients}"),
            format!("-d{seconds}s"),
            "--timeout".into(),
            "5s".into(),
            "-s".into(),
            script.display().to_string(),
            format!("http://{base}"),
            "--".into(),
            file.display().to_string(),
            threads.to_string(),
            gate.display().to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wrk is needed: apt-get install wrk");
    // The gate file holds wrk's CPU seconds when it opened (`os.clock()`).
    loop {
        let written = std::fs::read_to_string(&gate).ok();
        if let Some(startup_cpu) = written.and_then(|text| text.trim().parse::<f64>().ok()) {
            started = Machine::now();
            started.load += startup_cpu;
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result = stdout
        .lines()
        .find_map(|line| line.strip_prefix("RESULT "))
        .unwrap_or_else(|| {
            panic!(
                "wrk printed no result: {stdout} {}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    (serde_json::from_str(result).unwrap(), started)
}

/// With `BENCH_PROFILE` naming this call (e.g. `REST Add`; several are
/// separated by commas), `perf record`
/// samples the service (software clock, call graphs) for the run, into
/// `target/bench/<call>.perf.data` (`perf report -i ...` reads it).
fn profiler(service: &Service, call: &str, seconds: u64) -> Option<Child> {
    let wanted = std::env::var("BENCH_PROFILE").ok()?;
    if !wanted.split(',').any(|name| name.trim() == call) {
        return None;
    }
    let file = workspace()
        .join("target/bench")
        .join(format!("{}.perf.data", call.replace(' ', "-")));
    // `BENCH_PROFILE_ALL=1`: every process of the machine (PostgreSQL's
    // backends and WAL writer too), not only the service.
    let target = if env_number("BENCH_PROFILE_ALL", 0) == 1 {
        vec!["-a".to_owned()]
    } else {
        vec!["-p".to_owned(), service.child.id().to_string()]
    };
    Command::new("perf")
        .args(["record", "-e", "cpu-clock", "-F", "999", "-g", "-o"])
        .arg(&file)
        .args(&target)
        .args(["--", "sleep"])
        .arg(seconds.saturating_sub(1).max(1).to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

/// A wrk run as a [`Run`], with the service's CPU over it.
fn measured(
    service: &Service,
    call: &str,
    ceiling_op: Option<&'static str>,
    lines: &[String],
    clients: u64,
    seconds: u64,
    pace: u64,
) -> Run {
    let profile = profiler(service, call, seconds);
    let counted = Counters::read(true);
    let before = service.figures().2;
    let base = if call.contains("check") {
        &service.internal
    } else {
        &service.http
    };
    // The machine's CPU from the moment wrk starts sending.
    let (result, machine) = wrk(base, lines, clients, seconds, pace, call);
    let cpu = service.figures().2 - before;
    let after = Machine::now();
    if let Some(mut perf) = profile {
        let _ = perf.wait();
    }
    let number = |key: &str| result[key].as_u64().unwrap_or(0);
    let requests = number("requests");
    let mut spent = after.spent_since(&machine, requests);
    (spent.commits, spent.fpi) = Counters::per(Counters::read(true), counted, requests);
    let mut note = String::new();
    if number("failed") + number("socket_errors") > 0 {
        note = format!(
            "{} failed, {} socket errors; first: {}",
            number("failed"),
            number("socket_errors"),
            result["first_failure"].as_str().unwrap_or("")
        );
    }
    if number("wrapped") > 0 {
        note.push_str(" (request list wrapped: raise BENCH_USERS)");
    }
    Run {
        call: call.to_owned(),
        ceiling_op,
        requests,
        seconds: number("duration_us") as f64 / 1e6,
        failed: number("failed") + number("socket_errors"),
        p50_ms: number("p50_us") as f64 / 1000.0,
        p99_ms: number("p99_us") as f64 / 1000.0,
        cpu_us_per_request: cpu * 1e6 / requests.max(1) as f64,
        spent,
        note,
    }
    .announced()
}

/// gRPC Add from `clients` callers, each taking the next unused token.
/// By default on the `h2` crate itself, as wrk drives REST: two threads,
/// each a current-thread runtime with its half of the callers, one
/// connection per caller, every request's headers built before the run,
/// each answer checked for `grpc-status: 0`. `BENCH_GRPC_CLIENT=tonic`
/// drives it with tonic's generated client instead (a work-stealing
/// runtime; `BENCH_GRPC_CHANNELS=N` spreads its callers over N
/// connections), which spends two to three times wrk's CPU per call.
async fn grpc_add(service: &Service, tokens: Vec<String>, clients: u64, seconds: u64) -> Run {
    if std::env::var("BENCH_GRPC_CLIENT").is_ok_and(|client| client == "tonic") {
        return grpc_add_tonic(service, tokens, clients, seconds).await;
    }
    let call = "gRPC Add";
    let authority = service.grpc.trim_start_matches("http://").to_owned();
    let uri: http::Uri = format!("{}/{SERVICE_NAME}/AddMyAuthFactorOTP", service.grpc)
        .parse()
        .unwrap();
    let token_count = tokens.len();
    let headers: Arc<Vec<http::HeaderValue>> = Arc::new(
        tokens
            .into_iter()
            .map(|token| http::HeaderValue::try_from(format!("Bearer {token}")).unwrap())
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let threads = clients.clamp(1, 2);
    // Every caller's connection is open (and its handshake done) before
    // the clock starts, as wrk connects before it counts.
    let start = Arc::new(std::sync::Barrier::new(threads as usize + 1));
    let deadline = Arc::new(std::sync::OnceLock::<Instant>::new());
    let workers: Vec<_> = (0..threads)
        .map(|thread| {
            let callers = clients / threads + u64::from(thread < clients % threads);
            let (authority, uri, headers, next) = (
                authority.clone(),
                uri.clone(),
                headers.clone(),
                next.clone(),
            );
            let (start, deadline) = (start.clone(), deadline.clone());
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    let mut senders = Vec::new();
                    for _ in 0..callers {
                        let stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
                        stream.set_nodelay(true).unwrap();
                        let (sender, connection) = h2::client::handshake(stream).await.unwrap();
                        tokio::spawn(async move {
                            let _ = connection.await;
                        });
                        senders.push(sender.ready().await.unwrap());
                    }
                    tokio::task::spawn_blocking(move || start.wait())
                        .await
                        .unwrap();
                    let deadline = *deadline.get().unwrap();
                    let tasks = senders.into_iter().map(|sender| {
                        let (uri, headers, next) = (uri.clone(), headers.clone(), next.clone());
                        tokio::spawn(h2_caller(sender, uri, headers, next, deadline))
                    });
                    let callers = futures::future::join_all(tasks).await;
                    merged(callers.into_iter().map(Result::unwrap))
                })
            })
        })
        .collect();
    let clock = GrpcClock::start(service, call, seconds);
    deadline
        .set(clock.started + Duration::from_secs(seconds))
        .unwrap();
    let start_all = start.clone();
    tokio::task::spawn_blocking(move || start_all.wait())
        .await
        .unwrap();
    let callers = merged(workers.into_iter().map(|worker| worker.join().unwrap()));
    clock.finished(
        service,
        call,
        callers,
        next.load(Ordering::Relaxed) > token_count,
    )
}

/// One gRPC Add caller on its own HTTP/2 connection until `deadline`: an
/// empty `AddMyAuthFactorOTPRequest` (the 5-byte frame of an empty
/// message) with the next token, the answer's data read and its status
/// checked (in the trailers, or in the headers of a trailers-only answer).
async fn h2_caller(
    mut sender: h2::client::SendRequest<bytes::Bytes>,
    uri: http::Uri,
    headers: Arc<Vec<http::HeaderValue>>,
    next: Arc<AtomicUsize>,
    deadline: Instant,
) -> (Vec<u64>, u64) {
    const EMPTY_MESSAGE: &[u8] = &[0, 0, 0, 0, 0];
    let (mut latencies, mut failed) = (Vec::new(), 0_u64);
    while Instant::now() < deadline {
        let index = next.fetch_add(1, Ordering::Relaxed);
        let request = http::Request::post(uri.clone())
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers")
            .header(
                http::header::AUTHORIZATION,
                headers[index % headers.len()].clone(),
            )
            .body(())
            .unwrap();
        let sent = Instant::now();
        let answered = async {
            sender = sender.clone().ready().await.ok()?;
            let (response, mut body) = sender.send_request(request, false).ok()?;
            body.send_data(bytes::Bytes::from_static(EMPTY_MESSAGE), true)
                .ok()?;
            let (parts, mut received) = response.await.ok()?.into_parts();
            while let Some(chunk) = received.data().await {
                let chunk = chunk.ok()?;
                let _ = received.flow_control().release_capacity(chunk.len());
            }
            let trailers = received.trailers().await.ok()?;
            let status = trailers
                .as_ref()
                .and_then(|trailers| trailers.get("grpc-status"))
                .or_else(|| parts.headers.get("grpc-status"));
            Some(parts.status == http::StatusCode::OK && status.is_some_and(|s| s == "0"))
        }
        .await;
        if answered != Some(true) {
            failed += 1;
        }
        latencies.push(sent.elapsed().as_micros() as u64);
    }
    (latencies, failed)
}

/// gRPC Add on tonic's generated client (`BENCH_GRPC_CLIENT=tonic`), on
/// one connection per caller (`BENCH_GRPC_CHANNELS=N`: spread over N).
async fn grpc_add_tonic(service: &Service, tokens: Vec<String>, clients: u64, seconds: u64) -> Run {
    let call = "gRPC Add";
    let channels = env_number("BENCH_GRPC_CHANNELS", clients);
    let tokens = Arc::new(tokens);
    let next = Arc::new(AtomicUsize::new(0));
    let mut opened = Vec::new();
    for _ in 0..channels.clamp(1, clients.max(1)) {
        let endpoint = tonic::transport::Endpoint::from_shared(service.grpc.clone()).unwrap();
        opened.push(endpoint.connect().await.unwrap());
    }
    let clock = GrpcClock::start(service, call, seconds);
    let deadline = clock.started + Duration::from_secs(seconds);
    let tasks = (0..clients).map(|caller| {
        let (tokens, next) = (tokens.clone(), next.clone());
        let channel = opened[caller as usize % opened.len()].clone();
        tokio::spawn(async move {
            let mut client = AuthServiceClient::new(channel);
            let (mut latencies, mut failed) = (Vec::new(), 0_u64);
            while Instant::now() < deadline {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let token = &tokens[index % tokens.len()];
                let mut request = tonic::Request::new(AddMyAuthFactorOtpRequest {});
                request
                    .metadata_mut()
                    .insert("authorization", format!("Bearer {token}").parse().unwrap());
                let sent = Instant::now();
                if client.add_my_auth_factor_otp(request).await.is_err() {
                    failed += 1;
                }
                latencies.push(sent.elapsed().as_micros() as u64);
            }
            (latencies, failed)
        })
    });
    let callers = futures::future::join_all(tasks).await;
    let callers = merged(callers.into_iter().map(Result::unwrap));
    let wrapped = next.load(Ordering::Relaxed) > tokens.len();
    clock.finished(service, call, callers, wrapped)
}

/// The callers' latencies (µs) and failures, put together.
fn merged(callers: impl IntoIterator<Item = (Vec<u64>, u64)>) -> (Vec<u64>, u64) {
    callers.into_iter().fold(
        (Vec::new(), 0),
        |(mut latencies, failed), (more, more_failed)| {
            latencies.extend(more);
            (latencies, failed + more_failed)
        },
    )
}

/// What a gRPC Add run measures from its start: the service's CPU, the
/// machine's, PostgreSQL's counts, and a profile when asked for.
struct GrpcClock {
    profile: Option<Child>,
    counted: Option<Counters>,
    cpu: f64,
    machine: Machine,
    started: Instant,
}

impl GrpcClock {
    fn start(service: &Service, call: &str, seconds: u64) -> Self {
        let profile = profiler(service, call, seconds);
        let counted = Counters::read(true);
        Self {
            profile,
            counted,
            cpu: service.figures().2,
            machine: Machine::now(),
            started: Instant::now(),
        }
    }

    /// The run as a [`Run`], per answered call.
    fn finished(
        self,
        service: &Service,
        call: &str,
        (mut latencies, failed): (Vec<u64>, u64),
        wrapped: bool,
    ) -> Run {
        let elapsed = self.started.elapsed().as_secs_f64();
        let cpu = service.figures().2 - self.cpu;
        let after = Machine::now();
        if let Some(mut perf) = self.profile {
            let _ = perf.wait();
        }
        let (p50_ms, p99_ms) = percentiles_ms(&mut latencies);
        let requests = latencies.len() as u64;
        let mut spent = after.spent_since(&self.machine, requests);
        (spent.commits, spent.fpi) = Counters::per(Counters::read(true), self.counted, requests);
        Run {
            call: call.to_owned(),
            ceiling_op: Some("add"),
            requests,
            seconds: elapsed,
            failed,
            p50_ms,
            p99_ms,
            cpu_us_per_request: cpu * 1e6 / requests.max(1) as f64,
            spent,
            note: [
                (failed > 0).then(|| format!("{failed} failed")),
                wrapped.then(|| "(token list wrapped: raise BENCH_USERS)".to_owned()),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" "),
        }
        .announced()
    }
}

/// Adds a factor for each token's user over REST (untimed; `clients`
/// requests at a time), answering each user's key from the answer: users
/// the service has just written, as a Verify right after the Add finds them.
async fn enroll(service: &Service, tokens: &[String], clients: u64) -> Vec<TotpKey> {
    use futures::StreamExt as _;
    let started = Instant::now();
    let client = reqwest::Client::new();
    let url = format!("http://{}/auth/v1/users/me/auth_factors/otp", service.http);
    let keys = futures::stream::iter(tokens.iter().map(|token| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let answer: Value = client
                .post(url)
                .bearer_auth(token)
                .json(&json!({}))
                .send()
                .await
                .unwrap()
                .error_for_status()
                .unwrap()
                .json()
                .await
                .unwrap();
            let secret = TotpSecret::from_base32(answer["secret"].as_str().unwrap()).unwrap();
            TotpKey::new(secret, TotpParams::default())
        }
    }))
    .buffered(clients as usize)
    .collect::<Vec<_>>()
    .await;
    println!(
        "  enrolled {} users over REST in {:.1} s",
        keys.len(),
        started.elapsed().as_secs_f64()
    );
    keys
}

/// One request line per key: `request(index)`'s path and token, with the
/// body of the key's code at `code_time`.
fn code_lines<'k>(
    keys: impl IntoIterator<Item = &'k TotpKey>,
    code_time: u64,
    request: impl Fn(usize) -> (String, String),
) -> Vec<String> {
    keys.into_iter()
        .enumerate()
        .map(|(index, key)| {
            let (path, token) = request(index);
            format!(
                "{path}\t{token}\t{{\"code\":\"{}\"}}",
                key.code_at(code_time).expose_secret()
            )
        })
        .collect()
}

/// Whole seconds (1 to `seconds`) that `users` requests, each user's
/// once, last at `headroom` times `rate` (the rate of the call just
/// measured before this one).
fn seconds_for(users: usize, rate: Option<f64>, headroom: f64, seconds: u64) -> u64 {
    let rate = rate.unwrap_or(0.0).max(1.0) * headroom;
    ((users as f64 / rate) as u64).clamp(1, seconds)
}

/// p50 and p99 in ms of latencies in µs (sorted in place).
fn percentiles_ms(latencies: &mut [u64]) -> (f64, f64) {
    latencies.sort_unstable();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len().saturating_sub(1)) as f64 * p).round() as usize)
            .map_or(0.0, |&us| us as f64 / 1000.0)
    };
    (percentile(0.50), percentile(0.99))
}

/// One op of `ceiling.sh`: its transactions per second, and the machine's
/// CPU meanwhile. Only the machine's total is read: pgbench's backends have
/// exited by the time its line is printed (their CPU left with them), and
/// pgbench's own CPU reaches this process only when `ceiling.sh` ends.
#[derive(Debug, Clone)]
struct Ceiling {
    op: String,
    tps: f64,
    spent: Spent,
    /// A read-first bound ([`read_first_bound`]), not a ceiling.
    bound: bool,
}

/// `ceiling.sh CLIENTS SECONDS list OPS...` (the first `list` a warm-up). It prints a line as each op's
/// pgbench ends, so the machine is read at each line: the span between two
/// lines is one op's pgbench alone. The script seeds its database before
/// its first op, so a first `list` (read-only) is run to take the seeding's
/// span and is not counted.
fn ceilings(clients: u64, seconds: u64, ops: &[&str]) -> Vec<Ceiling> {
    use std::io::BufRead as _;
    let script = workspace().join("../shared/bench/ceiling.sh");
    let mut child = Command::new("bash")
        .arg(&script)
        .args([clients.to_string(), seconds.to_string()])
        .arg("list")
        .args(ops)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    let stdout = child.stdout.take().unwrap();
    let mut found = Vec::new();
    let mut last = Machine::now();
    let mut last_counted = Counters::read(false);
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let now = Machine::now();
        // pgbench's backends reported their counts as they disconnected;
        // the next op's pgbench has only just started.
        let counted = Counters::read(false);
        // ceiling OP CLIENTS tps=N latency_ms=N
        let parsed = (|| {
            let mut words = line.split_whitespace();
            (words.next()? == "ceiling").then_some(())?;
            let op = words.next()?.to_owned();
            words.next()?;
            let tps: f64 = words.next()?.strip_prefix("tps=")?.parse().ok()?;
            Some((op, tps))
        })();
        if let Some((op, tps)) = parsed {
            let transactions = (tps * seconds as f64) as u64;
            let mut spent = now.spent_since(&last, transactions);
            (spent.commits, spent.fpi) = Counters::per(counted, last_counted, transactions);
            found.push(Ceiling {
                op,
                tps,
                spent,
                bound: false,
            });
        }
        last = now;
        last_counted = counted;
    }
    assert!(child.wait().unwrap().success(), "ceiling.sh failed");
    // The first is the warm-up `list`.
    found.into_iter().skip(1).collect()
}

/// `ceiling.sh CLIENTS SECONDS list OP`: the ceiling of one op, after a
/// first `list` that only takes the span in which the script has just
/// seeded its database; printed as it ends.
fn paired_ceiling(clients: u64, seconds: u64, op: &str) -> Vec<Ceiling> {
    println!("  ceiling: ../shared/bench/ceiling.sh {clients} {seconds} list {op}");
    let found = ceilings(clients, seconds, &[op]);
    for ceiling in &found {
        println!(
            "  ceiling {}: {:.0}/s, machine {:.0} µs per transaction, {:.0}% busy, {} FPI per transaction",
            ceiling.op,
            ceiling.tps,
            ceiling.spent.machine_us,
            ceiling.spent.busy * 100.0,
            figure_text(ceiling.spent.fpi)
        );
    }
    found
}

/// The read-first bound of `op` (`verify`, `check`): pgbench on
/// `ceiling.sh`'s schema and seed (`SEED_USERS`, 200,000 by default), with
/// `benches/bounds/OP-read-first.sql`: the user's state read by primary key,
/// then the ceiling's own durable statement, each in autocommit. What any
/// service that must read a secret before it writes meets on this machine
/// with no service, no HTTP and no load generator beside PostgreSQL; not a
/// ceiling (the ratio stays against the ceiling), the measure of what the
/// read alone costs. `None` when `BENCH_BOUNDS=0` or `op` has no read.
fn read_first_bound(clients: u64, seconds: u64, op: &str) -> Option<Ceiling> {
    let script = workspace().join(format!(
        "crates/bootstrap/benches/bounds/{op}-read-first.sql"
    ));
    if std::env::var("BENCH_BOUNDS").is_ok_and(|v| v == "0") || !script.exists() {
        return None;
    }
    let pgbench_db = PgbenchDatabase::create(&format!("bound_{}_{op}", std::process::id()));
    let before = Machine::now();
    let counted = Counters::read(false);
    let output = pgbench_db
        .pgbench(&script, clients, seconds)
        .output()
        .unwrap();
    let after = Machine::now();
    // pgbench's backends reported their counts as they disconnected; read
    // before the database (and its counts) is dropped.
    let counts = Counters::read(true);
    let text = String::from_utf8_lossy(&output.stdout);
    drop(pgbench_db);
    assert!(
        output.status.success(),
        "pgbench {op} read first failed: {text}"
    );
    let tps: f64 = text
        .lines()
        .find_map(|line| line.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|tps| tps.parse().ok())
        .expect("pgbench prints its tps");
    let transactions = (tps * seconds as f64) as u64;
    let mut spent = after.spent_since(&before, transactions);
    (spent.commits, spent.fpi) = Counters::per(counts, counted, transactions);
    let bound = Ceiling {
        op: format!("{op} read first"),
        tps,
        spent,
        bound: true,
    };
    println!(
        "  bound {}: {:.0}/s, machine {:.0} µs per transaction, {:.0}% busy (pgbench, benches/bounds/{op}-read-first.sql)",
        bound.op,
        bound.tps,
        bound.spent.machine_us,
        bound.spent.busy * 100.0
    );
    Some(bound)
}

/// A throwaway database with `ceiling.sh`'s own schema and seed (its
/// `SEED_USERS`, its `PGURL`), for pgbench runs `ceiling.sh` cannot make;
/// dropped with the value.
struct PgbenchDatabase {
    server: String,
    n: String,
    name: String,
}

impl PgbenchDatabase {
    fn create(name: &str) -> Self {
        let shared = workspace().join("../shared/bench/ceilings");
        let database = Self {
            server: std::env::var("PGURL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into()),
            n: std::env::var("SEED_USERS").unwrap_or_else(|_| "200000".into()),
            name: name.to_owned(),
        };
        database.psql("postgres", &["-c", &format!("CREATE DATABASE {name}")]);
        for file in ["schema.sql", "seed.sql"] {
            database.psql(name, &["-f", shared.join(file).to_str().unwrap()]);
        }
        database
    }

    /// pgbench running `script` on this database (prepared statements, as
    /// `ceiling.sh`), from `clients` connections for `seconds`; the
    /// database's URL comes last, so more options can be added.
    fn pgbench(&self, script: &Path, clients: u64, seconds: u64) -> Command {
        let mut command = Command::new("pgbench");
        command
            .args(["-n", "-M", "prepared", "-D", &format!("n={}", self.n), "-f"])
            .arg(script)
            .args([
                "-c",
                &clients.to_string(),
                "-j",
                if clients < 2 { "1" } else { "2" },
                "-T",
                &seconds.to_string(),
            ])
            .arg(format!("{}/{}", self.server, self.name));
        command
    }

    fn psql(&self, database: &str, args: &[&str]) {
        assert!(self.psql_status(database, args), "psql {args:?} failed");
    }

    /// Whether psql ran `args` on `database` without an error.
    fn psql_status(&self, database: &str, args: &[&str]) -> bool {
        Command::new("psql")
            .args([
                "-qX",
                "-v",
                "ON_ERROR_STOP=1",
                "-v",
                &format!("n={}", self.n),
            ])
            .arg(format!("{}/{database}", self.server))
            .args(args)
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }
}

impl Drop for PgbenchDatabase {
    /// Best effort, never a panic: a drop while a failed run unwinds must
    /// not abort the benchmark before it reports why.
    fn drop(&mut self) {
        self.psql_status(
            "postgres",
            &["-c", &format!("DROP DATABASE {} WITH (FORCE)", self.name)],
        );
    }
}

/// The latency baseline of the half-rate run: pgbench on `ceiling.sh`'s
/// `add` statement from `clients` connections, paced (`-R`) at `rate`
/// transactions a second, each transaction's time logged (`-l`). Its p50
/// and p99 are of the time from a transaction's start to its commit's
/// answer (the log's time less its schedule lag), as wrk's are from a
/// request's send: what PostgreSQL's durable commit itself takes at that
/// pace on this machine, WAL-flush tail included.
fn paced_ceiling(clients: u64, seconds: u64, rate: f64) -> Run {
    let pgbench_db = PgbenchDatabase::create(&format!("paced_{}", std::process::id()));
    let logs = workspace().join("target/bench/paced-ceiling");
    let _ = std::fs::remove_dir_all(&logs);
    std::fs::create_dir_all(&logs).unwrap();
    let before = Machine::now();
    let output = pgbench_db
        .pgbench(
            &workspace().join("../shared/bench/ceilings/add.sql"),
            clients,
            seconds,
        )
        .current_dir(&logs)
        .args(["-R", &format!("{rate:.0}"), "-l"])
        .output()
        .unwrap();
    let after = Machine::now();
    drop(pgbench_db);
    assert!(
        output.status.success(),
        "paced pgbench failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // `client_id transaction_no time script_no time_epoch time_us schedule_lag`
    let mut log = String::new();
    for file in std::fs::read_dir(&logs).unwrap() {
        log.push_str(&std::fs::read_to_string(file.unwrap().path()).unwrap());
    }
    let mut latencies: Vec<u64> = log
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let time: u64 = fields.get(2)?.parse().ok()?;
            let lag: u64 = fields.get(6)?.parse().ok()?;
            Some(time.saturating_sub(lag))
        })
        .collect();
    assert!(
        !latencies.is_empty(),
        "paced pgbench logged no transaction with its schedule lag in {}",
        logs.display()
    );
    let (p50_ms, p99_ms) = percentiles_ms(&mut latencies);
    let requests = latencies.len() as u64;
    let mut spent = after.spent_since(&before, requests);
    // pgbench's backends and pgbench itself have exited by now: only the
    // machine's total is known (as for the ceilings).
    (spent.db_us, spent.load_us) = (f64::NAN, f64::NAN);
    Run {
        call: "ceiling add at the same pace".into(),
        ceiling_op: None,
        requests,
        seconds: seconds as f64,
        failed: 0,
        p50_ms,
        p99_ms,
        cpu_us_per_request: f64::NAN,
        spent,
        note: format!("pgbench -R {rate:.0}: PostgreSQL's own latency at the half-rate run's pace"),
    }
    .announced()
}

/// REST Add paced at `half` requests/s ([`WRK_PACED`]), then the latency
/// goal's baseline: the durable commit alone at the pace the service
/// reached.
fn half_rate(
    service: &Service,
    issuer: &DevIssuer,
    clients: u64,
    seconds: u64,
    n: usize,
    half: f64,
) -> [Run; 2] {
    let pace = (half.round() as u64).max(1);
    let paced_tokens = mint(issuer, &users("h", n));
    let mut paced = measured(
        service,
        "REST Add at half rate",
        None,
        &add_lines(&paced_tokens),
        clients,
        seconds,
        pace,
    );
    paced.note = format!("paced at {pace}/s {}", paced.note);
    let reached = paced.rate();
    [paced, paced_ceiling(clients, seconds, reached)]
}

/// Request lines for each call.
fn add_lines(tokens: &[String]) -> Vec<String> {
    tokens
        .iter()
        .map(|t| format!("/auth/v1/users/me/auth_factors/otp\t{t}\t{{}}"))
        .collect()
}

fn list_lines(tokens: &[String]) -> Vec<String> {
    tokens
        .iter()
        .map(|t| format!("/auth/v1/users/me/auth_factors/_search\t{t}\t{{}}"))
        .collect()
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn connect(db: &TestDatabase) -> tokio_postgres::Client {
    let (client, connection) =
        tokio_postgres::connect(db.url.expose_secret(), tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(connection);
    client
}

/// Fills the database with `users` READY factors and `events_per_user`
/// events each (for the scale run), straight in SQL: `generate_series`
/// inserts in key order (user ids zero-padded, so each primary key grows at
/// its right edge), with the foreign-key triggers off for this session
/// (`session_replication_role = replica`; the rows are consistent by
/// construction), then `VACUUM (ANALYZE)` and a checkpoint, as a database
/// that has been running would be, so no autovacuum of the bulk load runs
/// during the measurement.
async fn fill(db: &TestDatabase, users: u64, events_per_user: u64) {
    let client = connect(db).await;
    let started = Instant::now();
    client
        .batch_execute(&format!(
            "SET session_replication_role = replica;
             INSERT INTO otp_user_streams (user_id, last_sequence, version)
               SELECT 'filled' || lpad(i::text, 8, '0'), {events_per_user}, {events_per_user}
               FROM generate_series(1, {users}) i;
             INSERT INTO otp_factors (user_id, state, key_id, sealed_secret, algorithm, digits, period,
               skew, created_at, changed_at, last_used_step)
               SELECT 'filled' || lpad(i::text, 8, '0'), 'ready', 'k1', decode(repeat('ab', 48), 'hex'),
               'SHA1', 6, 30, 1, now(), now(), NULL FROM generate_series(1, {users}) i;
             INSERT INTO otp_events (user_id, sequence, kind, actor, resource_owner, occurred_at)
               SELECT 'filled' || lpad(i::text, 8, '0'), n, 'otp.check.succeeded',
               'filled' || lpad(i::text, 8, '0'), 'org1', now()
               FROM generate_series(1, {users}) i, generate_series(1, {events_per_user}) n
               ORDER BY i, n;
             RESET session_replication_role;"
        ))
        .await
        .unwrap();
    let inserted = started.elapsed().as_secs_f64();
    // One statement per call: VACUUM cannot run in the implicit transaction
    // of a multi-statement batch.
    for statement in [
        "VACUUM (ANALYZE) otp_user_streams, otp_factors, otp_events",
        "CHECKPOINT",
    ] {
        client.batch_execute(statement).await.unwrap();
    }
    let counts = client
        .query_one(
            "SELECT (SELECT count(*) FROM otp_factors), (SELECT count(*) FROM otp_events),
                    pg_size_pretty(pg_database_size(current_database()))",
            &[],
        )
        .await
        .unwrap();
    println!(
        "  filled {users} users and {} events in {inserted:.0} s, vacuumed in {:.0} s; \
         now {} factors, {} events, {}",
        users * events_per_user,
        started.elapsed().as_secs_f64() - inserted,
        counts.get::<_, i64>(0),
        counts.get::<_, i64>(1),
        counts.get::<_, String>(2),
    );
}

/// The scale run: on a database of its own, Add while it is empty, then
/// Add again once it holds 1M enrolled users and 10M events, back to back
/// on the same service.
async fn scale_runs(
    issuer_url: &str,
    issuer: &DevIssuer,
    clients: u64,
    seconds: u64,
    n: usize,
) -> Vec<Run> {
    // Its own database and service: Add on it empty, then filled
    // with 1M users and 10M events, then Add again, back to back.
    let scale_db = TestDatabase::create()
        .await
        .expect("PostgreSQL is needed for the benchmark");
    let scaled = Service::start(&scale_db, issuer_url, clients, &[]);
    scaled.wait_ready().await;
    let empty = measured(
        &scaled,
        "REST Add, scale db empty",
        Some("add"),
        &add_lines(&mint(issuer, &users("e", n))),
        clients,
        seconds,
        0,
    );
    println!("  scale run: filling the database ...");
    fill(&scale_db, 1_000_000, 10).await;
    let scale_tokens = mint(issuer, &users("s", n));
    let mut run = measured(
        &scaled,
        "REST Add, 1M users",
        Some("add"),
        &add_lines(&scale_tokens),
        clients,
        seconds,
        0,
    );
    run.note = format!(
        "{:.2}x of Add on the same database empty {}",
        run.rate() / empty.rate(),
        run.note
    );
    vec![empty, run]
}

/// The ceiling of `op`'s transactions per second.
fn ceiling_tps(ceilings: &[Ceiling], op: Option<&str>) -> Option<f64> {
    op.and_then(|op| ceilings.iter().find(|c| c.op == op))
        .map(|c| c.tps)
}

/// A CPU figure in µs, `-` where it was not measured (NaN).
fn us_text(us: f64) -> String {
    if us.is_nan() {
        "-".into()
    } else {
        format!("{us:.0}")
    }
}

/// A per-request count (commits, full-page images) as printed (`-` when
/// unread).
fn figure_text(count: Option<f64>) -> String {
    count.map_or_else(|| "-".into(), |c| format!("{c:.2}"))
}

fn print_table(runs: &[Run], ceilings: &[Ceiling], peak_rss_kib: u64, idle_rss_kib: u64) {
    println!();
    println!(
        "{:<28} {:>8} {:>8} {:>6} {:>7} {:>7} {:>10} {:>8} {:>8} {:>10} {:>5} {:>7} {:>7}  note",
        "call",
        "req/s",
        "ceiling",
        "ratio",
        "p50 ms",
        "p99 ms",
        "CPU µs/req",
        "db µs",
        "load µs",
        "machine µs",
        "busy",
        "tx/req",
        "FPI/req"
    );
    for run in runs {
        let ceiling = ceiling_tps(ceilings, run.ceiling_op);
        println!(
            "{:<28} {:>8.0} {:>8} {:>6} {:>7.2} {:>7.2} {:>10} {:>8} {:>8} {:>10.0} {:>4.0}% {:>7} {:>7}  {}",
            run.call,
            run.rate(),
            ceiling.map_or("-".into(), |c| format!("{c:.0}")),
            ceiling.map_or("-".into(), |c| format!("{:.2}", run.rate() / c)),
            run.p50_ms,
            run.p99_ms,
            us_text(run.cpu_us_per_request),
            us_text(run.spent.db_us),
            us_text(run.spent.load_us),
            run.spent.machine_us,
            run.spent.busy * 100.0,
            figure_text(run.spent.commits),
            figure_text(run.spent.fpi),
            run.note
        );
    }
    for ceiling in ceilings {
        println!(
            "{:<28} {:>8.0} {:>8} {:>6} {:>7} {:>7} {:>10} {:>8} {:>8} {:>10.0} {:>4.0}% {:>7} {:>7}  {}",
            if ceiling.bound {
                format!("bound {}", ceiling.op)
            } else {
                format!("ceiling {}", ceiling.op)
            },
            ceiling.tps,
            "-",
            "-",
            "-",
            "-",
            "-",
            "-",
            "-",
            ceiling.spent.machine_us,
            ceiling.spent.busy * 100.0,
            figure_text(ceiling.spent.commits),
            figure_text(ceiling.spent.fpi),
            if ceiling.bound {
                "pgbench: a read by key, then the ceiling's statement (not a ceiling)"
            } else {
                "pgbench, the smallest durable SQL"
            }
        );
    }
    println!(
        "db µs, load µs, machine µs: PostgreSQL's, the load generator's and the whole machine's CPU per request; busy: of the machine's {} cores; tx/req: PostgreSQL's commits per request (reads included); FPI/req: full-page images written to the WAL per request",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!(
        "service memory: idle RSS {:.1} MiB, peak RSS {:.1} MiB",
        idle_rss_kib as f64 / 1024.0,
        peak_rss_kib as f64 / 1024.0
    );
}

fn write_json(
    runs: &[Run],
    ceilings: &[Ceiling],
    peak: u64,
    idle: u64,
    clients: u64,
    seconds: u64,
) {
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let rows: Vec<Value> = runs
        .iter()
        .map(|run| {
            let ceiling = ceiling_tps(ceilings, run.ceiling_op);
            json!({
                "call": run.call, "requests_per_second": run.rate(), "requests": run.requests,
                "failed": run.failed, "ceiling_op": run.ceiling_op, "ceiling_tps": ceiling,
                "ratio": ceiling.map(|c| run.rate() / c), "p50_ms": run.p50_ms, "p99_ms": run.p99_ms,
                "cpu_us_per_request": run.cpu_us_per_request,
                "db_cpu_us_per_request": run.spent.db_us,
                "load_cpu_us_per_request": run.spent.load_us,
                "machine_cpu_us_per_request": run.spent.machine_us, "machine_busy": run.spent.busy,
                "commits_per_request": run.spent.commits,
                "full_page_images_per_request": run.spent.fpi,
                "note": run.note,
            })
        })
        .collect();
    let document = json!({
        "commit": commit, "clients": clients, "seconds": seconds, "runs": rows,
        "ceilings": ceilings.iter().map(|c| json!({
            "op": c.op, "tps": c.tps, "machine_cpu_us_per_transaction": c.spent.machine_us,
            "machine_busy": c.spent.busy, "commits_per_transaction": c.spent.commits,
            "full_page_images_per_transaction": c.spent.fpi, "read_first_bound": c.bound,
        })).collect::<Vec<_>>(),
        "peak_rss_mib": peak as f64 / 1024.0, "idle_rss_mib": idle as f64 / 1024.0,
    });
    let path = workspace().join("target/bench/load.json");
    std::fs::write(&path, serde_json::to_string_pretty(&document).unwrap()).unwrap();
    println!("written: {}", path.display());
}

/// A PgBouncer in transaction mode in front of the benchmark's server,
/// stopped when dropped.
struct PgBouncer {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl PgBouncer {
    /// Starts one with `servers` server connections, or `None` when
    /// `pgbouncer` is not installed.
    fn start(db: &TestDatabase, servers: u64) -> Option<Self> {
        let binary = ["pgbouncer", "/usr/sbin/pgbouncer"]
            .into_iter()
            .find(|path| Command::new(path).arg("--version").output().is_ok())?;
        let server: tokio_postgres::Config = db.url.expose_secret().parse().unwrap();
        let host = match server.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            _ => "127.0.0.1".to_owned(),
        };
        let server_port = server.get_ports().first().copied().unwrap_or(5432);
        let user = server.get_user().unwrap_or("postgres").to_owned();
        let password = server
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default();
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("otp-bench-pgbouncer-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("users.txt"),
            format!("\"{user}\" \"{password}\"\n"),
        )
        .unwrap();
        let ini = format!(
            "[databases]\n* = host={host} port={server_port}\n[pgbouncer]\n\
             listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {}\npool_mode = transaction\n\
             default_pool_size = {servers}\nmax_client_conn = 500\n\
             log_connections = 0\nlog_disconnections = 0\n",
            dir.join("users.txt").display()
        );
        std::fs::write(dir.join("pgbouncer.ini"), ini).unwrap();
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let mut command = Command::new(binary);
        if root {
            command.args(["-u", "nobody"]);
        }
        let child = command
            .arg(dir.join("pgbouncer.ini"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "pgbouncer did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Self { child, port, dir })
    }

    /// The benchmark database's URL through this PgBouncer.
    fn url(&self, db: &TestDatabase) -> String {
        let server: tokio_postgres::Config = db.url.expose_secret().parse().unwrap();
        let user = server.get_user().unwrap_or("postgres");
        format!("postgres://{user}@127.0.0.1:{}/{}", self.port, db.name)
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Adds `op`'s [`paired_ceiling`] to `ceilings`; then, with
/// `BENCH_STOP_AFTER` naming the last of `runs` (`REST Add`, `REST Verify`,
/// `REST login check` or `REST List`), prints the table so far and answers
/// true: the benchmark ends there (a quicker run for an experiment).
fn paired_ceiling_or_stop(
    ceilings: &mut Vec<Ceiling>,
    runs: &[Run],
    clients: u64,
    seconds: u64,
    op: &str,
    service: &Service,
    idle_rss_kib: u64,
) -> bool {
    ceilings.extend(paired_ceiling(clients, seconds, op));
    ceilings.extend(read_first_bound(clients, seconds, op));
    let last = runs.last().map(|run| run.call.as_str());
    let stop = std::env::var("BENCH_STOP_AFTER").is_ok_and(|call| Some(call.trim()) == last);
    if stop {
        print_table(runs, ceilings, service.figures().1, idle_rss_kib);
    }
    stop
}

fn main() {
    let seconds = env_number("BENCH_SECONDS", 10);
    let clients = env_number("BENCH_CLIENTS", 16);
    let n = env_number("BENCH_USERS", 200_000) as usize;
    let scale = env_number("BENCH_SCALE", 0) >= 1;
    let scale_only = env_number("BENCH_SCALE", 0) == 2;
    for tool in ["wrk", "pgbench"] {
        let found = Command::new(tool).arg("--version").output().is_ok();
        assert!(
            found,
            "{tool} is needed (apt-get install wrk postgresql-client)"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!(
            "otp-service benchmark: {clients} clients, {seconds} s per run, {n} users per call"
        );
        println!("  load average at start: {}", loadavg());
        if scale_only {
            let (issuer_url, issuer) = spawn_issuer();
            let runs = scale_runs(&issuer_url, &issuer, clients, seconds, n).await;
            let ceilings = paired_ceiling(clients, seconds, "add");
            print_table(&runs, &ceilings, 0, 0);
            println!("load average at the end: {}", loadavg());
            return;
        }
        let db = TestDatabase::create()
            .await
            .expect("PostgreSQL is needed for the benchmark");
        let (issuer_url, issuer) = spawn_issuer();
        let service = Service::start(&db, &issuer_url, clients, &[]);
        service.wait_ready().await;
        let (idle_rss, _, _) = service.figures();

        let started = Instant::now();
        let add_users = users("a", n);
        let grpc_users = users("g", n);
        let verify_users = users("v", n);
        let check_users = users("c", n);
        let add_tokens = mint(&issuer, &add_users);
        let grpc_tokens = mint(&issuer, &grpc_users);
        let verify_tokens = mint(&issuer, &verify_users);
        let client = connect(&db).await;
        println!(
            "  minted {} tokens in {:.0} s",
            3 * n,
            started.elapsed().as_secs_f64()
        );

        let mut runs = Vec::new();
        // Each of the four calls' ceilings runs right after the call: the
        // machine's speed drifts by as much as the ratio within minutes.
        let mut ceilings = Vec::new();
        runs.push(measured(
            &service,
            "REST Add",
            Some("add"),
            &add_lines(&add_tokens),
            clients,
            seconds,
            0,
        ));
        if env_number("BENCH_HALF_RATE", 0) == 1 {
            // The latency goal alone: Add paced at half REST Add's rate (or
            // at `BENCH_PACE` requests/s, to compare runs at one pace), the
            // durable commit alone at that pace, and List at that pace
            // (a call with no commit: what the pacing and the hops cost).
            let half = match env_number("BENCH_PACE", 0) {
                0 => runs[0].rate() / 2.0,
                pace => pace as f64,
            };
            let [paced, ceiling] = half_rate(&service, &issuer, clients, seconds, n, half);
            let pace = (paced.rate().round() as u64).max(1);
            let mut list = measured(
                &service,
                "REST List at the same pace",
                None,
                &list_lines(&add_tokens),
                clients,
                seconds,
                pace,
            );
            list.note = format!("paced at {pace}/s {}", list.note);
            runs.extend([paced, ceiling, list]);
            print_table(&runs, &ceilings, service.figures().1, idle_rss);
            return;
        }
        if env_number("BENCH_ADD_PAIR", 0) == 1 {
            // REST Add and gRPC Add back to back, then the `add` ceiling:
            // the gRPC / REST comparison alone, for A/B experiments.
            runs.push(grpc_add(&service, grpc_tokens, clients, seconds).await);
            ceilings.extend(paired_ceiling(clients, seconds, "add"));
            print_table(&runs, &ceilings, service.figures().1, idle_rss);
            return;
        }
        if paired_ceiling_or_stop(
            &mut ceilings,
            &runs,
            clients,
            seconds,
            "add",
            &service,
            idle_rss,
        ) {
            return;
        }
        // Users a second service has just enrolled: it knows the state it
        // wrote (`database.known_states`, here room for all of them), so
        // their Verify, and then their login check, are one statement each
        // instead of a read and a write (`BENCH_KNOWN=0` skips these rows).
        let known = (env_number("BENCH_KNOWN", 1) == 1).then(|| {
            let count = (n / 2).max(1);
            let known_users = users("k", count);
            let tokens = mint(&issuer, &known_users);
            let service = Service::start(
                &db,
                &issuer_url,
                clients,
                &[("OTP__DATABASE__KNOWN_STATES", (2 * count + 2).to_string())],
            );
            (known_users, tokens, service)
        });
        let known_keys = match &known {
            Some((_, tokens, known_service)) => {
                known_service.wait_ready().await;
                enroll(known_service, tokens, clients).await
            }
            None => Vec::new(),
        };
        // Each call's users are seeded right before its run, as ceiling.sh
        // seeds its database right before its ops: both then change rows
        // written since the last checkpoint, or both do not (the FPI/req
        // column shows which).
        let verify_keys = seed_now(&client, &verify_users, "not_ready").await;
        let code_time = now_unix() + seconds / 2;
        let verify_lines = code_lines(&verify_keys, code_time, |index| {
            (VERIFY_PATH.to_owned(), verify_tokens[index].clone())
        });
        runs.push(measured(
            &service,
            "REST Verify",
            Some("verify"),
            &verify_lines,
            clients,
            seconds,
            0,
        ));
        if paired_ceiling_or_stop(
            &mut ceilings,
            &runs,
            clients,
            seconds,
            "verify",
            &service,
            idle_rss,
        ) {
            return;
        }
        // Each user verifies once: the run is as long as its users last at
        // 1.5 times the rate Verify just had (at most BENCH_SECONDS).
        let verify_seconds =
            seconds_for(known_keys.len(), runs.last().map(Run::rate), 1.5, seconds);
        let known_code_time = now_unix() + verify_seconds / 2;
        if let Some((_, tokens, known_service)) = &known {
            let lines = code_lines(&known_keys, known_code_time, |index| {
                (VERIFY_PATH.to_owned(), tokens[index].clone())
            });
            let mut run = measured(
                known_service,
                "REST Verify after an Add here",
                Some("verify"),
                &lines,
                clients,
                verify_seconds,
                0,
            );
            run.note = format!(
                "the state the Add wrote, known; {verify_seconds} s {}",
                run.note
            );
            runs.push(run);
        }
        let caller = caller_token(&issuer_url);
        let check_keys = seed_now(&client, &check_users, "ready").await;
        let code_time = now_unix() + seconds / 2;
        let check_lines = code_lines(&check_keys, code_time, |index| {
            (check_path(&check_users[index]), caller.clone())
        });
        let mut run = measured(
            &service,
            "REST login check",
            Some("check"),
            &check_lines,
            clients,
            seconds,
            0,
        );
        // A login service keeps its own token: after the first request,
        // the verified-token cache answers for it.
        run.note = format!("one caller token, reused {}", run.note);
        runs.push(run);
        if paired_ceiling_or_stop(
            &mut ceilings,
            &runs,
            clients,
            seconds,
            "check",
            &service,
            idle_rss,
        ) {
            return;
        }
        if let Some((known_users, _, known_service)) = &known {
            // The users the Verify row reached (READY now), each checked
            // once, with a code of a step after its Verify's (else a
            // replay): now's, or the next one's.
            let ready: std::collections::HashSet<String> = client
                .query(
                    "SELECT user_id FROM otp_factors WHERE state = 'ready' AND user_id LIKE 'k%'",
                    &[],
                )
                .await
                .unwrap()
                .iter()
                .map(|row| row.get(0))
                .collect();
            let (users, keys): (Vec<&String>, Vec<&TotpKey>) = known_users
                .iter()
                .zip(&known_keys)
                .filter(|(user, _)| ready.contains(*user))
                .unzip();
            // After the known Verify's rate, at twice it: the known check
            // has run 1.2 to 1.7 times as fast, and a user asked twice is
            // a replay, refused.
            let check_seconds = seconds_for(users.len(), runs.last().map(Run::rate), 2.0, seconds);
            let code_time = (now_unix() + check_seconds / 2).max(known_code_time + 30);
            let lines = code_lines(keys, code_time, |index| {
                (check_path(users[index]), caller.clone())
            });
            let mut run = measured(
                known_service,
                "REST login check, users known here",
                Some("check"),
                &lines,
                clients,
                check_seconds,
                0,
            );
            let (_, peak_kib, _) = known_service.figures();
            run.note = format!(
                "the state the Verify wrote, known; {check_seconds} s; this service's peak RSS \
                 {:.1} MiB {}",
                peak_kib as f64 / 1024.0,
                run.note
            );
            runs.push(run);
        }
        drop(known);
        let list_lines = list_lines(&verify_tokens);
        runs.push(measured(
            &service,
            "REST List",
            Some("list"),
            &list_lines,
            clients,
            seconds,
            0,
        ));
        if paired_ceiling_or_stop(
            &mut ceilings,
            &runs,
            clients,
            seconds,
            "list",
            &service,
            idle_rss,
        ) {
            return;
        }
        // The same call with a few tokens reused (a client keeps its user's
        // token for many calls): the verified-token cache answers all but
        // each token's first request. The fresh-token rows above never hit it.
        let reused = list_lines.len().min(1000);
        let mut run = measured(
            &service,
            "REST List, reused tokens",
            Some("list"),
            &list_lines[..reused],
            clients,
            seconds,
            0,
        );
        run.note = format!(
            "{reused} tokens, each reused; {}",
            run.note
                .replace(" (request list wrapped: raise BENCH_USERS)", "")
        );
        runs.push(run);
        runs.push(grpc_add(&service, grpc_tokens, clients, seconds).await);

        runs.extend(half_rate(
            &service,
            &issuer,
            clients,
            seconds,
            n,
            runs[0].rate() / 2.0,
        ));

        // Add again on a database whose connections default to
        // SERIALIZABLE, as a distributed engine runs (its own service, so
        // the first database's pool and caches do not share it).
        if env_number("BENCH_SERIALIZABLE", 1) == 1 {
            let serializable_db = TestDatabase::create_serializable()
                .await
                .expect("PostgreSQL is needed for the benchmark");
            let serializable = Service::start(&serializable_db, &issuer_url, clients, &[]);
            serializable.wait_ready().await;
            let tokens = mint(&issuer, &users("z", n));
            let mut run = measured(
                &serializable,
                "REST Add, SERIALIZABLE",
                Some("add"),
                &add_lines(&tokens),
                clients,
                seconds,
                0,
            );
            run.note = format!(
                "{:.2}x of Add at the default isolation {}",
                run.rate() / runs[0].rate(),
                run.note
            );
            runs.push(run);
        }

        // Add with every statement in a transaction of its own, straight on
        // PostgreSQL, then through PgBouncer in transaction mode.
        {
            let direct = Service::start(
                &db,
                &issuer_url,
                clients,
                &[("OTP__DATABASE__POOLER", "transaction".to_owned())],
            );
            direct.wait_ready().await;
            let tokens = mint(&issuer, &users("t", n));
            let mut run = measured(
                &direct,
                "REST Add, pooler=transaction",
                Some("add"),
                &add_lines(&tokens),
                clients,
                seconds,
                0,
            );
            run.note = format!("{:.2}x of Add {}", run.rate() / runs[0].rate(), run.note);
            runs.push(run);
            drop(direct);
            match PgBouncer::start(&db, clients) {
                Some(bouncer) => {
                    let pooled = Service::start(
                        &db,
                        &issuer_url,
                        clients,
                        &[
                            ("OTP__DATABASE__POOLER", "transaction".to_owned()),
                            ("OTP__DATABASE__URL", bouncer.url(&db)),
                        ],
                    );
                    pooled.wait_ready().await;
                    let tokens = mint(&issuer, &users("b", n));
                    let mut run = measured(
                        &pooled,
                        "REST Add through PgBouncer",
                        Some("add"),
                        &add_lines(&tokens),
                        clients,
                        seconds,
                        0,
                    );
                    run.note = format!("{:.2}x of Add {}", run.rate() / runs[0].rate(), run.note);
                    runs.push(run);
                }
                None => println!("  pgbouncer not installed: no run through PgBouncer"),
            }
        }

        if scale {
            runs.extend(scale_runs(&issuer_url, &issuer, clients, seconds, n).await);
        }
        let (_, peak_rss, _) = service.figures();
        drop(service);

        print_table(&runs, &ceilings, peak_rss, idle_rss);
        println!("load average at the end: {}", loadavg());
        write_json(&runs, &ceilings, peak_rss, idle_rss, clients, seconds);
    });
}
