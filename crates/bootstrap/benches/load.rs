//! `just bench`: the release `otp-service serve` under concurrent REST load
//! on PostgreSQL, against a baseline in the same run: the same number of
//! transactions of the same shape written straight to PostgreSQL with
//! tokio-postgres (no HTTP, no tokens, no crypto). Prints throughput, the
//! service/baseline ratio, latency percentiles, and the server's memory and
//! CPU (the figures the Helm chart's requests and limits come from).
//!
//! `BENCH_SECONDS` (10) and `BENCH_CONCURRENCY` (16) tune it; `DATABASE_URL`
//! names the server (default `postgres://postgres@127.0.0.1:5432/postgres`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::disallowed_methods,
    reason = "a benchmark program: it prints, and fails loudly"
)]

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use adapters_postgres::testing::TestDatabase;
use adapters_token::DevIssuer;
use domain::{TotpKey, TotpParams, TotpSecret};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

const AUDIENCE: &str = "bench";
const KEYS: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

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

/// Serves discovery and the JWKS of a fresh development issuer.
fn spawn_issuer() -> (String, Arc<DevIssuer>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let issuer = Arc::new(DevIssuer::generate(&url, AUDIENCE).unwrap());
    let (jwks, base) = (issuer.public_jwks(), url.clone());
    let server = HttpServer::new(move || {
        let (jwks, base) = (jwks.clone(), base.clone());
        App::new()
            .route(
                "/.well-known/openid-configuration",
                web::get().to(move || {
                    let base = base.clone();
                    async move {
                        HttpResponse::Ok()
                            .json(json!({"issuer": base, "jwks_uri": format!("{base}/keys")}))
                    }
                }),
            )
            .route(
                "/keys",
                web::get().to(move || {
                    let jwks = jwks.clone();
                    async move { HttpResponse::Ok().json(jwks) }
                }),
            )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    (url, issuer)
}

/// Percentile of sorted microseconds.
fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index] as f64 / 1000.0
}

/// `VmRSS`/`VmHWM` (kB) and user+system CPU seconds of `pid`.
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

