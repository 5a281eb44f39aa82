//! The JWT verifier: a bearer token in, the signed-in user out.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use data_encoding::BASE64URL_NOPAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use application::{Clock as _, Principal, TokenError, TokenVerifier};

use crate::claims::{check_authorized_party, invalid, principal};
use crate::fetch::{Discovery, discover, fetch_jwks};
use crate::introspection::CacheKey;
use crate::keys::{KeySet, Selection, VerifyKey, allowed_algorithm};
use crate::settings::{ClaimNames, JwtSettings, TokenConfigError, check_http_url};
use crate::verified::VerifiedTokens;

/// Tokens longer than this (in bytes) are refused before any parsing.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Validates bearer tokens (JWT, RFC 7519) signed by one OpenID Connect
/// issuer with an asymmetric key from its JWKS.
///
/// Beyond signature, issuer, audience and times, the header `typ` must be
/// absent, `at+jwt` or `JWT`, a token carrying an ID-token-only claim
/// (`nonce`, `at_hash`, `c_hash`, `s_hash`) is refused, and with
/// `allowed_clients` set, `azp` (else `client_id`) must name the audience or
/// a listed client.
///
/// The key set is fetched on first use and cached. A token whose `kid` is not
/// in the cache refetches it, at most once per `min_refresh_interval` and one
/// fetch at a time.
///
/// With [`JwtVerifier::with_verified_cache`], a token that passed is
/// remembered (by its SHA-256) until its `exp` or the cache's maximum age,
/// whichever comes first, and the same token again costs no signature check.
pub struct JwtVerifier {
    issuer: String,
    audience: String,
    claims: ClaimNames,
    leeway: u64,
    allowed_clients: Vec<String>,
    keys: Keys,
    verified: Option<VerifiedTokens>,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("JwtVerifier");
        debug
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("claims", &self.claims)
            .field("leeway_secs", &self.leeway)
            .field("allowed_clients", &self.allowed_clients);
        match &self.keys {
            Keys::Static(set) => debug.field("keys", &format_args!("static ({})", set.len())),
            Keys::Remote(remote) => debug
                .field(
                    "jwks_url",
                    &remote.jwks_url.as_deref().unwrap_or("(discovered)"),
                )
                .field("cached_keys", &remote.snapshot().keys.len()),
        };
        if let Some(verified) = &self.verified {
            debug.field("cached_tokens", &verified.len());
        }
        debug.finish_non_exhaustive()
    }
}

/// Where the verification keys come from.
enum Keys {
    /// A fixed set (the development issuer's key): never fetched.
    Static(Arc<KeySet>),
    /// The issuer's JWKS over HTTP.
    Remote(Box<Remote>),
}

struct Remote {
    client: reqwest::Client,
    /// The configured JWKS URL, if any.
    jwks_url: Option<String>,
    /// Where to discover the JWKS URL when none is configured.
    discovery: Discovery,
    min_refresh_interval: Duration,
    cache: RwLock<Cache>,
    /// Held while fetching: one fetch at a time. Keeps the discovered JWKS URL.
    fetching: tokio::sync::Mutex<Option<String>>,
}

#[derive(Clone, Default)]
struct Cache {
    keys: Arc<KeySet>,
    /// Fetch attempts so far, successful or not.
    attempts: u64,
    last_attempt: Option<Instant>,
    /// Why the last attempt failed; `None` when it succeeded.
    last_error: Option<String>,
}

