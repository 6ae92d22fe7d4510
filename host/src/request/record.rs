//! The record of one request: everything its invocation line and its metric
//! points say, written exactly once, when the response ends, fails, or is
//! abandoned (the record is then dropped unfinished: the client left before
//! the response head). Requests hyper refused at the connection level get a
//! record too, through [`Record::rejected`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::{Method, StatusCode, Uri};
use tokio::sync::OwnedSemaphorePermit;

use super::body::{BytesRead, Finish};
use super::outcome::{ClientGone, ErrorType, Failure, Malformed};
use crate::runtime::{InstanceLease, RequestInfo};
use crate::server::connection::ConnectionState;
use crate::shutdown::{Phase, Shutdown};
use crate::telemetry::json_line::Fields;
use crate::telemetry::logs::{Invocation, LogSink, level_of};
use crate::telemetry::metrics::exemplars::ExemplarIds;
use crate::telemetry::metrics::{
    InvocationCounts, Metrics, RequestRecord, RouteSeries, normalize_method,
};
use crate::telemetry::trace::{TRACEPARENT, TraceContext, new_request_id};
use crate::telemetry::traces::{ServerEnd, ServerSpan, Traces};

/// Status logged for a request whose client left before any response.
const CLIENT_CLOSED_REQUEST: StatusCode = match StatusCode::from_u16(499) {
    Ok(status) => status,
    Err(_) => unreachable!(),
};

/// Where records go: made once, shared by every request.
pub struct Recorder {
    /// The instruments.
    pub metrics: Arc<Metrics>,
    /// The log.
    pub logs: LogSink,
    /// The host's shutdown (a request abandoned while the host cuts requests
    /// off was cut off, not left by its client).
    pub shutdown: Shutdown,
    /// Spans, when tracing is on.
    pub traces: Traces,
}

/// The route and component that served a request: made once per route.
pub struct Served {
    /// The route as written in the manifest (`http_route`).
    pub route: Arc<str>,
    /// The component id.
    pub component: Arc<str>,
    /// The component's invocation counts.
    pub invocations: Arc<InvocationCounts>,
    /// The route's request histograms, bound per series.
    pub series: RouteSeries,
    /// `component` and `route` as every invocation line of the route
    /// carries them, rendered once.
    pub log_fields: Arc<Fields>,
}

impl Served {
    /// What serves `route`: `component`, counting into `invocations`.
    pub fn new(route: &str, component: Arc<str>, invocations: Arc<InvocationCounts>) -> Self {
        Served {
            log_fields: Arc::new(Fields::strings(&[
                ("component", &component),
                ("route", route),
            ])),
            route: route.into(),
            component,
            invocations,
            series: RouteSeries::default(),
        }
    }
}

/// One request's record.
pub struct Record {
    recorder: Arc<Recorder>,
    started: Instant,
    info: Arc<RequestInfo>,
    /// The server span, when tracing is on.
    span: Option<Box<ServerSpan>>,
    method: Method,
    uri: Uri,
    client: SocketAddr,
    user_agent: Option<HeaderValue>,
    served: Option<Arc<Served>>,
    status: StatusCode,
    request_bytes: Arc<BytesRead>,
    failure: Option<Failure>,
    lease: Option<InstanceLease>,
    permit: Option<OwnedSemaphorePermit>,
    /// The connection it came on, which holds the record of a response
    /// handed over whole until it is written to the socket.
    connection: Option<Arc<ConnectionState>>,
    /// Body bytes handed over, and whether the instance was reused, kept
    /// while the record waits for its response to be written.
    handed_over: Option<(u64, Option<bool>)>,
    /// Counted in `http_server_active_requests` (requests refused by hyper
    /// never were).
    counted: bool,
    done: bool,
}

impl Record {
    /// The record of a request whose head has just been read.
    pub fn start(
        recorder: Arc<Recorder>,
        request: &http::Request<impl Sized>,
        client: SocketAddr,
    ) -> Self {
        let headers = request.headers();
        let method = normalize_method(request.method());
        let (trace, span, spans) = match recorder.traces.start_request(request, method, client) {
            Some(traced) => (traced.context, Some(traced.server), Some(traced.spans)),
            None => (
                TraceContext::from_traceparent(headers.get(TRACEPARENT).map(HeaderValue::as_bytes)),
                None,
                None,
            ),
        };
        recorder.metrics.request_started(method);
        Record {
            recorder,
            started: Instant::now(),
            info: Arc::new(RequestInfo::new(new_request_id(), trace, spans)),
            span,
            method: request.method().clone(),
            uri: request.uri().clone(),
            client,
            user_agent: headers.get(header::USER_AGENT).cloned(),
            served: None,
            status: StatusCode::OK,
            request_bytes: Arc::default(),
            failure: None,
            lease: None,
            permit: None,
            connection: None,
            handed_over: None,
            counted: true,
            done: false,
        }
    }

