//! The real binary, as Kubernetes runs it: two `otp-service serve` processes
//! over one database, and SIGTERM under load; [`spawn_url`] and
//! [`await_ready`] for the fault tests that start it without a database.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::join_all;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::helpers::{
    AUDIENCE, Issuer, TEST_KEYS, assert_checked_then_locked, claims, code_at, settled_now, sign,
    spawn_issuer, user,
};
use adapters_postgres::testing::TestDatabase;

/// A running `otp-service serve`; killed when dropped.
pub struct Process {
    pub child: Child,
    /// `http://127.0.0.1:<http port>`.
    pub address: String,
    /// `http://127.0.0.1:<grpc port>`.
    pub grpc_address: String,
    /// `http://127.0.0.1:<internal http port>`: the trusted check.
    pub internal_address: String,
    /// Where its stdout (the log lines) goes.
    log: std::path::PathBuf,
}

impl Process {
    /// Its stdout so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then waits (up to 30 s) for the exit status.
    pub async fn stop(&mut self) -> std::process::ExitStatus {
        signal(self, "TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "otp-service did not stop");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A port free now that no earlier call in this test binary handed out:
/// the OS may give a just-released port to the next `bind(0)`, and the
/// tests run in parallel, so two processes (or a process and another
/// test's listener) could otherwise be told the same port.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}

/// `otp-service serve` on `db`, trusting `issuer`, with `extra` variables;
/// returns once `/readyz` answers 200.
pub async fn serve(db: &TestDatabase, issuer: &Issuer, extra: &[(&str, &str)]) -> Process {
    serve_url(db.url.expose_secret(), issuer, extra).await
}

/// [`serve`] on the database at `url`.
pub async fn serve_url(url: &str, issuer: &Issuer, extra: &[(&str, &str)]) -> Process {
    let process = spawn_url(url, issuer, extra);
    await_ready(&process, Duration::from_secs(30)).await;
    process
}

/// Starts `otp-service serve` on the database at `url` and returns at once.
pub fn spawn_url(url: &str, issuer: &Issuer, extra: &[(&str, &str)]) -> Process {
    let (http, grpc) = (free_port(), free_port());
    let (internal, internal_grpc) = (free_port(), free_port());
    let log = std::env::temp_dir().join(format!("otp-service-{http}.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_otp-service"))
        .arg("serve")
        .env("OTP__HTTP__ADDR", format!("127.0.0.1:{http}"))
        .env("OTP__HTTP__WORKERS", "2")
        // 32 adds by one user: the per-user change limit is not tested here.
        .env("OTP__TOTP__MAX_CHANGES_PER_HOUR", "0")
        .env("OTP__GRPC__ADDR", format!("127.0.0.1:{grpc}"))
        .env("OTP__HTTP__INTERNAL_ADDR", format!("127.0.0.1:{internal}"))
        .env(
            "OTP__GRPC__INTERNAL_ADDR",
            format!("127.0.0.1:{internal_grpc}"),
        )
        .env("OTP__DATABASE__URL", url)
        .env("OTP__AUTH__ISSUER", &issuer.url)
        .env("OTP__AUTH__AUDIENCE", AUDIENCE)
        .env("OTP__CRYPTO__KEYS", TEST_KEYS)
        .env("OTP__AUTH__CHECK_CLIENTS", crate::helpers::TRUSTED_CALLERS)
        .env("OTP__LOG__FILTER", "warn")
        .env("OTEL_SDK_DISABLED", "true")
        .envs(extra.iter().copied())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Process {
        child,
        address: format!("http://127.0.0.1:{http}"),
        grpc_address: format!("http://127.0.0.1:{grpc}"),
        internal_address: format!("http://127.0.0.1:{internal}"),
        log,
    }
}

/// Waits (up to `limit`) until `/readyz` of `process` answers 200.
pub async fn await_ready(process: &Process, limit: Duration) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + limit;
    loop {
        let ready = client
            .get(format!("{}/readyz", process.address))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ready {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "otp-service did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn post(client: &reqwest::Client, url: String, token: &str, body: Value) -> (u16, Value) {
    let response = client
        .post(url)
        .header("Authorization", format!("Bearer {token}"))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

pub fn signal(process: &Process, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), process.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_on_one_database_keep_every_rule() {
    let Some(db) = TestDatabase::create_empty().await else {
        return;
    };
    let issuer = spawn_issuer().await;
    // Both migrate at start, concurrently: the advisory lock makes it safe.
    let limit = [("OTP__TOTP__MAX_ATTEMPTS", "4")];
    let (a, b) = tokio::join!(serve(&db, &issuer, &limit), serve(&db, &issuer, &limit));
    let both = [a.address.clone(), b.address.clone()];
    let client = reqwest::Client::new();
    let sub = user("two-processes");
    let token = sign(&claims(&issuer.url, &sub));
    let otp = "/auth/v1/users/me/auth_factors/otp";

    // 32 concurrent Adds over both: sequences 1..=32, one factor, the last wins.
    let adds = (0..32).map(|i| post(&client, format!("{}{otp}", both[i % 2]), &token, json!({})));
    let mut answers = join_all(adds).await;
    answers.sort_by_key(|(_, body)| {
        body["details"]["sequence"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    });
    let sequences: Vec<u64> = answers
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 200, "{body}");
            body["details"]["sequence"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(sequences, (1..=32).collect::<Vec<_>>());
    let latest = answers[31].1["secret"].as_str().unwrap().to_owned();

    // Verify on one process; the same code replayed at the check on the other.
    let now = settled_now().await;
    let (status, body) = post(
        &client,
        format!("{}{otp}/_verify", both[0]),
        &token,
        json!({ "code": code_at(&latest, now) }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let mut service_claims = claims(&issuer.url, "svc-login");
    service_claims["scope"] = json!("otp.check");
    let service = sign(&service_claims);
    let internal = [a.internal_address.clone(), b.internal_address.clone()];
    let check = |address: &str| format!("{address}/v1/users/{sub}/otp/_check");
    let (status, body) = post(
        &client,
        check(&internal[1]),
        &service,
        json!({ "code": code_at(&latest, now) }),
    )
    .await;
    assert_eq!(
        (status, body["details"][0]["id"].as_str()),
        (400, Some("TOTP-Auw0a")),
        "{body}"
    );

    // Concurrent wrong codes over both: exactly the limit is checked (the
    // replay above was the first wrong code), the rest find the user locked.
    let window: Vec<String> = [-30, 0, 30]
        .iter()
        .map(|o| code_at(&latest, now + o))
        .collect();
    let bad = (0..10)
        .map(|d| format!("{d}").repeat(6))
        .find(|c| !window.contains(c))
        .unwrap();
    let wrongs = (0..16).map(|i| {
        post(
            &client,
            check(&internal[i % 2]),
            &service,
            json!({ "code": bad }),
        )
    });
    let answers = join_all(wrongs).await;
    assert_checked_then_locked(answers.iter().map(|(_, body)| body), 3, 13);

    let stored = db
        .query(&format!(
            "SELECT count(*)::text FROM otp_factors WHERE user_id = '{sub}' \
             UNION ALL SELECT (max(sequence) - count(*))::text FROM otp_events WHERE user_id = '{sub}' \
             UNION ALL SELECT count(*)::text FROM otp_events WHERE user_id = '{sub}' \
               AND kind <> 'otp.check.refused_locked'"
        ))
        .await;
    // 32 adds, 1 verify, 1 replay, 3 wrong codes, 1 lock: 38 events, no gaps
    // (besides one `otp.check.refused_locked` per check that found the lock).
    assert_eq!(stored, ["1", "0", "38"]);
}

/// `otp-service migrate` on the database at `url`, to completion.
fn migrate(url: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_otp-service"))
        .arg("migrate")
        .env("OTP__DATABASE__URL", url)
        .env("OTP__CRYPTO__KEYS", TEST_KEYS)
        .env("OTP__LOG__FILTER", "info")
        .env("OTEL_SDK_DISABLED", "true")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_migrate_runs_wait_on_a_transaction_lock_and_both_succeed() {
    let Some(db) = TestDatabase::create_empty().await else {
        return;
    };
    let (mut holder, connection) =
        tokio_postgres::connect(db.url.expose_secret(), tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(connection);
    // Another migrator holds the lock (the same key, transaction-scoped):
    // both runs must queue behind it, inside their own transaction.
    let transaction = holder.transaction().await.unwrap();
    transaction
        .execute(
            "SELECT pg_advisory_xact_lock(x'6f74702d6d696772'::bigint)",
            &[],
        )
        .await
        .unwrap();
    let url = db.url.expose_secret().to_owned();
    let runs: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            tokio::task::spawn_blocking(move || migrate(&url))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // Waiting on the advisory lock, in a transaction, by the xact form
        // (seen from a fresh session: within a transaction the activity
        // view is a snapshot).
        let waiting = db
            .query(
                "SELECT query FROM pg_stat_activity WHERE datname = current_database() \
                 AND wait_event_type = 'Lock' AND wait_event = 'advisory' \
                 AND xact_start IS NOT NULL",
            )
            .await;
        if waiting.len() == 2 {
            for query in &waiting {
                assert!(query.contains("pg_advisory_xact_lock"), "{query}");
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the migrate runs never queued on the lock"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    transaction.commit().await.unwrap();
    for run in join_all(runs).await {
        let output = run.unwrap();
        assert!(
            output.status.success(),
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let applied = db
        .query("SELECT count(*)::text FROM __diesel_schema_migrations")
        .await;
    assert_eq!(applied, ["4"]);
    // Nothing stays locked once both are done.
    let locks = db
        .query("SELECT count(*)::text FROM pg_locks WHERE locktype = 'advisory'")
        .await;
    assert_eq!(locks, ["0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_drains_without_losing_accepted_requests() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let issuer = spawn_issuer().await;
    let mut process = serve(
        &db,
        &issuer,
        &[
            ("OTP__SHUTDOWN__DRAIN_DELAY", "1500ms"),
            ("OTP__SHUTDOWN__TIMEOUT", "10s"),
        ],
    )
    .await;
    let address = process.address.clone();
    // A new connection per request: no request can be lost to a keep-alive
    // connection the server closes while idle.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let token = sign(&claims(&issuer.url, &user("drain")));
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, lost) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(Mutex::new(Vec::new())),
    );
    let drain_delay = Duration::from_millis(1500);
    let signalled_at: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (client, address, token) = (client.clone(), address.clone(), token.clone());
            let (stop, ok, lost) = (stop.clone(), ok.clone(), lost.clone());
            let signalled_at = signalled_at.clone();
            tokio::spawn(async move {
                // Like a load balancer: new requests stop a little before the
                // listeners close (readiness failed long before).
                loop {
                    let stop_sending = stop.load(Ordering::SeqCst)
                        || signalled_at.lock().unwrap().is_some_and(|at| {
                            at.elapsed() + Duration::from_millis(300) >= drain_delay
                        });
                    if stop_sending {
                        break;
                    }
                    let answer = client
                        .post(format!("{address}/auth/v1/users/me/auth_factors/_search"))
                        .header("Authorization", format!("Bearer {token}"))
                        .body("{}")
                        .send()
                        .await;
                    match answer {
                        Ok(response) if response.status().is_success() => {
                            ok.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(response) => lost
                            .lock()
                            .unwrap()
                            .push(format!("status {}", response.status())),
                        Err(error) => lost.lock().unwrap().push(format!("{error:?}")),
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = ok.load(Ordering::SeqCst);
    assert!(before > 0, "the load runs");

    signal(&process, "TERM");
    let signalled = Instant::now();
    *signalled_at.lock().unwrap() = Some(signalled);
    // A request in flight across the moment the listeners close: its body
    // arrives slowly, finishing after the drain delay. It must be answered.
    let slow = tokio::spawn(slow_request(
        address.clone(),
        token.clone(),
        signalled + Duration::from_millis(1000),
    ));
    // Readiness fails at once, while requests are still served.
    let probe = reqwest::Client::new();
    let mut saw_503 = false;
    while signalled.elapsed() < Duration::from_millis(1000) {
        let answer = probe.get(format!("{address}/readyz")).send().await;
        if answer.is_ok_and(|r| r.status().as_u16() == 503) {
            saw_503 = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(saw_503, "/readyz turns 503 during the drain delay");
    let at_503 = ok.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        ok.load(Ordering::SeqCst) > at_503,
        "still serving during the drain delay"
    );

    let status = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = process.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap();
    stop.store(true, Ordering::SeqCst);
    join_all(workers).await;
    let status = status.expect("exits within the drain delay + timeout");
    assert_eq!(status.code(), Some(0), "a drained shutdown exits 0");
    assert!(
        signalled.elapsed() >= Duration::from_millis(1500),
        "waited for the drain delay"
    );
    assert!(
        lost.lock().unwrap().is_empty(),
        "accepted requests lost: {:?}",
        lost.lock().unwrap()
    );
    let slow = slow.await.unwrap();
    assert!(
        slow.starts_with("HTTP/1.1 200"),
        "the slow in-flight request: {slow}"
    );
    let after = reqwest::Client::new()
        .get(format!("{address}/healthz"))
        .send()
        .await;
    assert!(
        after.is_err_and(|e| e.is_connect()),
        "new connections are refused after the drain"
    );
    assert!(ok.load(Ordering::SeqCst) > before);
}

/// Starts a request at `start`, sends half its body, waits 1.5 s (past the
/// listeners' close) and sends the rest; answers the response's text.
async fn slow_request(address: String, token: String, start: Instant) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tokio::time::sleep_until(start.into()).await;
    let host = address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let head = format!(
        "POST /auth/v1/users/me/auth_factors/_search HTTP/1.1\r\nHost: {host}\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/json\r\n\
         Content-Length: 2\r\nConnection: close\r\n\r\n{{"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stream.write_all(b"}").await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let issuer = spawn_issuer().await;
    let mut process = serve(&db, &issuer, &[("OTP__SHUTDOWN__DRAIN_DELAY", "60s")]).await;
    signal(&process, "TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        process.child.try_wait().unwrap().is_none(),
        "draining for 60 s"
    );
    let second = Instant::now();
    signal(&process, "INT");
    let status = loop {
        if let Some(status) = process.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            second.elapsed() < Duration::from_secs(5),
            "the second signal ends it"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(130));
}
