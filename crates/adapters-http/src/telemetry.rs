//! Server telemetry of the REST port, per the OpenTelemetry semantic
//! conventions for HTTP servers:
//!
//! - [`ServerSpan`]: the root span of each request (through
//!   `tracing-actix-web`'s [`TracingLogger`]), named `{method} {route}` with the
//!   matched route pattern (just `{method}` when no route matched, so unknown
//!   paths cannot blow up span names), continuing the caller's W3C
//!   `traceparent`/`tracestate`, with the contract's error id of an error
//!   answer as `otp.error_id` (and as `error.type` on 5xx).
//! - [`HttpMetrics`]: `http.server.request.duration` (seconds) and
//!   `http.server.active_requests`.
//!
//! `App::new().wrap(HttpMetrics::new()).wrap(TracingLogger::<ServerSpan>::new())`

use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::rc::Rc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::{Method, Version};
use actix_web::{Error, HttpMessage as _};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, UpDownCounter};
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::TraceContextExt as _;
use tracing::Span;
use tracing::field::Empty;
use tracing_actix_web::{RequestId, RootSpanBuilder};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

pub use tracing_actix_web::TracingLogger;

use crate::error::ApiError;

/// Bucket boundaries of request durations in seconds, as the semantic
/// conventions advise for `http.server.request.duration`.
pub const DURATION_BOUNDARIES: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The method as the conventions name it: the known methods, else `_OTHER`.
fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "_OTHER",
    }
}

const fn protocol_version(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// Reads W3C trace-context headers from a request.
struct Headers<'a>(&'a actix_web::http::header::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .map(actix_web::http::header::HeaderName::as_str)
            .collect()
    }
}

/// The root span of a REST request.
#[derive(Debug, Clone, Copy)]
pub struct ServerSpan;

impl RootSpanBuilder for ServerSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let method = method_name(request.method());
        let route = request.match_pattern();
        let name = route
            .as_ref()
            .map_or_else(|| method.to_owned(), |route| format!("{method} {route}"));
        let request_id = request
            .extensions()
            .get::<RequestId>()
            .map(ToString::to_string)
            .unwrap_or_default();
        let span = tracing::info_span!(
            "HTTP request",
            otel.name = %name,
            otel.kind = "server",
            otel.status_code = Empty,
            http.request.method = method,
            http.request.method_original = Empty,
            http.route = Empty,
            http.response.status_code = Empty,
            url.path = request.path(),
            url.scheme = %request.connection_info().scheme(),
            network.protocol.version = protocol_version(request.version()),
            user_agent.original = Empty,
            error.type = Empty,
            otp.error_id = Empty,
            request_id = %request_id,
        );
        if method == "_OTHER" {
            span.record("http.request.method_original", request.method().as_str());
        }
        if let Some(route) = route {
            span.record("http.route", route.as_str());
        }
        if let Some(agent) = request
            .headers()
            .get(actix_web::http::header::USER_AGENT)
            .and_then(|value| value.to_str().ok())
        {
            span.record("user_agent.original", agent);
        }
        let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.extract(&Headers(request.headers()))
        });
        if parent.span().span_context().is_valid() {
            // Fails only without the OpenTelemetry layer; then there is no trace to join.
            let _ = span.set_parent(parent);
        }
        span
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        let (status, error) = match outcome {
            Ok(response) => (response.status(), response.response().error()),
            Err(error) => (error.as_response_error().status_code(), Some(error)),
        };
        span.record("http.response.status_code", i64::from(status.as_u16()));
        let error_id = error
            .and_then(Error::as_error::<ApiError>)
            .and_then(ApiError::error_id);
        if let Some(id) = error_id {
            span.record("otp.error_id", id);
        }
        if status.is_server_error() {
            span.record("otel.status_code", "ERROR");
            span.record("error.type", error_id.unwrap_or_else(|| status.as_str()));
        }
    }
}

/// The HTTP server metrics of the conventions, on the global meter provider
/// (a no-op until one is installed).
#[derive(Debug, Clone)]
pub struct HttpMetrics {
    duration: Histogram<f64>,
    active: UpDownCounter<i64>,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpMetrics {
    /// The instruments, from the global meter provider as it is now.
    #[must_use]
    pub fn new() -> Self {
        let meter = opentelemetry::global::meter("otp-service");
        Self {
            duration: meter
                .f64_histogram("http.server.request.duration")
                .with_unit("s")
                .with_description("Duration of HTTP server requests.")
                .with_boundaries(DURATION_BOUNDARIES.to_vec())
                .build(),
            active: meter
                .i64_up_down_counter("http.server.active_requests")
                .with_unit("{request}")
                .with_description("Number of active HTTP server requests.")
                .build(),
        }
    }
}

impl<S, B> Transform<S, ServiceRequest> for HttpMetrics
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = HttpMetricsService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(HttpMetricsService {
            service: Rc::new(service),
            metrics: self.clone(),
        }))
    }
}

/// [`HttpMetrics`] around a service.
#[derive(Debug)]
pub struct HttpMetricsService<S> {
    service: Rc<S>,
    metrics: HttpMetrics,
}

/// Counts a request as active until it is answered or dropped.
struct Active {
    counter: UpDownCounter<i64>,
    attributes: [KeyValue; 2],
}

impl Drop for Active {
    fn drop(&mut self) {
        self.counter.add(-1, &self.attributes);
    }
}

impl<S, B> Service<ServiceRequest> for HttpMetricsService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>>>>;

    forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        let started = Instant::now();
        let method = KeyValue::new("http.request.method", method_name(request.method()));
        let scheme = KeyValue::new("url.scheme", request.connection_info().scheme().to_owned());
        let route = request.match_pattern();
        let version = protocol_version(request.version());
        let active = Active {
            counter: self.metrics.active.clone(),
            attributes: [method.clone(), scheme.clone()],
        };
        active.counter.add(1, &active.attributes);
        let duration = self.metrics.duration.clone();
        let service = self.service.clone();
        Box::pin(async move {
            let outcome = service.call(request).await;
            drop(active);
            let status = match &outcome {
                Ok(response) => response.status(),
                Err(error) => error.as_response_error().status_code(),
            };
            let mut attributes = vec![
                method,
                scheme,
                KeyValue::new("http.response.status_code", i64::from(status.as_u16())),
                KeyValue::new("network.protocol.version", version),
            ];
            if let Some(route) = route {
                attributes.push(KeyValue::new("http.route", route));
            }
            if status.is_server_error() {
                attributes.push(KeyValue::new("error.type", status.as_str().to_owned()));
            }
            duration.record(started.elapsed().as_secs_f64(), &attributes);
            outcome
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_are_other() {
        assert_eq!(method_name(&Method::POST), "POST");
        assert_eq!(
            method_name(&Method::from_bytes(b"PROPFIND").unwrap()),
            "_OTHER"
        );
    }

    #[test]
    fn duration_buckets_are_the_conventions() {
        assert_eq!(DURATION_BOUNDARIES.len(), 14);
        assert!(DURATION_BOUNDARIES.windows(2).all(|w| w[0] < w[1]));
    }
}
