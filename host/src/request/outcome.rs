//! What became of a request, as types: why it failed ([`Failure`]), the
//! `error.type` label that says so ([`ErrorType`]), and the status the host
//! answers with when it answers itself. The log line, the metrics and the
//! reply all read the same values; nothing is matched as text.

use std::fmt;

use http::StatusCode;

use crate::kv::KeyValueFailure;
use crate::runtime::GuestFailure;
use crate::sqlite::SqliteFailure;

/// `error.type` of a request (the OpenTelemetry attribute and metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// Refused for lack of capacity.
    Overload,
    /// The guest ran out of time.
    Timeout,
    /// The guest trapped.
    Trap,
    /// The guest failed without trapping.
    GuestError,
    /// The client went away.
    ClientClosed,
    /// The response could not be sent whole.
    ResponseFailed,
    /// The client stopped reading the response: writing it made no
    /// progress for `--response-write-timeout`.
    WriteTimeout,
    /// Cut off by the host's shutdown.
    Shutdown,
    /// A 5xx response with no more specific cause: its status code.
    Status(StatusCode),
}

impl ErrorType {
    /// The label.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Overload => "overload",
            ErrorType::Timeout => "timeout",
            ErrorType::Trap => "trap",
            ErrorType::GuestError => "guest_error",
            ErrorType::ClientClosed => "client_closed",
            ErrorType::ResponseFailed => "response_failed",
            ErrorType::WriteTimeout => "write_timeout",
            ErrorType::Shutdown => "shutdown",
            ErrorType::Status(status) => match status.as_u16() {
                500 => "500",
                501 => "501",
                502 => "502",
                503 => "503",
                504 => "504",
                _ => "_OTHER",
            },
        }
    }

    /// Whether the guest or the host failed, which makes the request's line
    /// an error whatever its status.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            ErrorType::Trap | ErrorType::Timeout | ErrorType::ResponseFailed | ErrorType::Shutdown
        )
    }
}

/// Where a client that went away left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientGone {
    /// Before the response head was sent.
    BeforeResponse,
    /// While the response body was being sent.
    BeforeEnd,
}

/// A request head refused before it could be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// The head was over the size or header-count limit: 431.
    HeadTooLarge,
    /// The head was not valid HTTP/1: 400.
    Invalid,
    /// An HTTP/1.1 request without `Host`: 400 (RFC 9112, 3.2).
    MissingHost,
    /// More than one `Host` header: 400.
    DuplicateHost,
    /// A `Host` value that is not a host and port: 400.
    InvalidHost,
    /// A `Content-Length` that is not a number, or two that differ: 400.
    ContentLength,
    /// A `Transfer-Encoding` other than chunked, or on HTTP/1.0: 400.
    TransferEncoding,
}

impl Malformed {
    /// What the invocation line says.
    fn text(self) -> &'static str {
        match self {
            Malformed::HeadTooLarge => "the head is over the size or header limit",
            Malformed::Invalid => "not valid HTTP/1",
            Malformed::MissingHost => "an HTTP/1.1 request without Host",
            Malformed::DuplicateHost => "more than one Host header",
            Malformed::InvalidHost => "the Host header is not a host and port",
            Malformed::ContentLength => "an invalid or conflicting Content-Length",
            Malformed::TransferEncoding => {
                "a Transfer-Encoding other than chunked, or one on HTTP/1.0"
            }
        }
    }
}

/// Why a request did not simply succeed: the invocation line's `error`.
#[derive(Debug)]
pub enum Failure {
    /// Over `--max-concurrent-requests`.
    Overloaded,
    /// The guest call failed (no instance, time, trap, error).
    Guest(GuestFailure),
    /// The instance trapped while the response body was being streamed.
    TrappedWhileStreaming(GuestFailure),
    /// A key-value operation failed; the guest answered anyway.
    KeyValue(KeyValueFailure),
    /// A SQLite statement failed; the guest answered anyway.
    Sqlite(SqliteFailure),
    /// The request could not be handed to the guest.
    Unforwardable(&'static str),
    /// hyper refused the request head.
    Malformed(Malformed),
    /// The client went away.
    ClientGone(ClientGone),
    /// Sending the response body failed.
    ResponseFailed(String),
    /// Still running when the shutdown grace period ended.
    CutOff,
    /// Received while the host was shutting down: answered 503 unserved.
    ShuttingDown,
    /// The body did not arrive in time (`--request-body-timeout` and
    /// `--request-body-min-rate`): 408.
    BodyTimedOut,
    /// The client stopped reading: writing the response made no progress
    /// for `--response-write-timeout`, and the connection was closed.
    WriteStalled,
}

impl Failure {
    /// The `error.type`, when the failure has one of its own (otherwise the
    /// response status decides).
    pub fn error_type(&self) -> Option<ErrorType> {
        match self {
            Failure::Overloaded => Some(ErrorType::Overload),
            Failure::Guest(guest) => Some(match guest {
                GuestFailure::NoInstance(_) => ErrorType::Overload,
                GuestFailure::DeadlineExceeded | GuestFailure::Interrupted => ErrorType::Timeout,
                GuestFailure::Trapped { .. } | GuestFailure::InstanceInterrupted => ErrorType::Trap,
                GuestFailure::Failed(_) => ErrorType::GuestError,
            }),
            Failure::TrappedWhileStreaming(_) | Failure::ResponseFailed(_) => {
                Some(ErrorType::ResponseFailed)
            }
            Failure::ClientGone(_) => Some(ErrorType::ClientClosed),
            Failure::WriteStalled => Some(ErrorType::WriteTimeout),
            Failure::CutOff | Failure::ShuttingDown => Some(ErrorType::Shutdown),
            Failure::KeyValue(_)
            | Failure::Sqlite(_)
            | Failure::Unforwardable(_)
            | Failure::Malformed(_)
            | Failure::BodyTimedOut => None,
        }
    }