    /// Records, at once, a request hyper refused before it could be served
    /// (it has answered it already).
    pub fn rejected(recorder: Arc<Recorder>, client: SocketAddr, malformed: Malformed) {
        let failure = Failure::Malformed(malformed);
        let mut record = Record {
            recorder,
            started: Instant::now(),
            info: Arc::new(RequestInfo::new(
                new_request_id(),
                TraceContext::from_traceparent(None),
                None,
            )),
            span: None,
            method: Method::default(),
            uri: Uri::default(),
            client,
            user_agent: None,
            served: None,
            status: failure.status(),
            request_bytes: Arc::default(),
            failure: Some(failure),
            lease: None,
            permit: None,
            connection: None,
            handed_over: None,
            counted: false,
            done: false,
        };
        record.complete(0, None, Duration::ZERO);
    }

    /// The request as the runtime knows it.
    pub fn info(&self) -> &Arc<RequestInfo> {
        &self.info
    }

    /// Counts the bytes of its body.
    pub fn request_bytes(&self) -> &Arc<BytesRead> {
        &self.request_bytes
    }

    /// The route and component serving it.
    pub fn served_by(&mut self, served: Arc<Served>) {
        self.served = Some(served);
    }

    /// Holds a concurrency permit until the request ends.
    pub fn hold_permit(&mut self, permit: OwnedSemaphorePermit) {
        self.permit = Some(permit);
    }

    /// Holds the instance until the response has ended.
    pub fn hold_instance(&mut self, lease: InstanceLease) {
        self.lease = Some(lease);
    }

    /// Why the request failed; the first reason given is kept.
    pub fn fail(&mut self, failure: Failure) {
        self.failure.get_or_insert(failure);
    }

    /// The response status.
    pub fn set_status(&mut self, status: StatusCode) {
        self.status = status;
    }

    /// The connection the request came on.
    pub fn on_connection(&mut self, connection: Arc<ConnectionState>) {
        self.connection = Some(connection);
    }

    /// Its response, handed over whole, has been written to the socket.
    pub fn delivered(mut self) {
        let (sent, _) = self.handed_over.unwrap_or_default();
        let duration = self.started.elapsed();
        self.complete(sent, None, duration);
    }

    /// Its response, handed over whole, was never written to the socket.
    pub fn undelivered(mut self, failure: Failure) {
        let (sent, _) = self.handed_over.unwrap_or_default();
        let duration = self.started.elapsed();
        self.complete(sent, Some(failure), duration);
    }

