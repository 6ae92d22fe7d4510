//! The spans of one request: the server span (held by the request's record
//! and ended with it), and [`RequestSpans`], which the runtime reaches
//! through the request to hang children under it: the guest call,
//! instantiation, key-value operations, outbound requests, and the guest's
//! own spans. Only a sampled request makes children; an unsampled one still
//! passes its context on, so that downstream services drop it too.

use std::borrow::Cow;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{
    Span as _, SpanBuilder, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _,
    Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{Span, SpanData};

use super::Tracing;

/// Guest spans open at once under one request that children are hung
/// under; beyond, the oldest is forgotten (its children go to the next one
/// out).
const MAX_OPEN_GUEST_SPANS: usize = 64;

/// The server span of one request, ended by its record.
pub struct ServerSpan {
    span: Span,
}

/// What a finished request says about itself, for its server span.
pub struct ServerEnd<'a> {
    /// The normalized method.
    pub method: &'static str,
    /// The matched route, if any.
    pub route: Option<&'a str>,
    /// The component that served it.
    pub component: Option<&'a str>,
    /// The response status.
    pub status: u16,
    /// `error.type`, when it did not end well.
    pub error_type: Option<&'static str>,
    /// Whether the server failed (5xx, a guest or host failure): the span's
    /// status is then an error; a 4xx or a client that left is not one.
    pub failed: bool,
    /// Why it failed, in words.
    pub failure: Option<&'a str>,
}

impl ServerSpan {
    pub(super) fn new(span: Span) -> Self {
        ServerSpan { span }
    }

    /// Names the span `{method} {route}` and ends it with the response's
    /// attributes. Costs nothing for an unsampled request.
    pub fn end(mut self, end: &ServerEnd<'_>) {
        if !self.span.is_recording() {
            return;
        }
        if let Some(route) = end.route {
            self.span.update_name(format!("{} {route}", end.method));
            self.span
                .set_attribute(KeyValue::new("http.route", route.to_owned()));
        }
        self.span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(end.status),
        ));
        if let Some(component) = end.component {
            self.span
                .set_attribute(KeyValue::new("spin.component", component.to_owned()));
        }
        if let Some(error_type) = end.error_type {
            self.span
                .set_attribute(KeyValue::new("error.type", error_type));
            if end.failed {
                let description = end.failure.unwrap_or(error_type).to_owned();
                self.span.set_status(Status::error(description));
            }
        }
        self.span.end();
    }
}

/// A request's spans, as the runtime reaches them.
pub struct RequestSpans {
    tracing: Arc<Tracing>,
    server: SpanContext,
    call: OnceLock<SpanContext>,
    /// Guest spans started (`wasi:otel` `on-start`) and not yet ended,
    /// oldest first.
    guest: Mutex<Vec<SpanContext>>,
}

impl RequestSpans {
    pub(super) fn new(tracing: Arc<Tracing>, server: SpanContext) -> Self {
        RequestSpans {
            tracing,
            server,
            call: OnceLock::new(),
            guest: Mutex::default(),
        }
    }

    /// Whether the request is sampled (children are recorded).
    pub fn is_sampled(&self) -> bool {
        self.server.is_sampled()
    }

    /// The innermost host span: the guest call, once it started, else the
    /// server span. What a guest's spans are children of.
    pub fn outer(&self) -> &SpanContext {
        self.call.get().unwrap_or(&self.server)
    }

    /// The parent of a host span starting now: the innermost open guest span
    /// of this request, else [`RequestSpans::outer`]. `None` when unsampled.
    pub fn parent(&self) -> Option<SpanParent> {
        if !self.is_sampled() {
            return None;
        }
        let guest = self.lock_guest().last().cloned();
        Some(SpanParent {
            tracing: self.tracing.clone(),
            context: guest.unwrap_or_else(|| self.outer().clone()),
        })
    }