    /// The status the host answers with for this failure.
    pub fn status(&self) -> StatusCode {
        match self {
            Failure::Overloaded | Failure::CutOff | Failure::ShuttingDown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Failure::BodyTimedOut => StatusCode::REQUEST_TIMEOUT,
            Failure::Guest(GuestFailure::NoInstance(_)) => StatusCode::SERVICE_UNAVAILABLE,
            Failure::Guest(GuestFailure::DeadlineExceeded | GuestFailure::Interrupted) => {
                StatusCode::GATEWAY_TIMEOUT
            }
            Failure::Malformed(Malformed::HeadTooLarge) => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            Failure::Unforwardable(_) | Failure::Malformed(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Overloaded => f.write_str("over --max-concurrent-requests"),
            Failure::Guest(guest) => write!(f, "{guest}"),
            Failure::TrappedWhileStreaming(guest) => {
                write!(f, "{guest}, while streaming the response")
            }
            Failure::KeyValue(failure) => write!(f, "{failure}"),
            Failure::Sqlite(failure) => write!(f, "{failure}"),
            Failure::Unforwardable(why) => write!(f, "cannot forward the request: {why}"),
            Failure::Malformed(why) => write!(f, "malformed request: {}", why.text()),
            Failure::ClientGone(ClientGone::BeforeResponse) => {
                f.write_str("client went away before the response")
            }
            Failure::ClientGone(ClientGone::BeforeEnd) => {
                f.write_str("client went away before the response ended")
            }
            Failure::ResponseFailed(why) => write!(f, "response body failed: {why}"),
            Failure::CutOff => f.write_str("cut off at shutdown: the grace period elapsed"),
            Failure::ShuttingDown => {
                f.write_str("received while shutting down: answered without being served")
            }
            Failure::BodyTimedOut => f.write_str(
                "the request body did not arrive in time (--request-body-timeout, \
                 --request-body-min-rate)",
            ),
            Failure::WriteStalled => f.write_str(
                "the client stopped reading: no progress writing the response for \
                 --response-write-timeout",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::runtime::outcome::TrapKind;

    #[test]
    fn each_failure_has_its_label_status_and_level() {
        let trapped = || GuestFailure::Trapped {
            kind: TrapKind::Unreachable,
            detail: Arc::from("wasm trap: unreachable"),
        };
        let cases = [
            (Failure::Overloaded, Some("overload"), 503, false),
            (
                Failure::Guest(GuestFailure::DeadlineExceeded),
                Some("timeout"),
                504,
                true,
            ),
            (Failure::Guest(trapped()), Some("trap"), 500, true),
            (
                Failure::Guest(GuestFailure::Failed("no".into())),
                Some("guest_error"),
                500,
                false,
            ),
            (
                Failure::TrappedWhileStreaming(trapped()),
                Some("response_failed"),
                500,
                true,
            ),
            (Failure::CutOff, Some("shutdown"), 503, true),
            (
                Failure::Malformed(Malformed::HeadTooLarge),
                None,
                431,
                false,
            ),
            (Failure::Unforwardable("bad header"), None, 400, false),
            (Failure::Malformed(Malformed::MissingHost), None, 400, false),
            (Failure::BodyTimedOut, None, 408, false),
            (Failure::ShuttingDown, Some("shutdown"), 503, true),
            (Failure::WriteStalled, Some("write_timeout"), 500, false),
        ];
        for (failure, label, status, is_failure) in cases {
            let error_type = failure.error_type();
            assert_eq!(error_type.map(ErrorType::as_str), label, "{failure}");
            assert_eq!(failure.status().as_u16(), status, "{failure}");
            assert_eq!(
                error_type.is_some_and(ErrorType::is_failure),
                is_failure,
                "{failure}"
            );
        }
    }

    #[test]
    fn texts_name_the_cause() {
        let trapped = Failure::Guest(GuestFailure::Trapped {
            kind: TrapKind::Unreachable,
            detail: Arc::from("wasm trap: unreachable"),
        });
        assert_eq!(
            trapped.to_string(),
            "guest trapped (unreachable): wasm trap: unreachable"
        );
        assert!(
            Failure::Guest(GuestFailure::DeadlineExceeded)
                .to_string()
                .contains("--request-timeout")
        );
        assert_eq!(ErrorType::Status(StatusCode::BAD_GATEWAY).as_str(), "502");
        assert_eq!(
            ErrorType::Status(StatusCode::from_u16(599).unwrap()).as_str(),
            "_OTHER"
        );
    }
}
