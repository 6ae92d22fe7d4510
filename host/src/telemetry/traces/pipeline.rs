//! The export pipeline: ended spans go through a bounded queue to
//! `opentelemetry_sdk`'s batch span processor, whose own thread sends them
//! with `opentelemetry-otlp`. Nothing here ever waits on the collector from a
//! request: a span that finds the queue full is dropped and counted, and a
//! failed export is counted and reported in the log at most once a minute.
//!
//! The batch processor drops spans itself when its channel is full, but keeps
//! that count to itself; so the queue is bounded here first, one step ahead
//! of it: a span counts as queued from `on_end` until the export that carried
//! it has finished, which is never less than what the processor holds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use opentelemetry::Context;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SpanData, SpanExporter, SpanProcessor,
};

use super::config::{Protocol, SamplerChoice, TraceExport};

/// How often a failing export is reported in the log, at most.
const FAILURE_REPORT_INTERVAL: Duration = Duration::from_secs(60);

/// Spans that reached the collector, or did not.
#[derive(Debug, Default)]
pub struct ExportCounts {
    /// Exported.
    pub exported: AtomicU64,
    /// Dropped because the queue was full (a slow or absent collector).
    pub dropped_queue_full: AtomicU64,
    /// Dropped because their export failed.
    pub dropped_export_failed: AtomicU64,
}

/// The span processor every span ends in: bounds the queue, then hands the
/// span to the batch processor.
#[derive(Debug)]
pub struct BoundedProcessor {
    batch: BatchSpanProcessor,
    queued: Arc<AtomicUsize>,
    capacity: usize,
    counts: Arc<ExportCounts>,
}

impl BoundedProcessor {
    /// Queues an ended span for export, or drops and counts it when the
    /// queue is full. Never blocks.
    pub fn submit(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            self.counts
                .dropped_queue_full
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.batch.on_end(span);
    }

    /// Exports what is queued and stops the export thread, waiting up to
    /// `timeout`.
    pub fn shutdown(&self, timeout: Duration) -> OTelSdkResult {
        self.batch.shutdown_with_timeout(timeout)
    }
}

/// The tracer provider's view of the shared [`BoundedProcessor`].
#[derive(Debug)]
struct Shared(Arc<BoundedProcessor>);

impl SpanProcessor for Shared {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        self.0.submit(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.batch.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown(timeout)
    }
}

/// The OTLP exporter, counting what it exports and reporting failures now
/// and then.
#[derive(Debug)]
struct CountingExporter {
    inner: opentelemetry_otlp::SpanExporter,
    queued: Arc<AtomicUsize>,
    counts: Arc<ExportCounts>,
    failures: Mutex<FailureReport>,
}

/// Failed exports since the last report.
#[derive(Debug, Default)]
struct FailureReport {
    last: Option<Instant>,
    spans_since: u64,
}

impl SpanExporter for CountingExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        self.queued.fetch_sub(spans, Ordering::AcqRel);
        let spans = spans as u64;
        match &result {
            Ok(()) => {
                self.counts.exported.fetch_add(spans, Ordering::Relaxed);
            }
            Err(error) => {
                self.counts
                    .dropped_export_failed
                    .fetch_add(spans, Ordering::Relaxed);
                self.report_failure(spans, error);
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl CountingExporter {
    /// Logs the first failure at once, then at most once per
    /// [`FAILURE_REPORT_INTERVAL`], with the spans lost meanwhile.
    fn report_failure(&self, spans: u64, error: &impl std::fmt::Display) {
        let mut report = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        report.spans_since += spans;
        let now = Instant::now();
        if report
            .last
            .is_some_and(|last| now.duration_since(last) < FAILURE_REPORT_INTERVAL)
        {
            return;
        }
        report.last = Some(now);
        let dropped_spans = std::mem::take(&mut report.spans_since);
        tracing::warn!(
            error = %error,
            dropped_spans,
            "trace export failed; spans are dropped until the collector answers \
             (reported at most once a minute; hero_host_trace_dropped_spans_total counts them)"
        );
    }
}

/// A running export pipeline.
pub struct Pipeline {
    /// Where spans end.
    pub processor: Arc<BoundedProcessor>,
    /// What became of them.
    pub counts: Arc<ExportCounts>,
    /// The provider, with the sampler, made around the processor.
    pub provider: opentelemetry_sdk::trace::SdkTracerProvider,
}

/// Builds the exporter and starts the batch processor's thread. Must run
/// inside the tokio runtime: the gRPC channel's connection task lives there.
pub fn start(export: &TraceExport, resource: Resource) -> anyhow::Result<Pipeline> {
    let counts = Arc::new(ExportCounts::default());
    let queued = Arc::new(AtomicUsize::new(0));
    let exporter = CountingExporter {
        inner: otlp_exporter(export)?,
        queued: queued.clone(),
        counts: counts.clone(),
        failures: Mutex::default(),
    };
    let mut batch = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(export.queue_size)
                .build(),
        )
        .build();
    // The provider cannot reach the processor behind the `Arc`: the resource
    // is given to it here.
    batch.set_resource(&resource);
    let processor = Arc::new(BoundedProcessor {
        batch,
        queued,
        capacity: export.queue_size,
        counts: counts.clone(),
    });
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_span_processor(Shared(processor.clone()))
        .with_sampler(sampler(export.sampler))
        .with_resource(resource)
        .build();
    Ok(Pipeline {
        processor,
        counts,
        provider,
    })
}

fn otlp_exporter(export: &TraceExport) -> anyhow::Result<opentelemetry_otlp::SpanExporter> {
    let builder = opentelemetry_otlp::SpanExporter::builder();
    let built = match export.protocol {
        Protocol::HttpProtobuf => builder
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(&export.endpoint)
            .with_timeout(export.timeout)
            .with_headers(export.headers.iter().cloned().collect::<HashMap<_, _>>())
            .build(),
        Protocol::Grpc => {
            let mut headers = http::HeaderMap::new();
            for (name, value) in &export.headers {
                // Checked when the configuration was read.
                if let (Ok(name), Ok(value)) = (
                    http::HeaderName::try_from(name.as_str()),
                    http::HeaderValue::try_from(value.as_str()),
                ) {
                    headers.append(name, value);
                }
            }
            builder
                .with_tonic()
                .with_endpoint(&export.endpoint)
                .with_timeout(export.timeout)
                .with_metadata(
                    opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(headers),
                )
                .build()
        }
    };
    built.with_context(|| {
        format!(
            "building the OTLP trace exporter ({}, {})",
            export.protocol.name(),
            export.endpoint
        )
    })
}

/// The SDK sampler for a choice.
pub fn sampler(choice: SamplerChoice) -> Sampler {
    let root = if choice.ratio >= 1.0 {
        Sampler::AlwaysOn
    } else if choice.ratio <= 0.0 {
        Sampler::AlwaysOff
    } else {
        Sampler::TraceIdRatioBased(choice.ratio)
    };
    if choice.parent_based {
        Sampler::ParentBased(Box::new(root))
    } else {
        root
    }
}
