//! Metrics: OpenTelemetry instruments, exported as Prometheus text by
//! `opentelemetry-prometheus` from one `prometheus::Registry` that also holds
//! the process collector. Every instrument is created here, once; the request
//! path only records, with attribute values that are `&'static str` or
//! shared `Arc<str>`. Counts that need no histogram (requests in flight,
//! invocations) are plain atomics read at scrape time by observable
//! instruments, which keeps the SDK's attribute lookups off the request path.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use anyhow::Context;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter, MeterProvider};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use prometheus::{Encoder, TextEncoder};

use self::counts::{ActiveRequests, RegisteredInvocations};
pub use self::counts::{InvocationCounts, normalize_method};
use self::exemplars::Exemplars;
pub use self::requests::{RequestRecord, UNMATCHED_ROUTE};
pub use self::series::{OperationSeries, RouteSeries};

mod counts;
pub mod exemplars;
pub mod openmetrics;
mod requests;
mod series;

/// The family that carries exemplars in the OpenMetrics exposition.
const REQUEST_DURATION_FAMILY: &str = "http_server_request_duration_seconds";

/// Seconds buckets the HTTP semantic conventions advise.
const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// Faster buckets for work that is normally sub-millisecond (key-value
/// operations, instantiation).
const FAST_DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// Body size buckets, bytes.
const SIZE_BUCKETS: &[f64] = &[
    0.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
];

/// Who we are, for `target_info`.
#[derive(Debug, Clone)]
pub struct ServiceIdentity {
    /// `service.name`.
    pub name: String,
    /// `service.version`.
    pub version: String,
    /// `service.instance.id`.
    pub instance_id: String,
}

/// Every instrument, and the registry they are exported from.
pub struct Metrics {
    enabled: bool,
    registry: prometheus::Registry,
    provider: SdkMeterProvider,
    request_duration: Histogram<f64>,
    active_requests: Arc<ActiveRequests>,
    request_body_size: Histogram<u64>,
    response_body_size: Histogram<u64>,
    instantiation_duration: Histogram<f64>,
    invocations: RegisteredInvocations,
    guest_traps: Counter<u64>,
    kv_duration: Histogram<f64>,
    exemplars: Exemplars,
}

impl Metrics {
    /// Builds the registry, the exporter and every instrument. With
    /// `enabled` false, recording does nothing (to price instrumentation).
    pub fn new(identity: &ServiceIdentity, enabled: bool) -> anyhow::Result<Self> {
        let registry = prometheus::Registry::new();
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .context("registering the process collector")?;
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .build()
            .context("building the Prometheus exporter")?;
        let resource = Resource::builder()
            .with_service_name(identity.name.clone())
            .with_attributes([
                KeyValue::new("service.version", identity.version.clone()),
                KeyValue::new("service.instance.id", identity.instance_id.clone()),
            ])
            .build();
        let provider = SdkMeterProvider::builder()
            .with_reader(exporter)
            .with_resource(resource)
            .build();
        let meter = provider.meter("hero-host");
        Ok(Self::with_instruments(&meter, registry, provider, enabled))
    }

    fn with_instruments(
        meter: &Meter,
        registry: prometheus::Registry,
        provider: SdkMeterProvider,
        enabled: bool,
    ) -> Self {
        let active_requests = Arc::new(ActiveRequests::default());
        counts::observe_active_requests(meter, active_requests.clone());
        let invocations = RegisteredInvocations::default();
        counts::observe_invocations(meter, invocations.clone());
        Metrics {
            enabled,
            exemplars: Exemplars::new(DURATION_BUCKETS),
            active_requests,
            invocations,
            request_duration: meter
                .f64_histogram("http.server.request.duration")
                .with_unit("s")
                .with_description("Duration of HTTP server requests, from the request head to the end of the response body.")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            request_body_size: meter
                .u64_histogram("http.server.request.body.size")
                .with_unit("By")
                .with_description("Size of HTTP server request bodies, as read.")
                .with_boundaries(SIZE_BUCKETS.to_vec())
                .build(),
            response_body_size: meter
                .u64_histogram("http.server.response.body.size")
                .with_unit("By")
                .with_description("Size of HTTP server response bodies, as written.")
                .with_boundaries(SIZE_BUCKETS.to_vec())
                .build(),
            instantiation_duration: meter
                .f64_histogram("wasm.instantiation.duration")
                .with_unit("s")
                .with_description("Time to instantiate a component from its pre-instance (the count is the number of instantiations).")
                .with_boundaries(FAST_DURATION_BUCKETS.to_vec())
                .build(),
            guest_traps: meter
                .u64_counter("wasm.guest.traps")
                .with_description("Guest invocations that ended in a trap, by kind (timeout is an interrupted guest).")
                .build(),
            kv_duration: meter
                .f64_histogram("key_value.operation.duration")
                .with_unit("s")
                .with_description("Duration of key-value operations, by store label, backend, operation and outcome.")
                .with_boundaries(FAST_DURATION_BUCKETS.to_vec())
                .build(),
            registry,
            provider,
        }
    }

