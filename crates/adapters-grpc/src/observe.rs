//! Server spans and `rpc.server.duration` for every gRPC (and, after
//! tonic-web's translation, gRPC-web) call, per the RPC semantic
//! conventions; the caller's W3C `traceparent` / `tracestate` are continued.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Instant;

use opentelemetry::KeyValue;
use opentelemetry::metrics::Histogram;
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::TraceContextExt as _;
use tonic::body::Body;
use tonic::codegen::Service;
use tower_layer::Layer;
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::proto::otp::v1::otp_check_service_server::SERVICE_NAME as CHECK_SERVICE_NAME;
use crate::proto::zitadel::auth::v1::auth_service_server::SERVICE_NAME;
use crate::proto::zitadel::management::v1::management_service_server::SERVICE_NAME as MANAGEMENT_SERVICE_NAME;
use crate::proto::zitadel::user::v2::user_service_server::SERVICE_NAME as USER_SERVICE_NAME;

use application::telemetry::DURATION_BUCKETS;

fn duration() -> &'static Histogram<f64> {
    static DURATION: OnceLock<Histogram<f64>> = OnceLock::new();
    DURATION.get_or_init(|| {
        opentelemetry::global::meter("otp-service")
            .f64_histogram("rpc.server.duration")
            .with_unit("s")
            .with_description("Duration of gRPC calls, until the answer's headers")
            .with_boundaries(DURATION_BUCKETS.to_vec())
            .build()
    })
}

/// The services of this port: only their names (and plausible method names)
/// name spans and metric series, so no caller can invent new ones.
const SERVICES: [&str; 7] = [
    SERVICE_NAME,
    USER_SERVICE_NAME,
    MANAGEMENT_SERVICE_NAME,
    CHECK_SERVICE_NAME,
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// A method of a served service that the service does not know answers
/// UNIMPLEMENTED; its series is named `_OTHER`.
const OTHER_METHOD: &str = "_OTHER";

/// `(service, method)` of a request path `/package.Service/Method` when the
/// service is one of [`SERVICES`]; `None` for anything else.
fn call_of(path: &str) -> Option<(&'static str, String)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    let service = SERVICES.iter().find(|known| **known == service)?;
    let plausible = !method.is_empty()
        && method.len() <= 64
        && method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    plausible.then(|| (*service, method.to_owned()))
}

/// Reads `traceparent` / `tracestate` from request headers.
struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Wraps a service in [`Observe`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ObserveLayer;

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Observe { inner }
    }
}

/// One server span and one duration measurement per call.
#[derive(Debug, Clone)]
pub struct Observe<S> {
    inner: S,
}

impl<S, B> Service<http::Request<B>> for Observe<S>
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
        // `/package.Service/Method` of a served service; anything else is
        // named by the system only.
        let call = call_of(request.uri().path());
        let name = call.as_ref().map_or_else(
            || "grpc".to_owned(),
            |(service, method)| format!("{service}/{method}"),
        );
        let span = tracing::info_span!(
            "gRPC call",
            otel.name = %name,
            otel.kind = "server",
            otel.status_code = Empty,
            rpc.system = "grpc",
            rpc.service = Empty,
            rpc.method = Empty,
            rpc.grpc.status_code = Empty,
            error.type = Empty,
            otp.error_id = Empty,
        );
        // `rpc.method` is recorded with the status: an unknown method of a
        // served service turns out `_OTHER` only then.
        if let Some((service, _)) = &call {
            span.record("rpc.service", *service);
        }
        let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.extract(&Headers(request.headers()))
        });
        let _ = span.set_parent(parent);
        let started = Instant::now();
        let answer = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        Box::pin(
            async move {
                let answer = answer.await;
                // Unary errors are trailers-only: the status is in the headers.
                // An answer without one succeeded (its status comes in trailers).
                let status: i64 = match &answer {
                    Ok(response) => response
                        .headers()
                        .get("grpc-status")
                        .and_then(|value| value.to_str().ok())
                        .and_then(|value| value.parse().ok())
                        .unwrap_or(0),
                    Err(_) => 2,
                };
                let span = tracing::Span::current();
                span.record("rpc.grpc.status_code", status);
                // Server errors per the conventions: UNKNOWN, DEADLINE_EXCEEDED,
                // UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS.
                if matches!(status, 2 | 4 | 12 | 13 | 14 | 15) {
                    span.record("otel.status_code", "ERROR");
                    span.record("error.type", status.to_string().as_str());
                }
                let mut attributes = vec![
                    KeyValue::new("rpc.system", "grpc"),
                    KeyValue::new("rpc.grpc.status_code", status),
                ];
                if let Some((service, mut method)) = call {
                    if status == 12 {
                        method = OTHER_METHOD.to_owned();
                        // The span has started: rename the OpenTelemetry span itself.
                        span.context()
                            .span()
                            .update_name(format!("{service}/{OTHER_METHOD}"));
                    }
                    span.record("rpc.method", method.as_str());
                    attributes.push(KeyValue::new("rpc.service", service));
                    attributes.push(KeyValue::new("rpc.method", method));
                }
                duration().record(started.elapsed().as_secs_f64(), &attributes);
                answer
            }
            .instrument(span),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_served_services_name_calls() {
        assert_eq!(
            call_of("/zitadel.auth.v1.AuthService/AddMyAuthFactorOTP"),
            Some((SERVICE_NAME, "AddMyAuthFactorOTP".to_owned()))
        );
        assert_eq!(
            call_of("/grpc.health.v1.Health/Check"),
            Some(("grpc.health.v1.Health", "Check".to_owned()))
        );
        for path in [
            "/made.up.Service/Method",
            "/zitadel.auth.v1.AuthService/",
            "/zitadel.auth.v1.AuthService/a/b",
            "/zitadel.auth.v1.AuthService/with space",
            "/",
            "",
        ] {
            assert_eq!(call_of(path), None, "{path}");
        }
    }
}
