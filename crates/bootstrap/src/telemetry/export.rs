//! The OTLP exporters and the providers around them. Endpoints, headers,
//! timeouts, the sampler (`OTEL_TRACES_SAMPLER` / `_ARG`), batch sizes
//! (`OTEL_BSP_*`) and the metric interval (`OTEL_METRIC_EXPORT_INTERVAL`) are
//! read by the SDK and the exporter from the environment.

use opentelemetry_otlp::{ExporterBuildError, MetricExporter, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;

use super::config::Protocol;

/// The span exporter of `protocol`.
///
/// # Errors
/// When the exporter cannot be built (e.g. a malformed endpoint).
pub fn span_exporter(protocol: Protocol) -> Result<SpanExporter, ExporterBuildError> {
    match protocol {
        Protocol::Grpc => SpanExporter::builder().with_tonic().build(),
        Protocol::HttpProtobuf => SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build(),
    }
}

/// The tracer provider: always (so spans get W3C ids and continue incoming
/// trace context), exporting through a batch processor only with an
/// exporter. The batch processor's queue is bounded (`OTEL_BSP_MAX_QUEUE_SIZE`,
/// 2048): when the collector is slow or down, new spans are dropped, never
/// waited for, so export never blocks a request.
pub fn tracer_provider(resource: Resource, exporter: Option<SpanExporter>) -> SdkTracerProvider {
    let builder = SdkTracerProvider::builder().with_resource(resource);
    match exporter {
        Some(exporter) => builder.with_batch_exporter(exporter).build(),
        None => builder.build(),
    }
}

/// The meter provider with a periodic OTLP reader over `protocol`.
///
/// # Errors
/// When the exporter cannot be built.
pub fn meter_provider(
    resource: Resource,
    protocol: Protocol,
) -> Result<SdkMeterProvider, ExporterBuildError> {
    let exporter = match protocol {
        Protocol::Grpc => MetricExporter::builder().with_tonic().build()?,
        Protocol::HttpProtobuf => MetricExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build()?,
    };
    Ok(SdkMeterProvider::builder()
        .with_resource(resource)
        .with_periodic_exporter(exporter)
        .build())
}
