//! One public request, from admission to its one log line and metric points.
//!
//! Read in this order:
//! - [`RequestHandler::serve`] (here): a [`Record`] is started, then the
//!   request is admitted (concurrency limit, URI length, body size), routed,
//!   forwarded to the guest and answered;
//! - [`forward`]: the request as the guest gets it, with the `spin-*` headers
//!   of [`spin_headers`];
//! - [`reply`]: the guest's response or the host's own JSON error, carrying
//!   the record on its body;
//! - [`body`]: the body wrappers, which finish the record exactly once;
//! - [`record`]: the record, which writes the invocation line and the metric
//!   points, and frees the instance;
//! - [`outcome`]: why a request failed, as types;
//! - [`refused`]: the answer to a head the connection refused;
//! - [`well_known`]: Spin's own paths (`health`, `info`).

pub mod body;
pub mod forward;
pub mod outcome;
pub mod record;
pub mod refused;
pub mod reply;
pub mod spin_headers;
pub mod well_known;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use tokio::sync::Semaphore;
use wasmtime_wasi_http::WasiBody;

use self::body::{BodyFailure, BodyTiming, RequestBody, ResponseBody};
use self::forward::{Forwarding, guest_request};
use self::outcome::{ErrorType, Failure};
pub use self::record::{Record, Recorder, Served};
use self::reply::Reply;
use self::spin_headers::RouteHeaders;
use self::well_known::WellKnown;
use crate::manifest::HttpTrigger;
use crate::routes::{DuplicateRoute, Router};
use crate::runtime::Runtime;
use crate::server::connection::ConnectionState;
use crate::shutdown::Phase;

/// Bodies up to this size are read whole before the request takes a slot
/// and an instance; larger ones stream to the guest.
const READ_AHEAD: usize = 64 * 1024;

/// Limits applied before the guest runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body (413).
    pub max_request_body: u64,
    /// Longest URI (414).
    pub max_uri_length: usize,
    /// Requests served at once (503 beyond).
    pub max_concurrent_requests: usize,
    /// How long a body may take to arrive (408 beyond).
    pub body_timing: BodyTiming,
}

/// What a route leads to: made once per route.
pub struct RouteTarget {
    /// The index of its component in the runtime.
    pub component: usize,
    /// The route and component, for the record.
    pub served: Arc<Served>,
    /// The route's `spin-*` header values.
    pub headers: RouteHeaders,
}

impl RouteTarget {
    /// The route table of `triggers`, leading to `runtime`'s components.
    pub fn table(
        triggers: &[HttpTrigger],
        runtime: &Runtime,
    ) -> anyhow::Result<(Router<RouteTarget>, Vec<DuplicateRoute>)> {
        Router::build(triggers, |route, component_id| {
            let (index, component) = runtime
                .components
                .iter()
                .enumerate()
                .find(|(_, c)| &*c.id == component_id)
                .with_context(|| format!("component `{component_id}` is not served"))?;
            Ok(RouteTarget {
                component: index,
                served: Arc::new(Served::new(
                    route,
                    component.id.clone(),
                    component.invocations.clone(),
                )),
                headers: RouteHeaders::for_route(route)?,
            })
        })
    }
}

/// The peer of a connection, as every request on it reports it.
#[derive(Clone)]
pub struct Peer {
    /// Its address.
    pub addr: SocketAddr,
    /// Its address as the `spin-client-addr` value.
    pub header: Option<HeaderValue>,
}

impl Peer {
    /// The peer at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Peer {
            addr,
            header: HeaderValue::try_from(addr.to_string()).ok(),
        }
    }
}

/// Everything the request path needs, built once.
pub struct RequestHandler {
    router: Router<RouteTarget>,
    runtime: Runtime,
    recorder: Arc<Recorder>,
    limits: Limits,
    permits: Arc<Semaphore>,
    well_known: WellKnown,
}

impl RequestHandler {
    /// The request path over `router` and `runtime`, answering Spin's own
    /// paths with `well_known`.
    pub fn new(
        router: Router<RouteTarget>,
        runtime: Runtime,
        recorder: Arc<Recorder>,
        limits: Limits,
        well_known: WellKnown,
    ) -> Self {
        RequestHandler {
            router,
            runtime,
            recorder,
            permits: Arc::new(Semaphore::new(limits.max_concurrent_requests)),
            limits,
            well_known,
        }
    }

    /// Where records go.
    pub fn recorder(&self) -> &Arc<Recorder> {
        &self.recorder
    }

