//! The introspection verifier: a bearer token (opaque or not) is checked by
//! asking the issuer's token introspection endpoint (RFC 7662); active
//! answers and rejections are cached briefly under the token's SHA-256, and
//! requests in flight are bounded (load beyond is shed, not queued).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use aws_lc_rs::digest::{SHA256, digest};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use tracing::Instrument as _;
use tracing::field::Empty;

use application::{Clock, Principal, TokenError, TokenVerifier};

use crate::claims::{audience_contains, check_authorized_party, invalid, principal};
use crate::client_auth::Credentials;
use crate::fetch::{Discovery, describe, discover, host, read_body, redact_url};
use crate::settings::{ClaimNames, IntrospectionSettings, TokenConfigError, check_http_url};
use crate::telemetry;
use crate::verifier::{MAX_TOKEN_LEN, check_common};

/// The largest introspection answer read, in bytes.
const MAX_ANSWER_LEN: usize = 64 * 1024;

/// RFC 7662 §2.2's name of the login name, used when the configured claim
/// is absent from an answer.
const USERNAME_MEMBER: &str = "username";

fn unavailable(reason: impl Into<String>) -> TokenError {
    TokenError::Unavailable(reason.into())
}

/// Validates bearer tokens by asking one issuer's introspection endpoint
/// (RFC 7662), authenticated as a confidential client.
///
/// A token is accepted when the answer says `active: true`, its `exp` (if
/// any) has not passed (allowing the leeway), its `nbf` (if any) has come,
/// its `iss` (if any) is the issuer, and its `aud` contains the audience.
/// The identity comes from the same claims as in a JWT, the login name
/// falling back to `username`.
///
/// Accepted answers are cached under the SHA-256 of the token (the token
/// itself is never kept) until `cache_ttl` has passed or the token expires,
/// whichever comes first. Rejections (inactive, expired, foreign) are
/// remembered the same way for `negative_cache_ttl`, so junk sent again costs
/// no request; failures (the endpoint unreachable) are never cached. At most
/// `max_concurrent` requests run at once: a token that would need one more
/// is [`TokenError::Unavailable`] at once (the service answers 503), so a
/// flood of fresh junk cannot queue up behind the endpoint.
///
/// A token over [`MAX_TOKEN_LEN`] bytes is refused without a request. An
/// unreachable or failing endpoint (timeout, non-2xx status, an answer that
/// is not a JSON object with a boolean `active`, or over 64 KiB) makes the
/// token [`TokenError::Unavailable`], never invalid.
pub struct IntrospectionVerifier {
    issuer: String,
    audience: String,
    claims: ClaimNames,
    leeway_ms: i64,
    endpoint: Endpoint,
    credentials: Credentials,
    client: reqwest::Client,
    cache: AnswerCache,
    rejections: RejectionCache,
    /// One permit per introspection request in flight.
    in_flight: Arc<tokio::sync::Semaphore>,
    allowed_clients: Vec<String>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for IntrospectionVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let endpoint = match &self.endpoint {
            Endpoint::Fixed(url) => redact_url(url),
            Endpoint::Discovered { found, .. } => found
                .get()
                .map_or_else(|| "(to be discovered)".to_owned(), |url| redact_url(url)),
        };
        f.debug_struct("IntrospectionVerifier")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("endpoint", &endpoint)
            .field("client_id", &self.credentials.client_id())
            .field("claims", &self.claims)
            .field("leeway_ms", &self.leeway_ms)
            .field("cached_answers", &self.cache.len())
            .field("cached_rejections", &self.rejections.len())
            .field("allowed_clients", &self.allowed_clients)
            .finish_non_exhaustive()
    }
}

/// Where the introspection endpoint is.
enum Endpoint {
    /// Configured.
    Fixed(String),
    /// From the discovery document, fetched at first use; a failed discovery
    /// is retried by the next request.
    Discovered {
        discovery: Discovery,
        found: tokio::sync::OnceCell<String>,
    },
}

/// What came of one question to the endpoint, before the answer is judged.
type Answer = Result<Map<String, Value>, TokenError>;

impl IntrospectionVerifier {
    /// A verifier for the issuer and audience in `settings`, using the system
    /// clock. Makes no request yet (discovery, if needed, is at first use).
    ///
    /// # Errors
    /// [`TokenConfigError::InvalidSetting`] for an empty issuer, audience,
    /// claim name, client id, key id or client secret, a zero HTTP timeout,
    /// or an introspection (or, for discovery, issuer) URL that is not
    /// http(s); [`TokenConfigError::Key`] when the `private_key_jwt` key is
    /// not a usable RSA private key; [`TokenConfigError::HttpClient`] if the
    /// HTTP client cannot be built.
    pub fn new(settings: IntrospectionSettings) -> Result<Self, TokenConfigError> {
        Self::with_clock(settings, Arc::new(adapters_clock::SystemClock))
    }

