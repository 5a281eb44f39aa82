//! Fetching the issuer's discovery document and key set over HTTP.

use std::error::Error as _;

use reqwest::header::ACCEPT;
use reqwest::{Client, StatusCode};
use serde_json::Value;

use crate::keys::{KeySet, parse_jwks};

/// The largest discovery document or JWKS read, in bytes.
const MAX_BODY_LEN: usize = 512 * 1024;

/// The issuer's `jwks_uri`, from its OpenID Connect discovery document.
pub(crate) async fn discover_jwks_url(
    client: &Client,
    discovery_url: &str,
) -> Result<String, String> {
    let body = get(client, discovery_url).await?;
    let document: Value = serde_json::from_slice(&body)
        .map_err(|_| format!("{discovery_url}: the discovery document is not JSON"))?;
    let jwks_uri = document
        .get("jwks_uri")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{discovery_url}: the discovery document has no jwks_uri"))?;
    let parsed = reqwest::Url::parse(jwks_uri)
        .map_err(|_| format!("{discovery_url}: jwks_uri is not a URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("{discovery_url}: jwks_uri is not an http(s) URL"));
    }
    Ok(jwks_uri.to_owned())
}

/// The key set at `jwks_url`.
pub(crate) async fn fetch_jwks(client: &Client, jwks_url: &str) -> Result<KeySet, String> {
    let body = get(client, jwks_url).await?;
    parse_jwks(&body).map_err(|reason| format!("{jwks_url}: {reason}"))
}

/// GET `url`, expecting 200 and a body of at most [`MAX_BODY_LEN`] bytes.
async fn get(client: &Client, url: &str) -> Result<Vec<u8>, String> {
    tracing::debug!(url, "fetching issuer keys");
    let mut response = client
        .get(url)
        .header(ACCEPT, "application/json")
        .send()
        .await
        .map_err(|error| format!("{url}: {}", describe(&error)))?;
    let status = response.status();
    if status != StatusCode::OK {
        return Err(format!("{url}: HTTP status {status}"));
    }
    if response
        .content_length()
        .is_some_and(|len| len > MAX_BODY_LEN as u64)
    {
        return Err(format!("{url}: the response is too large"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| format!("{url}: {}", describe(&error)))?
    {
        if body.len() + chunk.len() > MAX_BODY_LEN {
            return Err(format!("{url}: the response is too large"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A reqwest error and its causes, without the URL (the caller names it).
fn describe(error: &reqwest::Error) -> String {
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
