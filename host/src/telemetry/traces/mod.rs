//! Traces: a server span per request with children for what ran under it,
//! exported over OTLP as the standard `OTEL_*` variables say ([`config`]),
//! through a bounded queue that never slows a request ([`pipeline`]).
//!
//! [`Traces`] is off unless an endpoint is configured; off, a request pays a
//! branch and nothing else. On, each request gets a [`RequestTrace`]: the
//! caller's `traceparent`/`tracestate` continued (the SDK's W3C propagator),
//! the sampler's decision, the server span its record ends, and the
//! [`RequestSpans`] the runtime hangs children under.

pub mod config;
mod pipeline;
mod spans;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{Span as _, SpanBuilder, SpanKind, TraceContextExt as _, Tracer as _};
use opentelemetry::{KeyValue, trace::TracerProvider as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracer;

pub use self::config::TraceExport;
use self::pipeline::Pipeline;
pub use self::spans::{ChildSpan, RequestSpans, ServerEnd, ServerSpan, SpanParent};
use super::metrics::{Metrics, ServiceIdentity};
use super::trace::{SpanId, TraceContext, TraceId};

/// What tracing holds while on.
pub struct Tracing {
    tracer: SdkTracer,
    propagator: TraceContextPropagator,
    pipeline: Pipeline,
}

/// Tracing, on or off; cheap to clone.
#[derive(Clone, Default)]
pub struct Traces(Option<Arc<Tracing>>);

/// A request's trace, as it starts.
pub struct RequestTrace {
    /// Its ids, for the log line and the guest's `traceparent`.
    pub context: TraceContext,
    /// Its server span, for its record to end.
    pub server: Box<ServerSpan>,
    /// Where the runtime hangs children.
    pub spans: Box<RequestSpans>,
}

impl Traces {
    /// No tracing.
    pub fn off() -> Self {
        Traces(None)
    }

    /// Starts exporting as `export` says, as the service `identity` with the
    /// extra resource attributes `resource` (`OTEL_RESOURCE_ATTRIBUTES`).
    /// Must run inside the tokio runtime.
    pub fn start(
        export: &TraceExport,
        identity: &ServiceIdentity,
        resource: &[(String, String)],
    ) -> anyhow::Result<Self> {
        let pipeline = pipeline::start(export, resource_of(identity, resource))?;
        let tracer = pipeline.provider.tracer("hero-host");
        Ok(Traces(Some(Arc::new(Tracing {
            tracer,
            propagator: TraceContextPropagator::new(),
            pipeline,
        }))))
    }

    /// Whether spans are made and exported.
    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// Starts a request's trace: continues the caller's from its headers, or
    /// starts one. `None` when tracing is off.
    pub fn start_request<B>(
        &self,
        request: &http::Request<B>,
        method: &'static str,
        client: SocketAddr,
    ) -> Option<RequestTrace> {
        let tracing = self.0.as_ref()?;
        let parent = tracing.propagator.extract_with_context(
            &opentelemetry::Context::new(),
            &opentelemetry_http::HeaderExtractor(request.headers()),
        );
        let builder = SpanBuilder::from_name(method).with_kind(SpanKind::Server);
        let mut span = tracing.tracer.build_with_context(builder, &parent);
        if span.is_recording() {
            span.set_attributes(request_attributes(request, method, client));
        }
        let context = span.span_context().clone();
        let caller = parent.span().span_context().span_id();
        Some(RequestTrace {
            context: TraceContext {
                trace_id: TraceId::from_bits(u128::from_be_bytes(context.trace_id().to_bytes())),
                span_id: span_id(context.span_id()),
                parent_span_id: (caller != opentelemetry::trace::SpanId::INVALID)
                    .then(|| span_id(caller)),
                sampled: context.is_sampled(),
            },
            server: Box::new(ServerSpan::new(span)),
            spans: Box::new(RequestSpans::new(tracing.clone(), context)),
        })
    }

    /// Registers `hero_host_trace_exported_spans_total` and
    /// `hero_host_trace_dropped_spans_total{reason}`.
    pub fn observe(&self, metrics: &Metrics) {
        let Some(tracing) = &self.0 else {
            return;
        };
        let counts = tracing.pipeline.counts.clone();
        let _exported = metrics
            .meter()
            .u64_observable_counter("hero_host.trace.exported_spans")
            .with_description("Spans the collector accepted.")
            .with_callback(move |observer| {
                observer.observe(counts.exported.load(Ordering::Relaxed), &[]);
            })
            .build();
        let counts = tracing.pipeline.counts.clone();
        let _dropped = metrics
            .meter()
            .u64_observable_counter("hero_host.trace.dropped_spans")
            .with_description("Spans dropped: the export queue was full (a slow or absent collector), or their export failed.")
            .with_callback(move |observer| {
                for (reason, count) in [
                    ("queue_full", &counts.dropped_queue_full),
                    ("export_failed", &counts.dropped_export_failed),
                ] {
                    observer.observe(count.load(Ordering::Relaxed), &[KeyValue::new("reason", reason)]);
                }
            })
            .build();
    }

    /// Exports what is queued, waiting up to `timeout` for the collector.
    /// Blocks: call it off the async threads.
    pub fn shutdown(&self, timeout: Duration) {
        if let Some(tracing) = &self.0
            && let Err(error) = tracing.pipeline.provider.shutdown_with_timeout(timeout)
        {
            tracing::warn!(error = %error, "the last spans may not have been exported");
        }
    }
}

fn span_id(id: opentelemetry::trace::SpanId) -> SpanId {
    SpanId::from_bits(u128::from(u64::from_be_bytes(id.to_bytes())))
}

/// The server span's attributes known when the request starts
/// (semantic conventions for HTTP servers).
fn request_attributes<B>(
    request: &http::Request<B>,
    method: &'static str,
    client: SocketAddr,
) -> Vec<KeyValue> {
    let mut attributes = vec![
        KeyValue::new("http.request.method", method),
        KeyValue::new("url.path", request.uri().path().to_owned()),
        KeyValue::new("url.scheme", "http"),
        KeyValue::new("client.address", client.ip().to_string()),
        KeyValue::new("client.port", i64::from(client.port())),
    ];
    if method == "_OTHER" {
        attributes.push(KeyValue::new(
            "http.request.method_original",
            request.method().as_str().to_owned(),
        ));
    }
    if let Some(agent) = request
        .headers()
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        attributes.push(KeyValue::new("user_agent.original", agent.to_owned()));
    }
    attributes
}

/// The resource spans are exported with: who we are, as `target_info`
/// says, and the variable's other attributes.
fn resource_of(identity: &ServiceIdentity, extra: &[(String, String)]) -> Resource {
    const OURS: [&str; 3] = ["service.name", "service.version", "service.instance.id"];
    let extra = extra
        .iter()
        .filter(|(key, _)| !OURS.contains(&key.as_str()))
        .map(|(key, value)| KeyValue::new(key.clone(), value.clone()));
    Resource::builder_empty()
        .with_attributes(extra)
        .with_attributes([
            KeyValue::new("service.name", identity.name.clone()),
            KeyValue::new("service.version", identity.version.clone()),
            KeyValue::new("service.instance.id", identity.instance_id.clone()),
            KeyValue::new("telemetry.sdk.language", "rust"),
            KeyValue::new("telemetry.sdk.name", "opentelemetry"),
        ])
        .build()
}
