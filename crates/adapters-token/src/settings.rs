//! What the verifiers are told: issuer, audience, where the keys or the
//! introspection endpoint are, which claims carry the identity, and the
//! errors of a bad setting.

use std::time::Duration;

use crate::client_auth::ClientAuth;

/// The default claim of the user id.
pub const DEFAULT_USER_ID_CLAIM: &str = "sub";
/// The default claim of the organisation id (ZITADEL's resource owner).
pub const DEFAULT_ORG_ID_CLAIM: &str = "urn:zitadel:iam:user:resourceowner:id";
/// The default claim of the login name.
pub const DEFAULT_LOGIN_NAME_CLAIM: &str = "preferred_username";
/// The default claim of the granted scopes (RFC 8693 §4.2, RFC 9068 §2.2.3).
pub const DEFAULT_SCOPE_CLAIM: &str = "scope";
/// The default claim of the granted roles (ZITADEL's project roles:
/// `{"role": {"orgId": "org domain"}}`).
pub const DEFAULT_ROLES_CLAIM: &str = "urn:zitadel:iam:org:project:roles";

/// Which claims carry the identity. Defaults: `sub`,
/// `urn:zitadel:iam:user:resourceowner:id`, `preferred_username`, `scope`,
/// `urn:zitadel:iam:org:project:roles`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimNames {
    /// The claim of the user id (required in every token).
    pub user_id: String,
    /// The claim of the organisation id (optional in a token).
    pub org_id: String,
    /// The claim of the login name (optional in a token).
    pub login_name: String,
    /// The claim of the granted scopes (optional in a token): a
    /// space-separated string or an array of strings.
    pub scope: String,
    /// The claim of the granted roles (optional in a token): an object whose
    /// keys are the roles (ZITADEL), an array of strings, or a
    /// space-separated string. A name not found as a top-level claim is
    /// read as a dotted path (Keycloak: `realm_access.roles`,
    /// `resource_access.<client>.roles`).
    pub roles: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        Self {
            user_id: DEFAULT_USER_ID_CLAIM.to_owned(),
            org_id: DEFAULT_ORG_ID_CLAIM.to_owned(),
            login_name: DEFAULT_LOGIN_NAME_CLAIM.to_owned(),
            scope: DEFAULT_SCOPE_CLAIM.to_owned(),
            roles: DEFAULT_ROLES_CLAIM.to_owned(),
        }
    }
}

impl ClaimNames {
    pub(crate) fn check(&self) -> Result<(), TokenConfigError> {
        for (what, name) in [
            ("user id", &self.user_id),
            ("organisation id", &self.org_id),
            ("login name", &self.login_name),
            ("scope", &self.scope),
            ("roles", &self.roles),
        ] {
            if name.trim().is_empty() {
                return Err(TokenConfigError::InvalidSetting(format!(
                    "the {what} claim name is empty"
                )));
            }
        }
        Ok(())
    }
}

/// How bearer tokens are validated against an OpenID Connect issuer.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    /// `iss` must equal this exactly.
    pub issuer: String,
    /// `aud` (a string or an array) must contain this.
    pub audience: String,
    /// The JWKS URL. When `None`, it is discovered once from
    /// `{issuer without trailing slash}/.well-known/openid-configuration`
    /// (its `jwks_uri`).
    pub jwks_url: Option<String>,
    /// Which claims carry the identity.
    pub claims: ClaimNames,
    /// Clock skew allowed on `exp` and `nbf` (whole seconds count).
    pub leeway: Duration,
    /// Timeout of each discovery or JWKS request.
    pub http_timeout: Duration,
    /// A token with an unknown `kid` refetches the key set at most this often.
    pub min_refresh_interval: Duration,
    /// When not empty, a token naming its client (`azp`, else `client_id`)
    /// must name the audience or one of these.
    pub allowed_clients: Vec<String>,
    /// Allow `http://` issuer, discovery and JWKS URLs to hosts other than
    /// loopback (never in production: keys could be swapped on the wire).
    pub allow_http: bool,
}

impl JwtSettings {
    /// Settings for `issuer` and `audience` with discovery, the default claim
    /// names, 30 s leeway, 10 s HTTP timeout, 30 s minimum refresh interval,
    /// any client of the audience, and `http://` only to loopback.
    #[must_use]
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            jwks_url: None,
            claims: ClaimNames::default(),
            leeway: Duration::from_secs(30),
            http_timeout: Duration::from_secs(10),
            min_refresh_interval: Duration::from_secs(30),
            allowed_clients: Vec::new(),
            allow_http: false,
        }
    }
}