    /// Writes the line and the metric points, once.
    fn complete(&mut self, sent: u64, ending: Option<Failure>, duration: Duration) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let reused = match self.handed_over {
            Some((_, reused)) => reused,
            None => self.lease.as_ref().and_then(InstanceLease::reused),
        };
        // Free the instance first: the next request may take it at once.
        drop(self.lease.take());
        let stalled = self.connection.as_ref().is_some_and(|c| c.write_stalled());
        let ending = match ending {
            Some(Failure::ClientGone(ClientGone::BeforeEnd)) if stalled => {
                Some(Failure::WriteStalled)
            }
            Some(Failure::ClientGone(_)) if self.recorder.shutdown.reached(Phase::CuttingOff) => {
                if self.status == CLIENT_CLOSED_REQUEST {
                    self.status = StatusCode::SERVICE_UNAVAILABLE;
                }
                Some(Failure::CutOff)
            }
            other => other,
        };
        if self.failure.is_none() {
            self.failure = ending.or_else(|| {
                // The guest answered, but something under it failed.
                self.info
                    .key_value_failure()
                    .cloned()
                    .map(Failure::KeyValue)
                    .or_else(|| self.info.sqlite_failure().cloned().map(Failure::Sqlite))
            });
        }
        let error_type = self.failure.as_ref().and_then(Failure::error_type).or(self
            .status
            .is_server_error()
            .then_some(ErrorType::Status(self.status)));
        self.log(sent, duration, reused, error_type);
        self.measure(sent, duration, reused, error_type);
        self.end_span(error_type);
        self.permit = None;
        if let Some(connection) = self.connection.take() {
            connection.request_finished();
        }
    }

    /// Ends the server span, when tracing is on.
    fn end_span(&mut self, error_type: Option<ErrorType>) {
        let Some(span) = self.span.take() else {
            return;
        };
        let reason = self.failure.as_ref().map(Failure::to_string);
        span.end(&ServerEnd {
            method: normalize_method(&self.method),
            route: self.served.as_ref().map(|s| &*s.route),
            component: self.served.as_ref().map(|s| &*s.component),
            status: self.status.as_u16(),
            error_type: error_type.map(ErrorType::as_str),
            failed: error_type.is_some_and(ErrorType::is_failure) || self.status.is_server_error(),
            failure: reason.as_deref(),
        });
    }

    fn log(&self, sent: u64, duration: Duration, reused: Option<bool>, error: Option<ErrorType>) {
        let level = if error.is_some_and(ErrorType::is_failure) {
            "error"
        } else {
            level_of(self.status.as_u16())
        };
        let reason = self.failure.as_ref().map(Failure::to_string);
        self.recorder.logs.invocation(&Invocation {
            level,
            request_id: &self.info.request_id,
            trace_id: &self.info.trace.trace_id,
            span_id: &self.info.trace.span_id,
            component: self.served.as_ref().map(|s| &*s.component),
            route: self.served.as_ref().map(|s| &*s.route),
            served_fields: self.served.as_ref().map(|s| &s.log_fields),
            method: self.method.as_str(),
            path: self.uri.path(),
            status: self.status.as_u16(),
            duration,
            request_bytes: self.request_bytes.get(),
            response_bytes: sent,
            client_addr: self.client,
            user_agent: self.user_agent.as_ref().map(HeaderValue::as_bytes),
            instance_reused: reused,
            error: reason.as_deref(),
        });
    }

    fn measure(
        &self,
        sent: u64,
        duration: Duration,
        reused: Option<bool>,
        error: Option<ErrorType>,
    ) {
        let metrics = &self.recorder.metrics;
        let record = RequestRecord {
            method: normalize_method(&self.method),
            route: self.served.as_ref().map(|s| &s.route),
            component: self.served.as_ref().map(|s| &s.component),
            series: self.served.as_ref().map(|s| &s.series),
            status: self.status.as_u16(),
            error_type: error.map(ErrorType::as_str),
            duration,
            request_bytes: self.request_bytes.get(),
            response_bytes: sent,
            // A traced, sampled request: its trace can be found.
            exemplar: (self.span.is_some() && self.info.trace.sampled).then_some(ExemplarIds {
                trace_id: self.info.trace.trace_id,
                span_id: self.info.trace.span_id,
            }),
        };
        if self.counted {
            metrics.request_finished(&record);
        } else {
            metrics.request_rejected(&record);
        }
        if let (Some(served), Some(reused)) = (&self.served, reused) {
            metrics.invoked(&served.invocations, reused);
        }
    }
}

impl Finish for Record {
    fn finish(mut self, sent: u64, ending: Option<Failure>) {
        if ending.is_none()
            && let Some(connection) = self.connection.clone()
        {
            // Handed over whole: the guest and the request slot are free
            // now, the line waits until the response is on the socket (a
            // client that stops reading is logged as such, not as served).
            self.handed_over = Some((sent, self.lease.as_ref().and_then(InstanceLease::reused)));
            drop(self.lease.take());
            self.permit = None;
            connection.hold_until_flushed(self);
            return;
        }
        let duration = self.started.elapsed();
        self.complete(sent, ending, duration);
    }

    fn cut_short(&self) -> Option<Failure> {
        let trapped = self.lease.as_ref()?.trapped()?;
        Some(Failure::TrappedWhileStreaming(trapped))
    }