    /// Like [`IntrospectionVerifier::new`], reading the time (for `exp`,
    /// `nbf`, cache expiry and client assertions) from `clock`.
    ///
    /// # Errors
    /// As [`IntrospectionVerifier::new`].
    pub fn with_clock(
        settings: IntrospectionSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, TokenConfigError> {
        check_common(&settings.issuer, &settings.audience, &settings.claims)?;
        check_http_url("the issuer", &settings.issuer, settings.allow_http)?;
        let endpoint = match settings.url {
            Some(url) => {
                check_http_url("the introspection URL", &url, settings.allow_http)?;
                Endpoint::Fixed(url)
            }
            None => Endpoint::Discovered {
                discovery: Discovery::new(&settings.issuer, settings.allow_http),
                found: tokio::sync::OnceCell::new(),
            },
        };
        if settings.max_concurrent == 0 {
            return Err(TokenConfigError::InvalidSetting(
                "at most 0 concurrent introspections: none could ever run".into(),
            ));
        }
        let client = crate::fetch::issuer_client(settings.http_timeout)?;
        let credentials = Credentials::new(&settings.client_auth, &settings.issuer)?;
        Ok(Self {
            issuer: settings.issuer,
            audience: settings.audience,
            claims: settings.claims,
            leeway_ms: millis(settings.leeway),
            endpoint,
            credentials,
            client,
            cache: AnswerCache::new(millis(settings.cache_ttl), settings.cache_capacity),
            rejections: RejectionCache::new(
                millis(settings.negative_cache_ttl),
                settings.cache_capacity,
            ),
            in_flight: Arc::new(tokio::sync::Semaphore::new(settings.max_concurrent)),
            allowed_clients: settings.allowed_clients,
            clock,
        })
    }

    /// The introspection endpoint, discovering it at first use.
    async fn endpoint(&self) -> Result<&str, TokenError> {
        match &self.endpoint {
            Endpoint::Fixed(url) => Ok(url),
            Endpoint::Discovered { discovery, found } => found
                .get_or_try_init(|| discover(&self.client, discovery, "introspection_endpoint"))
                .await
                .map(String::as_str)
                .map_err(unavailable),
        }
    }

    /// Asks the endpoint about `token`: the answer's members, or why there
    /// is no usable answer (always [`TokenError::Unavailable`]).
    async fn ask(&self, token: &str, now_ms: i64) -> Answer {
        let url = self.endpoint().await?;
        let shown = redact_url(url);
        let span = tracing::info_span!(
            "token.introspect",
            otel.kind = "client",
            http.request.method = "POST",
            server.address = host(url),
            http.response.status_code = Empty,
        );
        let request = async {
            let now_secs = u64::try_from(now_ms.div_euclid(1000)).unwrap_or(0);
            let presented = self
                .credentials
                .present(now_secs)
                .map_err(|why| unavailable(format!("introspection: {why}")))?;
            let body = {
                let mut form = form_urlencoded::Serializer::new(String::new());
                form.append_pair("token", token);
                form.append_pair("token_type_hint", "access_token");
                for (name, value) in &presented.form {
                    form.append_pair(name, value.expose_secret());
                }
                form.finish()
            };
            let mut request = self
                .client
                .post(url)
                .header(ACCEPT, "application/json")
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body);
            if let Some(authorization) = presented.authorization {
                request = request.header(AUTHORIZATION, authorization);
            }
            let response = request
                .send()
                .await
                .map_err(|error| unavailable(format!("{shown}: {}", describe(&error))))?;
            let status = response.status();
            tracing::Span::current().record("http.response.status_code", status.as_u16());
            if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
                tracing::error!(
                    client_id = self.credentials.client_id(),
                    endpoint = %shown,
                    status = status.as_u16(),
                    "the introspection endpoint refused this service's client credentials"
                );
            }
            if !status.is_success() {
                return Err(unavailable(format!("{shown}: HTTP status {status}")));
            }
            let body = read_body(response, MAX_ANSWER_LEN)
                .await
                .map_err(|why| unavailable(format!("{shown}: {why}")))?;
            match serde_json::from_slice::<Value>(&body) {
                Ok(Value::Object(members)) => Ok(members),
                _ => Err(unavailable(format!(
                    "{shown}: the introspection answer is not a JSON object"
                ))),
            }
        };
        request.instrument(span).await
    }

    /// Judges an answer at `now_ms`: the principal and the token's `exp` (in
    /// milliseconds since the epoch), or why the token is not accepted.
    fn judge(
        &self,
        answer: &Map<String, Value>,
        now_ms: i64,
    ) -> Result<(Principal, Option<i64>), TokenError> {
        match answer.get("active") {
            Some(Value::Bool(true)) => {}
            Some(Value::Bool(false)) => return Err(invalid("inactive (introspection)")),
            _ => {
                return Err(unavailable(
                    "the introspection answer has no boolean `active`",
                ));
            }
        }
        let exp = time_member(answer, "exp")?;
        if exp.is_some_and(|exp| exp.saturating_add(self.leeway_ms) < now_ms) {
            return Err(invalid("expired"));
        }
        let nbf = time_member(answer, "nbf")?;
        if nbf.is_some_and(|nbf| nbf > now_ms.saturating_add(self.leeway_ms)) {
            return Err(invalid("not valid yet (nbf)"));
        }
        match answer.get("iss") {
            None | Some(Value::Null) => {}
            Some(Value::String(iss)) if *iss == self.issuer => {}
            Some(_) => return Err(invalid("wrong issuer")),
        }
        if !audience_contains(answer, &self.audience) {
            return Err(invalid("wrong audience"));
        }
        let principal = principal(answer, &self.claims, Some(USERNAME_MEMBER))?;
        check_authorized_party(&principal, &self.audience, &self.allowed_clients)?;
        Ok((principal, exp))
    }
}

