//! `spawn_app()` and a client with one helper per endpoint.

use std::time::Duration;

use adapters_postgres::testing::TestDatabase;
use adapters_token::testing::{
    self,
    idp::{self, Expect, Idp},
};
use bootstrap::{Application, Ports, Settings};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

pub const AUDIENCE: &str = "otp-api-tests";
pub const ORG_CLAIM: &str = "urn:zitadel:iam:user:resourceowner:id";
pub const PRIVATE_PEM: &str = include_str!("fixtures/rs256-private.pem");
pub const PUBLIC_PEM: &str = include_str!("fixtures/rs256-public.pem");
pub const MODULUS: &str = include_str!("fixtures/rs256-jwk-n.txt");
pub const KID: &str = "api-test-key";
pub const TEST_KEYS: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

pub const OTP: &str = "/auth/v1/users/me/auth_factors/otp";
pub const VERIFY: &str = "/auth/v1/users/me/auth_factors/otp/_verify";
pub const SEARCH: &str = "/auth/v1/users/me/auth_factors/_search";

/// An OIDC issuer on 127.0.0.1 (the workspace's one fake identity provider,
/// `adapters_token::testing`): discovery, a JWKS with the fixture key, and
/// the introspection endpoint (see [`opaque_answer`]).
#[derive(Debug)]
pub struct Issuer {
    pub url: String,
    pub idp: Idp,
}

impl Issuer {
    /// Requests for the key set so far.
    pub fn jwks_hits(&self) -> usize {
        self.idp.server.hits(JWKS_PATH)
    }
}

/// Where [`Idp`]'s discovery document puts the key set.
const JWKS_PATH: &str = "/jwks";

/// The trusted callers of the login check the tests' apps list
/// (`auth.check_clients`): the subjects of [`TestApp::service_token`] and of
/// the opaque service token.
pub const TRUSTED_CALLERS: &str = "login-service,svc-login";

/// Client credentials the stand-in introspection endpoint accepts (Basic).
pub const INTROSPECTION_CLIENT: (&str, &str) = (idp::CLIENT_ID, idp::CLIENT_SECRET);

/// The JWK of the fixture key as `kid`.
pub fn fixture_jwk(kid: &str) -> Value {
    json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": MODULUS.trim(), "e": "AQAB"})
}

/// The introspection rule of the tests' issuer (RFC 7662):
/// `opaque-active-<sub>` is active for `sub` (scope `openid otp.check` when
/// `<sub>` starts with `svc`), `opaque-expired-*` is active but past its
/// `exp`, `opaque-slow-<sub>` is active after 1.5 s, anything else inactive.
/// The endpoint itself refuses wrong client credentials with 401.
fn opaque_answer(issuer: &str, token: &str) -> Option<(u16, String)> {
    let now = i64::try_from(testing::now()).ok()?;
    let answer = |sub: &str, exp: i64| {
        let scope = if sub.starts_with("svc") {
            "openid otp.check"
        } else {
            "openid"
        };
        let body = json!({"active": true, "sub": sub, "aud": [AUDIENCE], "iss": issuer, "exp": exp,
                          "scope": scope, "token_type": "Bearer"});
        Some((200, body.to_string()))
    };
    if let Some(sub) = token.strip_prefix("opaque-slow-") {
        std::thread::sleep(Duration::from_millis(1500));
        answer(sub, now + 600)
    } else if let Some(sub) = token.strip_prefix("opaque-active-") {
        answer(sub, now + 600)
    } else if let Some(sub) = token.strip_prefix("opaque-expired-") {
        answer(sub, now - 600)
    } else {
        None
    }
}

pub async fn spawn_issuer() -> Issuer {
    let idp = Idp::start(Expect::Basic);
    idp.server.set_jwks(&testing::jwks(&[fixture_jwk(KID)]));
    let url = idp.issuer();
    let issuer = url.clone();
    idp.answer_by(move |token| opaque_answer(&issuer, token));
    Issuer { url, idp }
}

pub struct TestApp {
    pub address: String,
    pub grpc_address: String,
    /// The internal REST listener (the trusted check), when configured.
    pub internal_address: String,
    /// The internal gRPC listener (the trusted check), when configured.
    pub internal_grpc_address: String,
    pub issuer: Issuer,
    pub db: TestDatabase,
    pub client: reqwest::Client,
}

