//! The client span of an outbound HTTP request (semantic conventions for
//! HTTP clients), and the trace context it carries: a sampled request's
//! outbound call is a child span whose context goes in `traceparent`; an
//! unsampled one passes its own context on, unsampled, so the service it
//! calls does not sample it either.

use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;
use wasmtime_wasi_http::{Error, WasiBody};

use super::invocation::RequestInfo;
use crate::outbound;
use crate::telemetry::traces::ChildSpan;

/// Writes the trace context into `request` and, for a sampled request,
/// starts its client span.
pub fn start(caller: &RequestInfo, request: &mut http::Request<WasiBody>) -> Option<ChildSpan> {
    let spans = caller.spans()?;
    let Some(parent) = spans.parent() else {
        spans.inject(spans.server(), request.headers_mut());
        return None;
    };
    let uri = request.uri();
    let scheme = uri.scheme_str().unwrap_or("http");
    let host = uri.host().unwrap_or("").to_owned();
    let port = uri
        .port_u16()
        .unwrap_or_else(|| outbound::default_port(scheme));
    let method = request.method().as_str().to_owned();
    // The URL without its query, which may carry secrets.
    let full = format!("{scheme}://{host}:{port}{}", uri.path());
    let span = parent.start(
        method.clone(),
        SpanKind::Client,
        vec![
            KeyValue::new("http.request.method", method),
            KeyValue::new("server.address", host),
            KeyValue::new("server.port", i64::from(port)),
            KeyValue::new("url.full", full),
        ],
    );
    spans.inject(span.context(), request.headers_mut());
    Some(span)
}

/// Ends the span with the response status, or the error that stopped it.
pub fn end<T>(mut span: ChildSpan, sent: &Result<(http::Response<T>, impl Sized), Error>) {
    match sent {
        Ok((response, _)) => {
            let status = response.status();
            span.set(KeyValue::new(
                "http.response.status_code",
                i64::from(status.as_u16()),
            ));
            if status.is_client_error() || status.is_server_error() {
                span.fail(status.as_str().to_owned(), status.to_string());
            }
        }
        Err(error) => span.fail(error_type(error), format!("{error:?}")),
    }
    span.end();
}

/// A low-cardinality `error.type` for a failed outbound request.
fn error_type(error: &Error) -> &'static str {
    match error {
        Error::ConnectionRefused => "connection_refused",
        Error::ConnectionTimeout | Error::ConnectionReadTimeout | Error::ConnectionWriteTimeout => {
            "timeout"
        }
        Error::ConnectionTerminated => "connection_terminated",
        Error::DnsTimeout | Error::DnsError { .. } | Error::DestinationNotFound => "dns_error",
        Error::Tls(_)
        | Error::TlsProtocolError
        | Error::TlsCertificateError
        | Error::TlsAlertReceived { .. } => "tls_error",
        Error::HttpRequestDenied => "denied",
        _ => "_OTHER",
    }
}
