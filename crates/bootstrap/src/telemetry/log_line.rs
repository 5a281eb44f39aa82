//! Log lines carry the W3C `trace_id` and `span_id` of the span they were
//! written in, so a log line leads to its trace and back.

use std::fmt;

use opentelemetry::trace::TraceContextExt;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Wraps an event format: JSON lines get `"trace_id"` and `"span_id"` keys
/// first, text lines ` trace_id=… span_id=…` at the end. Lines outside a span
/// (or with OpenTelemetry off) are left as they are.
pub struct WithTraceIds<F> {
    inner: F,
    json: bool,
}

impl<F> WithTraceIds<F> {
    /// Wraps `inner`, which writes JSON objects when `json`.
    pub const fn new(inner: F, json: bool) -> Self {
        Self { inner, json }
    }
}

/// The ids of the OpenTelemetry span active on this thread: the tracing
/// layer activates a span's context when the span is entered.
fn current_ids() -> Option<(String, String)> {
    let context = opentelemetry::Context::current();
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| {
        (
            span_context.trace_id().to_string(),
            span_context.span_id().to_string(),
        )
    })
}

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let Some((trace_id, span_id)) = current_ids() else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        if self.json {
            if let Some(rest) = line.strip_prefix('{') {
                let separator = if rest.trim_start().starts_with('}') {
                    ""
                } else {
                    ","
                };
                return write!(
                    writer,
                    "{{\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\"{separator}{rest}"
                );
            }
            return writer.write_str(&line);
        }
        let body = line.strip_suffix('\n').unwrap_or(&line);
        writeln!(writer, "{body} trace_id={trace_id} span_id={span_id}")
    }
}
