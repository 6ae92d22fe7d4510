//! The host's own events (`tracing`) as JSON lines: common fields first,
//! then the event's fields flattened, in the same shape as every other line.

use std::fmt;
use std::time::SystemTime;

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use super::json_line::JsonLine;

/// Formats `tracing` events as our JSON lines: common fields first, then the
/// event's fields flattened.
pub struct JsonEvents;

impl<S, N> FormatEvent<S, N> for JsonEvents
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let metadata = event.metadata();
        let level = match *metadata.level() {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warn",
            tracing::Level::INFO => "info",
            _ => "debug",
        };
        let mut visitor = FieldVisitor {
            line: JsonLine::start(
                Vec::with_capacity(256),
                SystemTime::now(),
                level,
                metadata.target(),
            ),
            message: None,
        };
        event.record(&mut visitor);
        let FieldVisitor { mut line, message } = visitor;
        line.str("message", message.as_deref().unwrap_or(""));
        let bytes = line.finish();
        writer.write_str(&String::from_utf8_lossy(&bytes))
    }
}

struct FieldVisitor {
    line: JsonLine,
    message: Option<String>,
}

impl tracing::field::Visit for FieldVisitor {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.message = Some(value.to_owned());
        } else {
            self.line.str_capped(field.name(), value, 4096);
        }
    }

    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.line.u64(field.name(), value);
    }

    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.line.raw(field.name(), value.to_string().as_bytes());
    }

    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.line.bool(field.name(), value);
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        self.record_str(field, &text);
    }
}
