//! Logs: one JSON object per line on stdout, and nothing else on stdout.
//!
//! Three kinds of line share one batching writer ([`LineWriter`]), so they
//! stay whole and in order: the invocation line (exactly one per request),
//! guest output lines (`source: "guest"`), and the host's own events
//! (`tracing`). A dedicated thread writes to stdout; when stdout is slower
//! than the requests, lines queue up to a bound and then are dropped and
//! counted (`hero_host_log_dropped_lines_total`), never blocking a request.
//! A request allocates nothing for its lines: the invocation line is queued
//! unformatted and formatted by the writer thread (`invocation_line`), guest
//! lines are formatted into a per-thread buffer.

use std::cell::Cell;
use std::time::SystemTime;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use super::host_events::JsonEvents;
use super::json_line::JsonLine;
use super::line_writer::{LineWriter, LineWriterGuard};

pub use super::guest_origin::{GuestOrigin, GuestStream, GuestWriter, Outside};
pub use super::invocation_line::{Invocation, level_of};

/// Bytes of lines buffered between requests and the stdout writer.
const BUFFERED_BYTES: usize = 16 * 1024 * 1024;
/// Cap of a guest line's message.
const GUEST_MESSAGE_MAX: usize = 8192;

thread_local! {
    /// The buffer this thread formats its lines in, kept between lines.
    static LINE_BUFFER: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// How invocation and guest lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (for collectors).
    Json,
    /// Human-readable lines (for a terminal).
    Pretty,
    /// No invocation or guest lines (host events still go out as JSON); to
    /// measure what logging costs.
    Off,
}

impl LogFormat {
    /// Every format's name, as `from_str` reads it.
    pub const NAMES: [&'static str; 3] = ["json", "pretty", "off"];
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        match name {
            "json" => Ok(LogFormat::Json),
            "pretty" => Ok(LogFormat::Pretty),
            "off" => Ok(LogFormat::Off),
            other => Err(format!("unknown log format {other:?}: json, pretty or off")),
        }
    }
}

/// Where log lines go; cheap to clone.
#[derive(Clone)]
pub struct LogSink {
    writer: LineWriter,
    format: LogFormat,
}

/// Keeps the writer thread alive; dropping it flushes what is queued.
pub type LogGuard = LineWriterGuard;

/// Installs the sink as stdout's only writer and as the `tracing` subscriber.
pub fn init(format: LogFormat, filter: &str) -> anyhow::Result<(LogSink, LogGuard)> {
    let (writer, guard) = LineWriter::start(std::io::stdout(), BUFFERED_BYTES)
        .map_err(|e| anyhow::anyhow!("starting the log writer thread: {e}"))?;
    let filter = EnvFilter::try_new(filter)
        .map_err(|e| anyhow::anyhow!("invalid --log-level {filter:?}: {e}"))?;
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::filter::filter_fn(not_export_noise));
    match format {
        LogFormat::Json | LogFormat::Off => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .event_format(JsonEvents)
                    .with_writer(writer.clone()),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(writer.clone())
                    .with_ansi(false),
            )
            .try_init(),
    }
    .map_err(|e| anyhow::anyhow!("installing the log subscriber: {e}"))?;
    Ok((LogSink { writer, format }, guard))
}

/// Whether an event is not one the OpenTelemetry SDK logs per failed trace
/// export or dropped span: the trace pipeline counts those in metrics and
/// reports them at most once a minute itself.
fn not_export_noise(event: &tracing::Metadata<'_>) -> bool {
    !(event.target().starts_with("opentelemetry") && event.name().starts_with("BatchSpanProcessor"))
}

#[cfg(test)]
impl LogSink {
    /// A sink writing to `writer` without installing anything globally (for
    /// tests that read the exact lines).
    pub fn to_writer(writer: LineWriter, format: LogFormat) -> Self {
        LogSink { writer, format }
    }
}

impl LogSink {
    /// Formats a JSON line in this thread's buffer and queues it.
    pub(super) fn write_json(
        &self,
        at: SystemTime,
        level: &'static str,
        target: &str,
        fill: impl FnOnce(&mut JsonLine),
    ) {
        let mut line = JsonLine::start(LINE_BUFFER.take(), at, level, target);
        fill(&mut line);
        let bytes = line.finish();
        self.writer.push(&bytes);
        LINE_BUFFER.set(bytes);
    }

    /// Lines dropped because stdout could not keep up.
    pub fn dropped_lines(&self) -> u64 {
        self.writer.dropped_lines()
    }

