//! Behind a real PgBouncer in transaction mode (`database.pooler =
//! transaction`): the test starts its own `pgbouncer` on a free port, in
//! front of the test server, with two server connections for every client,
//! and runs two `otp-service serve` processes through it (each migrating
//! at start, through it too). Skipped, with one line, when `pgbouncer` is
//! not installed; in CI (`CI` set) that is a failure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::future::join_all;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::helpers::{
    assert_checked_then_locked, claims, code_at, settled_now, sign, spawn_issuer, user,
};
use crate::processes::{Process, free_port, serve_url};
use adapters_postgres::testing::TestDatabase;

/// Server connections PgBouncer opens per database and user: far fewer than
/// the clients' (two processes of 2 × 4), so they really are shared.
const SERVER_CONNECTIONS: usize = 2;

/// A running `pgbouncer`, stopped (and its directory removed) when dropped.
struct PgBouncer {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl PgBouncer {
    /// The URL of `database` through this PgBouncer.
    fn url(&self, user: &str, database: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/{database}", self.port)
    }

    /// Its log so far (it logs to stderr, kept in a file).
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }
}

/// The `pgbouncer` binary, or `None` (one printed line) outside CI.
fn pgbouncer_binary() -> Option<PathBuf> {
    let found = ["pgbouncer", "/usr/sbin/pgbouncer"]
        .iter()
        .map(PathBuf::from)
        .find(|path| {
            Command::new(path)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success())
        });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "pgbouncer is required in CI (apt-get install pgbouncer)"
        );
        eprintln!("SKIPPED: pgbouncer not installed (apt-get install pgbouncer)");
    }
    found
}

