//! What the standard `OTEL_*` environment variables ask for. Only the choices
//! the SDK leaves to the application live here (whether OpenTelemetry runs,
//! whether each signal is exported, the default service name); endpoints,
//! headers, timeouts, samplers, batch sizes and resource attributes are read
//! by the SDK and exporter themselves.

use std::collections::HashMap;

use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;

/// The service name when neither `OTEL_SERVICE_NAME` nor a `service.name` in
/// `OTEL_RESOURCE_ATTRIBUTES` gives one.
pub const DEFAULT_SERVICE_NAME: &str = "otp-service";

/// An OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `grpc`
    Grpc,
    /// `http/protobuf` (the default, as the specification says)
    HttpProtobuf,
}

/// The OpenTelemetry choices read from the environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OtelConfig {
    vars: HashMap<String, String>,
}

impl OtelConfig {
    /// Reads the `OTEL_*` variables of `vars` (e.g. `std::env::vars()`).
    pub fn from_env(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            vars: vars
                .into_iter()
                .filter(|(key, _)| key.starts_with("OTEL_"))
                .collect(),
        }
    }

    /// OpenTelemetry off, whatever the environment says.
    #[must_use]
    pub fn disabled() -> Self {
        Self::from_env([("OTEL_SDK_DISABLED".to_owned(), "true".to_owned())])
    }

    fn var(&self, key: &str) -> Option<&str> {
        self.vars
            .get(key)
            .map(|value| value.trim())
            .filter(|value| !value.is_empty())
    }

    /// False when `OTEL_SDK_DISABLED=true`: no providers, no propagator.
    #[must_use]
    pub fn enabled(&self) -> bool {
        !self
            .var("OTEL_SDK_DISABLED")
            .is_some_and(|value| value.eq_ignore_ascii_case("true"))
    }

    /// Whether `signal` (`TRACES`, `METRICS`) has an endpoint and its
    /// `OTEL_<SIGNAL>_EXPORTER` is `otlp` (the default).
    fn exports(&self, signal: &str) -> bool {
        let exporter = self
            .var(&format!("OTEL_{signal}_EXPORTER"))
            .unwrap_or("otlp");
        self.enabled()
            && exporter.eq_ignore_ascii_case("otlp")
            && (self
                .var(&format!("OTEL_EXPORTER_OTLP_{signal}_ENDPOINT"))
                .is_some()
                || self.var("OTEL_EXPORTER_OTLP_ENDPOINT").is_some())
    }

    /// Spans go to an OTLP endpoint.
    #[must_use]
    pub fn export_traces(&self) -> bool {
        self.exports("TRACES")
    }

    /// Metrics go to an OTLP endpoint.
    #[must_use]
    pub fn export_metrics(&self) -> bool {
        self.exports("METRICS")
    }

    /// The transport of spans (the exporter reads the same variables).
    #[must_use]
    pub fn traces_protocol(&self) -> Protocol {
        self.protocol("TRACES")
    }

    /// The transport of metrics.
    #[must_use]
    pub fn metrics_protocol(&self) -> Protocol {
        self.protocol("METRICS")
    }

    fn protocol(&self, signal: &str) -> Protocol {
        match self
            .var(&format!("OTEL_EXPORTER_OTLP_{signal}_PROTOCOL"))
            .or_else(|| self.var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        {
            Some("grpc") => Protocol::Grpc,
            _ => Protocol::HttpProtobuf,
        }
    }

    /// Whether the environment names the service itself.
    fn names_service(&self) -> bool {
        self.var("OTEL_SERVICE_NAME").is_some()
            || self
                .var("OTEL_RESOURCE_ATTRIBUTES")
                .is_some_and(|attributes| {
                    attributes
                        .split(',')
                        .any(|pair| pair.trim_start().starts_with("service.name="))
                })
    }

    /// The resource of every span and metric: the SDK's detectors
    /// (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, the SDK's own
    /// attributes), with `service.name` defaulting to [`DEFAULT_SERVICE_NAME`]
    /// and `service.version` to this build's version.
    #[must_use]
    pub fn resource(&self) -> Resource {
        let mut builder = Resource::builder();
        if !self.names_service() {
            builder = builder.with_service_name(DEFAULT_SERVICE_NAME);
        }
        if !self
            .var("OTEL_RESOURCE_ATTRIBUTES")
            .is_some_and(|attributes| attributes.contains("service.version="))
        {
            builder =
                builder.with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
        }
        builder.build()
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::Key;

    use super::*;

    fn config(pairs: &[(&str, &str)]) -> OtelConfig {
        OtelConfig::from_env(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        )
    }

    #[test]
    fn nothing_is_exported_without_an_endpoint() {
        let otel = config(&[("OTEL_SERVICE_NAME", "x")]);
        assert!(otel.enabled());
        assert!(!otel.export_traces());
        assert!(!otel.export_metrics());
    }

    #[test]
    fn the_generic_endpoint_exports_both_signals_and_signal_endpoints_one() {
        let both = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")]);
        assert!(both.export_traces() && both.export_metrics());
        let traces = config(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c/v1/traces")]);
        assert!(traces.export_traces() && !traces.export_metrics());
        let metrics = config(&[("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://c/v1/metrics")]);
        assert!(!metrics.export_traces() && metrics.export_metrics());
        let empty = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]);
        assert!(!empty.export_traces());
    }

    #[test]
    fn sdk_disabled_and_exporter_none_switch_export_off() {
        let disabled = config(&[
            ("OTEL_SDK_DISABLED", "TRUE"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
        ]);
        assert!(!disabled.enabled());
        assert!(!disabled.export_traces() && !disabled.export_metrics());
        assert!(config(&[("OTEL_SDK_DISABLED", "false")]).enabled());
        let no_metrics = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_METRICS_EXPORTER", "none"),
        ]);
        assert!(no_metrics.export_traces() && !no_metrics.export_metrics());
    }

    #[test]
    fn protocol_defaults_to_http_protobuf_and_the_signal_variable_wins() {
        assert_eq!(config(&[]).traces_protocol(), Protocol::HttpProtobuf);
        assert_eq!(
            config(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).traces_protocol(),
            Protocol::Grpc
        );
        assert_eq!(
            config(&[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
            ])
            .traces_protocol(),
            Protocol::HttpProtobuf
        );
    }

    #[test]
    fn the_service_name_defaults_to_otp_service() {
        let name = |otel: OtelConfig| {
            otel.resource()
                .get(&Key::new("service.name"))
                .map(|value| value.to_string())
        };
        // The SDK's detectors read the real environment; this test process
        // sets no OTEL_SERVICE_NAME, so only the explicit pairs matter.
        if std::env::var_os("OTEL_SERVICE_NAME").is_none()
            && std::env::var_os("OTEL_RESOURCE_ATTRIBUTES").is_none()
        {
            assert_eq!(name(config(&[])).as_deref(), Some(DEFAULT_SERVICE_NAME));
        }
        let named = config(&[(
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=x, service.name=a",
        )]);
        assert!(named.names_service());
        assert!(config(&[("OTEL_SERVICE_NAME", "b")]).names_service());
    }
}
