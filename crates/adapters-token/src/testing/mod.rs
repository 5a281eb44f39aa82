//! Test support (feature `testing`): a tiny HTTP server standing in for the
//! issuer (discovery, JWKS, and through [`idp::Idp`] token introspection),
//! plus fixture keys and token helpers. The one fake identity provider of the
//! workspace: this crate's tests and the service's API tests both run on it.
//!
//! A failure here is a broken fixture, and panicking is how a test says so.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test support: a broken fixture fails the test"
)]

pub mod idp;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::{ClaimNames, JwtSettings};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

pub const AUDIENCE: &str = "otp-service";
pub const ORG_CLAIM: &str = "urn:zitadel:iam:user:resourceowner:id";

pub const RSA1_KEY: &[u8] = include_bytes!("../../tests/fixtures/rsa1.key.pem");
pub const RSA1_PUB: &[u8] = include_bytes!("../../tests/fixtures/rsa1.pub.pem");
pub const RSA1_JWK: &str = include_str!("../../tests/fixtures/rsa1.jwk.json");
pub const RSA2_KEY: &[u8] = include_bytes!("../../tests/fixtures/rsa2.key.pem");
pub const RSA2_JWK: &str = include_str!("../../tests/fixtures/rsa2.jwk.json");

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body's `application/x-www-form-urlencoded` pairs.
    pub fn form(&self) -> HashMap<String, String> {
        form_urlencoded::parse(self.body.as_bytes())
            .into_owned()
            .collect()
    }
}

/// Answers a request: status and body.
pub type Handler = Arc<dyn Fn(&Request) -> (u16, String) + Send + Sync>;

#[derive(Default)]
struct State {
    routes: HashMap<String, (u16, String)>,
    handlers: HashMap<String, Handler>,
    /// `302 Found` to the location, by path.
    redirects: HashMap<String, String>,
    hits: HashMap<String, usize>,
}

/// An HTTP/1.1 server on 127.0.0.1 answering from a route table (any
/// method, fixed answers) or from handlers (computed answers). Each
/// connection gets a thread, so a handler may block (sleep) without holding
/// up the others.
#[derive(Clone)]
pub struct Server {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("addr", &self.addr).finish()
    }
}

impl Server {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let state = Arc::clone(&shared);
                thread::spawn(move || handle(stream, &state));
            }
        });
        Self { addr, state }
    }

    /// A server serving discovery (pointing at `/jwks`) and `jwks` at `/jwks`.
    pub fn issuer_with(jwks: &Value) -> Self {
        let server = Self::start();
        server.serve_discovery();
        server.set("/jwks", 200, &jwks.to_string());
        server
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The issuer URL: the server's base URL.
    pub fn issuer(&self) -> String {
        self.url()
    }

    pub fn serve_discovery(&self) {
        let doc = json!({
            "issuer": self.issuer(),
            "jwks_uri": format!("{}/jwks", self.url()),
        });
        self.set("/.well-known/openid-configuration", 200, &doc.to_string());
    }

    pub fn set(&self, path: &str, status: u16, body: &str) {
        self.state
            .lock()
            .unwrap()
            .routes
            .insert(path.to_owned(), (status, body.to_owned()));
    }

    /// Answers requests to `path` with `handler` (over any fixed route).
    pub fn handle(
        &self,
        path: &str,
        handler: impl Fn(&Request) -> (u16, String) + Send + Sync + 'static,
    ) {
        self.state
            .lock()
            .unwrap()
            .handlers
            .insert(path.to_owned(), Arc::new(handler));
    }

    /// Answers `path` with `302 Found` and `Location: location`.
    pub fn redirect(&self, path: &str, location: &str) {
        self.state
            .lock()
            .unwrap()
            .redirects
            .insert(path.to_owned(), location.to_owned());
    }

    pub fn set_jwks(&self, jwks: &Value) {
        self.set("/jwks", 200, &jwks.to_string());
    }

    pub fn hits(&self, path: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .hits
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    pub fn settings(&self) -> JwtSettings {
        JwtSettings {
            issuer: self.issuer(),
            audience: AUDIENCE.to_owned(),
            jwks_url: None,
            claims: ClaimNames::default(),
            leeway: Duration::from_secs(30),
            http_timeout: Duration::from_secs(5),
            min_refresh_interval: Duration::from_secs(30),
            allowed_clients: Vec::new(),
            allow_http: false,
        }
    }
}

fn handle(mut stream: TcpStream, state: &Mutex<State>) {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut raw = Vec::new();
    let mut buf = [0_u8; 4096];
    let head_end = loop {
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let mut lines = head.lines();
    let mut request_line = lines.next().unwrap_or("").split(' ');
    let method = request_line.next().unwrap_or("").to_owned();
    let path = request_line.next().unwrap_or("/").to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let length = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = raw[head_end..].to_vec();
    while body.len() < length {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&buf[..n]),
        }
    }
    let request = Request {
        method,
        path: path.clone(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let (route, handler, redirect) = {
        let mut state = state.lock().unwrap();
        *state.hits.entry(path.clone()).or_default() += 1;
        (
            state
                .routes
                .get(&path)
                .cloned()
                .unwrap_or((404, String::new())),
            state.handlers.get(&path).cloned(),
            state.redirects.get(&path).cloned(),
        )
    };
    let (status, body) = match (&redirect, handler) {
        (Some(_), _) => (302, String::new()),
        (None, Some(handler)) => handler(&request),
        (None, None) => route,
    };
    let location = redirect
        .map(|to| format!("Location: {to}\r\n"))
        .unwrap_or_default();
    let response = format!(
        "HTTP/1.1 {status} X\r\n{location}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
    let _ = stream.flush();
}

/// An address nobody listens on.
pub fn dead_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// A JWK of a fixture key with `kid` and, if given, `alg`.
pub fn jwk(fixture: &str, kid: &str, alg: Option<&str>) -> Value {
    let mut jwk: Value = serde_json::from_str(fixture).unwrap();
    jwk["kid"] = kid.into();
    jwk["use"] = "sig".into();
    if let Some(alg) = alg {
        jwk["alg"] = alg.into();
    }
    jwk
}

pub fn jwks(keys: &[Value]) -> Value {
    json!({ "keys": keys })
}

pub fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// Claims of a good token from `issuer`.
pub fn claims(issuer: &str) -> Value {
    let now = now();
    json!({
        "iss": issuer,
        "aud": AUDIENCE,
        "sub": "69629023906488334",
        "iat": now,
        "exp": now + 300,
        ORG_CLAIM: "69629026806489455",
        "preferred_username": "gigi@acme.zitadel.cloud",
    })
}

pub fn sign_with(key_pem: &[u8], alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_rsa_pem(key_pem).unwrap(),
    )
    .unwrap()
}

/// RS256 with fixture key 1.
pub fn sign(kid: Option<&str>, claims: &Value) -> String {
    sign_with(RSA1_KEY, Algorithm::RS256, kid, claims)
}

pub fn b64(bytes: &[u8]) -> String {
    data_encoding::BASE64URL_NOPAD.encode(bytes)
}
