//! The Connect protocol for unary calls, on the gRPC listener beside gRPC
//! and gRPC-web: `POST /<package>.<Service>/<Method>` with
//! `Content-Type: application/proto` or `application/json` (proto3 JSON,
//! unknown fields ignored as connect-go does) is translated to a gRPC call
//! of the same tonic service and back. A success is `200` with the answer
//! message in the request's encoding; a failure is the Connect error JSON
//! `{"code": "permission_denied", "message": ..., "details": [{"type":
//! "zitadel.v1.ErrorDetail", "value": <base64>, "debug": {...}}]}` with the
//! HTTP status of its code. `connect-timeout-ms` bounds the call (then
//! `deadline_exceeded`) and is passed on as `grpc-timeout`; response
//! metadata travels as headers, trailers as `trailer-<name>`.
//!
//! Not served: streaming methods, the `GET` form of unary calls, and
//! compressed requests (`content-encoding` other than `identity` is
//! `unimplemented`). (The `connectrpc` crate implements the whole protocol,
//! but with its own code generator and message types instead of tonic and
//! prost; for unary calls over the services already generated here this
//! layer is the smaller change.)

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use base64::Engine as _;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use prost::Message;
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor, SerializeOptions,
};
use serde_json::{Value, json};
use tonic::body::Body;
use tonic::codegen::{Bytes, Service};
use tonic::{Code, Status};
use tower_layer::Layer;

use crate::FILE_DESCRIPTOR_SET;
use crate::proto::google::rpc;
use crate::service::MAX_MESSAGE_BYTES;

/// The message encoding of a Connect unary call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Proto,
    Json,
}

impl Codec {
    /// The codec of a Connect unary request, `None` for anything else
    /// (gRPC, gRPC-web, other methods or media types pass through).
    fn of<B>(request: &http::Request<B>) -> Option<Self> {
        if request.method() != Method::POST {
            return None;
        }
        let content_type = request.headers().get(CONTENT_TYPE)?.to_str().ok()?;
        let media = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match media.as_str() {
            "application/proto" => Some(Self::Proto),
            "application/json" => Some(Self::Json),
            _ => None,
        }
    }

    const fn content_type(self) -> &'static str {
        match self {
            Self::Proto => "application/proto",
            Self::Json => "application/json",
        }
    }
}

/// Wraps a service in [`Connect`]: serves Connect unary calls of the
/// methods in [`FILE_DESCRIPTOR_SET`] through it.
#[derive(Debug, Clone)]
pub struct ConnectLayer {
    pool: Arc<DescriptorPool>,
}

impl ConnectLayer {
    /// The layer for the services of this crate's protos.
    ///
    /// # Errors
    /// When the embedded descriptor set does not load (a build defect).
    pub fn new() -> Result<Self, prost_reflect::DescriptorError> {
        Ok(Self {
            pool: Arc::new(DescriptorPool::decode(FILE_DESCRIPTOR_SET)?),
        })
    }
}

impl<S> Layer<S> for ConnectLayer {
    type Service = Connect<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Connect {
            inner,
            pool: self.pool.clone(),
        }
    }
}

/// Translates Connect unary calls to gRPC calls of the inner service.
#[derive(Debug, Clone)]
pub struct Connect<S> {
    inner: S,
    pool: Arc<DescriptorPool>,
}

impl<S> Service<http::Request<Body>> for Connect<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let Some(codec) = Codec::of(&request) else {
            return Box::pin(self.inner.call(request));
        };
        // The service made ready by `poll_ready` serves this call.
        let fresh = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, fresh);
        let pool = self.pool.clone();
        let deadline = deadline_of(request.headers());
        Box::pin(async move {
            let Some(deadline) = deadline else {
                return unary(inner, pool, codec, request).await;
            };
            let answer = tokio::time::timeout(deadline, unary(inner, pool.clone(), codec, request));
            match answer.await {
                Ok(answer) => answer,
                Err(_) => Ok(error_response(
                    &Status::deadline_exceeded("the call's connect-timeout-ms passed"),
                    &pool,
                    &HeaderMap::new(),
                )),
            }
        })
    }
}