    /// Starts the span of the guest call, a child of the server span, under
    /// which later host spans go.
    pub fn start_call(&self, component: &str) -> Option<ChildSpan> {
        if !self.is_sampled() {
            return None;
        }
        let parent = SpanParent {
            tracing: self.tracing.clone(),
            context: self.server.clone(),
        };
        let span = parent.start(
            format!("execute_wasm_component {component}"),
            SpanKind::Internal,
            vec![KeyValue::new("spin.component", component.to_owned())],
        );
        let _ = self.call.set(span.context().clone());
        Some(span)
    }

    /// Records a span that already happened (the instantiation this request
    /// waited for), under [`RequestSpans::parent`].
    pub fn record_past(
        &self,
        name: String,
        started: SystemTime,
        ended: SystemTime,
        attributes: Vec<KeyValue>,
    ) {
        let Some(parent) = self.parent() else {
            return;
        };
        let builder = SpanBuilder::from_name(name)
            .with_kind(SpanKind::Internal)
            .with_start_time(started)
            .with_attributes(attributes);
        let mut span = parent.build(builder);
        span.end_with_timestamp(ended);
    }

    /// A guest span of this request started: host spans starting while it is
    /// open are its children.
    pub fn guest_started(&self, context: SpanContext) {
        if !self.is_sampled() || context.trace_id() != self.server.trace_id() {
            return;
        }
        let mut open = self.lock_guest();
        if open.len() >= MAX_OPEN_GUEST_SPANS {
            open.remove(0);
        }
        open.push(context);
    }

    /// A guest span ended: it is exported (when sampled) and no longer a
    /// parent.
    pub fn guest_ended(&self, span: SpanData) {
        let id: SpanId = span.span_context.span_id();
        self.lock_guest().retain(|open| open.span_id() != id);
        self.tracing.pipeline.processor.submit(span);
    }

    /// Writes `context` into `headers` as `traceparent` (and `tracestate`).
    pub fn inject(&self, context: &SpanContext, headers: &mut http::HeaderMap) {
        let context = Context::new().with_remote_span_context(context.clone());
        self.tracing
            .propagator
            .inject_context(&context, &mut opentelemetry_http::HeaderInjector(headers));
    }

    /// The request's own context, for an outbound request of an unsampled
    /// request: downstream services see it was not sampled.
    pub fn server(&self) -> &SpanContext {
        &self.server
    }

    fn lock_guest(&self) -> std::sync::MutexGuard<'_, Vec<SpanContext>> {
        self.guest.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Where a child span goes: a sampled request's innermost span.
pub struct SpanParent {
    tracing: Arc<Tracing>,
    context: SpanContext,
}

impl SpanParent {
    /// Starts a child span now.
    pub fn start(
        &self,
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        attributes: Vec<KeyValue>,
    ) -> ChildSpan {
        let builder = SpanBuilder::from_name(name)
            .with_kind(kind)
            .with_attributes(attributes);
        ChildSpan(self.build(builder))
    }

    fn build(&self, builder: SpanBuilder) -> Span {
        let parent = Context::new().with_remote_span_context(self.context.clone());
        self.tracing.tracer.build_with_context(builder, &parent)
    }
}

/// A child span in progress; ended when dropped.
pub struct ChildSpan(Span);

impl ChildSpan {
    /// Its context (for a child, or for `traceparent`).
    pub fn context(&self) -> &SpanContext {
        opentelemetry::trace::Span::span_context(&self.0)
    }

    /// Adds an attribute.
    pub fn set(&mut self, attribute: KeyValue) {
        self.0.set_attribute(attribute);
    }

    /// Marks it failed: `error.type` and an error status.
    pub fn fail(&mut self, error_type: impl Into<opentelemetry::Value>, description: String) {
        self.0
            .set_attribute(KeyValue::new("error.type", error_type));
        self.0.set_status(Status::error(description));
    }

    /// Ends it now.
    pub fn end(mut self) {
        self.0.end();
    }
}
