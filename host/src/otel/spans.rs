//! `wasi:otel/tracing`: the guest's spans, joined to its request's trace.

use std::borrow::Cow;

use opentelemetry::InstrumentationScope;
use opentelemetry::trace::{
    Event, Link, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};

use super::OtelView;
use super::generated::wasi::otel::tracing as wit;
use super::values::{attributes, capped, time};
use crate::telemetry::trace::TraceContext;

impl wit::Host for OtelView<'_> {
    fn on_start(&mut self, context: wit::SpanContext) -> wasmtime::Result<()> {
        if let Some(request) = self.caller()
            && let Some(spans) = request.spans()
            && let Some(context) = span_context(context)
        {
            spans.guest_started(context);
        }
        Ok(())
    }

    fn on_end(&mut self, span: wit::SpanData) -> wasmtime::Result<()> {
        let Some(request) = self.caller() else {
            return Ok(());
        };
        let Some(spans) = request.spans() else {
            return Ok(());
        };
        if let Some(span) = span_data(span) {
            spans.guest_ended(span);
        }
        Ok(())
    }

    fn outer_span_context(&mut self) -> wasmtime::Result<wit::SpanContext> {
        let Some(request) = self.caller() else {
            return Ok(to_wit(&SpanContext::empty_context()));
        };
        Ok(match request.spans() {
            Some(spans) => to_wit(spans.outer()),
            // Tracing off: the request's ids all the same, so the guest's
            // logs name its trace.
            None => to_wit(&from_ids(&request.trace)),
        })
    }
}

/// A request's ids as a span context.
fn from_ids(trace: &TraceContext) -> SpanContext {
    let flags = if trace.sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    SpanContext::new(
        TraceId::from_hex(trace.trace_id.as_str()).unwrap_or(TraceId::INVALID),
        SpanId::from_hex(trace.span_id.as_str()).unwrap_or(SpanId::INVALID),
        flags,
        false,
        TraceState::default(),
    )
}

fn to_wit(context: &SpanContext) -> wit::SpanContext {
    let trace_state = context
        .trace_state()
        .header()
        .split(',')
        .filter_map(|entry| entry.split_once('='))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
    wit::SpanContext {
        trace_id: format!("{:032x}", context.trace_id()),
        span_id: format!("{:016x}", context.span_id()),
        trace_flags: if context.is_sampled() {
            wit::TraceFlags::SAMPLED
        } else {
            wit::TraceFlags::empty()
        },
        is_remote: context.is_remote(),
        trace_state,
    }
}

/// The guest's span context; `None` when its ids are not valid.
fn span_context(context: wit::SpanContext) -> Option<SpanContext> {
    let trace_id = TraceId::from_hex(&context.trace_id).ok()?;
    let span_id = SpanId::from_hex(&context.span_id).ok()?;
    let flags = if context.trace_flags.contains(wit::TraceFlags::SAMPLED) {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let state = TraceState::from_key_value(context.trace_state).unwrap_or_default();
    let context = SpanContext::new(trace_id, span_id, flags, context.is_remote, state);
    context.is_valid().then_some(context)
}

/// The guest's span, as the exporter takes it; `None` when its ids are not
/// valid.
fn span_data(span: wit::SpanData) -> Option<SpanData> {
    let span_context = span_context(span.span_context)?;
    let (attributes, dropped) = attributes(span.attributes);
    Some(SpanData {
        span_context,
        parent_span_id: SpanId::from_hex(&span.parent_span_id).unwrap_or(SpanId::INVALID),
        parent_span_is_remote: false,
        span_kind: kind(span.span_kind),
        name: Cow::Owned(span.name),
        start_time: time(span.start_time),
        end_time: time(span.end_time),
        attributes,
        dropped_attributes_count: span.dropped_attributes.saturating_add(dropped),
        events: events(span.events, span.dropped_events),
        links: links(span.links, span.dropped_links),
        status: match span.status {
            wit::Status::Unset => Status::Unset,
            wit::Status::Ok => Status::Ok,
            wit::Status::Error(description) => Status::error(description),
        },
        instrumentation_scope: scope(span.instrumentation_scope),
    })
}

fn kind(kind: wit::SpanKind) -> SpanKind {
    match kind {
        wit::SpanKind::Client => SpanKind::Client,
        wit::SpanKind::Server => SpanKind::Server,
        wit::SpanKind::Producer => SpanKind::Producer,
        wit::SpanKind::Consumer => SpanKind::Consumer,
        wit::SpanKind::Internal => SpanKind::Internal,
    }
}

fn events(list: Vec<wit::Event>, dropped: u32) -> SpanEvents {
    let (kept, extra) = capped(list, |event| {
        let (attributes, dropped) = attributes(event.attributes);
        Some(Event::new(
            event.name,
            time(event.time),
            attributes,
            dropped,
        ))
    });
    let mut events = SpanEvents::default();
    events.events = kept;
    events.dropped_count = dropped.saturating_add(extra);
    events
}

fn links(list: Vec<wit::Link>, dropped: u32) -> SpanLinks {
    let (kept, extra) = capped(list, |link| {
        let context = span_context(link.span_context)?;
        let (attributes, dropped) = attributes(link.attributes);
        Some(Link::new(context, attributes, dropped))
    });
    let mut links = SpanLinks::default();
    links.links = kept;
    links.dropped_count = dropped.saturating_add(extra);
    links
}

fn scope(scope: super::generated::wasi::otel::types::InstrumentationScope) -> InstrumentationScope {
    let (attributes, _) = attributes(scope.attributes);
    let mut builder = InstrumentationScope::builder(scope.name).with_attributes(attributes);
    if let Some(version) = scope.version {
        builder = builder.with_version(version);
    }
    if let Some(schema_url) = scope.schema_url {
        builder = builder.with_schema_url(schema_url);
    }
    builder.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_survive_the_round_trip_through_wit() {
        let context = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            false,
            TraceState::from_key_value([("vendor", "x")]).unwrap(),
        );
        let wit = to_wit(&context);
        assert_eq!(wit.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(wit.span_id, "00f067aa0ba902b7");
        assert_eq!(wit.trace_state, [("vendor".to_owned(), "x".to_owned())]);
        assert_eq!(span_context(wit), Some(context));
    }

    #[test]
    fn invalid_guest_ids_are_refused() {
        let invalid = wit::SpanContext {
            trace_id: "0".repeat(32),
            span_id: "00f067aa0ba902b7".into(),
            trace_flags: wit::TraceFlags::SAMPLED,
            is_remote: false,
            trace_state: Vec::new(),
        };
        assert_eq!(span_context(invalid), None);
        let garbage = wit::SpanContext {
            trace_id: "zz".into(),
            span_id: "yy".into(),
            trace_flags: wit::TraceFlags::empty(),
            is_remote: false,
            trace_state: Vec::new(),
        };
        assert_eq!(span_context(garbage), None);
    }
}
