//! Server telemetry of the gRPC port, per the OpenTelemetry semantic
//! conventions for RPC: one span per call named `{service}/{method}` with
//! `rpc.system=grpc`, `rpc.service`, `rpc.method` and `rpc.grpc.status_code`,
//! continuing the caller's W3C trace context from the metadata, and the
//! `rpc.server.duration` histogram (seconds).
//!
//! The layer sits inside tonic-web's, so gRPC and gRPC-web calls look alike
//! to it: the status is the `grpc-status` header of a trailers-only answer,
//! or the `grpc-status` trailer at the end of the body, whichever comes. The
//! contract's error id (the `zitadel.v1.ErrorDetail` in
//! `grpc-status-details-bin`) becomes `otp.error_id`. Only the services this
//! port serves give their names; any other path is `_OTHER`, and so is a
//! method that answers UNIMPLEMENTED, so no caller can invent metric series.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Frame, SizeHint};
use opentelemetry::KeyValue;
use opentelemetry::metrics::Histogram;
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::TraceContextExt as _;
use tonic::body::Body;
use tonic::codegen::{Bytes, Service};
use tonic::{Code, Status};
use tower_layer::Layer;
use tracing::field::Empty;
use tracing::{Instrument as _, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::error::error_detail;
use crate::proto::zitadel::auth::v1::auth_service_server::SERVICE_NAME;

/// Bucket boundaries of call durations in seconds (the conventions' advice).
pub const DURATION_BOUNDARIES: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The services of this port; any other name is `_OTHER`.
const SERVICES: [&str; 4] = [
    SERVICE_NAME,
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

const OTHER: &str = "_OTHER";

/// `(service, method)` of a request path `/package.Service/Method`.
fn call_of(path: &str) -> (&'static str, String) {
    let parts = path
        .strip_prefix('/')
        .and_then(|rest| rest.split_once('/'))
        .and_then(|(service, method)| {
            let service = SERVICES.iter().find(|known| **known == service)?;
            let plausible = !method.is_empty()
                && method.len() <= 64
                && method
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_');
            plausible.then(|| (*service, method.to_owned()))
        });
    parts.unwrap_or((OTHER, OTHER.to_owned()))
}

/// Whether a server answering `code` failed (the conventions' server list).
const fn is_server_error(code: Code) -> bool {
    matches!(
        code,
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    )
}

/// Reads W3C trace-context metadata.
struct Metadata<'a>(&'a http::HeaderMap);

impl Extractor for Metadata<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Wraps the services of the port in [`GrpcTelemetry`].
#[derive(Debug, Clone)]
pub struct GrpcTelemetryLayer {
    duration: Histogram<f64>,
}

impl Default for GrpcTelemetryLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl GrpcTelemetryLayer {
    /// The instruments, from the global meter provider as it is now.
    #[must_use]
    pub fn new() -> Self {
        Self {
            duration: opentelemetry::global::meter("otp-service")
                .f64_histogram("rpc.server.duration")
                .with_unit("s")
                .with_description("Duration of gRPC calls served.")
                .with_boundaries(DURATION_BOUNDARIES.to_vec())
                .build(),
        }
    }
}

impl<S> Layer<S> for GrpcTelemetryLayer {
    type Service = GrpcTelemetry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcTelemetry {
            inner,
            duration: self.duration.clone(),
        }
    }
}

/// A span and a duration per call.
#[derive(Debug, Clone)]
pub struct GrpcTelemetry<S> {
    inner: S,
    duration: Histogram<f64>,
}