    fn has_body(&self) -> bool {
        !(self.method == Method::HEAD
            || self.status == StatusCode::NO_CONTENT
            || self.status == StatusCode::NOT_MODIFIED
            || self.status.is_informational())
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        // Dropped unfinished: the client left before the response head.
        if !self.done {
            self.status = CLIENT_CLOSED_REQUEST;
            let duration = self.started.elapsed();
            self.complete(
                0,
                Some(Failure::ClientGone(ClientGone::BeforeResponse)),
                duration,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::KeyValueFailure;
    use crate::telemetry::capture::CapturedLogs;
    use crate::telemetry::metrics::ServiceIdentity;

    fn recorder(logs: &CapturedLogs) -> Arc<Recorder> {
        let identity = ServiceIdentity {
            name: "test".into(),
            version: "0".into(),
            instance_id: "i".into(),
        };
        Arc::new(Recorder {
            metrics: Arc::new(Metrics::new(&identity, true).unwrap()),
            logs: logs.sink.clone(),
            shutdown: Shutdown::new(),
            traces: Traces::off(),
        })
    }

    fn get(path: &str) -> http::Request<()> {
        http::Request::get(path)
            .header(header::USER_AGENT, "probe/1")
            .body(())
            .unwrap()
    }

    fn client() -> SocketAddr {
        "127.0.0.1:4242".parse().unwrap()
    }

    fn served() -> Arc<Served> {
        Arc::new(Served::new(
            "/heroes/:id",
            "registry".into(),
            Arc::default(),
        ))
    }

    /// The requests the metrics have finished, by status.
    fn finished(recorder: &Recorder, status: u16) -> bool {
        let text = String::from_utf8(recorder.metrics.encode().unwrap()).unwrap();
        text.lines().any(|l| {
            l.starts_with("http_server_request_duration_seconds_count")
                && l.contains(&format!("http_response_status_code=\"{status}\""))
                && l.ends_with(" 1")
        })
    }

    #[test]
    fn a_finished_record_writes_one_line_even_when_finished_again_by_drop() {
        let logs = CapturedLogs::new();
        let recorder = recorder(&logs);
        let mut record = Record::start(recorder.clone(), &get("/heroes/1?x=1"), client());
        record.served_by(served());
        record.set_status(StatusCode::CREATED);
        record.finish(17, None);
        assert!(finished(&recorder, 201));
        let lines = logs.lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line = &lines[0];
        assert_eq!(line["status"], 201);
        assert_eq!(line["path"], "/heroes/1");
        assert_eq!(line["route"], "/heroes/:id");
        assert_eq!(line["component"], "registry");
        assert_eq!(line["response_bytes"], 17);
        assert_eq!(line["user_agent"], "probe/1");
        assert_eq!(line["level"], "info");
        assert!(line.get("error").is_none(), "{line}");
    }

    #[test]
    fn a_record_dropped_unfinished_is_a_client_that_left() {
        let logs = CapturedLogs::new();
        let recorder = recorder(&logs);
        drop(Record::start(recorder.clone(), &get("/"), client()));
        assert!(finished(&recorder, 499));
        let lines = logs.lines();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["status"], 499);
        assert_eq!(lines[0]["error"], "client went away before the response");
    }

    #[test]
    fn a_record_dropped_while_the_host_cuts_off_was_cut_off() {
        let logs = CapturedLogs::new();
        let recorder = recorder(&logs);
        let record = Record::start(recorder.clone(), &get("/"), client());
        recorder.shutdown.advance(Phase::CuttingOff);
        drop(record);
        let lines = logs.lines();
        assert_eq!(
            (&lines[0]["status"], &lines[0]["level"]),
            (&503.into(), &"error".into())
        );
        assert!(
            lines[0]["error"]
                .as_str()
                .unwrap()
                .contains("cut off at shutdown")
        );
    }

    #[test]
    fn the_first_failure_is_the_one_logged() {
        let logs = CapturedLogs::new();
        let recorder = recorder(&logs);
        let mut record = Record::start(recorder.clone(), &get("/"), client());
        record.fail(Failure::Overloaded);
        record.fail(Failure::CutOff);
        record.set_status(StatusCode::SERVICE_UNAVAILABLE);
        record.finish(0, Some(Failure::ClientGone(ClientGone::BeforeEnd)));
        let lines = logs.lines();
        assert_eq!(lines[0]["error"], "over --max-concurrent-requests");
        assert_eq!(lines[0]["level"], "error");
    }

    #[test]
    fn a_key_value_failure_under_an_answered_request_is_named() {
        let logs = CapturedLogs::new();
        let recorder = recorder(&logs);
        let mut record = Record::start(recorder.clone(), &get("/heroes"), client());
        record.info().key_value_failed(KeyValueFailure {
            store: "default".into(),
            backend: "redis",
            operation: "get",
            error: "connection refused".into(),
        });
        record.set_status(StatusCode::INTERNAL_SERVER_ERROR);
        record.finish(10, None);
        let lines = logs.lines();
        assert_eq!(
            lines[0]["error"],
            "key-value get on store `default` (redis) failed: connection refused"
        );
        assert_eq!(lines[0]["level"], "error");
    }

    #[test]
    fn a_rejected_request_is_recorded_at_once_and_never_in_flight() {
        let logs = CapturedLogs::new();
        let recorder = recorder(&logs);
        Record::rejected(recorder.clone(), client(), Malformed::HeadTooLarge);
        assert!(finished(&recorder, 431));
        let text = String::from_utf8(recorder.metrics.encode().unwrap()).unwrap();
        assert!(!text.contains("http_server_active_requests"), "{text}");
        let lines = logs.lines();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["status"], 431);
        assert_eq!(lines[0]["level"], "warn");
        assert_eq!(lines[0]["request_id"].as_str().unwrap().len(), 32);
    }

    #[test]
    fn only_responses_hyper_sends_a_body_for_have_one() {
        let logs = CapturedLogs::new();
        let recorder = recorder(&logs);
        let head = http::Request::head("/").body(()).unwrap();
        let record = Record::start(recorder.clone(), &head, client());
        assert!(!record.has_body());
        let mut get = Record::start(recorder.clone(), &get("/"), client());
        assert!(get.has_body());
        get.set_status(StatusCode::NO_CONTENT);
        assert!(!get.has_body());
        record.finish(0, None);
        get.finish(0, None);
    }
}
