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
use actix_web::http::header::HeaderMap;
use actix_web::middleware::Next;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Histogram, UpDownCounter};
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::TraceContextExt;
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Bucket boundaries (seconds), as the HTTP semantic conventions recommend.
const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

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

/// The middleware: `App::new().wrap(actix_web::middleware::from_fn(adapters_http::observe))`.
///
/// # Errors
/// Whatever the wrapped service answers.
pub async fn observe(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let method = request.method().as_str().to_owned();
    let scheme = request.connection_info().scheme().to_owned();
    let span = tracing::info_span!(
        "HTTP request",
        otel.name = %method,
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %method,
        http.route = Empty,
        http.response.status_code = Empty,
        url.path = %request.path(),
        url.scheme = %scheme,
        error.type = Empty,
        otp.error_id = Empty,
    );
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&Headers(request.headers()))
    });
    let _ = span.set_parent(parent);

    let instruments = instruments();
    let in_flight = [
        KeyValue::new("http.request.method", method.clone()),
        KeyValue::new("url.scheme", scheme.clone()),
    ];
    instruments.active.add(1, &in_flight);
    let started = Instant::now();
    let answer = next.call(request).instrument(span.clone()).await;
    instruments.active.add(-1, &in_flight);

    let (status, route) = match &answer {
        Ok(response) => (
            response.status().as_u16(),
            response.request().match_pattern(),
        ),
        Err(error) => (error.as_response_error().status_code().as_u16(), None),
    };
    let mut attributes = vec![
        KeyValue::new("http.request.method", method.clone()),
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
