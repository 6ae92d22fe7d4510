//! `wasi:otel/logs`: each record a guest emits becomes a JSON line with its
//! request's ids (see [`crate::telemetry::guest_records`]).

use std::time::SystemTime;

use super::OtelView;
use super::generated::wasi::otel::logs as wit;
use super::values::{MAX_ATTRIBUTES, json, time};
use crate::telemetry::guest_records::{GuestRecord, record_level};
use crate::telemetry::logs::GuestWriter;
use crate::telemetry::trace::SpanId;

impl wit::Host for OtelView<'_> {
    fn on_emit(&mut self, data: wit::LogRecord) -> wasmtime::Result<()> {
        let caller = self.instance.calling();
        let message = match data.body.as_deref().map(json) {
            Some(serde_json::Value::String(text)) => text,
            Some(other) => other.to_string(),
            None => String::new(),
        };
        let mut fields = Vec::new();
        if let Some(name) = data.event_name {
            fields.push(("event_name".to_owned(), serde_json::Value::String(name)));
        }
        if let Some(scope) = data.instrumentation_scope {
            fields.push((
                "otel_scope".to_owned(),
                serde_json::Value::String(scope.name),
            ));
        }
        for attribute in data.attributes.into_iter().flatten().take(MAX_ATTRIBUTES) {
            fields.push((attribute.key, json(&attribute.value)));
        }
        // The record's span, when it names a valid one; else the request's.
        let span_id = data
            .span_id
            .as_deref()
            .and_then(SpanId::parse)
            .filter(|id| !id.is_zero());
        let (writer, request_span) = match &caller {
            Ok(request) => (
                GuestWriter::Request {
                    request_id: &request.request_id,
                    trace_id: &request.trace.trace_id,
                },
                Some(request.trace.span_id),
            ),
            Err(outside) => (GuestWriter::Outside(*outside), None),
        };
        let span_id = span_id.or(request_span);
        self.instance.logs().guest_record(&GuestRecord {
            at: data
                .timestamp
                .or(data.observed_timestamp)
                .map_or_else(SystemTime::now, time),
            component: self.instance.component(),
            writer,
            span_id: span_id.as_ref().map(SpanId::as_str),
            level: record_level(data.severity_number, data.severity_text.as_deref()),
            message: &message,
            fields: &fields,
        });
        Ok(())
    }
}
