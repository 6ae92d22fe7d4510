//! One public request, start to finish: admission (concurrency limit, URI
//! length, body size), routing, the `spin-*` headers, the guest call, the
//! mapping of guest failures to 500/503/504, and the record that becomes
//! exactly one log line and one set of metric points when the response ends.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode, Uri};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime_wasi_http::handler::{ExpirationError, InstantiationError, TrapOrPanicError};

use super::body::{Finish, RequestBody, RequestBodyStats, ResponseBody, Unfinished};
use crate::routes::{RouteMatch, Router};
use crate::runtime::Runtime;
use crate::runtime::instance::{Outcome, RequestInfo};
use crate::telemetry::logs::{Invocation, LogSink, level_of};
use crate::telemetry::metrics::{Metrics, RequestRecord, normalize_method};
use crate::telemetry::trace::{TraceContext, new_request_id};

/// Spin's health path, answered by the host.
pub const HEALTH_PATH: &str = "/.well-known/spin/health";
/// How long to wait for a failed instance to say why it failed.
const OUTCOME_WAIT: Duration = Duration::from_millis(200);

/// Limits applied before the guest runs.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body (413).
    pub max_request_body: u64,
    /// Longest URI (414).
    pub max_uri_length: usize,
}

/// Everything the request path needs, built once.
pub struct App {
    router: Router,
    runtime: Runtime,
    metrics: Arc<Metrics>,
    logs: LogSink,
    limits: Limits,
    permits: Arc<Semaphore>,
    /// Set when the shutdown grace period has elapsed: requests still in
    /// flight are being cut off by the host, not left by their clients.
    cutting_off: AtomicBool,
}

impl App {
    /// The request path's state; at most `max_concurrent_requests` run at once.
    pub fn new(
        router: Router,
        runtime: Runtime,
        metrics: Arc<Metrics>,
        logs: LogSink,
        limits: Limits,
        max_concurrent_requests: u32,
    ) -> Self {
        App {
            router,
            runtime,
            metrics,
            logs,
            limits,
            permits: Arc::new(Semaphore::new(max_concurrent_requests as usize)),
            cutting_off: AtomicBool::new(false),
        }
    }

    /// From now on, requests that end unfinished were cut off by shutdown.
    pub fn cut_off_in_flight(&self) {
        self.cutting_off.store(true, Ordering::SeqCst);
    }

    /// The metrics (for the admin server).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The log sink (for connection-level failures).
    pub fn logs(&self) -> &LogSink {
        &self.logs
    }

    /// Serves one request. Never fails: every failure is an HTTP response.
    pub async fn serve(
        self: Arc<Self>,
        client: SocketAddr,
        client_header: Option<HeaderValue>,
        request: hyper::Request<hyper::body::Incoming>,
    ) -> Result<Response<ResponseBody>, Infallible> {
        let trace = TraceContext::from_traceparent(
            request
                .headers()
                .get("traceparent")
                .map(HeaderValue::as_bytes),
        );
        let method = normalize_method(request.method());
        self.metrics.request_started(method);
        let mut record = Record {
            app: self.clone(),
            started: Instant::now(),
            info: Arc::new(RequestInfo::new(new_request_id(), trace)),
            method: request.method().clone(),
            method_label: method,
            uri: request.uri().clone(),
            client,
            client_header,
            user_agent: request.headers().get(header::USER_AGENT).cloned(),
            route: None,
            component: None,
            status: StatusCode::OK,
            request_body: Arc::new(RequestBodyStats::default()),
            error: None,
            error_type: None,
            permit: None,
            done: false,
        };
        Ok(self.respond(&mut record, request).await.finish(record))
    }

    async fn respond(
        &self,
        record: &mut Record,
        request: hyper::Request<hyper::body::Incoming>,
    ) -> Reply {
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => record.permit = Some(permit),
            Err(_) => {
                record.fail("overload", "over --max-concurrent-requests".into());
                return Reply::error(StatusCode::SERVICE_UNAVAILABLE);
            }
        }
        let uri_length = request
            .uri()
            .path_and_query()
            .map_or(0, |pq| pq.as_str().len());
        if uri_length > self.limits.max_uri_length {
            return Reply::error(StatusCode::URI_TOO_LONG);
        }
        // Routing borrows the path while the request itself moves on.
        let uri = record.uri.clone();
        let path = uri.path();
        if path == HEALTH_PATH {
            return Reply::text(StatusCode::OK, "OK");
        }
        let Some(found) = self.router.route(path) else {
            return Reply::error(StatusCode::NOT_FOUND);
        };
        let component = &self.runtime.components[found.entry.component];
        record.route = Some(found.entry.route.clone());
        record.component = Some(found.entry.component);
        // hyper has parsed and checked `Content-Length`; its exact size hint
        // is that length (and there is none for a chunked body).
        let announced = http_body::Body::size_hint(request.body()).exact();
        if announced.is_some_and(|length| length > self.limits.max_request_body) {
            return Reply::error(StatusCode::PAYLOAD_TOO_LARGE);
        }

