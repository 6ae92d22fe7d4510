//! Telemetry: metrics (OpenTelemetry, exported as Prometheus text) and logs
//! (one JSON object per line on stdout).

#[cfg(test)]
pub mod capture;
pub mod host_events;
pub mod json_line;
pub mod line_writer;
pub mod logs;
pub mod metrics;
pub mod trace;
