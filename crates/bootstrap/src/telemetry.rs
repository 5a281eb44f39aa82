//! Telemetry: log lines on stdout through `tracing` (JSON by default, text for
//! people), and OpenTelemetry traces and metrics over OTLP, configured only by
//! the standard `OTEL_*` environment variables.
//!
//! - `OTEL_SDK_DISABLED=true`: no OpenTelemetry at all (plain logs).
//! - No `OTEL_EXPORTER_OTLP_[TRACES_|METRICS_]ENDPOINT`: no exporter is
//!   installed and nothing leaves the process; spans still get W3C ids (and
//!   continue an incoming `traceparent`) so log lines carry `trace_id`.
//! - With an endpoint: a batch span processor (bounded queue, drops when the
//!   collector is slow or down) and a periodic metric reader, both exporting
//!   OTLP over `grpc` or `http/protobuf` (`OTEL_EXPORTER_OTLP_PROTOCOL`).
//!
//! Domain counters are `tracing` events of target [`METRICS_TARGET`] with
//! `monotonic_counter.*` fields; they reach the metrics pipeline whatever the
//! log filter says, and never the log output.

mod config;
mod db_pool;
mod export;
mod log_line;

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::{FilterExt, Targets, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

pub use config::OtelConfig;
pub use db_pool::observe_pool;

use crate::settings::LogSettings;

/// The `tracing` target of events that are metrics, not log lines.
pub const METRICS_TARGET: &str = "otp.metrics";

/// The longest a shutdown waits for the last spans and metrics to go out.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Crates whose own spans and events never become spans: the exporters'
/// transport (an exported span about exporting would feed itself) and noise.
const NOT_TRACED: [&str; 9] = [
    "h2",
    "hyper",
    "hyper_util",
    "tonic",
    "tower",
    "reqwest",
    "opentelemetry",
    "opentelemetry_sdk",
    "opentelemetry_otlp",
];

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync + 'static>;

/// The installed OpenTelemetry providers; [`Telemetry::shutdown`] flushes them.
#[derive(Debug, Default)]
#[must_use = "call `shutdown` before exiting, or the last spans and metrics are lost"]
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

/// Installs the global subscriber and, unless `OTEL_SDK_DISABLED=true`, the
/// OpenTelemetry providers and the W3C trace-context propagator. `RUST_LOG`,
/// when set, wins over `log.filter`. Installs nothing if a subscriber is
/// already installed (tests). Must run inside a Tokio runtime (the gRPC
/// exporter's channel lives on it).
pub fn init(settings: &LogSettings) -> Telemetry {
    init_from(settings, &OtelConfig::from_env(std::env::vars()))
}

/// [`init`] with an explicit OpenTelemetry configuration.
pub fn init_from(settings: &LogSettings, otel: &OtelConfig) -> Telemetry {
    let mut layers: Vec<BoxedLayer> = vec![fmt_layer(settings)];
    let mut telemetry = Telemetry::default();
    let mut problems = Vec::new();
    if otel.enabled() {
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        let resource = otel.resource();
        if otel.export_metrics() {
            match export::meter_provider(resource.clone(), otel.metrics_protocol()) {
                Ok(provider) => {
                    opentelemetry::global::set_meter_provider(provider.clone());
                    layers.push(metrics_layer(provider.clone()));
                    telemetry.meter = Some(provider);
                }
                Err(error) => problems.push(format!("metrics exporter: {error}")),
            }
        }
        let exporter = if otel.export_traces() {
            export::span_exporter(otel.traces_protocol())
                .map_err(|error| problems.push(format!("span exporter: {error}")))
                .ok()
        } else {
            None
        };
        let provider = export::tracer_provider(resource, exporter);
        opentelemetry::global::set_tracer_provider(provider.clone());
        layers.push(trace_layer(&provider));
        telemetry.tracer = Some(provider);
    }
    if tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .is_err()
    {
        return telemetry;
    }
    for problem in problems {
        tracing::warn!(%problem, "OpenTelemetry export is off");
    }
    // Said only when something is exported: one-shot commands (`keys
    // generate`, `config`) print their answer alone on stdout.
    let exporting_traces = otel.export_traces() && telemetry.tracer.is_some();
    if exporting_traces || telemetry.meter.is_some() {
        tracing::info!(
            traces = exporting_traces,
            metrics = telemetry.meter.is_some(),
            "OpenTelemetry export ready"
        );
    }
    telemetry
}

/// Log lines: the `RUST_LOG` / `log.filter` directives, minus metric events.
fn fmt_layer(settings: &LogSettings) -> BoxedLayer {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"))
        .and(filter_fn(|metadata| metadata.target() != METRICS_TARGET));
    if settings.format.eq_ignore_ascii_case("text") {
        tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .map_event_format(|format| log_line::WithTraceIds::new(format, false))
            .with_filter(filter)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .map_event_format(|format| log_line::WithTraceIds::new(format, true))
            .with_filter(filter)
            .boxed()
    }
}

/// Spans: every `info` (and more severe) span of this service, whatever the
/// log filter; never the transport crates' own spans, never metric events.
fn trace_layer(provider: &SdkTracerProvider) -> BoxedLayer {
    let tracer = provider.tracer_with_scope(
        opentelemetry::InstrumentationScope::builder("otp-service")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build(),
    );
    let filter = NOT_TRACED
        .iter()
        .fold(
            Targets::new().with_default(LevelFilter::INFO),
            |targets, target| targets.with_target(*target, LevelFilter::OFF),
        )
        .with_target(METRICS_TARGET, LevelFilter::OFF);
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(filter)
        .boxed()
}

/// Metric events (target [`METRICS_TARGET`]) become OTLP counters, whatever
/// the log filter.
fn metrics_layer(provider: SdkMeterProvider) -> BoxedLayer {
    tracing_opentelemetry::MetricsLayer::new(provider)
        .with_filter(filter_fn(|metadata| metadata.target() == METRICS_TARGET))
        .boxed()
}

impl Telemetry {
    /// Whether an OpenTelemetry tracer provider is installed.
    #[must_use]
    pub const fn is_tracing(&self) -> bool {
        self.tracer.is_some()
    }

    /// Flushes and stops the providers, waiting at most about
    /// [`SHUTDOWN_TIMEOUT`] for each. Runs on a blocking thread: the gRPC
    /// exporter needs the runtime's other threads while it flushes.
    pub async fn shutdown(self) {
        let Self { tracer, meter } = self;
        if tracer.is_none() && meter.is_none() {
            return;
        }
        let flush = tokio::task::spawn_blocking(move || {
            if let Some(tracer) = tracer
                && let Err(error) = tracer.shutdown_with_timeout(SHUTDOWN_TIMEOUT)
            {
                tracing::warn!(%error, "flushing spans at shutdown failed");
            }
            if let Some(meter) = meter
                && let Err(error) = meter.shutdown_with_timeout(SHUTDOWN_TIMEOUT)
            {
                tracing::warn!(%error, "flushing metrics at shutdown failed");
            }
        });
        if tokio::time::timeout(SHUTDOWN_TIMEOUT * 3, flush)
            .await
            .is_err()
        {
            tracing::warn!("telemetry shutdown timed out; the last spans or metrics may be lost");
        }
    }
}