/// A NumericDate member (seconds since the epoch) in milliseconds; absent or
/// `null` is `None`, anything but a number is an error.
fn time_member(answer: &Map<String, Value>, name: &str) -> Result<Option<i64>, TokenError> {
    match answer.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => {
            let millis = match number.as_i64() {
                Some(secs) => secs.saturating_mul(1000),
                #[allow(
                    clippy::cast_possible_truncation,
                    reason = "saturating float to integer cast is the intent"
                )]
                None => number
                    .as_f64()
                    .map_or(i64::MAX, |secs| (secs * 1000.0) as i64),
            };
            Ok(Some(millis))
        }
        Some(_) => Err(invalid(format!("malformed claim {name}"))),
    }
}

fn millis(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait]
impl TokenVerifier for IntrospectionVerifier {
    async fn verify(&self, token: &SecretString) -> Result<Principal, TokenError> {
        let token = token.expose_secret();
        if token.is_empty() {
            return Err(invalid("empty token"));
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(invalid("token longer than 16 KiB"));
        }
        let key = CacheKey::of(token);
        let now_ms = self.clock.now().timestamp_millis();
        if let Some(principal) = self.cache.get(&key, now_ms) {
            telemetry::introspected("cached");
            return Ok(principal);
        }
        if let Some(reason) = self.rejections.get(&key, now_ms) {
            telemetry::introspected("cached_inactive");
            return Err(TokenError::Invalid(reason));
        }
        // Shed load rather than queue: a request that would wait for a free
        // slot is answered unavailable (503) at once.
        let Ok(_permit) = Arc::clone(&self.in_flight).try_acquire_owned() else {
            telemetry::introspected("shed");
            return Err(unavailable(
                "too many introspection requests in flight; shedding load",
            ));
        };
        let judged = match self.ask(token, now_ms).await {
            Ok(answer) => self.judge(&answer, now_ms),
            Err(error) => Err(error),
        };
        match judged {
            Ok((principal, exp)) => {
                telemetry::introspected("active");
                let expires = self
                    .cache
                    .ttl_ms
                    .saturating_add(now_ms)
                    .min(exp.unwrap_or(i64::MAX));
                self.cache.put(key, &principal, expires, now_ms);
                Ok(principal)
            }
            Err(TokenError::Invalid(reason)) => {
                telemetry::introspected("inactive");
                self.rejections.put(key, &reason, now_ms);
                Err(TokenError::Invalid(reason))
            }
            Err(error @ TokenError::Unavailable(_)) => {
                telemetry::introspected("error");
                Err(error)
            }
        }
    }
}

/// The SHA-256 of a token: what the cache is keyed by, never the token.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey([u8; 32]);

impl CacheKey {
    pub(crate) fn of(token: &str) -> Self {
        let mut key = [0_u8; 32];
        key.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
        Self(key)
    }
}

/// Values by token hash until their expiry, bounded in count (also the
/// verified-JWT cache's store, `crate::verified`).
pub(crate) struct ExpiringCache<V> {
    ttl_ms: i64,
    capacity: usize,
    /// Each value with the milliseconds since the epoch from which it is unusable.
    entries: Mutex<HashMap<CacheKey, (V, i64)>>,
}