/// How opaque (or any) access tokens are checked by asking the issuer's
/// token introspection endpoint (RFC 7662).
#[derive(Debug, Clone)]
pub struct IntrospectionSettings {
    /// The issuer: an answer's `iss`, when present, must equal this exactly;
    /// the `aud` of a `private_key_jwt` client assertion; the base of
    /// discovery.
    pub issuer: String,
    /// An answer's `aud` (a string or an array) must contain this.
    pub audience: String,
    /// The introspection endpoint. When `None`, it is discovered from
    /// `{issuer without trailing slash}/.well-known/openid-configuration`
    /// (its `introspection_endpoint`) at first use and kept.
    pub url: Option<String>,
    /// How this service authenticates itself to the endpoint.
    pub client_auth: ClientAuth,
    /// Which claims of an answer carry the identity. The login name falls
    /// back to RFC 7662's `username` when the configured claim is absent.
    pub claims: ClaimNames,
    /// Clock skew allowed on an answer's `exp` and `nbf`.
    pub leeway: Duration,
    /// How long an active answer is reused for the same token (never past
    /// the token's `exp`). Zero disables the cache.
    pub cache_ttl: Duration,
    /// At most this many answers are cached; when full, expired ones are
    /// dropped, and if none has expired the cache starts over.
    pub cache_capacity: usize,
    /// Timeout of each discovery or introspection request.
    pub http_timeout: Duration,
    /// How long a rejection (inactive, expired, foreign token) is remembered
    /// for the same token, so junk repeated costs one request. Zero: never.
    pub negative_cache_ttl: Duration,
    /// At most this many introspection requests at once; a token that would
    /// need another is answered unavailable at once (load shed, not queued).
    pub max_concurrent: usize,
    /// As [`JwtSettings::allowed_clients`], for an answer's `azp` / `client_id`.
    pub allowed_clients: Vec<String>,
    /// As [`JwtSettings::allow_http`], for the introspection and discovery URLs.
    pub allow_http: bool,
}

impl IntrospectionSettings {
    /// Settings for `issuer` and `audience` with discovery, the default claim
    /// names, 30 s leeway, 30 s cache TTL, 10 000 cache entries (answers and,
    /// apart, rejections), rejections remembered 10 s, 10 s HTTP timeout, at
    /// most 32 requests at once, any client of the audience, and `http://`
    /// only to loopback.
    #[must_use]
    pub fn new(
        issuer: impl Into<String>,
        audience: impl Into<String>,
        client_auth: ClientAuth,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            url: None,
            client_auth,
            claims: ClaimNames::default(),
            leeway: Duration::from_secs(30),
            cache_ttl: Duration::from_secs(30),
            cache_capacity: 10_000,
            http_timeout: Duration::from_secs(10),
            negative_cache_ttl: Duration::from_secs(10),
            max_concurrent: 32,
            allowed_clients: Vec::new(),
            allow_http: false,
        }
    }
}

/// Why a verifier or the development issuer could not be set up, or a
/// development token not issued. Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenConfigError {
    /// A setting is empty or malformed.
    #[error("invalid token setting: {0}")]
    InvalidSetting(String),
    /// The HTTP client for discovery, JWKS or introspection could not be built.
    #[error("cannot build the HTTP client for the issuer: {0}")]
    HttpClient(String),
    /// A key could not be generated or used.
    #[error("signing key: {0}")]
    Key(String),
    /// A development token was asked for with an invalid claim value.
    #[error("invalid claim for a development token: {0}")]
    Claim(String),
}

/// An `https` URL, or an `http` one to a loopback host (`localhost`,
/// 127.0.0.0/8, `::1`) or when `allow_http` is set; or why not. The reason
/// names `what`, never the value.
pub(crate) fn check_http_url(
    what: &str,
    value: &str,
    allow_http: bool,
) -> Result<(), TokenConfigError> {
    let url = reqwest::Url::parse(value)
        .map_err(|e| TokenConfigError::InvalidSetting(format!("{what} is not a URL: {e}")))?;
    url_allowed(&url, allow_http)
        .map_err(|why| TokenConfigError::InvalidSetting(format!("{what} {why}")))
}

/// Whether the service may fetch from `url`: https, or http to loopback or
/// with `allow_http`.
pub(crate) fn url_allowed(url: &reqwest::Url, allow_http: bool) -> Result<(), &'static str> {
    if url.host().is_none() {
        return Err("has no host");
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_http || is_loopback(url) => Ok(()),
        "http" => Err(
            "is http:// to a host that is not loopback (set auth.allow_insecure_http to allow it)",
        ),
        _ => Err("is not an http(s) URL"),
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return ip.is_loopback();
    }
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_only_to_loopback_unless_allowed() {
        for ok in [
            "https://issuer.example",
            "http://127.0.0.1:8080",
            "http://127.9.0.1",
            "http://localhost:1/x",
            "http://[::1]:80",
            "http://a.localhost",
        ] {
            assert!(check_http_url("the issuer", ok, false).is_ok(), "{ok}");
        }
        for bad in [
            "http://issuer.example",
            "http://10.0.0.1",
            "http://localhost.evil.example",
            "ftp://127.0.0.1",
            "not a url",
            "http://[::2]",
        ] {
            let error = check_http_url("the issuer", bad, false)
                .unwrap_err()
                .to_string();
            assert!(error.contains("the issuer"), "{error}");
            assert!(!error.contains(bad), "the value is not echoed: {error}");
        }
        assert!(check_http_url("the issuer", "http://issuer.example", true).is_ok());
        assert!(check_http_url("the issuer", "ftp://issuer.example", true).is_err());
    }
}
