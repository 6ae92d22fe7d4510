//! What the host answers: the guest's response, or one the host makes itself
//! (JSON in FastAPI's `{"detail": ...}` shape), each carrying the request id
//! and the record that finishes when the body has been sent.

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use wasmtime_wasi_http::WasiBody;

use super::body::ResponseBody;
use super::outcome::Failure;
use super::record::Record;

/// The header naming the request, as in its log line.
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What to answer.
pub enum Reply {
    /// The guest's response.
    Guest(Response<WasiBody>),
    /// A response made by the host.
    Host {
        /// Its status.
        status: StatusCode,
        /// `Content-Type`.
        content_type: &'static str,
        /// The whole body.
        body: Bytes,
    },
}

impl Reply {
    /// A host-made JSON error.
    pub fn error(status: StatusCode) -> Self {
        let body: &'static [u8] = match status {
            StatusCode::NOT_FOUND => br#"{"detail":"Not Found"}"#,
            StatusCode::BAD_REQUEST => br#"{"detail":"Bad Request"}"#,
            StatusCode::REQUEST_TIMEOUT => br#"{"detail":"Request Timeout"}"#,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
                br#"{"detail":"Request Header Fields Too Large"}"#
            }
            StatusCode::PAYLOAD_TOO_LARGE => br#"{"detail":"Request body too large"}"#,
            StatusCode::URI_TOO_LONG => br#"{"detail":"URI Too Long"}"#,
            StatusCode::SERVICE_UNAVAILABLE => br#"{"detail":"Service Unavailable"}"#,
            StatusCode::GATEWAY_TIMEOUT => br#"{"detail":"Gateway Timeout"}"#,
            _ => br#"{"detail":"Internal Server Error"}"#,
        };
        Reply::Host {
            status,
            content_type: "application/json",
            body: Bytes::from_static(body),
        }
    }

    /// The error answering `failure`, which the record keeps as its cause.
    pub fn failed(record: &mut Record, failure: Failure) -> Self {
        let status = failure.status();
        record.fail(failure);
        Self::error(status)
    }

    /// Whether the connection must close after this answer: the request's
    /// body may be left unread (too large, too slow), so the next request
    /// could not be told from it.
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            Reply::Host {
                status: StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT,
                ..
            }
        )
    }

    /// A plain-text answer.
    pub fn text(status: StatusCode, body: &'static str) -> Self {
        Reply::Host {
            status,
            content_type: "text/plain",
            body: Bytes::from_static(body.as_bytes()),
        }
    }

    /// A JSON answer made once and shared (cloning `Bytes` copies nothing).
    pub fn json(status: StatusCode, body: Bytes) -> Self {
        Reply::Host {
            status,
            content_type: "application/json",
            body,
        }
    }

    /// The response, with the record riding on its body.
    pub fn into_response(self, mut record: Record) -> Response<ResponseBody<Record>> {
        let request_id = HeaderValue::from_str(record.info().request_id.as_str())
            .expect("request ids are hex digits");
        let mut response = match self {
            Reply::Guest(response) => {
                record.set_status(response.status());
                let (parts, body) = response.into_parts();
                Response::from_parts(parts, ResponseBody::new(body, record))
            }
            Reply::Host {
                status,
                content_type,
                body,
            } => {
                record.set_status(status);
                let mut response = Response::new(ResponseBody::full(body, record));
                *response.status_mut() = status;
                let headers = response.headers_mut();
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
                // The host answers 503 only when it is over capacity or
                // stopping: worth retrying shortly.
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                }
                response
            }
        };
        response.headers_mut().insert(X_REQUEST_ID, request_id);
        response
    }
}
