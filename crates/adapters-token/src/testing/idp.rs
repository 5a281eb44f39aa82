//! A stand-in for the issuer's token introspection endpoint (RFC 7662) that
//! authenticates its client the way ZITADEL does (Basic or
//! `private_key_jwt`), plus a clock tests can move.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{ClientAuth, IntrospectionSettings};
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::SecretString;
use serde_json::{Value, json};

use super::{AUDIENCE, ORG_CLAIM, RSA1_KEY, RSA1_PUB, Request, Server, now};

pub const INTROSPECT_PATH: &str = "/oauth/v2/introspect";
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
pub const CLIENT_ID: &str = "otp-service-api";
/// A secret with characters that form-url-encoding changes.
pub const CLIENT_SECRET: &str = "s3cr3t:with+odd/chars";
pub const KEY_ID: &str = "key-1";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How the endpoint expects the client to authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// `Authorization: Basic` of [`CLIENT_ID`] and [`CLIENT_SECRET`].
    Basic,
    /// A client assertion signed with fixture key 1, `kid` [`KEY_ID`].
    PrivateKeyJwt,
}

/// Computes the answer (status and body) about a token, or `None` for the
/// default (inactive).
pub type Rule = Arc<dyn Fn(&str) -> Option<(u16, String)> + Send + Sync>;

#[derive(Default)]
struct Book {
    /// Answers by token: status and body. Unknown tokens go to `rule`.
    answers: HashMap<String, (u16, String)>,
    /// Answers tokens `answers` does not hold; without one they are inactive.
    rule: Option<Rule>,
    /// Why client authentication or the request's form was refused.
    refusals: Vec<String>,
    /// Client assertion ids seen so far.
    jtis: HashSet<String>,
    /// Tokens asked about, in order.
    asked: Vec<String>,
}

/// The issuer: discovery (with `jwks_uri` and `introspection_endpoint`) and
/// the introspection endpoint.
#[derive(Clone)]
pub struct Idp {
    pub server: Server,
    book: Arc<Mutex<Book>>,
}

impl std::fmt::Debug for Idp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idp").field("server", &self.server).finish()
    }
}

impl Idp {
    pub fn start(expect: Expect) -> Self {
        let server = Server::start();
        let doc = json!({
            "issuer": server.issuer(),
            "jwks_uri": format!("{}/jwks", server.url()),
            "introspection_endpoint": format!("{}{INTROSPECT_PATH}", server.url()),
        });
        server.set(DISCOVERY_PATH, 200, &doc.to_string());
        let book = Arc::new(Mutex::new(Book::default()));
        let issuer = server.issuer();
        let shared = Arc::clone(&book);
        server.handle(INTROSPECT_PATH, move |request| {
            introspect(request, expect, &issuer, &shared)
        });
        Self { server, book }
    }

    pub fn issuer(&self) -> String {
        self.server.issuer()
    }

    pub fn endpoint(&self) -> String {
        format!("{}{INTROSPECT_PATH}", self.server.url())
    }

    /// Answer 200 with `answer` for `token`.
    pub fn answer(&self, token: &str, answer: &Value) {
        self.respond(token, 200, &answer.to_string());
    }

    /// Answers every token without an [`Idp::answer`] of its own with `rule`
    /// (called without any lock held, so it may sleep to play a slow issuer).
    pub fn answer_by(&self, rule: impl Fn(&str) -> Option<(u16, String)> + Send + Sync + 'static) {
        self.book.lock().unwrap().rule = Some(Arc::new(rule));
    }

    pub fn respond(&self, token: &str, status: u16, body: &str) {
        self.book
            .lock()
            .unwrap()
            .answers
            .insert(token.to_owned(), (status, body.to_owned()));
    }

    /// Requests to the introspection endpoint so far.
    pub fn introspections(&self) -> usize {
        self.server.hits(INTROSPECT_PATH)
    }

    pub fn refusals(&self) -> Vec<String> {
        self.book.lock().unwrap().refusals.clone()
    }

    pub fn asked(&self) -> Vec<String> {
        self.book.lock().unwrap().asked.clone()
    }

    /// Settings with the endpoint configured (no discovery), 30 s leeway and
    /// cache TTL, 5 s HTTP timeout.
    pub fn settings(&self, client_auth: ClientAuth) -> IntrospectionSettings {
        let mut settings = IntrospectionSettings::new(self.issuer(), AUDIENCE, client_auth);
        settings.url = Some(self.endpoint());
        settings.http_timeout = Duration::from_secs(5);
        settings
    }
}

/// The Basic credentials the endpoint expects.
pub fn basic() -> ClientAuth {
    ClientAuth::Basic {
        client_id: CLIENT_ID.to_owned(),
        client_secret: SecretString::from(CLIENT_SECRET),
    }
}

/// The `private_key_jwt` credentials the endpoint expects.
pub fn key_jwt() -> ClientAuth {
    ClientAuth::PrivateKeyJwt {
        client_id: CLIENT_ID.to_owned(),
        key_id: KEY_ID.to_owned(),
        private_key_pem: SecretString::from(String::from_utf8(RSA1_KEY.to_vec()).unwrap()),
    }
}