impl Remote {
    fn snapshot(&self) -> Cache {
        self.cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Fetches the key set (discovering its URL first if needed) and records
    /// the outcome in the cache. Called with the `fetching` lock held.
    async fn refresh(&self, discovered: &mut Option<String>) {
        let outcome = match self.jwks_url.as_ref().or(discovered.as_ref()) {
            Some(url) => fetch_jwks(&self.client, url).await,
            None => match discover(&self.client, &self.discovery, "jwks_uri").await {
                Ok(url) => {
                    let keys = fetch_jwks(&self.client, &url).await;
                    *discovered = Some(url);
                    keys
                }
                Err(error) => Err(error),
            },
        };
        let mut cache = self.cache.write().unwrap_or_else(PoisonError::into_inner);
        cache.attempts += 1;
        cache.last_attempt = Some(Instant::now());
        match outcome {
            Ok(keys) => {
                crate::telemetry::key_set_fetched("ok");
                cache.keys = Arc::new(keys);
                cache.last_error = None;
            }
            Err(error) => {
                crate::telemetry::key_set_fetched("error");
                tracing::debug!(%error, "fetching the issuer's keys failed");
                cache.last_error = Some(error);
                // Discover again next time: the issuer may have moved its keys.
                *discovered = None;
            }
        }
    }

    /// The key for a token, refetching the key set when the token's `kid` is
    /// unknown (rate limited, one fetch at a time).
    async fn key_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<VerifyKey>, TokenError> {
        let seen = self.snapshot();
        match seen.keys.select(kid, alg) {
            Selection::NotFound => {}
            other => return settle(other, kid, None, true),
        }
        {
            let mut discovered = self.fetching.lock().await;
            let now = self.snapshot();
            // Someone else fetched while this request waited: use their result.
            if now.attempts == seen.attempts {
                let rate_limited = !now.keys.is_empty()
                    && now
                        .last_attempt
                        .is_some_and(|at| at.elapsed() < self.min_refresh_interval);
                if !rate_limited {
                    self.refresh(&mut discovered).await;
                }
            }
        }
        let now = self.snapshot();
        settle(
            now.keys.select(kid, alg),
            kid,
            now.last_error.as_deref(),
            !now.keys.is_empty(),
        )
    }
}

/// The outcome of a key selection; `fetch_error` is why the key set could not
/// be fetched last time. A missing key is "unavailable" only when no key set
/// was ever fetched (`cached` is false): with keys cached, a kid the issuer
/// has not published (as far as the service could learn) is an invalid
/// token, 401, also while the issuer cannot be reached; the client's next
/// attempt after the outage (and `min_refresh_interval`) refetches.
fn settle(
    selection: Selection,
    kid: Option<&str>,
    fetch_error: Option<&str>,
    cached: bool,
) -> Result<Arc<VerifyKey>, TokenError> {
    match selection {
        Selection::Found(key) => Ok(key),
        Selection::AlgorithmMismatch => Err(invalid("the algorithm does not match the key")),
        Selection::Ambiguous => Err(invalid("no kid and the key set has several keys")),
        Selection::NotFound => match fetch_error {
            Some(error) if !cached => Err(TokenError::Unavailable(error.to_owned())),
            Some(error) => Err(invalid(format!(
                "unknown kid (the cached key set could not be refreshed: {error})"
            ))),
            None if kid.is_some() => Err(invalid("unknown kid")),
            None => Err(invalid("no kid and no key")),
        },
    }
}

/// The parts of the JOSE header the verifier looks at.
struct TokenHeader {
    alg: Algorithm,
    kid: Option<String>,
}

/// Reads the header without trusting it: only allowed algorithms pass.
fn read_header(token: &str) -> Result<TokenHeader, TokenError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("malformed token: not three dot-separated parts"));
    };
    let header = BASE64URL_NOPAD
        .decode(header.as_bytes())
        .map_err(|_| invalid("malformed token header: not base64url"))?;
    let header: Map<String, Value> = serde_json::from_slice(&header)
        .map_err(|_| invalid("malformed token header: not a JSON object"))?;
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => alg,
        Some(_) => return Err(invalid("malformed token header: alg is not a string")),
        None => return Err(invalid("malformed token header: no alg")),
    };
    let alg = allowed_algorithm(alg).ok_or_else(|| {
        let shown = match alg.as_str() {
            "none" | "None" | "NONE" => "none",
            "HS256" => "HS256",
            "HS384" => "HS384",
            "HS512" => "HS512",
            _ => "an unsupported one",
        };
        invalid(format!("algorithm not allowed: {shown}"))
    })?;
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(invalid("malformed token header: kid is not a string")),
    };
    if header.contains_key("crit") {
        return Err(invalid("critical header extensions are not supported"));
    }
    match header.get("typ") {
        None | Some(Value::Null) => {}
        Some(Value::String(typ)) if access_token_typ(typ) => {}
        Some(_) => {
            return Err(invalid(
                "token type (typ) is not an access token (at+jwt or JWT)",
            ));
        }
    }
    Ok(TokenHeader { alg, kid })
}