        let guest_request =
            match guest_request(request, &found, record, self.limits.max_request_body) {
                Ok(request) => request,
                Err(reason) => {
                    record.error = Some(reason);
                    return Reply::error(StatusCode::BAD_REQUEST);
                }
            };
        let info = record.info.clone();
        let result = component.handle(info.clone(), guest_request).await;
        if record.request_body.bytes.load(Ordering::Relaxed) > self.limits.max_request_body {
            // The guest saw its body cut off at the limit; the client sees why.
            return Reply::error(StatusCode::PAYLOAD_TOO_LARGE);
        }
        match result {
            Ok(response) => Reply::Guest(response),
            Err(error) => self.guest_failure(record, &info, error).await,
        }
    }

    /// Maps a failed guest call to a response, naming the cause in the record.
    async fn guest_failure(
        &self,
        record: &mut Record,
        info: &RequestInfo,
        error: wasmtime::Error,
    ) -> Reply {
        if error.is::<InstantiationError<Arc<RequestInfo>>>() {
            record.fail("overload", format!("no instance available: {error:#}"));
            return Reply::error(StatusCode::SERVICE_UNAVAILABLE);
        }
        if error.is::<ExpirationError>() {
            record.fail(
                "timeout",
                "the guest did not answer within --request-timeout".into(),
            );
            return Reply::error(StatusCode::GATEWAY_TIMEOUT);
        }
        let instance = info.assignment().map(|a| a.instance.clone());
        let outcome = match &instance {
            Some(instance) if error.is::<TrapOrPanicError>() || !is_guest_error_code(&error) => {
                instance.outcome(OUTCOME_WAIT).await
            }
            _ => None,
        };
        // The epoch callback sets the flag before the instance's outcome is
        // recorded, so either says the guest ran out of time.
        let timed_out = instance
            .as_ref()
            .is_some_and(|i| i.timed_out.load(Ordering::Relaxed))
            || matches!(
                outcome,
                Some(Outcome::Trapped {
                    kind: "timeout",
                    ..
                })
            );
        if timed_out {
            record.fail(
                "timeout",
                "the guest ran past --request-timeout and was interrupted".into(),
            );
            return Reply::error(StatusCode::GATEWAY_TIMEOUT);
        }
        match outcome {
            Some(Outcome::Trapped { kind, detail }) => {
                record.fail("trap", format!("guest trapped ({kind}): {detail}"));
                Reply::error(StatusCode::INTERNAL_SERVER_ERROR)
            }
            _ => {
                let reason = info
                    .failure()
                    .unwrap_or_else(|| format!("guest failed: {error:#}"));
                record.fail("guest_error", reason);
                Reply::error(StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }
}

/// Whether the guest answered with a wasi:http `error-code` (as opposed to
/// trapping).
fn is_guest_error_code(error: &wasmtime::Error) -> bool {
    error.is::<wasmtime_wasi_http::p3::bindings::http::types::ErrorCode>()
        || error.is::<wasmtime_wasi_http::p2::bindings::http::types::ErrorCode>()
}

/// The request as the guest gets it: an absolute URI, the `spin-*` headers,
/// our span in `traceparent`, the body counted and limited.
fn guest_request(
    request: hyper::Request<hyper::body::Incoming>,
    found: &RouteMatch<'_, '_>,
    record: &Record,
    max_body: u64,
) -> Result<http::Request<wasmtime_wasi_http::WasiBody>, String> {
    let (mut parts, body) = request.into_parts();
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| http::uri::Authority::try_from(*h).is_ok())
        .unwrap_or("localhost");
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    // One buffer serves as both the URI and `spin-full-url`.
    let full_url = Bytes::from(format!("http://{host}{path_and_query}"));
    parts.uri = Uri::from_maybe_shared(full_url.clone())
        .map_err(|e| format!("invalid request URI: {e}"))?;
    let invalid = |e: http::header::InvalidHeaderValue| format!("invalid header value: {e}");

    let headers = &mut parts.headers;
    // Transport details of this connection mean nothing to the guest.
    headers.remove(header::CONNECTION);
    // The route's own values were made once, when the routes were built.
    let entry = found.entry;
    headers.insert(
        HeaderName::from_static("spin-full-url"),
        HeaderValue::from_maybe_shared(full_url).map_err(invalid)?,
    );
    headers.insert(
        HeaderName::from_static("spin-path-info"),
        HeaderValue::from_str(&found.path_info).map_err(invalid)?,
    );
    headers.insert(
        HeaderName::from_static("spin-matched-route"),
        entry.matched_route.clone(),
    );
    headers.insert(
        HeaderName::from_static("spin-base-path"),
        HeaderValue::from_static("/"),
    );
    headers.insert(
        HeaderName::from_static("spin-raw-component-route"),
        entry.raw_route.clone(),
    );
    headers.insert(
        HeaderName::from_static("spin-component-route"),
        entry.matched_route.clone(),
    );
    if let Some(client) = &record.client_header {
        headers.insert(HeaderName::from_static("spin-client-addr"), client.clone());
    }
    for (name, captured) in found.params() {
        if let Some(header) = entry.param_header(name) {
            headers.insert(
                header.clone(),
                HeaderValue::from_str(captured).map_err(invalid)?,
            );
        }
    }
    headers.insert(
        HeaderName::from_static("traceparent"),
        HeaderValue::try_from(record.info.trace.traceparent()).map_err(invalid)?,
    );

    let body = RequestBody::new(body, max_body, record.request_body.clone()).boxed();
    Ok(http::Request::from_parts(parts, body))
}

/// What to answer.
enum Reply {
    /// The guest's response.
    Guest(Response<wasmtime_wasi_http::WasiBody>),
    /// A response made by the host.
    Host {
        status: StatusCode,
        content_type: &'static str,
        body: &'static [u8],
    },
}

impl Reply {
    fn error(status: StatusCode) -> Self {
        let body: &'static [u8] = match status {
            StatusCode::NOT_FOUND => br#"{"detail":"Not Found"}"#,
            StatusCode::BAD_REQUEST => br#"{"detail":"Bad Request"}"#,
            StatusCode::PAYLOAD_TOO_LARGE => br#"{"detail":"Request body too large"}"#,
            StatusCode::URI_TOO_LONG => br#"{"detail":"URI Too Long"}"#,
            StatusCode::SERVICE_UNAVAILABLE => br#"{"detail":"Service Unavailable"}"#,
            StatusCode::GATEWAY_TIMEOUT => br#"{"detail":"Gateway Timeout"}"#,
            _ => br#"{"detail":"Internal Server Error"}"#,
        };
        Reply::Host {
            status,
            content_type: "application/json",
            body,
        }
    }

    fn text(status: StatusCode, body: &'static str) -> Self {
        Reply::Host {
            status,
            content_type: "text/plain",
            body: body.as_bytes(),
        }
    }

    /// The response, with the record riding on its body.
    fn finish(self, mut record: Record) -> Response<ResponseBody> {
        let request_id =
            HeaderValue::from_str(&record.info.request_id).expect("request ids are hex");
        record.status = match &self {
            Reply::Guest(response) => response.status(),
            Reply::Host { status, .. } => *status,
        };
        if record.status.is_server_error() {
            record
                .error_type
                .get_or_insert(status_error_type(record.status));
        }
        let mut response = match self {
            Reply::Guest(response) => {
                let (parts, body) = response.into_parts();
                Response::from_parts(parts, ResponseBody::new(body, Box::new(record)))
            }
            Reply::Host {
                status,
                content_type,
                body,
            } => {
                let mut response = Response::new(ResponseBody::full(body, Box::new(record)));
                *response.status_mut() = status;
                let headers = response.headers_mut();
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
                // The host answers 503 only when it is over capacity.
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                }
                response
            }
        };
        response
            .headers_mut()
            .insert(HeaderName::from_static("x-request-id"), request_id);
        response
    }
}

