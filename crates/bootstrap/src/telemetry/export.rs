//! The OTLP exporters and the providers around them. Spans go through the
//! SDK's batch processor (a bounded queue on its own thread, sized by
//! `OTEL_BSP_*`): a slow or absent collector costs dropped spans, never a
//! waiting request. Metrics go through a periodic reader
//! (`OTEL_METRIC_EXPORT_INTERVAL`).

use opentelemetry::KeyValue;
use opentelemetry::metrics::Counter;
use opentelemetry_otlp::ExporterBuildError;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};

use super::config::Protocol;

/// The tracer provider: with `exporter`, spans are batched out; without, they
/// only get their ids (for propagation and log correlation) and are dropped.
pub(super) fn tracer_provider(
    resource: Resource,
    exporter: Option<CountingSpanExporter>,
) -> SdkTracerProvider {
    let builder = SdkTracerProvider::builder().with_resource(resource);
    match exporter {
        Some(exporter) => builder.with_batch_exporter(exporter),
        None => builder,
    }
    .build()
}

/// The OTLP span exporter the environment asks for, counting what it exports.
pub(super) fn span_exporter(
    protocol: Protocol,
) -> Result<CountingSpanExporter, ExporterBuildError> {
    let inner = opentelemetry_otlp::SpanExporter::builder().build()?;
    Ok(CountingSpanExporter::new(inner, protocol))
}

/// The meter provider with an OTLP exporter read periodically.
pub(super) fn meter_provider(resource: Resource) -> Result<SdkMeterProvider, ExporterBuildError> {
    let exporter = opentelemetry_otlp::MetricExporter::builder().build()?;
    Ok(SdkMeterProvider::builder()
        .with_resource(resource)
        .with_reader(PeriodicReader::builder(exporter).build())
        .build())
}

/// Wraps the OTLP span exporter to count the spans it exported or failed to
/// export, as `otel.sdk.exporter.span.exported` (the semantic conventions'
/// SDK metric; failures carry `error.type`). The SDK counts spans its batch
/// processor dropped for a full queue only internally: it logs the first
/// drop and the total at shutdown (target `opentelemetry_sdk`).
#[derive(Debug)]
pub(super) struct CountingSpanExporter {
    inner: opentelemetry_otlp::SpanExporter,
    exported: Counter<u64>,
    component: KeyValue,
}

impl CountingSpanExporter {
    fn new(inner: opentelemetry_otlp::SpanExporter, protocol: Protocol) -> Self {
        let exported = opentelemetry::global::meter("otp-service")
            .u64_counter("otel.sdk.exporter.span.exported")
            .with_unit("{span}")
            .with_description("Spans handed to the OTLP exporter, by outcome.")
            .build();
        let component = KeyValue::new(
            "otel.component.type",
            match protocol {
                Protocol::Grpc => "otlp_grpc_span_exporter",
                Protocol::HttpProtobuf => "otlp_http_span_exporter",
            },
        );
        Self {
            inner,
            exported,
            component,
        }
    }
}

impl SpanExporter for CountingSpanExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let count = u64::try_from(batch.len()).unwrap_or(u64::MAX);
        let result = self.inner.export(batch).await;
        match &result {
            Ok(()) => self
                .exported
                .add(count, std::slice::from_ref(&self.component)),
            Err(error) => self.exported.add(
                count,
                &[
                    self.component.clone(),
                    KeyValue::new("error.type", error_type(error)),
                ],
            ),
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// A low-cardinality name of an export failure.
fn error_type(error: &OTelSdkError) -> &'static str {
    match error {
        OTelSdkError::AlreadyShutdown => "already_shutdown",
        OTelSdkError::Timeout(_) => "timeout",
        _ => "export_failed",
    }
}
