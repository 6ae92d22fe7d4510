//! Log records a guest emits through `wasi:otel/logs`, as JSON lines beside
//! its stdout lines: `source: "guest"`, `stream: "otel"`, the request's
//! `request_id`, `trace_id` and `span_id` (the guest span's when the record
//! names one), the record's level and body as `level` and `message`, and its
//! attributes merged in (a name the host writes itself is kept as
//! `guest_<name>`).

use std::time::SystemTime;

use super::logs::{GuestWriter, LogFormat, LogSink, RESERVED_FIELDS, normalize_level};

/// Cap of a record's message, in escaped bytes.
const MESSAGE_MAX: usize = 8192;

/// One guest log record.
pub struct GuestRecord<'a> {
    /// When it happened.
    pub at: SystemTime,
    /// The component.
    pub component: &'a str,
    /// Whose task emitted it.
    pub writer: GuestWriter<'a>,
    /// The span it names, if any (else the request's).
    pub span_id: Option<&'a str>,
    /// `debug`, `info`, `warn` or `error`.
    pub level: &'static str,
    /// Its body, as text.
    pub message: &'a str,
    /// Its other fields (event name, scope, attributes), as JSON.
    pub fields: &'a [(String, serde_json::Value)],
}

/// Our level of a record: its severity number when it has one (1–4 trace,
/// 5–8 debug, 9–12 info, 13–16 warn, 17–24 error and fatal), else its
/// severity text, else `info`.
pub fn record_level(number: Option<u8>, text: Option<&str>) -> &'static str {
    match number {
        Some(1..=8) => "debug",
        Some(9..=12) => "info",
        Some(13..=16) => "warn",
        Some(17..=24) => "error",
        _ => text.and_then(normalize_level).unwrap_or("info"),
    }
}

impl LogSink {
    /// Writes one guest log record.
    pub fn guest_record(&self, record: &GuestRecord<'_>) {
        match self.format() {
            LogFormat::Off => return,
            LogFormat::Pretty => {
                let line = format!(
                    "{} {:>5} [{}] otel: {}\n",
                    humantime::format_rfc3339_micros(record.at),
                    record.level.to_uppercase(),
                    record.component,
                    record.message.escape_debug(),
                );
                self.push(line.as_bytes());
                return;
            }
            LogFormat::Json => {}
        }
        self.write_json(record.at, record.level, "guest", |line| {
            line.str_capped("message", record.message, MESSAGE_MAX);
            line.str("source", "guest");
            line.str("stream", "otel");
            line.str("component", record.component);
            record.writer.write_fields(line);
            match record.span_id {
                Some(span_id) => line.str("span_id", span_id),
                None => line.raw("span_id", b"null"),
            }
            for (key, value) in record.fields {
                let text = value.to_string();
                if RESERVED_FIELDS.contains(&key.as_str()) || key == "message" {
                    line.raw(&format!("guest_{key}"), text.as_bytes());
                } else {
                    line.raw(key, text.as_bytes());
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::capture::CapturedLogs;
    use crate::telemetry::logs::Outside;
    use crate::telemetry::trace::{RequestId, TraceId};

    #[test]
    fn severity_numbers_beat_texts() {
        assert_eq!(record_level(Some(3), Some("error")), "debug");
        assert_eq!(record_level(Some(9), None), "info");
        assert_eq!(record_level(Some(14), None), "warn");
        assert_eq!(record_level(Some(21), None), "error");
        assert_eq!(record_level(None, Some("WARNING")), "warn");
        assert_eq!(record_level(Some(0), Some("nonsense")), "info");
    }

    #[test]
    fn a_record_is_a_guest_line_with_the_request_ids_and_its_fields() {
        let logs = CapturedLogs::new();
        let fields = [
            ("hero".to_owned(), serde_json::json!("deadpond")),
            ("level".to_owned(), serde_json::json!("spoofed")),
            ("count".to_owned(), serde_json::json!(3)),
        ];
        logs.sink.guest_record(&GuestRecord {
            at: SystemTime::UNIX_EPOCH,
            component: "chaos",
            writer: GuestWriter::Request {
                request_id: &RequestId::from_bits(0x1),
                trace_id: &TraceId::from_bits(0x71),
            },
            span_id: Some("s1"),
            level: "warn",
            message: "looked up",
            fields: &fields,
        });
        logs.sink.guest_record(&GuestRecord {
            at: SystemTime::UNIX_EPOCH,
            component: "chaos",
            writer: GuestWriter::Outside(Outside::Background),
            span_id: None,
            level: "info",
            message: "alone",
            fields: &[],
        });
        let lines = logs.lines();
        let line = &lines[0];
        assert_eq!(
            (&line["source"], &line["stream"], &line["level"]),
            (&"guest".into(), &"otel".into(), &"warn".into())
        );
        assert_eq!(
            (&line["request_id"], &line["trace_id"], &line["span_id"]),
            (
                &"00000000000000000000000000000001".into(),
                &"00000000000000000000000000000071".into(),
                &"s1".into()
            )
        );
        assert_eq!(line["message"], "looked up");
        assert_eq!(line["hero"], "deadpond");
        assert_eq!(line["count"], 3);
        assert_eq!(line["guest_level"], "spoofed");
        assert_eq!(lines[1]["request_id"], serde_json::Value::Null);
        assert_eq!(lines[1]["outside_request"], "background");
    }
}