/// Accepted answers.
type AnswerCache = ExpiringCache<Principal>;

/// Rejections: the same junk token asked again within the TTL costs no
/// request. The reason is kept for the log.
type RejectionCache = ExpiringCache<String>;

impl<V: Clone> ExpiringCache<V> {
    pub(crate) fn new(ttl_ms: i64, capacity: usize) -> Self {
        Self {
            ttl_ms,
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub(crate) fn lookup(&self, key: &CacheKey, now_ms: i64) -> Option<V> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        match entries.get(key) {
            Some((value, expires_ms)) if now_ms < *expires_ms => Some(value.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    pub(crate) fn insert(&self, key: CacheKey, value: V, expires_ms: i64, now_ms: i64) {
        if self.ttl_ms <= 0 || self.capacity == 0 || expires_ms <= now_ms {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, (_, expires_ms)| now_ms < *expires_ms);
            if entries.len() >= self.capacity {
                // Every entry is live: start over rather than scan on each insert.
                entries.clear();
            }
        }
        entries.insert(key, (value, expires_ms));
    }
}

impl AnswerCache {
    fn get(&self, key: &CacheKey, now_ms: i64) -> Option<Principal> {
        self.lookup(key, now_ms)
    }

    fn put(&self, key: CacheKey, principal: &Principal, expires_ms: i64, now_ms: i64) {
        self.insert(key, principal.clone(), expires_ms, now_ms);
    }
}

impl RejectionCache {
    fn get(&self, key: &CacheKey, now_ms: i64) -> Option<String> {
        self.lookup(key, now_ms)
            .map(|reason| format!("{reason} (remembered)"))
    }

    fn put(&self, key: CacheKey, reason: &str, now_ms: i64) {
        let expires_ms = now_ms.saturating_add(self.ttl_ms);
        self.insert(key, reason.to_owned(), expires_ms, now_ms);
    }
}

#[cfg(test)]
mod tests {
    use domain::UserId;

    use super::*;

    fn principal(id: &str) -> Principal {
        Principal::of(UserId::parse(id).unwrap())
    }

    #[test]
    fn cache_entries_expire_and_the_count_is_bounded() {
        let cache = AnswerCache::new(30_000, 2);
        let (a, b, c) = (CacheKey::of("a"), CacheKey::of("b"), CacheKey::of("c"));
        cache.put(a, &principal("a"), 1_000, 0);
        cache.put(b, &principal("b"), 5_000, 0);
        assert_eq!(cache.get(&a, 999), Some(principal("a")));
        assert_eq!(cache.get(&a, 1_000), None);
        assert_eq!(cache.len(), 1, "an expired entry is dropped when seen");

        cache.put(a, &principal("a"), 2_000, 0);
        // Full, and `a` has expired at 3000: only it goes.
        cache.put(c, &principal("c"), 9_000, 3_000);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(&b, 3_000), Some(principal("b")));
        assert_eq!(cache.get(&c, 3_000), Some(principal("c")));

        // Full of live entries: starts over.
        cache.put(a, &principal("a"), 9_000, 3_000);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get(&a, 3_000), Some(principal("a")));
    }

    #[test]
    fn nothing_is_cached_with_a_zero_ttl_or_already_expired() {
        let cache = AnswerCache::new(0, 10);
        cache.put(CacheKey::of("a"), &principal("a"), 1_000, 0);
        assert_eq!(cache.len(), 0);
        let cache = AnswerCache::new(30_000, 10);
        cache.put(CacheKey::of("a"), &principal("a"), 1_000, 1_000);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn rejections_expire_and_their_count_is_bounded() {
        let cache = RejectionCache::new(10_000, 2);
        let (a, b, c) = (CacheKey::of("a"), CacheKey::of("b"), CacheKey::of("c"));
        cache.put(a, "inactive", 0);
        assert_eq!(
            cache.get(&a, 9_999).as_deref(),
            Some("inactive (remembered)")
        );
        assert_eq!(cache.get(&a, 10_000), None);
        cache.put(a, "inactive", 0);
        cache.put(b, "expired", 5_000);
        cache.put(c, "inactive", 12_000);
        assert_eq!(cache.len(), 2, "the expired entry made room");
        assert!(cache.get(&b, 12_000).is_some());
        assert!(cache.get(&c, 12_000).is_some());
        let off = RejectionCache::new(0, 10);
        off.put(a, "inactive", 0);
        assert_eq!(off.len(), 0);
    }

    #[test]
    fn the_key_is_the_sha256_of_the_token() {
        assert_eq!(
            data_encoding::HEXLOWER.encode(&CacheKey::of("abc").0),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