/// Settings of an app on port 0 over `db`, trusting `issuer`.
pub fn settings(db_url: &SecretString, issuer: &str) -> Settings {
    settings_with(db_url, issuer, &[])
}

/// [`settings`] plus (or overriding with) `extra` `OTP__*` variables.
pub fn settings_with(db_url: &SecretString, issuer: &str, extra: &[(&str, &str)]) -> Settings {
    let env = [
        ("OTP__HTTP__ADDR", "127.0.0.1:0"),
        ("OTP__HTTP__WORKERS", "2"),
        ("OTP__GRPC__ADDR", "127.0.0.1:0"),
        ("OTP__HTTP__INTERNAL_ADDR", "127.0.0.1:0"),
        ("OTP__GRPC__INTERNAL_ADDR", "127.0.0.1:0"),
        ("OTP__DATABASE__URL", db_url.expose_secret()),
        ("OTP__DATABASE__MAX_CONNECTIONS", "20"),
        ("OTP__AUTH__ISSUER", issuer),
        ("OTP__AUTH__AUDIENCE", AUDIENCE),
        ("OTP__TOTP__ISSUER", "ZITADEL"),
        ("OTP__CRYPTO__KEYS", TEST_KEYS),
        ("OTP__AUTH__CHECK_CLIENTS", TRUSTED_CALLERS),
    ];
    Settings::load(
        None,
        env.iter()
            .chain(extra)
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    )
    .unwrap()
}

/// Starts the service on a fresh database, or `None` (after one printed
/// line) when PostgreSQL is not reachable outside CI.
pub async fn spawn_app() -> Option<TestApp> {
    spawn_app_with(&[]).await
}

/// [`spawn_app`] with extra `OTP__*` settings.
pub async fn spawn_app_with(extra: &[(&str, &str)]) -> Option<TestApp> {
    let db = TestDatabase::create().await?;
    let issuer = spawn_issuer().await;
    let app = start(&settings_with(&db.url, &issuer.url, extra));
    let address = format!("http://127.0.0.1:{}", app.port());
    let grpc_address = format!("http://127.0.0.1:{}", app.grpc_port());
    // Without internal listeners the check is on the public ones.
    let internal_address = app.internal_port().map_or_else(
        || address.clone(),
        |port| format!("http://127.0.0.1:{port}"),
    );
    let internal_grpc_address = app.internal_grpc_port().map_or_else(
        || grpc_address.clone(),
        |port| format!("http://127.0.0.1:{port}"),
    );
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    Some(TestApp {
        address,
        grpc_address,
        internal_address,
        internal_grpc_address,
        issuer,
        db,
        client,
    })
}

pub fn start(settings: &Settings) -> Application {
    Application::start(settings, Ports::production(settings).unwrap()).unwrap()
}

/// Claims of a valid token for `sub`.
pub fn claims(app_issuer: &str, sub: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        "iss": app_issuer, "aud": [AUDIENCE, "another-audience"], "sub": sub,
        "iat": now, "exp": now + 600,
        ORG_CLAIM: "69629023906488334", "preferred_username": format!("{sub}@acme.zitadel.cloud"),
    })
}