/// The input and output messages of a unary method `/<service>/<method>`.
fn method_of(pool: &DescriptorPool, path: &str) -> Option<(MessageDescriptor, MessageDescriptor)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    let method = pool
        .get_service_by_name(service)?
        .methods()
        .find(|candidate| candidate.name() == method)?;
    (!method.is_client_streaming() && !method.is_server_streaming())
        .then(|| (method.input(), method.output()))
}

/// Request headers that are not carried over to the gRPC call.
fn is_transport_header(name: &HeaderName) -> bool {
    let name = name.as_str();
    name == CONTENT_TYPE.as_str()
        || name == CONTENT_LENGTH.as_str()
        || name == "te"
        || name == "accept-encoding"
        || name.starts_with("connect-")
        || name.starts_with("grpc-")
}

async fn unary<S>(
    mut inner: S,
    pool: Arc<DescriptorPool>,
    codec: Codec,
    request: http::Request<Body>,
) -> Result<http::Response<Body>, S::Error>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>>,
{
    let (parts, body) = request.into_parts();
    let Some((input, output)) = method_of(&pool, parts.uri.path()) else {
        return Ok(error_response(
            &Status::unimplemented("unknown procedure"),
            &pool,
            &HeaderMap::new(),
        ));
    };
    let encoding = parts
        .headers
        .get(CONTENT_ENCODING)
        .map(|value| value.to_str().unwrap_or("?").to_ascii_lowercase());
    if encoding.is_some_and(|encoding| encoding != "identity") {
        return Ok(error_response(
            &Status::unimplemented("compressed requests are not supported"),
            &pool,
            &HeaderMap::new(),
        ));
    }
    let Ok(collected) = Limited::new(body, MAX_MESSAGE_BYTES).collect().await else {
        return Ok(error_response(
            &Status::resource_exhausted(format!(
                "request body unreadable or larger than {MAX_MESSAGE_BYTES} bytes"
            )),
            &pool,
            &HeaderMap::new(),
        ));
    };
    let body = collected.to_bytes();
    let message = match codec {
        Codec::Proto => body.to_vec(),
        Codec::Json => match json_to_proto(&input, &body) {
            Ok(message) => message,
            Err(status) => return Ok(error_response(&status, &pool, &HeaderMap::new())),
        },
    };

    let mut grpc = http::Request::builder()
        .method(Method::POST)
        .uri(parts.uri.clone())
        .version(http::Version::HTTP_2);
    if let Some(headers) = grpc.headers_mut() {
        for (name, value) in &parts.headers {
            if !is_transport_header(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert("te", HeaderValue::from_static("trailers"));
        if let Some(timeout) = timeout_of(&parts.headers) {
            headers.insert("grpc-timeout", timeout);
        }
    }
    let mut frame = Vec::with_capacity(message.len() + 5);
    frame.push(0);
    frame.extend_from_slice(
        &u32::try_from(message.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    frame.extend_from_slice(&message);
    let Ok(grpc) = grpc.body(Body::new(Full::new(Bytes::from(frame)))) else {
        return Ok(error_response(
            &Status::internal("request could not be translated"),
            &pool,
            &HeaderMap::new(),
        ));
    };

    let response = inner.call(grpc).await?;
    let (parts, body) = response.into_parts();
    let Ok(collected) = body.collect().await else {
        return Ok(error_response(
            &Status::unavailable("the answer was cut off"),
            &pool,
            &parts.headers,
        ));
    };
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let data = collected.to_bytes();
    let status = Status::from_header_map(&parts.headers)
        .or_else(|| Status::from_header_map(&trailers))
        .unwrap_or_else(|| Status::internal("the answer carried no status"));
    if status.code() != Code::Ok {
        return Ok(error_response(&status, &pool, &parts.headers));
    }
    let Some(message) = first_frame(&data) else {
        return Ok(error_response(
            &Status::internal("the answer carried no message"),
            &pool,
            &parts.headers,
        ));
    };
    let body = match codec {
        Codec::Proto => message.to_vec(),
        Codec::Json => match proto_to_json(&output, message) {
            Ok(json) => json,
            Err(status) => return Ok(error_response(&status, &pool, &parts.headers)),
        },
    };
    let mut answer = http::Response::new(Body::new(Full::new(Bytes::from(body))));
    copy_metadata(&parts.headers, answer.headers_mut(), "");
    copy_metadata(&trailers, answer.headers_mut(), "trailer-");
    answer
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(codec.content_type()));
    Ok(answer)
}

/// `connect-timeout-ms`: at most 10 digits, else ignored.
fn timeout_millis(headers: &HeaderMap) -> Option<u64> {
    let millis = headers.get("connect-timeout-ms")?.to_str().ok()?;
    if millis.is_empty() || millis.len() > 10 || !millis.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    millis.parse().ok()
}

/// How long the whole call may take (`connect-timeout-ms`): past it the
/// answer is `deadline_exceeded` (the server's own `grpc.request_timeout`
/// bounds every call as well).
fn deadline_of(headers: &HeaderMap) -> Option<std::time::Duration> {
    timeout_millis(headers).map(std::time::Duration::from_millis)
}

/// `connect-timeout-ms` as a `grpc-timeout` value, for the handlers.
fn timeout_of(headers: &HeaderMap) -> Option<HeaderValue> {
    let millis = timeout_millis(headers)?;
    // grpc-timeout allows at most 8 digits: larger values in seconds.
    let value = if millis < 100_000_000 {
        format!("{millis}m")
    } else {
        format!("{}S", (millis / 1000).min(99_999_999))
    };
    HeaderValue::from_str(&value).ok()
}

/// Copies the answer's metadata (not the gRPC transport headers) with `prefix`.
fn copy_metadata(from: &HeaderMap, to: &mut HeaderMap, prefix: &str) {
    for (name, value) in from {
        if is_transport_header(name) {
            continue;
        }
        if let Ok(name) = HeaderName::from_bytes(format!("{prefix}{}", name.as_str()).as_bytes()) {
            to.append(name, value.clone());
        }
    }
}

/// The payload of the first (uncompressed) data frame of a gRPC body.
fn first_frame(data: &[u8]) -> Option<&[u8]> {
    let (&flag, rest) = data.split_first()?;
    if flag != 0 || rest.len() < 4 {
        return None;
    }
    let (length, rest) = rest.split_at(4);
    let length = usize::try_from(u32::from_be_bytes(length.try_into().ok()?)).ok()?;
    rest.get(..length)
}

/// A proto3 JSON request body as the encoded message (an empty body is the
/// empty message).
fn json_to_proto(input: &MessageDescriptor, body: &[u8]) -> Result<Vec<u8>, Status> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let options = DeserializeOptions::new().deny_unknown_fields(false);
    let message =
        DynamicMessage::deserialize_with_options(input.clone(), &mut deserializer, &options)
            .and_then(|message| deserializer.end().map(|()| message))
            .map_err(|error| {
                // The position only: the body may hold a code.
                Status::invalid_argument(format!(
                    "invalid {} JSON at line {} column {}",
                    input.name(),
                    error.line(),
                    error.column()
                ))
            })?;
    Ok(message.encode_to_vec())
}

/// An encoded answer message as proto3 JSON (lowerCamelCase names, 64-bit
/// integers as strings, enums by name, default values left out).
fn proto_to_json(output: &MessageDescriptor, message: &[u8]) -> Result<Vec<u8>, Status> {
    let message = DynamicMessage::decode(output.clone(), message)
        .map_err(|_| Status::internal("the answer could not be decoded"))?;
    let mut serializer = serde_json::Serializer::new(Vec::new());
    message
        .serialize_with_options(&mut serializer, &SerializeOptions::new())
        .map_err(|_| Status::internal("the answer could not be encoded"))?;
    Ok(serializer.into_inner())
}

/// The Connect name of a gRPC code.
const fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "canceled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// The HTTP status of a Connect error code (the protocol's table).
fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::REQUEST_TIMEOUT),
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::Ok | Code::Unknown | Code::Internal | Code::DataLoss => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

/// The Connect error JSON of `status`: its details (`google.rpc.Status`
/// details) as `{type, value, debug}` with `value` base64 (no padding) and
/// `debug` the detail as JSON when its type is known here.
fn error_json(status: &Status, pool: &DescriptorPool) -> Value {
    let mut error = serde_json::Map::new();
    error.insert("code".into(), json!(code_name(status.code())));
    if !status.message().is_empty() {
        error.insert("message".into(), json!(status.message()));
    }
    let details: Vec<Value> = rpc::Status::decode(status.details())
        .map(|decoded| decoded.details)
        .unwrap_or_default()
        .into_iter()
        .map(|any| {
            let type_name = any
                .type_url
                .rsplit_once('/')
                .map_or(any.type_url.as_str(), |(_, name)| name)
                .to_owned();
            let mut detail = serde_json::Map::new();
            detail.insert("type".into(), json!(type_name));
            detail.insert(
                "value".into(),
                json!(base64::engine::general_purpose::STANDARD_NO_PAD.encode(&any.value)),
            );
            if let Some(debug) = pool
                .get_message_by_name(&type_name)
                .and_then(|descriptor| proto_to_json(&descriptor, &any.value).ok())
                .and_then(|json| serde_json::from_slice::<Value>(&json).ok())
            {
                detail.insert("debug".into(), debug);
            }
            Value::Object(detail)
        })
        .collect();
    if !details.is_empty() {
        error.insert("details".into(), Value::Array(details));
    }
    Value::Object(error)
}

/// A Connect error answer, with the answer's metadata (if any) as headers.
fn error_response(
    status: &Status,
    pool: &DescriptorPool,
    metadata: &HeaderMap,
) -> http::Response<Body> {
    let body = serde_json::to_vec(&error_json(status, pool)).unwrap_or_default();
    let mut answer = http::Response::new(Body::new(Full::new(Bytes::from(body))));
    *answer.status_mut() = http_status(status.code());
    copy_metadata(metadata, answer.headers_mut(), "");
    answer
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_connect_unary_requests_are_taken() {
        let request = |method: Method, content_type: &str| {
            http::Request::builder()
                .method(method)
                .header(CONTENT_TYPE, content_type)
                .body(())
                .unwrap()
        };
        assert_eq!(
            Codec::of(&request(Method::POST, "application/json; charset=utf-8")),
            Some(Codec::Json)
        );
        assert_eq!(
            Codec::of(&request(Method::POST, "application/proto")),
            Some(Codec::Proto)
        );
        for (method, content_type) in [
            (Method::POST, "application/grpc"),
            (Method::POST, "application/grpc-web+proto"),
            (Method::POST, "application/connect+proto"),
            (Method::GET, "application/json"),
        ] {
            assert_eq!(Codec::of(&request(method, content_type)), None);
        }
    }

    #[test]
    fn timeouts_and_frames() {
        let mut headers = HeaderMap::new();
        assert!(timeout_of(&headers).is_none());
        headers.insert("connect-timeout-ms", HeaderValue::from_static("1500"));
        assert_eq!(timeout_of(&headers).unwrap(), "1500m");
        headers.insert("connect-timeout-ms", HeaderValue::from_static("9999999999"));
        assert_eq!(timeout_of(&headers).unwrap(), "9999999S");
        for bad in ["", "-1", "1e3", "12345678901"] {
            headers.insert("connect-timeout-ms", HeaderValue::from_str(bad).unwrap());
            assert!(timeout_of(&headers).is_none(), "{bad}");
        }
        assert_eq!(first_frame(&[0, 0, 0, 0, 2, 7, 8, 9]), Some(&[7, 8][..]));
        assert_eq!(first_frame(&[0, 0, 0, 0, 3, 7]), None);
        assert_eq!(first_frame(&[1, 0, 0, 0, 0]), None);
        assert_eq!(first_frame(&[]), None);
    }

    #[test]
    fn codes_map_to_the_protocols_names_and_statuses() {
        assert_eq!(code_name(Code::PermissionDenied), "permission_denied");
        assert_eq!(code_name(Code::Cancelled), "canceled");
        assert_eq!(http_status(Code::PermissionDenied), 403);
        assert_eq!(http_status(Code::Unauthenticated), 401);
        assert_eq!(http_status(Code::ResourceExhausted), 429);
        assert_eq!(http_status(Code::FailedPrecondition), 400);
        assert_eq!(http_status(Code::Unimplemented), 501);
        assert_eq!(http_status(Code::Cancelled), 499);
    }
}
