//! Where a guest line came from: its stream, its component, and whose task
//! wrote it (a request's, or none, and why).

use super::json_line::JsonLine;
use super::trace::{RequestId, TraceId};

/// Which guest output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestStream {
    /// stdout: lines are `info` unless they say otherwise.
    Stdout,
    /// stderr: lines are `warn` unless they say otherwise.
    Stderr,
}

impl GuestStream {
    /// `stdout` or `stderr`.
    pub fn name(self) -> &'static str {
        match self {
            GuestStream::Stdout => "stdout",
            GuestStream::Stderr => "stderr",
        }
    }
}

/// Why a guest line belongs to no request: its `outside_request` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outside {
    /// Written while the instance started, before any request.
    Instantiation,
    /// Written by a request's task after that request's response had ended.
    AfterResponse,
    /// Written by a task of no request the host knows (work the guest left
    /// running, or a task the host no longer tracks).
    Background,
}

impl Outside {
    /// The field's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outside::Instantiation => "instantiation",
            Outside::AfterResponse => "after_response",
            Outside::Background => "background",
        }
    }
}

/// Whose guest task wrote a line.
#[derive(Debug, Clone, Copy)]
pub enum GuestWriter<'a> {
    /// A request's task.
    Request {
        /// The request's id.
        request_id: &'a RequestId,
        /// Its trace.
        trace_id: &'a TraceId,
    },
    /// No request's task.
    Outside(Outside),
}

impl GuestWriter<'_> {
    /// Writes `request_id` and `trace_id` (null outside a request, with
    /// `outside_request` saying why).
    pub(super) fn write_fields(self, line: &mut JsonLine) {
        match self {
            GuestWriter::Request {
                request_id,
                trace_id,
            } => {
                line.hex("request_id", request_id);
                line.hex("trace_id", trace_id);
            }
            GuestWriter::Outside(why) => {
                line.raw("request_id", b"null");
                line.raw("trace_id", b"null");
                line.str("outside_request", why.as_str());
            }
        }
    }
}

/// Where a guest line came from.
pub struct GuestOrigin<'a> {
    /// The stream.
    pub stream: GuestStream,
    /// The component id.
    pub component: &'a str,
    /// Who wrote it.
    pub writer: GuestWriter<'a>,
}