/// The header `typ` values of an access token: RFC 9068's `at+jwt` (also as
/// the media type `application/at+jwt`) and the generic `JWT` many issuers
/// (ZITADEL among them) write; case-insensitive (RFC 7515 §4.1.9). Anything
/// else (`logout+jwt`, `secevent+jwt`, `dpop+jwt`, ...) is another kind of
/// token.
fn access_token_typ(typ: &str) -> bool {
    let typ = typ.strip_prefix("application/").unwrap_or(typ);
    typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("jwt")
}

/// Claims only an ID token carries (OpenID Connect Core §2, §3.1.3.6,
/// §3.3.2.11): a token with one is an ID token, never an access token, even
/// when its `aud` contains the audience.
const ID_TOKEN_CLAIMS: [&str; 4] = ["nonce", "at_hash", "c_hash", "s_hash"];

/// A log-safe reason for a jsonwebtoken error.
fn reason(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::InvalidToken => "malformed token".into(),
        ErrorKind::InvalidSignature => "bad signature".into(),
        ErrorKind::ExpiredSignature => "expired".into(),
        ErrorKind::ImmatureSignature => "not valid yet (nbf)".into(),
        ErrorKind::InvalidIssuer => "wrong issuer".into(),
        ErrorKind::InvalidAudience => "wrong audience".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("missing claim {claim}"),
        ErrorKind::InvalidClaimFormat(claim) => format!("malformed claim {claim}"),
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::MissingAlgorithm => "algorithm not allowed for the key".into(),
        ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => "the key cannot verify this token".into(),
        ErrorKind::Base64(_) => "malformed token: bad base64url".into(),
        ErrorKind::Json(_) => "malformed token: bad JSON".into(),
        ErrorKind::Utf8(_) => "malformed token: bad UTF-8".into(),
        _ => "rejected".into(),
    }
}

impl JwtVerifier {
    /// A verifier for the issuer and audience in `settings`, fetching keys
    /// from its JWKS (configured or discovered). Makes no request yet.
    ///
    /// # Errors
    /// [`TokenConfigError::InvalidSetting`] for an empty issuer, audience or
    /// claim name, or an issuer or JWKS URL that is not https (or http to
    /// loopback, or any http with `allow_http`); [`TokenConfigError::HttpClient`] if the HTTP client cannot be
    /// built.
    pub fn new(settings: JwtSettings) -> Result<Self, TokenConfigError> {
        check_common(&settings.issuer, &settings.audience, &settings.claims)?;
        let discovery = Discovery::new(&settings.issuer, settings.allow_http);
        match &settings.jwks_url {
            Some(url) => {
                check_http_url("the JWKS URL", url, settings.allow_http)?;
                // The issuer is not fetched then and may be any string, but
                // an http:// one follows the same rule.
                if settings.issuer.starts_with("http:") {
                    check_http_url("the issuer", &settings.issuer, settings.allow_http)?;
                }
            }
            None => check_http_url("the issuer", &settings.issuer, settings.allow_http)?,
        }
        let client = crate::fetch::issuer_client(settings.http_timeout)?;
        Ok(Self {
            issuer: settings.issuer,
            audience: settings.audience,
            claims: settings.claims,
            leeway: settings.leeway.as_secs(),
            allowed_clients: settings.allowed_clients,
            keys: Keys::Remote(Box::new(Remote {
                client,
                jwks_url: settings.jwks_url,
                discovery,
                min_refresh_interval: settings.min_refresh_interval,
                cache: RwLock::new(Cache::default()),
                fetching: tokio::sync::Mutex::new(None),
            })),
            verified: None,
        })
    }