/// An active answer about a good token from `issuer`, valid for 300 s from `at`.
pub fn active_at(issuer: &str, at: u64) -> Value {
    json!({
        "active": true,
        "iss": issuer,
        "aud": ["someone-else", AUDIENCE],
        "sub": "69629023906488334",
        "client_id": "some-app",
        "token_type": "Bearer",
        "iat": at,
        "exp": at + 300,
        "scope": "openid profile otp:login",
        ORG_CLAIM: "69629026806489455",
        "preferred_username": "gigi@acme.zitadel.cloud",
    })
}

pub fn active(issuer: &str) -> Value {
    active_at(issuer, now())
}

fn refuse(book: &Mutex<Book>, why: String) -> (u16, String) {
    book.lock().unwrap().refusals.push(why);
    (401, json!({"error": "invalid_client"}).to_string())
}

fn introspect(
    request: &Request,
    expect: Expect,
    issuer: &str,
    book: &Mutex<Book>,
) -> (u16, String) {
    if request.method != "POST" {
        return refuse(book, format!("method {}", request.method));
    }
    if request.header("content-type") != Some("application/x-www-form-urlencoded") {
        return refuse(book, "content type".to_owned());
    }
    if request.header("accept") != Some("application/json") {
        return refuse(book, "accept".to_owned());
    }
    let form = request.form();
    if form.get("token_type_hint").map(String::as_str) != Some("access_token") {
        return refuse(book, "token_type_hint".to_owned());
    }
    let checked = match expect {
        Expect::Basic => check_basic(request),
        Expect::PrivateKeyJwt => check_assertion(request, &form, issuer, book),
    };
    if let Err(why) = checked {
        return refuse(book, why);
    }
    let Some(token) = form.get("token") else {
        return (400, json!({"error": "invalid_request"}).to_string());
    };
    let (answer, rule) = {
        let mut book = book.lock().unwrap();
        book.asked.push(token.clone());
        (book.answers.get(token).cloned(), book.rule.clone())
    };
    answer
        .or_else(|| rule.and_then(|rule| rule(token)))
        .unwrap_or_else(|| (200, json!({"active": false}).to_string()))
}

fn check_basic(request: &Request) -> Result<(), String> {
    // RFC 6749 §2.3.1: each part form-url-encoded, then `id:secret` in base64.
    let expected = format!(
        "Basic {}",
        data_encoding::BASE64.encode(b"otp-service-api:s3cr3t%3Awith%2Bodd%2Fchars")
    );
    match request.header("authorization") {
        Some(value) if value == expected => Ok(()),
        Some(_) => Err("wrong Basic credentials".to_owned()),
        None => Err("no Authorization header".to_owned()),
    }
}

fn check_assertion(
    request: &Request,
    form: &HashMap<String, String>,
    issuer: &str,
    book: &Mutex<Book>,
) -> Result<(), String> {
    if request.header("authorization").is_some() {
        return Err("an Authorization header beside the assertion".to_owned());
    }
    if form.get("client_assertion_type").map(String::as_str) != Some(JWT_BEARER) {
        return Err("client_assertion_type".to_owned());
    }
    let assertion = form.get("client_assertion").ok_or("no client_assertion")?;
    let header = jsonwebtoken::decode_header(assertion).map_err(|e| format!("header: {e}"))?;
    if header.alg != Algorithm::RS256 || header.kid.as_deref() != Some(KEY_ID) {
        return Err(format!("header alg/kid: {:?} {:?}", header.alg, header.kid));
    }
    let mut validation = Validation::new(Algorithm::RS256);
    validation.leeway = 5;
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    validation.set_issuer(&[CLIENT_ID]);
    validation.set_audience(&[issuer]);
    let key = DecodingKey::from_rsa_pem(RSA1_PUB).unwrap();
    let claims = jsonwebtoken::decode::<Value>(assertion, &key, &validation)
        .map_err(|e| format!("assertion: {e}"))?
        .claims;
    if claims["sub"] != CLIENT_ID {
        return Err("sub is not the client id".to_owned());
    }
    let (iat, exp) = (claims["iat"].as_u64(), claims["exp"].as_u64());
    if iat.zip(exp).is_none_or(|(iat, exp)| exp != iat + 60) {
        return Err("exp is not iat + 60".to_owned());
    }
    let jti = claims["jti"].as_str().filter(|jti| jti.len() >= 16);
    let jti = jti.ok_or("no jti")?;
    if !book.lock().unwrap().jtis.insert(jti.to_owned()) {
        return Err("jti reused".to_owned());
    }
    Ok(())
}

/// A clock tests move by hand, starting at the real time (so that client
/// assertions it dates still pass the endpoint's checks).
#[derive(Debug)]
pub struct TestClock(Mutex<DateTime<Utc>>);

impl TestClock {
    pub fn starting_now() -> Arc<Self> {
        let secs = i64::try_from(now()).unwrap();
        Arc::new(Self(Mutex::new(DateTime::from_timestamp(secs, 0).unwrap())))
    }

    pub fn advance(&self, secs: i64) {
        *self.0.lock().unwrap() += chrono::TimeDelta::seconds(secs);
    }

    /// Now, in seconds since the epoch.
    pub fn secs(&self) -> u64 {
        u64::try_from(self.0.lock().unwrap().timestamp()).unwrap()
    }
}

impl application::Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}