impl<S, B> Service<http::Request<B>> for GrpcTelemetry<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let (service, method) = call_of(request.uri().path());
        let span = tracing::info_span!(
            "gRPC request",
            otel.name = %format!("{service}/{method}"),
            otel.kind = "server",
            otel.status_code = Empty,
            rpc.system = "grpc",
            rpc.service = service,
            rpc.method = %method,
            rpc.grpc.status_code = Empty,
            error.type = Empty,
            otp.error_id = Empty,
        );
        let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.extract(&Metadata(request.headers()))
        });
        if parent.span().span_context().is_valid() {
            // Fails only without the OpenTelemetry layer; then there is no trace to join.
            let _ = span.set_parent(parent);
        }
        let end = CallEnd {
            span: span.clone(),
            started: Instant::now(),
            duration: self.duration.clone(),
            service,
            method,
        };
        let answer = span.in_scope(|| self.inner.call(request));
        Box::pin(
            async move {
                let response = answer.await?;
                Ok(match Status::from_header_map(response.headers()) {
                    Some(status) => {
                        end.finish(&status);
                        response
                    }
                    None => response.map(|body| {
                        Body::new(Observed {
                            inner: body,
                            end: Some(end),
                        })
                    }),
                })
            }
            .instrument(span),
        )
    }
}

/// What is left to record when a call's status is known.
struct CallEnd {
    span: Span,
    started: Instant,
    duration: Histogram<f64>,
    service: &'static str,
    method: String,
}

impl CallEnd {
    fn finish(self, status: &Status) {
        let code = status.code();
        let method = if code == Code::Unimplemented {
            OTHER.to_owned()
        } else {
            self.method
        };
        let span = self.span;
        span.record("rpc.grpc.status_code", code as i64);
        if method == OTHER && self.service != OTHER {
            span.record("otel.name", format!("{}/{OTHER}", self.service));
            span.record("rpc.method", OTHER);
        }
        let error_id = error_detail(status).map(|detail| detail.id);
        if let Some(id) = &error_id {
            span.record("otp.error_id", id.as_str());
        }
        let mut attributes = vec![
            KeyValue::new("rpc.system", "grpc"),
            KeyValue::new("rpc.service", self.service),
            KeyValue::new("rpc.method", method),
            KeyValue::new("rpc.grpc.status_code", code as i64),
        ];
        if is_server_error(code) {
            span.record("otel.status_code", "ERROR");
            let kind = error_id.unwrap_or_else(|| format!("{code:?}"));
            span.record("error.type", kind.as_str());
            attributes.push(KeyValue::new("error.type", format!("{code:?}")));
        }
        self.duration
            .record(self.started.elapsed().as_secs_f64(), &attributes);
    }
}

/// A response body whose trailers (or end, or drop) finish the call.
struct Observed {
    inner: Body,
    end: Option<CallEnd>,
}

impl Observed {
    fn finish(&mut self, status: &Status) {
        if let Some(end) = self.end.take() {
            end.finish(status);
        }
    }
}

impl http_body::Body for Observed {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_frame(cx);
        match &poll {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(status) = frame.trailers_ref().and_then(Status::from_header_map) {
                    this.finish(&status);
                }
            }
            Poll::Ready(Some(Err(status))) => this.finish(status),
            Poll::Ready(None) => this.finish(&Status::unknown("no grpc-status")),
            Poll::Pending => {}
        }
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        // The client went away before the status was sent.
        self.finish(&Status::cancelled("call dropped"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_served_services_keep_their_names() {
        assert_eq!(
            call_of("/zitadel.auth.v1.AuthService/AddMyAuthFactorOTP"),
            (SERVICE_NAME, "AddMyAuthFactorOTP".to_owned())
        );
        assert_eq!(
            call_of("/grpc.health.v1.Health/Check"),
            ("grpc.health.v1.Health", "Check".to_owned())
        );
        for path in [
            "/made.up.Service/Method",
            "/zitadel.auth.v1.AuthService/",
            "/zitadel.auth.v1.AuthService/a/b",
            "/",
            "",
        ] {
            assert_eq!(call_of(path), (OTHER, OTHER.to_owned()), "{path}");
        }
    }

    #[test]
    fn server_errors_follow_the_conventions() {
        assert!(is_server_error(Code::Internal));
        assert!(is_server_error(Code::Unavailable));
        assert!(!is_server_error(Code::NotFound));
        assert!(!is_server_error(Code::Unauthenticated));
        assert!(!is_server_error(Code::Ok));
    }
}