async fn service_run(
    seconds: u64,
    concurrency: u64,
) -> (u64, Vec<u64>, (u64, u64, f64), (u64, f64)) {
    let db = TestDatabase::create()
        .await
        .expect("PostgreSQL is needed for the benchmark");
    let (issuer_url, issuer) = spawn_issuer();
    let (http, grpc) = (free_port(), free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_otp-service"))
        .arg("serve")
        .env("OTP__HTTP__ADDR", format!("127.0.0.1:{http}"))
        .env("OTP__GRPC__ADDR", format!("127.0.0.1:{grpc}"))
        .env(
            "OTP__HTTP__INTERNAL_ADDR",
            format!("127.0.0.1:{}", free_port()),
        )
        .env(
            "OTP__GRPC__INTERNAL_ADDR",
            format!("127.0.0.1:{}", free_port()),
        )
        .env("OTP__DATABASE__URL", db.url.expose_secret())
        .env("OTP__DATABASE__MAX_CONNECTIONS", concurrency.to_string())
        .env("OTP__AUTH__ISSUER", &issuer_url)
        .env("OTP__AUTH__AUDIENCE", AUDIENCE)
        .env("OTP__CRYPTO__KEYS", KEYS)
        .env("OTP__LOG__FILTER", "warn")
        .env("OTEL_SDK_DISABLED", "true")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let address = format!("http://127.0.0.1:{http}");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    for _ in 0..300 {
        if client
            .get(format!("{address}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let idle = process_figures(child.id());
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let tasks = (0..concurrency).map(|task| {
        let (client, address, issuer) = (client.clone(), address.clone(), issuer.clone());
        tokio::spawn(async move {
            let user = format!("bench-{task}");
            let token = issuer
                .issue(&user, Some("org"), None, Duration::from_secs(3600))
                .unwrap();
            let auth = format!("Bearer {}", token.expose_secret());
            let mut latencies = Vec::new();
            let mut cycles = 0_u64;
            let call = |method: reqwest::Method, path: &str, body: Value| {
                client
                    .request(
                        method,
                        format!("{address}/auth/v1/users/me/auth_factors{path}"),
                    )
                    .header("Authorization", &auth)
                    .body(body.to_string())
            };
            while Instant::now() < deadline {
                let started = Instant::now();
                let added: Value = call(reqwest::Method::POST, "/otp", json!({}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                latencies.push(started.elapsed().as_micros() as u64);
                let secret = TotpSecret::from_base32(added["secret"].as_str().unwrap()).unwrap();
                let key = TotpKey::new(secret, TotpParams::default());
                let now = chrono::Utc::now().timestamp() as u64;
                let started = Instant::now();
                let verified = call(
                    reqwest::Method::POST,
                    "/otp/_verify",
                    json!({"code": key.code_at(now).expose_secret()}),
                )
                .send()
                .await
                .unwrap();
                assert!(
                    verified.status().is_success(),
                    "verify failed: {}",
                    verified.status()
                );
                latencies.push(started.elapsed().as_micros() as u64);
                let started = Instant::now();
                let listed = call(reqwest::Method::POST, "/_search", json!({}))
                    .send()
                    .await
                    .unwrap();
                assert!(listed.status().is_success());
                latencies.push(started.elapsed().as_micros() as u64);
                let started = Instant::now();
                let removed = call(reqwest::Method::DELETE, "/otp", json!({}))
                    .send()
                    .await
                    .unwrap();
                assert!(removed.status().is_success());
                latencies.push(started.elapsed().as_micros() as u64);
                cycles += 1;
            }
            (cycles, latencies)
        })
    });
    let mut cycles = 0;
    let mut latencies = Vec::new();
    for task in futures::future::join_all(tasks).await {
        let (c, l) = task.unwrap();
        cycles += c;
        latencies.extend(l);
    }
    let busy = process_figures(child.id());
    let _ = child.kill();
    let _ = child.wait();
    latencies.sort_unstable();
    (cycles, latencies, busy, (idle.0, idle.2))
}

/// The same writes as one add + verify + remove cycle (three transactions,
/// each locking a stream row, writing the factor and an event), straight to
/// PostgreSQL.
async fn baseline_run(seconds: u64, concurrency: u64) -> u64 {
    let db = TestDatabase::create_empty()
        .await
        .expect("PostgreSQL is needed");
    let setup = connect(&db).await;
    setup
        .batch_execute(
            "CREATE TABLE s (u TEXT PRIMARY KEY, n BIGINT NOT NULL);
             CREATE TABLE f (u TEXT PRIMARY KEY, secret BYTEA NOT NULL, state TEXT NOT NULL);
             CREATE TABLE e (u TEXT NOT NULL, n BIGINT NOT NULL, kind TEXT NOT NULL, at TIMESTAMPTZ NOT NULL, PRIMARY KEY (u, n));",
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let tasks = (0..concurrency).map(|task| {
        let db_url = db.url.clone();
        tokio::spawn(async move {
            let (mut client, connection) = tokio_postgres::connect(db_url.expose_secret(), tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            let user = format!("bench-{task}");
            let mut cycles = 0_u64;
            while Instant::now() < deadline {
                for (kind, write) in [("added", "INSERT INTO f VALUES ($1, '\\x00', 'not_ready') ON CONFLICT (u) DO UPDATE SET secret = excluded.secret, state = excluded.state"),
                                      ("verified", "UPDATE f SET state = 'ready' WHERE u = $1"),
                                      ("removed", "DELETE FROM f WHERE u = $1")] {
                    let tx = client.transaction().await.unwrap();
                    let row = tx.query_one("INSERT INTO s VALUES ($1, 0) ON CONFLICT (u) DO UPDATE SET u = excluded.u RETURNING n", &[&user]).await.unwrap();
                    let n: i64 = row.get(0);
                    tx.query_one("SELECT state FROM f WHERE u = $1 UNION ALL SELECT 'none' LIMIT 1", &[&user]).await.unwrap();
                    tx.execute(write, &[&user]).await.unwrap();
                    tx.execute("INSERT INTO e VALUES ($1, $2, $3, now())", &[&user, &(n + 1), &kind]).await.unwrap();
                    tx.execute("UPDATE s SET n = $2 WHERE u = $1", &[&user, &(n + 1)]).await.unwrap();
                    tx.commit().await.unwrap();
                }
                cycles += 1;
            }
            cycles
        })
    });
    futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .sum()
}

async fn connect(db: &TestDatabase) -> tokio_postgres::Client {
    let (client, connection) =
        tokio_postgres::connect(db.url.expose_secret(), tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(connection);
    client
}

fn main() {
    let seconds = env_number("BENCH_SECONDS", 10);
    let concurrency = env_number("BENCH_CONCURRENCY", 16);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!("otp-service load benchmark: {concurrency} concurrent clients, {seconds} s per run");
        let baseline = baseline_run(seconds, concurrency).await;
        let (cycles, latencies, (rss, peak, cpu), (idle_rss, idle_cpu)) = service_run(seconds, concurrency).await;
        let per_second = |n: u64| n as f64 / seconds as f64;
        println!("baseline (tokio-postgres, same 3 transactions per cycle): {:.0} cycles/s = {:.0} tx/s", per_second(baseline), 3.0 * per_second(baseline));
        println!("service (REST add + verify + list + remove per cycle):    {:.0} cycles/s = {:.0} requests/s", per_second(cycles), 4.0 * per_second(cycles));
        println!("ratio service/baseline (cycles): {:.2}", cycles as f64 / baseline.max(1) as f64);
        println!(
            "latency per request: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} requests)",
            percentile(&latencies, 0.50), percentile(&latencies, 0.90), percentile(&latencies, 0.99), percentile(&latencies, 1.0), latencies.len()
        );
        let busy_cpu = cpu - idle_cpu;
        println!(
            "server memory: idle RSS {} MiB, after load RSS {} MiB, peak RSS {} MiB; CPU {:.2} s for {} requests = {:.0} µs/request",
            idle_rss / 1024, rss / 1024, peak / 1024, busy_cpu, latencies.len(), busy_cpu * 1e6 / latencies.len().max(1) as f64
        );
    });
}
