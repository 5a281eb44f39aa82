//! Request bodies: size limit, content type, and proto3-JSON decoding with
//! errors that name the problem without echoing the body (it may hold a code).

use actix_web::http::header;
use actix_web::{HttpRequest, web};
use futures::StreamExt;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::{BodyTimeout, MAX_BODY_BYTES};

/// Reads the whole body within the [`BodyTimeout`], refusing more than
/// [`MAX_BODY_BYTES`].
async fn read_limited(request: &HttpRequest, payload: web::Payload) -> Result<Vec<u8>, ApiError> {
    let timeout = request
        .app_data::<web::Data<BodyTimeout>>()
        .map_or_else(BodyTimeout::default, |timeout| *timeout.get_ref());
    tokio::time::timeout(timeout.0, read_all(request, payload))
        .await
        .unwrap_or_else(|_| Err(ApiError::body_timeout()))
}

async fn read_all(request: &HttpRequest, mut payload: web::Payload) -> Result<Vec<u8>, ApiError> {
    let too_large =
        || ApiError::bad_request(format!("request body exceeds {MAX_BODY_BYTES} bytes"));
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| ApiError::bad_request("request body could not be read"))?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Decodes the body as the request message `T` (`name` is its proto name).
/// An empty body is the empty message; unknown fields are ignored. Like
/// grpc-gateway, the body is read as JSON whatever the `Content-Type` says, so
/// `curl -d '{}'` (which sends a form content type) works as ZITADEL's does.
pub(crate) async fn message<T: DeserializeOwned + Default>(
    name: &str,
    request: &HttpRequest,
    payload: web::Payload,
) -> Result<T, ApiError> {
    let body = read_limited(request, payload).await?;
    decode(name, &body)
}

/// Decodes a whole body as the request message `T`, as [`message`] does
/// once it has read it.
pub(crate) fn decode<T: DeserializeOwned + Default>(
    name: &str,
    body: &[u8],
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    // Proto3 JSON messages are objects: anything else (an array, a number)
    // is refused even where serde would map it onto the struct.
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).map_err(|error| {
            use serde_json::error::Category;
            let what = match error.classify() {
                Category::Syntax | Category::Io => "malformed JSON",
                Category::Eof => "truncated JSON",
                Category::Data => "not a JSON object",
            };
            ApiError::bad_request(format!(
                "invalid {name} body: {what} at line {} column {}",
                error.line(),
                error.column()
            ))
        })?;
    serde_json::from_value(serde_json::Value::Object(object)).map_err(|_| {
        ApiError::bad_request(format!("invalid {name} body: a field has the wrong type"))
    })
}
