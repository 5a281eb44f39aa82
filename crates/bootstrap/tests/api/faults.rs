//! Faults (issue 16): the database away at start, restarted under load,
//! exhausted and slow; `kill -9` under write load; the issuer's JWKS down;
//! slowloris clients. The database goes away through a TCP [`Proxy`] the
//! test stops, cuts and restarts, so the shared PostgreSQL is never
//! disturbed. Each test prints its figures (docs/reliability.md quotes a
//! run).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use adapters_grpc::proto::zitadel::auth::v1::ListMyAuthFactorsRequest;
use adapters_grpc::proto::zitadel::auth::v1::auth_service_client::AuthServiceClient;
use adapters_postgres::testing::TestDatabase;
use adapters_token::testing::{Server, jwks};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tonic::Code;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use crate::helpers::{
    KID, OTP, PRIVATE_PEM, SEARCH, VERIFY, claims, code_at, fixture_jwk, settings_with, sign,
    spawn_issuer, start, user,
};
use crate::processes::{Process, await_ready, free_port, serve, spawn_url};

/// A TCP proxy on 127.0.0.1 to `target` that the test can stop (the port
/// refuses connections), cut (every open connection dropped) and start
/// again on the same port.
pub struct Proxy {
    pub port: u16,
    target: SocketAddr,
    accepting: Mutex<Option<tokio::task::JoinHandle<()>>>,
    links: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    /// A proxy to `target` whose port is chosen but not listening yet.
    pub fn stopped(target: SocketAddr) -> Self {
        Self {
            port: free_port(),
            target,
            accepting: Mutex::new(None),
            links: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// A proxy to `target`, listening.
    pub async fn started(target: SocketAddr) -> Self {
        let proxy = Self::stopped(target);
        proxy.start().await;
        proxy
    }

    /// Listens (again) on the proxy's port.
    pub async fn start(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(listener) => break listener,
                Err(error) => {
                    assert!(Instant::now() < deadline, "cannot listen again: {error}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        let (links, target) = (self.links.clone(), self.target);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                let link = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                links.lock().unwrap().push(link.abort_handle());
            }
        });
        *self.accepting.lock().unwrap() = Some(task);
    }

    /// Drops every open connection (both sides see it closed).
    pub fn cut(&self) {
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    /// Stops listening and cuts every connection.
    pub fn stop(&self) {
        if let Some(task) = self.accepting.lock().unwrap().take() {
            task.abort();
        }
        self.cut();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

fn postgres() -> SocketAddr {
    "127.0.0.1:5432".parse().unwrap()
}

/// The test database's URL through `proxy`.
fn through(proxy: &Proxy, db: &TestDatabase) -> SecretString {
    SecretString::from(format!(
        "postgres://postgres@127.0.0.1:{}/{}",
        proxy.port, db.name
    ))
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

async fn status_of(request: reqwest::RequestBuilder) -> (u16, Value) {
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.json().await.unwrap_or(Value::Null);
            (status, body)
        }
        // A request that got no answer at all (the client timed out).
        Err(error) => panic!("no answer: {error}"),
    }
}

async fn grpc_channel(address: &str) -> Channel {
    tonic::transport::Endpoint::from_shared(address.to_owned())
        .unwrap()
        .timeout(Duration::from_secs(20))
        .connect()
        .await
        .unwrap()
}

async fn grpc_list(channel: &Channel, token: &str) -> Code {
    let mut request = tonic::Request::new(ListMyAuthFactorsRequest {});
    request.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {token}")).unwrap(),
    );
    match AuthServiceClient::new(channel.clone())
        .list_my_auth_factors(request)
        .await
    {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

/// One answer under a fault: when it was sent (from the test's start), how
/// long it took, the HTTP status (or 200 + gRPC code for gRPC).
#[derive(Debug, Clone, Copy)]
struct Outcome {
    sent: Duration,
    took: Duration,
    status: u16,
    grpc: Option<Code>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_down_at_start_the_process_serves_not_ready_then_becomes_ready() {
    let Some(db) = TestDatabase::create_empty().await else {
        return;
    };
    let proxy = Proxy::stopped(postgres());
    let issuer = spawn_issuer().await;
    let url = through(&proxy, &db);
    let mut process = spawn_url(
        url.expose_secret(),
        &issuer,
        &[
            ("OTP__DATABASE__CONNECT_TIMEOUT", "1s"),
            ("OTP__HTTP__READINESS_CACHE", "0s"),
        ],
    );
    let client = client();

    // The listeners come up although the database cannot be reached.
    let deadline = Instant::now() + Duration::from_secs(20);
    while client
        .get(format!("{}/healthz", process.address))
        .send()
        .await
        .is_err()
    {
        assert!(process.child.try_wait().unwrap().is_none(), "it exited");
        assert!(Instant::now() < deadline, "no /healthz");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let token = sign(&claims(&issuer.url, &user("down-at-start")));
    for _ in 0..3 {
        let (ready, _) = status_of(client.get(format!("{}/readyz", process.address))).await;
        assert_eq!(ready, 503);
        let started = Instant::now();
        let (add, body) = status_of(
            client
                .post(format!("{}{OTP}", process.address))
                .bearer_auth(&token),
        )
        .await;
        assert_eq!((add, &body["code"]), (503, &json!(14)), "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(process.child.try_wait().unwrap().is_none(), "it exited");

    // The database appears: migrations, then ready, with no restart.
    proxy.start().await;
    let appeared = Instant::now();
    await_ready(&process, Duration::from_secs(20)).await;
    let recovered = appeared.elapsed();
    let (add, body) = status_of(
        client
            .post(format!("{}{OTP}", process.address))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(add, 200, "{body}");
    assert_eq!(
        db.query("SELECT count(*)::text FROM otp_factors").await,
        ["1"]
    );
    println!("database down at start: ready {recovered:?} after the database appeared");
    let status = process.stop().await;
    assert!(status.success(), "{status:?}");
}

/// Adds (a fresh user each, so every one is a write that can only succeed)
/// and Lists over REST, and gRPC Lists, from `tasks` loops until `until`.
async fn load(
    address: String,
    grpc_address: String,
    issuer: String,
    started: Instant,
    until: Duration,
) -> Vec<Outcome> {
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for task in 0..6 {
        let (address, issuer, outcomes) = (address.clone(), issuer.clone(), outcomes.clone());
        tasks.push(tokio::spawn(async move {
            let client = client();
            let mut round = 0;
            while started.elapsed() < until {
                round += 1;
                let token = sign(&claims(&issuer, &user(&format!("load{task}-{round}"))));
                let sent = started.elapsed();
                let request = if round % 2 == 0 {
                    client.post(format!("{address}{OTP}"))
                } else {
                    client.post(format!("{address}{SEARCH}")).body("{}")
                };
                let (status, body) = status_of(request.bearer_auth(&token)).await;
                if status != 200 {
                    assert_eq!(body["code"], 14, "{status} {body}");
                }
                let took = started.elapsed() - sent;
                outcomes.lock().unwrap().push(Outcome {
                    sent,
                    took,
                    status,
                    grpc: None,
                });
            }
        }));
    }
    for task in 0..2 {
        let (grpc_address, issuer, outcomes) =
            (grpc_address.clone(), issuer.clone(), outcomes.clone());
        tasks.push(tokio::spawn(async move {
            let channel = grpc_channel(&grpc_address).await;
            let token = sign(&claims(&issuer, &user(&format!("grpc{task}"))));
            while started.elapsed() < until {
                let sent = started.elapsed();
                let code = grpc_list(&channel, &token).await;
                let took = started.elapsed() - sent;
                outcomes.lock().unwrap().push(Outcome {
                    sent,
                    took,
                    status: 200,
                    grpc: Some(code),
                });
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    outcomes.lock().unwrap().clone()
}

fn failed(outcome: &Outcome) -> bool {
    outcome.status != 200 || outcome.grpc.is_some_and(|code| code != Code::Ok)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_restarted_under_load_fails_fast_and_recovers() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let proxy = Proxy::started(postgres()).await;
    let issuer = spawn_issuer().await;
    let settings = settings_with(
        &through(&proxy, &db),
        &issuer.url,
        &[
            ("OTP__DATABASE__CONNECT_TIMEOUT", "1s"),
            ("OTP__DATABASE__STATEMENT_TIMEOUT", "2s"),
            ("OTP__TOTP__MAX_CHANGES_PER_HOUR", "0"),
        ],
    );
    let app = start(&settings);
    let address = format!("http://127.0.0.1:{}", app.port());
    let grpc_address = format!("http://127.0.0.1:{}", app.grpc_port());
    tokio::spawn(app.run_until_stopped());

    let started = Instant::now();
    let (down_at, up_at) = (Duration::from_millis(1500), Duration::from_millis(3500));
    let load = tokio::spawn(load(
        address,
        grpc_address,
        issuer.url.clone(),
        started,
        Duration::from_millis(6500),
    ));
    tokio::time::sleep(down_at).await;
    // PostgreSQL "restarts": every connection dropped, none accepted.
    proxy.stop();
    tokio::time::sleep(up_at - down_at).await;
    proxy.start().await;
    let outcomes = load.await.unwrap();

    let slowest = outcomes.iter().map(|o| o.took).max().unwrap();
    let failures: Vec<&Outcome> = outcomes.iter().filter(|o| failed(o)).collect();
    let grpc_failures = failures.iter().filter(|o| o.grpc.is_some()).count();
    for outcome in &outcomes {
        // REST: 200 or 503 (code 14, checked in `load`); gRPC: OK or UNAVAILABLE.
        assert!(matches!(outcome.status, 200 | 503), "{outcome:?}");
        assert!(
            matches!(outcome.grpc, None | Some(Code::Ok | Code::Unavailable)),
            "{outcome:?}"
        );
        // Fail fast: within connect_timeout + statement_timeout + slack.
        assert!(outcome.took < Duration::from_secs(4), "{outcome:?}");
    }
    assert!(!failures.is_empty(), "the outage was not seen");
    let last_failure = failures.iter().map(|o| o.sent + o.took).max().unwrap();
    let recovered = last_failure.saturating_sub(up_at);
    // Everything sent a second after the last failure succeeded, and there was such traffic.
    let after: Vec<&Outcome> = outcomes.iter().filter(|o| o.sent > last_failure).collect();
    assert!(after.len() > 10, "no traffic after recovery");
    assert!(
        recovered < Duration::from_secs(2),
        "recovered after {recovered:?}"
    );
    println!(
        "database restart under load: {} requests, {} answered 503/UNAVAILABLE ({} gRPC) during the outage, \
         0 other failures, slowest {slowest:?}, recovered {recovered:?} after the database returned, \
         {} succeeded after",
        outcomes.len(),
        failures.len(),
        grpc_failures,
        after.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_and_slow_statements_answer_503_in_bounded_time() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let issuer = spawn_issuer().await;
    let settings = settings_with(
        &db.url,
        &issuer.url,
        &[
            ("OTP__DATABASE__MAX_CONNECTIONS", "2"),
            ("OTP__DATABASE__CONNECT_TIMEOUT", "1s"),
            ("OTP__DATABASE__STATEMENT_TIMEOUT", "1s"),
            ("OTP__HTTP__READINESS_CACHE", "0s"),
            ("OTP__TOTP__MAX_CHANGES_PER_HOUR", "0"),
        ],
    );
    let app = start(&settings);
    let address = format!("http://127.0.0.1:{}", app.port());
    let grpc_address = format!("http://127.0.0.1:{}", app.grpc_port());
    tokio::spawn(app.run_until_stopped());
    let client = client();
    let token = sign(&claims(&issuer.url, &user("pool")));
    assert_eq!(
        status_of(
            client
                .post(format!("{address}{SEARCH}"))
                .bearer_auth(&token)
        )
        .await
        .0,
        200
    );

    // Another session holds every table of the service for 4 s.
    let (locker, connection) =
        tokio_postgres::connect(db.url.expose_secret(), tokio_postgres::NoTls)
            .await
            .unwrap();
    tokio::spawn(connection);
    let held = tokio::spawn(async move {
        locker
            .batch_execute(
                "BEGIN; LOCK TABLE otp_user_streams, otp_factors, otp_events IN ACCESS EXCLUSIVE MODE; \
                 SELECT pg_sleep(4); COMMIT;",
            )
            .await
            .unwrap();
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let mut calls = Vec::new();
    for n in 0..12 {
        let (client, address, issuer) = (client.clone(), address.clone(), issuer.url.clone());
        calls.push(tokio::spawn(async move {
            let token = sign(&claims(&issuer, &user(&format!("pool{n}"))));
            let request = if n % 2 == 0 {
                client.post(format!("{address}{OTP}"))
            } else {
                client.post(format!("{address}{SEARCH}")).body("{}")
            };
            let sent = Instant::now();
            let (status, body) = status_of(request.bearer_auth(&token)).await;
            (status, body, sent.elapsed())
        }));
    }
    let channel = grpc_channel(&grpc_address).await;
    let grpc_sent = Instant::now();
    let grpc = grpc_list(&channel, &token).await;
    let grpc_took = grpc_sent.elapsed();
    // The probes answer meanwhile (readiness honestly: no connection to be had).
    let probe = Instant::now();
    let (health, _) = status_of(client.get(format!("{address}/healthz"))).await;
    let health_took = probe.elapsed();
    let probe = Instant::now();
    let (ready, _) = status_of(client.get(format!("{address}/readyz"))).await;
    let ready_took = probe.elapsed();

    let mut slowest = Duration::ZERO;
    for call in calls {
        let (status, body, took) = call.await.unwrap();
        assert_eq!((status, &body["code"]), (503, &json!(14)), "{body}");
        assert_eq!(body["details"][0]["id"], "OTP-UNAVAILABLE", "{body}");
        slowest = slowest.max(took);
    }
    assert_eq!(grpc, Code::Unavailable);
    assert_eq!(health, 200);
    assert!(matches!(ready, 200 | 503), "{ready}");
    assert!(slowest < Duration::from_millis(3500), "{slowest:?}");
    assert!(grpc_took < Duration::from_millis(3500), "{grpc_took:?}");
    assert!(health_took < Duration::from_millis(500), "{health_took:?}");
    assert!(ready_took < Duration::from_millis(2500), "{ready_took:?}");
    let all_answered = started.elapsed();

    held.await.unwrap();
    let (status, body) =
        status_of(client.post(format!("{address}{OTP}")).bearer_auth(&token)).await;
    assert_eq!(status, 200, "{body}");
    println!(
        "pool of 2, statements held 4 s: 12 REST calls 503 in at most {slowest:?} (all within {all_answered:?}), \
         gRPC UNAVAILABLE in {grpc_took:?}, /healthz {health_took:?}, /readyz {ready} in {ready_took:?}; served again after the lock"
    );
}

/// What a writer had acknowledged: user, sequence, event kind.
type Acks = Arc<Mutex<Vec<(String, u64, &'static str)>>>;

/// Add, Verify, Remove for `sub` in a loop, recording what was acknowledged.
async fn write_cycle(
    address: String,
    token: String,
    sub: String,
    acks: Acks,
    stop: Arc<AtomicBool>,
) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let sequence = |body: &Value| {
        body["details"]["sequence"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    while !stop.load(Ordering::SeqCst) {
        let Ok(response) = client
            .post(format!("{address}{OTP}"))
            .bearer_auth(&token)
            .send()
            .await
        else {
            continue;
        };
        let Ok(body) = response.json::<Value>().await else {
            continue;
        };
        let Some(secret) = body["secret"].as_str() else {
            // Not added (the factor is there from an earlier round): remove it below.
            let _ = client
                .delete(format!("{address}{OTP}"))
                .bearer_auth(&token)
                .send()
                .await;
            continue;
        };
        acks.lock()
            .unwrap()
            .push((sub.clone(), sequence(&body), "otp.added"));
        let code = code_at(secret, chrono::Utc::now().timestamp());
        if let Ok(response) = client
            .post(format!("{address}{VERIFY}"))
            .bearer_auth(&token)
            .json(&json!({ "code": code }))
            .send()
            .await
            && response.status() == 200
            && let Ok(body) = response.json::<Value>().await
        {
            acks.lock()
                .unwrap()
                .push((sub.clone(), sequence(&body), "otp.verified"));
        }
        if let Ok(response) = client
            .delete(format!("{address}{OTP}"))
            .bearer_auth(&token)
            .send()
            .await
            && response.status() == 200
            && let Ok(body) = response.json::<Value>().await
        {
            acks.lock()
                .unwrap()
                .push((sub.clone(), sequence(&body), "otp.removed"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_write_load_loses_no_acknowledged_change() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let issuer = spawn_issuer().await;
    let mut process: Process = serve(&db, &issuer, &[]).await;
    let acks: Acks = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let subs: Vec<String> = (0..6).map(|n| user(&format!("kill{n}"))).collect();
    let writers: Vec<_> = subs
        .iter()
        .map(|sub| {
            tokio::spawn(write_cycle(
                process.address.clone(),
                sign(&claims(&issuer.url, sub)),
                sub.clone(),
                acks.clone(),
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    // SIGKILL with writes in flight.
    process.child.kill().unwrap();
    let killed = Instant::now();
    process.child.wait().unwrap();
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.await.unwrap();
    }
    let acks = acks.lock().unwrap().clone();
    assert!(acks.len() > 20, "too little write load: {}", acks.len());

    let process = serve(&db, &issuer, &[]).await;
    let back = killed.elapsed();
    // Every acknowledged change is there, as acknowledged.
    for (sub, sequence, kind) in &acks {
        let stored = db
            .query(&format!(
                "SELECT kind FROM otp_events WHERE user_id = '{sub}' AND sequence = {sequence}"
            ))
            .await;
        assert_eq!(stored, [*kind], "{sub} #{sequence}");
    }
    let client = client();
    let mut events = 0;
    for sub in &subs {
        // Every user's events number 1..=n without a gap, and the stream head agrees.
        let sequences = db
            .query(&format!(
                "SELECT e.sequence::text AS s FROM otp_events e WHERE e.user_id = '{sub}' ORDER BY e.sequence"
            ))
            .await;
        let expected: Vec<String> = (1..=sequences.len()).map(|n| n.to_string()).collect();
        assert_eq!(sequences, expected, "{sub}");
        events += sequences.len();
        let head = db
            .query(&format!(
                "SELECT last_sequence::text FROM otp_user_streams WHERE user_id = '{sub}'"
            ))
            .await;
        assert_eq!(head, [sequences.len().to_string()], "{sub}");
        // The factor is in the state its last lifecycle event says.
        let last = db
            .query(&format!(
                "SELECT kind FROM otp_events WHERE user_id = '{sub}' \
                 AND kind IN ('otp.added', 'otp.verified', 'otp.removed') ORDER BY sequence DESC LIMIT 1"
            ))
            .await;
        let state = db
            .query(&format!(
                "SELECT state::text FROM otp_factors WHERE user_id = '{sub}'"
            ))
            .await;
        let want: &[&str] = match last.first().map(String::as_str) {
            Some("otp.added") => &["not_ready"],
            Some("otp.verified") => &["ready"],
            _ => &[],
        };
        assert_eq!(state, want, "{sub}: last event {last:?}");
        // And the restarted service serves the user.
        let token = sign(&claims(&issuer.url, sub));
        let (status, body) = status_of(
            client
                .post(format!("{}{SEARCH}", process.address))
                .bearer_auth(&token)
                .body("{}"),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body.get("result").is_some(),
            want == ["ready"],
            "{sub}: {body}"
        );
    }
    println!(
        "kill -9 under write load: {} acknowledged changes of {} users all present, {events} events without gaps, \
         restarted and ready {back:?} after the kill",
        acks.len(),
        subs.len()
    );
}

/// An OIDC issuer naming itself `issuer` (the proxy in front of it) whose
/// JWKS publishes the fixture key as `KID`; the test adds `KID2` to it.
fn spawn_issuer_behind(issuer: &str) -> Server {
    let server = Server::start();
    let discovery = json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks")});
    server.set(
        "/.well-known/openid-configuration",
        200,
        &discovery.to_string(),
    );
    server.set_jwks(&jwks(&[fixture_jwk(KID)]));
    server
}

const KID2: &str = "api-test-key-2";

fn sign_kid(claims: &Value, kid: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_rsa_pem(PRIVATE_PEM.as_bytes()).unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_down_cached_keys_work_new_kids_are_401_and_recover() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    // The issuer behind a proxy, so it can go away entirely.
    let mut proxy = Proxy::stopped(postgres());
    let issuer_url = format!("http://127.0.0.1:{}", proxy.port);
    let idp = spawn_issuer_behind(&issuer_url);
    proxy.target = idp.addr();
    proxy.start().await;
    let settings = settings_with(
        &db.url,
        &issuer_url,
        &[("OTP__AUTH__JWKS_REFRESH_INTERVAL", "200ms")],
    );
    let app = start(&settings);
    let address = format!("http://127.0.0.1:{}", app.port());
    let grpc_address = format!("http://127.0.0.1:{}", app.grpc_port());
    tokio::spawn(app.run_until_stopped());
    let client = client();
    let claims = claims(&issuer_url, &user("jwks"));
    let (known, new) = (sign_kid(&claims, KID), sign_kid(&claims, KID2));
    let list = |token: &str| {
        client
            .post(format!("{address}{SEARCH}"))
            .bearer_auth(token)
            .body("{}")
    };

    assert_eq!(status_of(list(&known)).await.0, 200);
    // The issuer goes down, and rotates meanwhile.
    proxy.stop();
    idp.set_jwks(&jwks(&[fixture_jwk(KID), fixture_jwk(KID2)]));
    let channel = grpc_channel(&grpc_address).await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(status_of(list(&known)).await.0, 200, "cached key");
        let (status, body) = status_of(list(&new)).await;
        assert_eq!((status, &body["code"]), (401, &json!(16)), "{body}");
        assert_eq!(grpc_list(&channel, &new).await, Code::Unauthenticated);
        assert_eq!(grpc_list(&channel, &known).await, Code::Ok);
    }
    // It returns: the new kid is fetched and accepted, no restart.
    proxy.start().await;
    let back = Instant::now();
    loop {
        if status_of(list(&new)).await.0 == 200 {
            break;
        }
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "the new kid was never fetched"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovered = back.elapsed();
    assert_eq!(grpc_list(&channel, &new).await, Code::Ok);
    println!(
        "JWKS down: cached kid 200, new kid 401 (gRPC 16) throughout; new kid accepted {recovered:?} after the issuer returned"
    );
}

/// Sends `bytes` one a time, `every` apart, until `stop`; then reports
/// whether the server had closed the connection (a write or read failed).
async fn trickle(
    addr: String,
    head: Vec<u8>,
    bytes: Vec<u8>,
    every: Duration,
    stop: Instant,
) -> bool {
    let Ok(mut stream) = TcpStream::connect(&addr).await else {
        return true;
    };
    if stream.write_all(&head).await.is_err() {
        return true;
    }
    for byte in bytes.iter().cycle() {
        if Instant::now() > stop {
            return false;
        }
        tokio::time::sleep(every).await;
        if stream.write_all(&[*byte]).await.is_err() {
            return true;
        }
        let mut buffer = [0_u8; 512];
        // A closed connection reads 0 bytes (or fails); an open one would block.
        match tokio::time::timeout(
            Duration::from_millis(1),
            tokio::io::AsyncReadExt::read(&mut stream, &mut buffer),
        )
        .await
        {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => return true,
            Err(_) => {}
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_clients_do_not_starve_others() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let issuer = spawn_issuer().await;
    let settings = settings_with(
        &db.url,
        &issuer.url,
        &[
            ("OTP__HTTP__BODY_TIMEOUT", "2s"),
            ("OTP__GRPC__REQUEST_TIMEOUT", "2s"),
        ],
    );
    let app = start(&settings);
    let rest = format!("127.0.0.1:{}", app.port());
    let grpc = format!("127.0.0.1:{}", app.grpc_port());
    tokio::spawn(app.run_until_stopped());
    let token = sign(&claims(&issuer.url, &user("slowloris")));

    let stop = Instant::now() + Duration::from_secs(7);
    let every = Duration::from_millis(200);
    let mut slow = Vec::new();
    // REST: 150 clients trickling headers, 150 trickling a declared body.
    for _ in 0..150 {
        let head = format!("POST {SEARCH} HTTP/1.1\r\nHost: x\r\n").into_bytes();
        slow.push((
            "rest-headers",
            tokio::spawn(trickle(
                rest.clone(),
                head,
                b"X-Slow: 1\r\n".to_vec(),
                every,
                stop,
            )),
        ));
        let head = format!(
            "POST {SEARCH} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{"
        )
        .into_bytes();
        slow.push((
            "rest-body",
            tokio::spawn(trickle(rest.clone(), head, b" ".to_vec(), every, stop)),
        ));
    }
    // gRPC: 50 clients trickling the HTTP/2 preface, 50 gRPC-web calls trickling their body.
    for _ in 0..50 {
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        slow.push((
            "grpc-preface",
            tokio::spawn(trickle(grpc.clone(), Vec::new(), preface, every, stop)),
        ));
        let head = format!(
            "POST /zitadel.auth.v1.AuthService/ListMyAuthFactors HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/grpc-web+proto\r\nContent-Length: 100000\r\n\r\n\0"
        )
        .into_bytes();
        slow.push((
            "grpc-web-body",
            tokio::spawn(trickle(grpc.clone(), head, b"\0".to_vec(), every, stop)),
        ));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Meanwhile everybody else is served at once, over REST and gRPC.
    let client = client();
    let channel = grpc_channel(&format!("http://{grpc}")).await;
    let mut slowest_rest = Duration::ZERO;
    let mut slowest_grpc = Duration::ZERO;
    for _ in 0..20 {
        let sent = Instant::now();
        let (status, body) = status_of(
            client
                .post(format!("http://{rest}{SEARCH}"))
                .bearer_auth(&token)
                .body("{}"),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        slowest_rest = slowest_rest.max(sent.elapsed());
        let sent = Instant::now();
        assert_eq!(grpc_list(&channel, &token).await, Code::Ok);
        slowest_grpc = slowest_grpc.max(sent.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(slowest_rest < Duration::from_secs(2), "{slowest_rest:?}");
    assert!(slowest_grpc < Duration::from_secs(2), "{slowest_grpc:?}");

    // And the slow bodies were cut off by the body/request timeouts (2 s),
    // the slow headers by actix's request-head timeout (5 s).
    let mut closed = std::collections::BTreeMap::<&str, (usize, usize)>::new();
    for (kind, task) in slow {
        let entry = closed.entry(kind).or_default();
        entry.1 += 1;
        if task.await.unwrap() {
            entry.0 += 1;
        }
    }
    for kind in ["rest-headers", "rest-body", "grpc-web-body"] {
        let (cut, all) = closed[kind];
        assert_eq!(cut, all, "{kind}: only {cut} of {all} cut off");
    }
    println!(
        "slowloris: 300 REST and 100 gRPC trickling clients; others served in at most {slowest_rest:?} (REST), \
         {slowest_grpc:?} (gRPC); cut off within 7 s: {closed:?} (cut, of)"
    );
}