/// Starts PgBouncer in transaction mode in front of the server `db` is on,
/// and waits until it accepts connections.
fn start_pgbouncer(binary: &Path, db: &TestDatabase) -> PgBouncer {
    let server: tokio_postgres::Config = db.url.expose_secret().parse().unwrap();
    let host = match server.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        other => panic!("the test server must be reached over TCP, not {other:?}"),
    };
    let server_port = server.get_ports().first().copied().unwrap_or(5432);
    let server_user = server.get_user().unwrap_or("postgres").to_owned();
    let password = server
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap_or_default();

    let port = free_port();
    let dir = std::env::temp_dir().join(format!("otp-pgbouncer-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    // Clients are trusted (the test is their only user); the file names the
    // user, and the password PgBouncer logs in to the server with.
    std::fs::write(
        dir.join("users.txt"),
        format!("\"{server_user}\" \"{password}\"\n"),
    )
    .unwrap();
    let ini = format!(
        "[databases]\n\
         * = host={host} port={server_port}\n\
         [pgbouncer]\n\
         listen_addr = 127.0.0.1\n\
         listen_port = {port}\n\
         unix_socket_dir =\n\
         auth_type = trust\n\
         auth_file = {users}\n\
         pool_mode = transaction\n\
         default_pool_size = {SERVER_CONNECTIONS}\n\
         max_db_connections = {SERVER_CONNECTIONS}\n\
         max_client_conn = 200\n\
         log_connections = 0\n\
         log_disconnections = 0\n",
        users = dir.join("users.txt").display(),
    );
    let ini_path = dir.join("pgbouncer.ini");
    std::fs::write(&ini_path, ini).unwrap();

    let mut command = Command::new(binary);
    // PgBouncer refuses to run as root: as root (CI), it switches to nobody.
    if is_root() {
        command.args(["-u", "nobody"]);
    }
    let child = command
        .arg(&ini_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("pgbouncer.log")).unwrap())
        .spawn()
        .unwrap();
    let mut bouncer = PgBouncer { child, port, dir };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = bouncer.child.try_wait().unwrap() {
            panic!("pgbouncer exited ({status}):\n{}", bouncer.log());
        }
        assert!(
            Instant::now() < deadline,
            "pgbouncer did not listen:\n{}",
            bouncer.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    bouncer
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
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

/// A client of PgBouncer that runs simple queries only (no named
/// statements of its own).
async fn simple_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// The first column of the first row `sql` (a simple query) answers.
async fn simple_value(client: &tokio_postgres::Client, sql: &str) -> String {
    client
        .simple_query(sql)
        .await
        .unwrap()
        .iter()
        .find_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_through_pgbouncer_in_transaction_mode_keep_every_rule() {
    let Some(binary) = pgbouncer_binary() else {
        return;
    };
    let Some(db) = TestDatabase::create_empty().await else {
        return;
    };
    let bouncer = start_pgbouncer(&binary, &db);
    let server_user = db
        .url
        .expose_secret()
        .parse::<tokio_postgres::Config>()
        .unwrap()
        .get_user()
        .unwrap_or("postgres")
        .to_owned();
    let url = bouncer.url(&server_user, &db.name);
    let issuer = spawn_issuer().await;
    let extra = [
        ("OTP__DATABASE__POOLER", "transaction"),
        ("OTP__DATABASE__MAX_CONNECTIONS", "4"),
        ("OTP__TOTP__MAX_ATTEMPTS", "4"),
    ];
    // Both migrate at start, concurrently, through PgBouncer.
    let (a, b): (Process, Process) = tokio::join!(
        serve_url(&url, &issuer, &extra),
        serve_url(&url, &issuer, &extra)
    );
    let both = [a.address.clone(), b.address.clone()];
    let client = reqwest::Client::new();
    let otp = "/auth/v1/users/me/auth_factors/otp";

    // 32 parallel Adds of one user over both: each succeeds, sequences
    // 1..=32 without gaps, the last one's secret is the factor's.
    let sub = user("pgbouncer-adds");
    let token = sign(&claims(&issuer.url, &sub));
    let adds = (0..32).map(|i| post(&client, format!("{}{otp}", both[i % 2]), &token, json!({})));
    let mut answers = join_all(adds).await;
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}\n{}", a.logs() + &b.logs());
    }
    let sequence = |body: &Value| -> u64 {
        body["details"]["sequence"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    answers.sort_by_key(|(_, body)| sequence(body));
    let sequences: Vec<u64> = answers.iter().map(|(_, body)| sequence(body)).collect();
    assert_eq!(sequences, (1..=32).collect::<Vec<_>>());
    let latest = answers[31].1["secret"].as_str().unwrap().to_owned();

    // 16 parallel Verifies of the one right code over both: exactly one wins.
    let now = settled_now().await;
    let code = code_at(&latest, now);
    let verifies = (0..16).map(|i| {
        post(
            &client,
            format!("{}{otp}/_verify", both[i % 2]),
            &token,
            json!({ "code": code }),
        )
    });
    let answers = join_all(verifies).await;
    let won: Vec<&Value> = answers
        .iter()
        .filter(|(status, _)| *status == 200)
        .map(|(_, body)| body)
        .collect();
    assert_eq!(won.len(), 1, "{answers:?}");
    for (status, body) in answers.iter().filter(|(status, _)| *status != 200) {
        assert_eq!(
            (*status, body["details"][0]["id"].as_str()),
            (400, Some("COMMAND-qx4ls")),
            "{body}"
        );
    }

    // The replay guard across processes: the code the Verify used (on
    // whichever process) is refused at the check on each of them.
    let mut service_claims = claims(&issuer.url, "svc-login");
    service_claims["scope"] = json!("otp.check");
    let service = sign(&service_claims);
    let internal = [a.internal_address.clone(), b.internal_address.clone()];
    let check = |address: &str| format!("{address}/v1/users/{sub}/otp/_check");
    let (status, body) = post(
        &client,
        check(&internal[1]),
        &service,
        json!({ "code": code }),
    )
    .await;
    assert_eq!(
        (status, body["details"][0]["id"].as_str()),
        (400, Some("TOTP-Auw0a")),
        "{body}"
    );

    // Parallel wrong codes over both: exactly the limit is checked (the
    // replay was the first wrong code), the rest find the user locked.
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

    // Parallel first Adds of different users (each a new stream): all succeed.
    let adds = (0..16).map(|i| {
        let token = sign(&claims(&issuer.url, &user(&format!("pgbouncer-new-{i}"))));
        let url = format!("{}{otp}", both[i % 2]);
        let client = client.clone();
        async move { post(&client, url, &token, json!({})).await }
    });
    for (status, body) in join_all(adds).await {
        assert_eq!(
            (status, body["details"]["sequence"].as_str()),
            (200, Some("1")),
            "{body}"
        );
    }

    let stored = db
        .query(&format!(
            "SELECT count(*)::text FROM otp_factors WHERE user_id = '{sub}' \
             UNION ALL SELECT (max(sequence) - count(*))::text FROM otp_events WHERE user_id = '{sub}' \
             UNION ALL SELECT count(*)::text FROM otp_events WHERE user_id = '{sub}' \
               AND kind <> 'otp.check.refused_locked'"
        ))
        .await;
    // 32 adds, 1 verify, 1 replay, 3 wrong codes, 1 lock: 38 events, no gaps.
    assert_eq!(stored, ["1", "0", "38"]);

    // No statement outlived its transaction on any server connection: two
    // clients each hold one of the two in a transaction and look.
    let first = simple_client(&url).await;
    let second = simple_client(&url).await;
    let mut seen = Vec::new();
    for client in [&first, &second] {
        client.simple_query("BEGIN").await.unwrap();
        let pid = simple_value(client, "SELECT pg_backend_pid()::text").await;
        let left = simple_value(client, "SELECT count(*)::text FROM pg_prepared_statements").await;
        seen.push((pid, left));
    }
    assert_ne!(seen[0].0, seen[1].0, "both server connections: {seen:?}");
    assert!(seen.iter().all(|(_, left)| left == "0"), "{seen:?}");
    for client in [&first, &second] {
        client.simple_query("COMMIT").await.unwrap();
    }
    for process in [&a, &b] {
        let logs = process.logs();
        assert!(!logs.contains("prepared statement"), "{logs}");
    }
    drop(bouncer);
}