    /// The meter, for observable instruments registered by other modules.
    pub fn meter(&self) -> Meter {
        self.provider.meter("hero-host")
    }

    /// Whether recording is on.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// A component was instantiated.
    pub fn instantiated(&self, component: &Arc<str>, took: Duration) {
        if self.enabled {
            self.instantiation_duration.record(
                took.as_secs_f64(),
                &[KeyValue::new("spin.component", component.clone())],
            );
        }
    }

    /// The invocation counts of `component`, registered for export; taken
    /// once per component at set-up.
    pub fn invocation_counts(&self, component: &Arc<str>) -> Arc<InvocationCounts> {
        let counts = Arc::new(InvocationCounts::default());
        self.invocations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((component.clone(), counts.clone()));
        counts
    }

    /// A guest invocation ran, on a reused instance or a fresh one.
    pub fn invoked(&self, counts: &InvocationCounts, reused: bool) {
        if self.enabled {
            let count = if reused {
                &counts.reused
            } else {
                &counts.fresh
            };
            count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A guest instance ended in a trap (`kind`: `timeout`, `unreachable`, ...).
    pub fn guest_trapped(&self, component: &Arc<str>, kind: &'static str) {
        if self.enabled {
            self.guest_traps.add(
                1,
                &[
                    KeyValue::new("spin.component", component.clone()),
                    KeyValue::new("wasm.trap.kind", kind),
                ],
            );
        }
    }

    /// A key-value operation finished; recorded through `series` (the
    /// store's bound series) when given and not full.
    pub fn key_value_operation(
        &self,
        label: &Arc<str>,
        backend: &'static str,
        operation: &'static str,
        ok: bool,
        took: Duration,
        series: Option<&OperationSeries>,
    ) {
        if !self.enabled {
            return;
        }
        let attributes = || {
            [
                KeyValue::new("key_value.store", label.clone()),
                KeyValue::new("key_value.backend", backend),
                KeyValue::new("key_value.operation", operation),
                KeyValue::new("outcome", if ok { "ok" } else { "error" }),
            ]
        };
        let seconds = took.as_secs_f64();
        let recorded = series.is_some_and(|series| {
            series.record(
                (operation, ok),
                || self.kv_duration.bind(&attributes()),
                |bound| bound.record(seconds),
            )
        });
        if !recorded {
            self.kv_duration.record(seconds, &attributes());
        }
    }

    /// Registers a gauge of linear memory held by each component's live
    /// instances; `usage` pairs a component with its byte counter.
    pub fn observe_memory(&self, usage: Vec<(Arc<str>, Arc<AtomicI64>)>) {
        let _gauge = self
            .meter()
            .i64_observable_gauge("wasm.memory.usage")
            .with_unit("By")
            .with_description("Linear memory held by a component's live instances.")
            .with_callback(move |observer| {
                for (component, bytes) in &usage {
                    observer.observe(
                        bytes.load(Ordering::Relaxed),
                        &[KeyValue::new("spin.component", component.clone())],
                    );
                }
            })
            .build();
    }

    /// Registers a counter of time spent in wasm by each component; `nanos`
    /// pairs a component with its nanosecond counter.
    pub fn observe_wasm_time(&self, nanos: Vec<(Arc<str>, Arc<std::sync::atomic::AtomicU64>)>) {
        let _counter = self
            .meter()
            .f64_observable_counter("wasm.guest.cpu_time")
            .with_unit("s")
            .with_description("Time host threads spent running guest code, including host calls the guest made synchronously.")
            .with_callback(move |observer| {
                for (component, nanos) in &nanos {
                    let seconds = nanos.load(Ordering::Relaxed) as f64 / 1e9;
                    observer.observe(seconds, &[KeyValue::new("spin.component", component.clone())]);
                }
            })
            .build();
    }

    /// Registers a counter read from `read` at each scrape.
    pub fn observe_counter(
        &self,
        name: &'static str,
        description: &'static str,
        read: impl Fn() -> u64 + Send + Sync + 'static,
    ) {
        let _counter = self
            .meter()
            .u64_observable_counter(name)
            .with_description(description)
            .with_callback(move |observer| observer.observe(read(), &[]))
            .build();
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn encode(&self) -> anyhow::Result<Vec<u8>> {
        let mut text = Vec::with_capacity(16 * 1024);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut text)
            .context("encoding metrics")?;
        Ok(text)
    }

    /// The OpenMetrics 1.0 exposition, with exemplars on the request-duration
    /// buckets.
    pub fn encode_openmetrics(&self) -> Vec<u8> {
        let mut text = Vec::with_capacity(16 * 1024);
        let exemplars = self.exemplars.snapshot();
        openmetrics::encode(
            &self.registry.gather(),
            &openmetrics::ExemplarSource {
                family: REQUEST_DURATION_FAMILY,
                exemplars: &exemplars,
            },
            &mut text,
        );
        text
    }

    /// Flushes and stops the meter provider.
    pub fn shutdown(&self) {
        let _ = self.provider.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> Metrics {
        let identity = ServiceIdentity {
            name: "hero-registry".into(),
            version: "1.2.3".into(),
            instance_id: "pod-0".into(),
        };
        Metrics::new(&identity, true).unwrap()
    }

    fn text(metrics: &Metrics) -> String {
        String::from_utf8(metrics.encode().unwrap()).unwrap()
    }

    #[test]
    fn names_follow_prometheus_conventions_without_doubled_suffixes() {
        let m = metrics();
        let route: Arc<str> = "/heroes/:id".into();
        let component: Arc<str> = "hero-registry".into();
        m.request_started("GET");
        m.request_finished(&RequestRecord {
            method: "GET",
            route: Some(&route),
            component: Some(&component),
            series: None,
            status: 200,
            error_type: None,
            duration: Duration::from_millis(3),
            request_bytes: 0,
            response_bytes: 120,
            exemplar: None,
        });
        m.instantiated(&component, Duration::from_micros(50));
        m.invoked(&m.invocation_counts(&component), true);
        m.guest_trapped(&component, "timeout");
        m.observe_wasm_time(vec![(
            component.clone(),
            Arc::new(std::sync::atomic::AtomicU64::new(1_500_000)),
        )]);
        m.key_value_operation(
            &"default".into(),
            "sqlite",
            "get",
            true,
            Duration::from_micros(10),
            None,
        );
        let text = text(&m);
        for name in [
            "http_server_request_duration_seconds_bucket",
            "http_server_active_requests",
            "http_server_request_body_size_bytes_bucket",
            "http_server_response_body_size_bytes_sum",
            "wasm_instantiation_duration_seconds_count",
            "wasm_invocations_total",
            "wasm_guest_traps_total",
            "wasm_guest_cpu_time_seconds_total",
            "key_value_operation_duration_seconds_bucket",
            "target_info",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
        assert!(
            !text.contains("_seconds_seconds")
                && !text.contains("_total_total")
                && !text.contains("bytes_bytes")
        );
        assert!(text.contains(r#"http_route="/heroes/:id""#));
        assert!(text.contains(r#"http_server_request_duration_seconds_bucket{http_request_method="GET",http_response_status_code="200",http_route="/heroes/:id",spin_component="hero-registry",url_scheme="http",otel_scope_name="hero-host",le="0.005"} 1"#), "{text}");
        assert!(text.contains(r#"service_instance_id="pod-0""#));
        assert!(text.contains(r#"service_name="hero-registry""#));
    }

    #[test]
    fn counts_requests_in_flight_and_invocations_by_reuse() {
        let m = metrics();
        let component: Arc<str> = "hero-registry".into();
        let counts = m.invocation_counts(&component);
        for _ in 0..3 {
            m.request_started("GET");
        }
        m.request_started("POST");
        m.invoked(&counts, false);
        m.invoked(&counts, true);
        m.invoked(&counts, true);
        let text = text(&m);
        let line = |start: &str| {
            text.lines()
                .find(|l| l.starts_with(start))
                .unwrap_or_else(|| panic!("{start} missing from:\n{text}"))
                .to_owned()
        };
        assert!(line(r#"http_server_active_requests{http_request_method="GET""#).ends_with(" 3"));
        assert!(line(r#"http_server_active_requests{http_request_method="POST""#).ends_with(" 1"));
        assert!(!text.contains(r#"http_server_active_requests{http_request_method="PUT""#));
        assert!(line(r#"wasm_invocations_total{spin_component="hero-registry",wasm_instance_reused="false""#).ends_with(" 1"));
        assert!(line(r#"wasm_invocations_total{spin_component="hero-registry",wasm_instance_reused="true""#).ends_with(" 2"));
    }

    #[test]
    fn rejected_requests_are_recorded_but_never_in_flight() {
        let m = metrics();
        m.request_rejected(&RequestRecord {
            method: "_OTHER",
            route: None,
            component: None,
            series: None,
            status: 431,
            error_type: None,
            duration: Duration::ZERO,
            request_bytes: 0,
            response_bytes: 0,
            exemplar: None,
        });
        let text = text(&m);
        assert!(
            text.lines().any(
                |l| l.starts_with("http_server_request_duration_seconds_count")
                    && l.contains(r#"http_response_status_code="431""#)
                    && l.ends_with(" 1")
            ),
            "{text}"
        );
        assert!(!text.contains("http_server_active_requests"), "{text}");
    }

    #[test]
    fn unmatched_routes_share_one_series() {
        let m = metrics();
        for _ in 0..3 {
            m.request_started("GET");
            m.request_finished(&RequestRecord {
                method: "GET",
                route: None,
                component: None,
                series: None,
                status: 404,
                error_type: None,
                duration: Duration::from_millis(1),
                request_bytes: 0,
                response_bytes: 10,
                exemplar: None,
            });
        }
        let text = text(&m);
        let series: Vec<_> = text
            .lines()
            .filter(|l| l.starts_with("http_server_request_duration_seconds_count"))
            .collect();
        assert_eq!(series.len(), 1, "{series:?}");
        assert!(series[0].contains(r#"http_route="unmatched""#) && series[0].ends_with(" 3"));
    }

    /// The `_count` and `_sum` lines of the request duration whose labels
    /// contain `status`.
    fn duration_lines(text: &str, status: u16) -> Vec<String> {
        let status = format!(r#"http_response_status_code="{status}""#);
        text.lines()
            .filter(|l| {
                (l.starts_with("http_server_request_duration_seconds_count")
                    || l.starts_with("http_server_request_body_size_bytes_count"))
                    && l.contains(&status)
            })
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn key_value_operations_bound_per_store_record_what_unbound_ones_do() {
        let label: Arc<str> = "default".into();
        let operations = ["get", "set", "get_many", "compare_and_swap"];
        let exposition = |bound: bool| {
            let m = metrics();
            let series = OperationSeries::default();
            for (i, operation) in operations.iter().cycle().take(12).enumerate() {
                let ok = i % 5 != 0;
                let took = Duration::from_micros(10 * i as u64);
                m.key_value_operation(
                    &label,
                    "sqlite",
                    operation,
                    ok,
                    took,
                    bound.then_some(&series),
                );
            }
            let lines: Vec<String> = text(&m)
                .lines()
                .filter(|l| l.starts_with("key_value_operation_duration_seconds_"))
                .filter(|l| !l.contains("_bucket"))
                .map(str::to_owned)
                .collect();
            (lines, series.len())
        };
        let (bound, kept) = exposition(true);
        let (unbound, _) = exposition(false);
        // Calls 0, 5 and 10 fail (a get, a set, a get_many): each of those
        // operations has both outcomes, compare_and_swap only success.
        assert_eq!(kept, 7, "one series per operation and outcome seen");
        assert_eq!(
            bound.len(),
            14,
            "_sum and _count of seven series: {bound:?}"
        );
        assert_eq!(bound, unbound);
    }

    #[test]
    fn bound_series_record_what_unbound_recording_records() {
        let route: Arc<str> = "/heroes/:id".into();
        let component: Arc<str> = "hero-registry".into();
        // More statuses than a route binds: the last ones fall back to
        // unbound recording.
        let statuses: Vec<u16> = (200..200 + series::MAX_BOUND as u16 + 3).collect();
        // Twice each status, through a route's series or without one.
        let exposition = |bound: bool| {
            let m = metrics();
            let series = RouteSeries::default();
            for _ in 0..2 {
                for &status in &statuses {
                    m.request_finished(&RequestRecord {
                        method: "GET",
                        route: Some(&route),
                        component: Some(&component),
                        series: bound.then_some(&series),
                        status,
                        error_type: (status >= 230).then_some("timeout"),
                        duration: Duration::from_millis(2),
                        request_bytes: 7,
                        response_bytes: 10,
                        exemplar: None,
                    });
                }
            }
            (text(&m), series.len())
        };
        let (bound, kept) = exposition(true);
        let (unbound, _) = exposition(false);
        assert_eq!(kept, series::MAX_BOUND);
        for status in [200, 229, 230, *statuses.last().unwrap()] {
            let lines = duration_lines(&bound, status);
            assert_eq!(lines.len(), 2, "{lines:?}");
            assert!(lines.iter().all(|l| l.ends_with(" 2")), "{lines:?}");
            assert_eq!(lines, duration_lines(&unbound, status));
        }
    }

    #[test]
    fn disabled_metrics_record_nothing() {
        let identity = ServiceIdentity {
            name: "x".into(),
            version: "0".into(),
            instance_id: "i".into(),
        };
        let m = Metrics::new(&identity, false).unwrap();
        m.request_started("GET");
        m.invoked(&m.invocation_counts(&"c".into()), false);
        let text = text(&m);
        assert!(!text.contains("http_server_active_requests"));
        assert!(!text.contains("wasm_invocations_total"));
    }

    #[test]
    fn methods_are_normalized() {
        assert_eq!(normalize_method(&http::Method::GET), "GET");
        assert_eq!(
            normalize_method(&http::Method::from_bytes(b"BREW").unwrap()),
            "_OTHER"
        );
    }
}
