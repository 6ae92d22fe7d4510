//! Telemetry: metrics (OpenTelemetry, exported as Prometheus text or
//! OpenMetrics with exemplars), logs (one JSON object per line on stdout)
//! and traces (OTLP, when the `OTEL_*` variables ask for them).

#[cfg(test)]
pub mod capture;
pub mod guest_origin;
pub mod guest_records;
pub mod host_events;
pub mod invocation_line;
pub mod json_line;
pub mod line_writer;
pub mod logs;
pub mod metrics;
pub mod trace;
pub mod traces;