    /// Serves one request that came on `connection`. Never fails: every
    /// failure is an HTTP response.
    pub async fn serve(
        self: Arc<Self>,
        connection: Arc<ConnectionState>,
        request: hyper::Request<hyper::body::Incoming>,
    ) -> Result<Response<ResponseBody<Record>>, Infallible> {
        let (number, refusal) = connection.request_started();
        if let Some(refusal) = refusal {
            return Ok(refused::answer(
                &self.router,
                &self.recorder,
                connection,
                refusal,
            ));
        }
        let mut record = Record::start(self.recorder.clone(), &request, connection.peer.addr);
        record.on_connection(connection.clone());
        let reply = self.respond(&mut record, &connection.peer, request).await;
        let close = reply.closes_connection() || connection.ends_after(number);
        let mut response = reply.into_response(record);
        if close {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        Ok(response)
    }

    async fn respond(
        &self,
        record: &mut Record,
        peer: &Peer,
        request: hyper::Request<hyper::body::Incoming>,
    ) -> Reply {
        let uri_length = request
            .uri()
            .path_and_query()
            .map_or(0, |pq| pq.as_str().len());
        if uri_length > self.limits.max_uri_length {
            return Reply::error(StatusCode::URI_TOO_LONG);
        }
        // Routing borrows the path while the request itself moves on.
        let uri = request.uri().clone();
        if let Some(reply) = self.well_known.answer(uri.path()) {
            return reply;
        }
        let Some(found) = self.router.route(uri.path()) else {
            return Reply::error(StatusCode::NOT_FOUND);
        };
        let target = found.target;
        record.served_by(target.served.clone());
        if self.recorder.shutdown.reached(Phase::Draining) {
            return Reply::failed(record, Failure::ShuttingDown);
        }
        // The body first, then a slot: a slow client holds neither a slot
        // nor an instance while it sends a small body.
        let request = match self.read_body(record, request).await {
            Ok(request) => request,
            Err(reply) => return reply,
        };
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => record.hold_permit(permit),
            Err(_) => return Reply::failed(record, Failure::Overloaded),
        }
        let params: Vec<(&str, &str)> = found.params().collect();
        let forwarding = Forwarding {
            route: &target.headers,
            path_info: &found.path_info,
            params: &params,
            client_addr: peer.header.as_ref(),
            info: record.info(),
        };
        let guest_request = match guest_request(request, forwarding) {
            Ok(guest_request) => guest_request,
            Err(why) => return Reply::failed(record, Failure::Unforwardable(why)),
        };
        let component = &self.runtime.components[target.component];
        let span = record
            .info()
            .spans()
            .and_then(|s| s.start_call(&component.id));
        let call = component.handle(record.info().clone(), guest_request).await;
        record.hold_instance(call.lease);
        if let (Some(mut span), Err(failure)) = (span, &call.result) {
            let error_type = Failure::Guest(failure.clone()).error_type();
            span.fail(
                error_type.map_or("_OTHER", ErrorType::as_str),
                failure.to_string(),
            );
        }
        // The guest saw its body cut off; the client sees why.
        let body = record.request_bytes();
        if body.get() > self.limits.max_request_body {
            return Reply::error(StatusCode::PAYLOAD_TOO_LARGE);
        }
        if body.timed_out() {
            return Reply::failed(record, Failure::BodyTimedOut);
        }
        match call.result {
            Ok(response) => Reply::Guest(response),
            Err(failure) => Reply::failed(record, Failure::Guest(failure)),
        }
    }

    /// The request with its body under the limits, read ahead when small.
    async fn read_body(
        &self,
        record: &mut Record,
        request: hyper::Request<hyper::body::Incoming>,
    ) -> Result<http::Request<WasiBody>, Reply> {
        let (parts, body) = request.into_parts();
        let mut body = RequestBody::new(
            body,
            self.limits.max_request_body,
            self.limits.body_timing,
            record.request_bytes().clone(),
        );
        match body.read_ahead(READ_AHEAD).await {
            Ok(()) => Ok(http::Request::from_parts(parts, body.boxed())),
            Err(BodyFailure::TooLarge(_)) => Err(Reply::error(StatusCode::PAYLOAD_TOO_LARGE)),
            Err(BodyFailure::TimedOut) => Err(Reply::failed(record, Failure::BodyTimedOut)),
            Err(BodyFailure::Broken(_)) => Err(Reply::failed(
                record,
                Failure::Unforwardable("the request body broke off"),
            )),
        }
    }
}