    /// Writes the invocation line of one request.
    pub fn invocation(&self, inv: &Invocation<'_>) {
        if self.format == LogFormat::Off {
            return;
        }
        let level = inv.level;
        let now = SystemTime::now();
        if self.format == LogFormat::Pretty {
            let line = format!(
                "{} {:>5} {} {} {} {:.3}ms component={} route={} request_id={}{}\n",
                humantime::format_rfc3339_micros(now),
                level.to_uppercase(),
                inv.method.escape_debug(),
                inv.path.escape_debug(),
                inv.status,
                inv.duration.as_secs_f64() * 1000.0,
                inv.component.unwrap_or("-"),
                inv.route.unwrap_or("-"),
                inv.request_id,
                inv.error
                    .map(|e| format!(" error={}", e.escape_debug()))
                    .unwrap_or_default(),
            );
            self.writer.push(line.as_bytes());
            return;
        }
        // Formatted by the writer thread (see `invocation_line`).
        self.writer.push_invocation(inv, now);
    }

    /// Writes one line the guest printed. A line that is a JSON object has
    /// its fields merged in (its `level` and `message` are used when valid);
    /// the host's own fields cannot be overridden.
    pub fn guest_line(&self, origin: &GuestOrigin<'_>, text: &[u8]) {
        if self.format == LogFormat::Off {
            return;
        }
        let default_level = match origin.stream {
            GuestStream::Stderr => "warn",
            GuestStream::Stdout => "info",
        };
        let object = parse_object(text);
        let level = object
            .as_ref()
            .and_then(|o| o.get("level"))
            .and_then(|l| l.as_str())
            .and_then(normalize_level)
            .unwrap_or(default_level);
        let now = SystemTime::now();
        if self.format == LogFormat::Pretty {
            let line = format!(
                "{} {:>5} [{}] {}: {}\n",
                humantime::format_rfc3339_micros(now),
                level.to_uppercase(),
                origin.component,
                origin.stream.name(),
                String::from_utf8_lossy(text).escape_debug(),
            );
            self.writer.push(line.as_bytes());
            return;
        }
        self.write_json(now, level, "guest", |line| {
            match object.as_ref().and_then(|o| o.get("message")) {
                Some(serde_json::Value::String(message)) => {
                    line.str_capped("message", message, GUEST_MESSAGE_MAX)
                }
                Some(other) => line.str_capped("message", &other.to_string(), GUEST_MESSAGE_MAX),
                None if object.is_some() => line.str("message", ""),
                None => line.bytes_capped("message", text, GUEST_MESSAGE_MAX),
            }
            line.str("source", "guest");
            line.str("stream", origin.stream.name());
            line.str("component", origin.component);
            origin.writer.write_fields(line);
            if let Some(object) = object {
                for (key, value) in object {
                    match key.as_str() {
                        "message" => {}
                        "level" if normalize_level(value.as_str().unwrap_or("")).is_some() => {}
                        _ if RESERVED_FIELDS.contains(&key.as_str()) => {
                            line.raw(&format!("guest_{key}"), value.to_string().as_bytes());
                        }
                        _ => line.raw(&key, value.to_string().as_bytes()),
                    }
                }
            }
        });
    }
}

impl LogSink {
    /// The line format.
    pub(super) fn format(&self) -> LogFormat {
        self.format
    }

    /// Queues a line already formatted.
    pub(super) fn push(&self, line: &[u8]) {
        self.writer.push(line);
    }
}

/// Fields the host writes on guest lines; a guest field of the same name is
/// kept as `guest_<name>`.
pub(super) const RESERVED_FIELDS: &[&str] = &[
    "timestamp",
    "level",
    "target",
    "source",
    "stream",
    "component",
    "request_id",
    "trace_id",
    "span_id",
    "outside_request",
    "truncated",
];

fn parse_object(text: &[u8]) -> Option<serde_json::Map<String, serde_json::Value>> {
    let trimmed = text.trim_ascii();
    if trimmed.first() != Some(&b'{') {
        return None;
    }
    match serde_json::from_slice(trimmed) {
        Ok(serde_json::Value::Object(object)) => Some(object),
        _ => None,
    }
}

/// Our level names for the usual spellings; `None` for anything else.
pub(super) fn normalize_level(level: &str) -> Option<&'static str> {
    const SPELLINGS: [(&str, &str); 12] = [
        ("trace", "debug"),
        ("debug", "debug"),
        ("info", "info"),
        ("information", "info"),
        ("notice", "info"),
        ("warn", "warn"),
        ("warning", "warn"),
        ("error", "error"),
        ("err", "error"),
        ("critical", "error"),
        ("fatal", "error"),
        ("panic", "error"),
    ];
    SPELLINGS
        .iter()
        .find(|(spelling, _)| spelling.eq_ignore_ascii_case(level))
        .map(|(_, ours)| *ours)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_levels_are_normalized() {
        assert_eq!(normalize_level("WARNING"), Some("warn"));
        assert_eq!(normalize_level("fatal"), Some("error"));
        assert_eq!(normalize_level("loud"), None);
    }

    #[test]
    fn only_json_objects_are_merged() {
        assert!(parse_object(br#" {"a":1} "#).is_some());
        assert!(parse_object(b"[1]").is_none());
        assert!(parse_object(b"{not json").is_none());
        assert!(parse_object(b"plain text").is_none());
    }
}
