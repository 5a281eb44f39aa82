//! Server spans and HTTP server metrics for every request, per the HTTP
//! semantic conventions: spans named `{method} {route}` (only `{method}` for
//! a path no route matched, so unknown paths cannot make names of high
//! cardinality), `http.server.request.duration` and
//! `http.server.active_requests`. The caller's W3C `traceparent` /
//! `tracestate` are continued.

use std::sync::OnceLock;
use std::time::Instant;

use actix_web::Error;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::HeaderMap;
use actix_web::middleware::Next;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, UpDownCounter};
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::TraceContextExt;
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use application::telemetry::DURATION_BUCKETS;

struct Instruments {
    duration: Histogram<f64>,
    active: UpDownCounter<i64>,
}

fn instruments() -> &'static Instruments {
    static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();
    INSTRUMENTS.get_or_init(|| {
        let meter = opentelemetry::global::meter("otp-service");
        Instruments {
            duration: meter
                .f64_histogram("http.server.request.duration")
                .with_unit("s")
                .with_description("Duration of HTTP server requests")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            active: meter
                .i64_up_down_counter("http.server.active_requests")
                .with_unit("{request}")
                .with_description("HTTP server requests in flight")
                .build(),
        }
    })
}

/// Reads `traceparent` / `tracestate` from actix request headers.
struct Headers<'a>(&'a HeaderMap);

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

/// The method as the conventions name it: a known method, else `_OTHER`
/// (actix accepts any token as a method; each must not become a new span
/// name or metric series).
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

/// Longest `url.path` a span records, in bytes.
const MAX_RECORDED_PATH: usize = 256;

/// `path`, cut to [`MAX_RECORDED_PATH`] bytes at a character boundary (the
/// raw path is still percent-encoded: no line breaks).
fn bounded(path: &str) -> &str {
    let mut end = path.len().min(MAX_RECORDED_PATH);
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    &path[..end]
}

/// Counts a request in flight until it is answered or dropped (a client
/// that goes away drops the request's future before it completes).
struct InFlight {
    counter: UpDownCounter<i64>,
    attributes: [KeyValue; 2],
}

impl InFlight {
    fn start(counter: &UpDownCounter<i64>, attributes: [KeyValue; 2]) -> Self {
        counter.add(1, &attributes);
        Self {
            counter: counter.clone(),
            attributes,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.counter.add(-1, &self.attributes);
    }
}

/// The middleware: `App::new().wrap(actix_web::middleware::from_fn(adapters_http::observe))`.
///
/// # Errors
/// Whatever the wrapped service answers.
pub async fn observe(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let method = method_name(request.method());
    let scheme = request.connection_info().scheme().to_owned();
    let span = tracing::info_span!(
        "HTTP request",
        otel.name = %method,
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method,
        http.request.method_original = Empty,
        http.route = Empty,
        http.response.status_code = Empty,
        url.path = bounded(request.path()),
        url.scheme = %scheme,
        error.type = Empty,
        otp.error_id = Empty,
    );
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&Headers(request.headers()))
    });
    let _ = span.set_parent(parent);
    if method == "_OTHER" {
        span.record("http.request.method_original", request.method().as_str());
    }

    let instruments = instruments();
    let in_flight = InFlight::start(
        &instruments.active,
        [
            KeyValue::new("http.request.method", method),
            KeyValue::new("url.scheme", scheme.clone()),
        ],
    );
    let started = Instant::now();
    let answer = next.call(request).instrument(span.clone()).await;
    drop(in_flight);

    let (status, route) = match &answer {
        Ok(response) => (
            response.status().as_u16(),
            response.request().match_pattern(),
        ),
        Err(error) => (error.as_response_error().status_code().as_u16(), None),
    };
    let mut attributes = vec![
        KeyValue::new("http.request.method", method),
        KeyValue::new("url.scheme", scheme),
        KeyValue::new("http.response.status_code", i64::from(status)),
    ];
    if let Some(route) = route {
        // The route is known only after routing, when the span has started:
        // rename the OpenTelemetry span itself.
        span.context()
            .span()
            .update_name(format!("{method} {route}"));
        span.record("http.route", route.as_str());
        attributes.push(KeyValue::new("http.route", route));
    }
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
        span.record("error.type", status.to_string().as_str());
        attributes.push(KeyValue::new("error.type", status.to_string()));
    }
    instruments
        .duration
        .record(started.elapsed().as_secs_f64(), &attributes);
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_paths_are_bounded() {
        assert_eq!(bounded("/healthz"), "/healthz");
        let long = format!("/v1/users/{}/otp/_check", "é".repeat(300));
        assert!(bounded(&long).len() <= MAX_RECORDED_PATH);
        assert!(long.starts_with(bounded(&long)));
    }

    #[test]
    fn only_known_methods_keep_their_names() {
        assert_eq!(method_name(&Method::POST), "POST");
        assert_eq!(method_name(&Method::DELETE), "DELETE");
        for unknown in ["PROPFIND", "FOO", "post"] {
            let method = Method::from_bytes(unknown.as_bytes()).unwrap();
            assert_eq!(method_name(&method), "_OTHER", "{unknown}");
        }
    }
}
