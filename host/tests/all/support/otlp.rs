//! An OTLP/HTTP trace receiver. No OpenTelemetry Collector can run here, so
//! the test suite receives the exports itself: the real wire format (HTTP/1.1
//! POSTs of `ExportTraceServiceRequest` protobuf to `/v1/traces`), decoded
//! with the official definitions of the `opentelemetry-proto` crate.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// One received span, with the resource and scope it came with.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// The span as decoded.
    pub span: Span,
    /// Its resource's attributes, as text.
    pub resource: HashMap<String, String>,
    /// Its instrumentation scope's name.
    pub scope: String,
}

impl ReceivedSpan {
    /// Its trace id, as hex.
    pub fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }

    /// Its span id, as hex.
    pub fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }

    /// Its parent's span id, as hex (empty for a root).
    pub fn parent_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }

    /// An attribute's value, as text.
    pub fn attribute(&self, key: &str) -> Option<String> {
        self.span
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .map(text)
    }
}

/// The headers of one request, lowercase names.
pub type Headers = Vec<(String, String)>;

/// A receiver on a loopback port, collecting every span it is sent.
pub struct OtlpReceiver {
    /// Its address.
    pub addr: SocketAddr,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    headers: Arc<Mutex<Vec<Headers>>>,
}

impl OtlpReceiver {
    /// Starts receiving; runs until the test process ends.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the OTLP receiver");
        let addr = listener.local_addr().unwrap();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let headers = Arc::new(Mutex::new(Vec::new()));
        let (kept, seen) = (spans.clone(), headers.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (kept, seen) = (kept.clone(), seen.clone());
                std::thread::spawn(move || serve(stream, &kept, &seen));
            }
        });
        OtlpReceiver {
            addr,
            spans,
            headers,
        }
    }

    /// `http://<addr>`, for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap().clone()
    }

    /// The headers of every export received so far.
    pub fn export_headers(&self) -> Vec<Headers> {
        self.headers.lock().unwrap().clone()
    }

    /// Waits until the spans of `trace_id` satisfy `done`, then returns
    /// them; fails after 20 s, listing what arrived.
    pub fn wait_for_trace(
        &self,
        trace_id: &str,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let trace: Vec<_> = self
                .spans()
                .into_iter()
                .filter(|s| s.trace_id() == trace_id)
                .collect();
            if done(&trace) {
                return trace;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for the spans of trace {trace_id}; got:\n{:#?}",
                self.spans()
                    .iter()
                    .map(|s| (
                        s.trace_id(),
                        s.span_id(),
                        s.parent_id(),
                        s.span.name.clone()
                    ))
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Serves one connection: each POST is decoded and answered 200 with an
/// empty `ExportTraceServiceResponse`.
fn serve(stream: TcpStream, spans: &Mutex<Vec<ReceivedSpan>>, seen: &Mutex<Vec<Headers>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .expect("the exporter sends Content-Length");
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let request = ExportTraceServiceRequest::decode(body.as_slice())
            .expect("the body is an OTLP ExportTraceServiceRequest");
        assert!(
            request_line.starts_with("POST /v1/traces "),
            "{request_line}"
        );
        seen.lock().unwrap().push(headers);
        spans.lock().unwrap().extend(received(request));
        let reply =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        if writer.write_all(reply).is_err() {
            return;
        }
    }
}

fn received(request: ExportTraceServiceRequest) -> Vec<ReceivedSpan> {
    let mut spans = Vec::new();
    for resource_spans in request.resource_spans {
        let resource: HashMap<String, String> = resource_spans
            .resource
            .map(|r| r.attributes)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|kv| Some((kv.key, text(kv.value.as_ref()?))))
            .collect();
        for scope_spans in resource_spans.scope_spans {
            let scope = scope_spans.scope.map(|s| s.name).unwrap_or_default();
            for span in scope_spans.spans {
                spans.push(ReceivedSpan {
                    span,
                    resource: resource.clone(),
                    scope: scope.clone(),
                });
            }
        }
    }
    spans
}

fn text(value: &AnyValue) -> String {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