pub fn sign(claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(KID.into());
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_rsa_pem(PRIVATE_PEM.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// A fresh user name for one test.
pub fn user(prefix: &str) -> String {
    application::testing::unique_user(prefix)
        .as_str()
        .to_owned()
}

pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub www_authenticate: Option<String>,
}

impl TestApp {
    /// The test database as `pg_dump --data-only --inserts` writes it: what
    /// an operator's backup holds.
    pub fn dump(&self) -> String {
        let output = std::process::Command::new("pg_dump")
            .args([
                "--data-only",
                "--inserts",
                "--dbname",
                self.db.url.expose_secret(),
            ])
            .output()
            .expect("pg_dump is installed with PostgreSQL");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).to_string()
    }

    pub fn token(&self, sub: &str) -> String {
        sign(&claims(&self.issuer.url, sub))
    }

    /// A trusted caller's token: a service account granted `otp.check`.
    pub fn service_token(&self, sub: &str) -> String {
        let mut claims = claims(&self.issuer.url, sub);
        claims["scope"] = json!("openid otp.check");
        sign(&claims)
    }

    /// `POST /v1/users/{user}/otp/_check` with `code`, on the internal listener.
    pub async fn check(&self, token: &str, user: &str, code: &str) -> Answer {
        self.check_at(&self.internal_address, token, user, code)
            .await
    }

    /// [`TestApp::check`] against another replica at `address`.
    pub async fn check_at(&self, address: &str, token: &str, user: &str, code: &str) -> Answer {
        let body = json!({ "code": code }).to_string();
        self.call_at(
            address,
            reqwest::Method::POST,
            &format!("/v1/users/{user}/otp/_check"),
            Some(&format!("Bearer {token}")),
            Some(body),
        )
        .await
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        auth: Option<&str>,
        body: Option<String>,
    ) -> Answer {
        self.call_at(&self.address, method, path, auth, body).await
    }

    /// [`TestApp::call`] against another replica at `address`.
    pub async fn call_at(
        &self,
        address: &str,
        method: reqwest::Method,
        path: &str,
        auth: Option<&str>,
        body: Option<String>,
    ) -> Answer {
        let mut request = self.client.request(method, format!("{address}{path}"));
        if let Some(auth) = auth {
            request = request.header("Authorization", auth);
        }
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let www_authenticate = response
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer {
            status,
            body,
            www_authenticate,
        }
    }

    pub async fn add(&self, token: &str) -> Answer {
        self.call(
            reqwest::Method::POST,
            OTP,
            Some(&format!("Bearer {token}")),
            Some("{}".into()),
        )
        .await
    }

    pub async fn verify(&self, token: &str, code: &str) -> Answer {
        let body = json!({ "code": code }).to_string();
        self.call(
            reqwest::Method::POST,
            VERIFY,
            Some(&format!("Bearer {token}")),
            Some(body),
        )
        .await
    }

    pub async fn remove(&self, token: &str) -> Answer {
        self.call(
            reqwest::Method::DELETE,
            OTP,
            Some(&format!("Bearer {token}")),
            None,
        )
        .await
    }

    pub async fn list(&self, token: &str) -> Answer {
        self.call(
            reqwest::Method::POST,
            SEARCH,
            Some(&format!("Bearer {token}")),
            Some("{}".into()),
        )
        .await
    }
}

/// The code an authenticator shows for `secret` at `unix` seconds (SHA1, 6, 30 s).
pub fn code_at(secret: &str, unix: i64) -> String {
    use domain::{TotpKey, TotpParams, TotpSecret};
    let key = TotpKey::new(
        TotpSecret::from_base32(secret).unwrap(),
        TotpParams::default(),
    );
    key.code_at(unix as u64).expose_secret().to_owned()
}

/// Now in Unix seconds, after waiting out the last two seconds of a 30 s
/// step so a code computed here is still in the same step when checked.
pub async fn settled_now() -> i64 {
    loop {
        let now = chrono::Utc::now().timestamp();
        if now % 30 < 28 {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Asserts a contract error: HTTP status, gRPC code and error id.
pub fn assert_error(answer: &Answer, status: u16, code: i64, id: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(answer.body["code"], code, "{}", answer.body);
    assert_eq!(answer.body["details"][0]["id"], id, "{}", answer.body);
    assert_eq!(
        answer.body["details"][0]["@type"],
        "type.googleapis.com/zitadel.v1.ErrorDetail"
    );
    let text = answer.body["details"][0]["message"].as_str().unwrap();
    assert_eq!(answer.body["message"], format!("{text} ({id})"));
}

/// Asserts that of the error answers `bodies`, `checked` were wrong codes
/// (`EVENT-8isk2`) and `locked` found the user locked (`COMMAND-SF3fg`).
pub fn assert_checked_then_locked<'a>(
    bodies: impl IntoIterator<Item = &'a Value>,
    checked: usize,
    locked: usize,
) {
    let ids: Vec<&str> = bodies
        .into_iter()
        .map(|body| body["details"][0]["id"].as_str().unwrap_or("?"))
        .collect();
    let count = |id: &str| ids.iter().filter(|seen| **seen == id).count();
    assert_eq!(
        (count("EVENT-8isk2"), count("COMMAND-SF3fg")),
        (checked, locked),
        "{ids:?}"
    );
}