    /// Remembers up to `capacity` verified tokens (by their SHA-256, never
    /// the token), each until its `exp` and at most `max_age` after it was
    /// verified; a remembered token is accepted again without its signature,
    /// times and claims being checked again. Rejections are not remembered.
    /// A zero `capacity` or `max_age` turns the cache off (the default).
    #[must_use]
    pub fn with_verified_cache(mut self, capacity: usize, max_age: Duration) -> Self {
        self.verified = VerifiedTokens::new(capacity, max_age);
        self
    }

    /// A verifier with a fixed key set and no HTTP (the development issuer).
    pub(crate) fn with_static_keys(
        issuer: String,
        audience: String,
        claims: ClaimNames,
        leeway: Duration,
        keys: KeySet,
    ) -> Self {
        Self {
            issuer,
            audience,
            claims,
            leeway: leeway.as_secs(),
            allowed_clients: Vec::new(),
            keys: Keys::Static(Arc::new(keys)),
            verified: None,
        }
    }

    async fn key_for(&self, header: &TokenHeader) -> Result<Arc<VerifyKey>, TokenError> {
        let kid = header.kid.as_deref();
        match &self.keys {
            Keys::Static(set) => settle(set.select(kid, header.alg), kid, None, true),
            Keys::Remote(remote) => remote.key_for(kid, header.alg).await,
        }
    }

    /// Signature, issuer, audience and times; not an ID token; then the
    /// identity claims (user, organisation, login name, scopes, client and
    /// sign-in) and the authorized party against `allowed_clients`. With
    /// the principal, the token's `exp` (seconds since the epoch) when it
    /// is an integer.
    fn check(
        &self,
        token: &str,
        key: &VerifyKey,
        alg: Algorithm,
    ) -> Result<(Principal, Option<i64>), TokenError> {
        let mut validation = Validation::new(alg);
        validation.leeway = self.leeway;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, &validation)
            .map_err(|error| invalid(reason(error.kind())))?;
        let claims = data.claims;
        // jsonwebtoken also accepts an array `iss` containing the issuer.
        if claims.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(invalid("wrong issuer"));
        }
        if let Some(claim) = ID_TOKEN_CLAIMS
            .into_iter()
            .find(|claim| claims.contains_key(*claim))
        {
            return Err(invalid(format!(
                "an ID token, not an access token (it has {claim})"
            )));
        }
        let principal = principal(&claims, &self.claims, None)?;
        check_authorized_party(&principal, &self.audience, &self.allowed_clients)?;
        Ok((principal, claims.get("exp").and_then(Value::as_i64)))
    }
}

/// The settings every verifier needs.
pub(crate) fn check_common(
    issuer: &str,
    audience: &str,
    claims: &ClaimNames,
) -> Result<(), TokenConfigError> {
    if issuer.trim().is_empty() {
        return Err(TokenConfigError::InvalidSetting(
            "the issuer is empty".into(),
        ));
    }
    if audience.trim().is_empty() {
        return Err(TokenConfigError::InvalidSetting(
            "the audience is empty".into(),
        ));
    }
    claims.check()
}

#[async_trait]
impl TokenVerifier for JwtVerifier {
    async fn verify(&self, token: &SecretString) -> Result<Principal, TokenError> {
        let token = token.expose_secret();
        if token.len() > MAX_TOKEN_LEN {
            return Err(invalid("token longer than 16 KiB"));
        }
        let Some(verified) = &self.verified else {
            let header = read_header(token)?;
            let key = self.key_for(&header).await?;
            return self.check(token, &key, header.alg).map(|(p, _)| p);
        };
        let cache_key = CacheKey::of(token);
        if let Some(principal) = verified.get(&cache_key, now_ms()) {
            return Ok(principal);
        }
        let header = read_header(token)?;
        let key = self.key_for(&header).await?;
        let (principal, exp) = self.check(token, &key, header.alg)?;
        if let Some(exp) = exp {
            verified.put(cache_key, &principal, exp, now_ms());
        }
        Ok(principal)
    }
}

/// The wall clock in milliseconds since the epoch (the clock `exp` was
/// checked against).
fn now_ms() -> i64 {
    adapters_clock::SystemClock.now().timestamp_millis()
}
