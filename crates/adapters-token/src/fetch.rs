//! HTTP to the issuer: its discovery document, its key set, and the helpers
//! the introspection call shares (bounded bodies, log-safe URLs and errors).

use std::error::Error as _;

use reqwest::header::ACCEPT;
use reqwest::{Client, Response, StatusCode, Url};
use serde_json::Value;
use tracing::Instrument as _;

use crate::keys::{KeySet, parse_jwks};
use crate::settings::{TokenConfigError, url_allowed};

/// The client for every call to the issuer: `timeout` bounds connecting and
/// the whole exchange, and redirects are never followed (a redirect would
/// resend the introspection token and our credentials elsewhere, or lead
/// the key fetch to a host the issuer does not control, or to plain http:
/// keys and answers come only from where configured).
///
/// # Errors
/// [`TokenConfigError::InvalidSetting`] for a zero timeout,
/// [`TokenConfigError::HttpClient`] when the TLS stack cannot start.
pub(crate) fn issuer_client(timeout: std::time::Duration) -> Result<Client, TokenConfigError> {
    if timeout.is_zero() {
        return Err(TokenConfigError::InvalidSetting(
            "the HTTP timeout is zero".into(),
        ));
    }
    Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| TokenConfigError::HttpClient(e.to_string()))
}

/// The largest discovery document or JWKS read, in bytes.
const MAX_BODY_LEN: usize = 512 * 1024;

/// Where and how to read the issuer's discovery document.
#[derive(Debug, Clone)]
pub(crate) struct Discovery {
    /// `{issuer without trailing slash}/.well-known/openid-configuration`.
    pub(crate) url: String,
    /// The configured issuer: the document's `issuer` must equal it exactly
    /// (OpenID Connect Discovery 1.0 §4.3).
    pub(crate) issuer: String,
    /// Whether `http://` endpoints to hosts other than loopback are allowed.
    pub(crate) allow_http: bool,
}

impl Discovery {
    pub(crate) fn new(issuer: &str, allow_http: bool) -> Self {
        Self {
            url: format!(
                "{}/.well-known/openid-configuration",
                issuer.trim_end_matches('/')
            ),
            issuer: issuer.to_owned(),
            allow_http,
        }
    }
}

/// A discovery document member that must be an https URL (or http, as
/// [`url_allowed`] permits), e.g. `jwks_uri` or `introspection_endpoint`,
/// from a document whose `issuer` is the configured one.
pub(crate) async fn discover(
    client: &Client,
    discovery: &Discovery,
    member: &str,
) -> Result<String, String> {
    let shown = redact_url(&discovery.url);
    let body = get(client, &discovery.url).await?;
    let document: Value = serde_json::from_slice(&body)
        .map_err(|_| format!("{shown}: the discovery document is not JSON"))?;
    if document.get("issuer").and_then(Value::as_str) != Some(discovery.issuer.as_str()) {
        return Err(format!(
            "{shown}: the discovery document's issuer is not the configured issuer"
        ));
    }
    let value = document
        .get(member)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{shown}: the discovery document has no {member}"))?;
    let parsed = Url::parse(value).map_err(|_| format!("{shown}: {member} is not a URL"))?;
    url_allowed(&parsed, discovery.allow_http).map_err(|why| format!("{shown}: {member} {why}"))?;
    Ok(value.to_owned())
}

/// The key set at `jwks_url`.
pub(crate) async fn fetch_jwks(client: &Client, jwks_url: &str) -> Result<KeySet, String> {
    let body = get(client, jwks_url).await?;
    parse_jwks(&body).map_err(|reason| format!("{}: {reason}", redact_url(jwks_url)))
}

/// GET `url`, expecting 200 and a body of at most [`MAX_BODY_LEN`] bytes,
/// inside a `token.jwks_fetch` client span.
async fn get(client: &Client, url: &str) -> Result<Vec<u8>, String> {
    let shown = redact_url(url);
    let span = tracing::info_span!(
        "token.jwks_fetch",
        otel.kind = "client",
        server.address = host(url),
    );
    async {
        tracing::debug!(url = %shown, "fetching from the issuer");
        let response = client
            .get(url)
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(|error| format!("{shown}: {}", describe(&error)))?;
        let status = response.status();
        if status != StatusCode::OK {
            return Err(format!("{shown}: HTTP status {status}"));
        }
        read_body(response, MAX_BODY_LEN)
            .await
            .map_err(|why| format!("{shown}: {why}"))
    }
    .instrument(span)
    .await
}

/// The body of `response`, refused when longer than `limit` bytes.
pub(crate) async fn read_body(mut response: Response, limit: usize) -> Result<Vec<u8>, String> {
    if response
        .content_length()
        .is_some_and(|len| len > limit as u64)
    {
        return Err("the response is too large".to_owned());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|error| describe(&error))? {
        if body.len() + chunk.len() > limit {
            return Err("the response is too large".to_owned());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A reqwest error and its causes, without the URL (the caller names it).
pub(crate) fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut text = kind.to_owned();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `url` without user info, query and fragment: safe for logs and reasons.
pub(crate) fn redact_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) => {
            parsed.set_query(None);
            parsed.set_fragment(None);
            // Only fails for URLs that cannot have credentials in the first place.
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        Err(_) => "(malformed URL)".to_owned(),
    }
}

/// The host of `url` (the `server.address` of a client span), or `""`.
pub(crate) fn host(url: &str) -> String {
    Url::parse(url)
        .ok()
        .and_then(|url| url.host_str().map(str::to_owned))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_credentials_query_and_fragment() {
        assert_eq!(
            redact_url("https://u:p@issuer.example:8443/oauth/v2/keys?sig=abc#x"),
            "https://issuer.example:8443/oauth/v2/keys"
        );
        assert_eq!(redact_url("not a url"), "(malformed URL)");
        assert_eq!(host("https://issuer.example:8443/x?y"), "issuer.example");
        assert_eq!(host("nope"), "");
    }
}
