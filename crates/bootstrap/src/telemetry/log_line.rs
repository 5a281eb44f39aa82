//! `trace_id` and `span_id` (W3C hex) on every log line written inside a span
//! that has an OpenTelemetry context, sampled or not, so a line leads to its
//! trace and a trace to its lines.

use std::fmt;
use std::sync::{Arc, OnceLock};

use opentelemetry::trace::{SpanId, TraceContextExt as _, TraceId};
use tracing::dispatcher::WeakDispatch;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The global dispatcher, known once the subscriber is installed; the
/// OpenTelemetry context of a span is reached through it.
pub(super) type DispatchSlot = Arc<OnceLock<WeakDispatch>>;

/// An event format that appends the ids of the event's span to each line of
/// the format it wraps: as two more members of a JSON object, or as
/// ` trace_id=… span_id=…` on a text line.
#[derive(Debug)]
pub(super) struct WithTraceIds<F> {
    inner: F,
    dispatch: DispatchSlot,
    json: bool,
}

impl<F> WithTraceIds<F> {
    pub(super) const fn new(inner: F, dispatch: DispatchSlot, json: bool) -> Self {
        Self {
            inner,
            dispatch,
            json,
        }
    }

    /// The ids of the nearest span around `event` that has a valid
    /// OpenTelemetry context.
    fn ids<S, N>(&self, ctx: &FmtContext<'_, S, N>) -> Option<(TraceId, SpanId)>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
        N: for<'a> FormatFields<'a> + 'static,
    {
        let dispatch = self.dispatch.get()?.upgrade()?;
        ctx.event_scope()?.find_map(|span| {
            let cx = tracing_opentelemetry::get_otel_context(&span.id(), &dispatch)?;
            let span = cx.span();
            let context = span.span_context();
            context
                .is_valid()
                .then(|| (context.trace_id(), context.span_id()))
        })
    }
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
        let Some((trace_id, span_id)) = self.ids(ctx) else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let body = line.trim_end_matches('\n');
        if self.json
            && let Some(object) = body.strip_suffix('}')
        {
            let separator = if object.ends_with('{') { "" } else { "," };
            writeln!(
                writer,
                r#"{object}{separator}"trace_id":"{trace_id}","span_id":"{span_id}"}}"#
            )
        } else {
            writeln!(writer, "{body} trace_id={trace_id} span_id={span_id}")
        }
    }
}