/// `error.type` for a 5xx without a more specific cause: the status code.
fn status_error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        500 => "500",
        501 => "501",
        502 => "502",
        503 => "503",
        504 => "504",
        _ => "_OTHER",
    }
}

/// Everything the invocation line and the request metrics say, finished
/// exactly once: when the response ends, fails, or is abandoned.
struct Record {
    app: Arc<App>,
    started: Instant,
    /// Its id and trace, shared with the instance that runs it.
    info: Arc<RequestInfo>,
    method: Method,
    method_label: &'static str,
    uri: Uri,
    client: SocketAddr,
    /// `client` as the `spin-client-addr` value, made once per connection.
    client_header: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
    route: Option<Arc<str>>,
    /// The index of the component that served it, in the runtime's list.
    component: Option<usize>,
    status: StatusCode,
    request_body: Arc<RequestBodyStats>,
    error: Option<String>,
    error_type: Option<&'static str>,
    permit: Option<OwnedSemaphorePermit>,
    done: bool,
}

/// Status logged for a request whose client left before any response.
const CLIENT_CLOSED_REQUEST: u16 = 499;

impl Record {
    fn fail(&mut self, error_type: &'static str, reason: String) {
        self.error_type = Some(error_type);
        self.error = Some(reason);
    }

    fn complete(&mut self, sent: u64, error: Option<Unfinished>, status: u16) {
        if self.done {
            return;
        }
        self.done = true;
        let duration = self.started.elapsed();
        let assignment = self.info.assignment();
        // An abandoned request after the grace period was cut off by the host.
        let (error, status) = match error {
            Some(Unfinished::ClientGone(_)) if self.app.cutting_off.load(Ordering::Relaxed) => (
                Some(Unfinished::CutOff),
                if status == CLIENT_CLOSED_REQUEST {
                    503
                } else {
                    status
                },
            ),
            other => (other, status),
        };
        if let Some(error) = error {
            self.error_type.get_or_insert(error.error_type());
            self.error.get_or_insert_with(|| error.into_reason());
        }
        if self.error.is_none()
            && let Some(failure) = self.info.failure()
        {
            // The guest handled a host-side failure (e.g. key-value) itself.
            self.error = Some(failure);
        }
        let app = &self.app;
        let component = self.component.map(|i| &app.runtime.components[i]);
        let request_bytes = self.request_body.bytes.load(Ordering::Relaxed);
        // Failures of the guest or the host are errors whatever the status.
        let failed = matches!(
            self.error_type,
            Some("trap" | "timeout" | "response_failed" | "shutdown")
        );
        let level = if failed { "error" } else { level_of(status) };
        app.logs.invocation(&Invocation {
            level,
            request_id: &self.info.request_id,
            trace_id: &self.info.trace.trace_id,
            span_id: &self.info.trace.span_id,
            component: component.map(|c| &*c.id),
            route: self.route.as_deref(),
            method: self.method.as_str(),
            path: self.uri.path(),
            status,
            duration,
            request_bytes,
            response_bytes: sent,
            client_addr: self.client,
            user_agent: self.user_agent.as_ref().map(HeaderValue::as_bytes),
            instance_reused: assignment.map(|a| a.reused),
            error: self.error.as_deref(),
        });
        app.metrics.request_finished(&RequestRecord {
            method: self.method_label,
            route: self.route.as_ref(),
            component: component.map(|c| &c.id),
            status,
            error_type: self.error_type,
            duration,
            request_bytes,
            response_bytes: sent,
        });
        if let (Some(assignment), Some(component)) = (assignment, component) {
            app.metrics
                .invoked(&component.invocations, assignment.reused);
            // Frees the instance for its next request.
            assignment.instance.finish(&self.info);
        }
        self.permit = None;
    }
}

impl Finish for Record {
    fn finish(mut self: Box<Self>, sent: u64, error: Option<Unfinished>) {
        let status = self.status.as_u16();
        self.complete(sent, error, status);
    }

    fn cut_short(&self) -> Option<String> {
        let instance = &self.info.assignment()?.instance;
        match instance.outcome_now()? {
            Outcome::Trapped { kind, detail } => Some(format!(
                "guest trapped ({kind}) while streaming the response: {detail}"
            )),
            Outcome::Retired => None,
        }
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        // Dropped unfinished: the client left before the response head.
        self.complete(
            0,
            Some(Unfinished::ClientGone(
                "client went away before the response",
            )),
            CLIENT_CLOSED_REQUEST,
        );
    }
}
