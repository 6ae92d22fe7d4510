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
//! - [`outcome`]: why a request failed, as types.

pub mod body;
pub mod forward;
pub mod outcome;
pub mod record;
pub mod reply;
pub mod spin_headers;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use http::header::HeaderValue;
use http::{Response, StatusCode};
use tokio::sync::Semaphore;

use self::body::ResponseBody;
use self::forward::{Forwarding, guest_request};
use self::outcome::{ErrorType, Failure};
pub use self::record::{Record, Recorder, Served};
use self::reply::Reply;
use self::spin_headers::RouteHeaders;
use crate::manifest::HttpTrigger;
use crate::routes::{DuplicateRoute, Router};
use crate::runtime::Runtime;

/// Spin's health path, answered by the host.
pub const HEALTH_PATH: &str = "/.well-known/spin/health";

/// Limits applied before the guest runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body (413).
    pub max_request_body: u64,
    /// Longest URI (414).
    pub max_uri_length: usize,
    /// Requests served at once (503 beyond).
    pub max_concurrent_requests: usize,
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
                served: Arc::new(Served {
                    route: route.into(),
                    component: component.id.clone(),
                    invocations: component.invocations.clone(),
                }),
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
}

impl RequestHandler {
    /// The request path over `router` and `runtime`.
    pub fn new(
        router: Router<RouteTarget>,
        runtime: Runtime,
        recorder: Arc<Recorder>,
        limits: Limits,
    ) -> Self {
        RequestHandler {
            router,
            runtime,
            recorder,
            permits: Arc::new(Semaphore::new(limits.max_concurrent_requests)),
            limits,
        }
    }

    /// Where records go.
    pub fn recorder(&self) -> &Arc<Recorder> {
        &self.recorder
    }

    /// Serves one request. Never fails: every failure is an HTTP response.
    pub async fn serve(
        self: Arc<Self>,
        peer: Peer,
        request: hyper::Request<hyper::body::Incoming>,
    ) -> Result<Response<ResponseBody<Record>>, Infallible> {
        let mut record = Record::start(self.recorder.clone(), &request, peer.addr);
        let reply = self.respond(&mut record, &peer, request).await;
        Ok(reply.into_response(record))
    }

    async fn respond(
        &self,
        record: &mut Record,
        peer: &Peer,
        request: hyper::Request<hyper::body::Incoming>,
    ) -> Reply {
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => record.hold_permit(permit),
            Err(_) => return Reply::failed(record, Failure::Overloaded),
        }
        let uri_length = request
            .uri()
            .path_and_query()
            .map_or(0, |pq| pq.as_str().len());
        if uri_length > self.limits.max_uri_length {
            return Reply::error(StatusCode::URI_TOO_LONG);
        }
        // Routing borrows the path while the request itself moves on.
        let uri = request.uri().clone();
        if uri.path() == HEALTH_PATH {
            return Reply::text(StatusCode::OK, "OK");
        }
        let Some(found) = self.router.route(uri.path()) else {
            return Reply::error(StatusCode::NOT_FOUND);
        };
        let target = found.target;
        record.served_by(target.served.clone());
        // hyper has parsed and checked `Content-Length`; its exact size hint
        // is that length (and there is none for a chunked body).
        let announced = http_body::Body::size_hint(request.body()).exact();
        if announced.is_some_and(|length| length > self.limits.max_request_body) {
            return Reply::error(StatusCode::PAYLOAD_TOO_LARGE);
        }
        let params: Vec<(&str, &str)> = found.params().collect();
        let forwarding = Forwarding {
            route: &target.headers,
            path_info: &found.path_info,
            params: &params,
            client_addr: peer.header.as_ref(),
            info: record.info(),
            max_body: self.limits.max_request_body,
            request_bytes: record.request_bytes().clone(),
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
        if record.request_bytes().get() > self.limits.max_request_body {
            // The guest saw its body cut off at the limit; the client sees why.
            return Reply::error(StatusCode::PAYLOAD_TOO_LARGE);
        }
        match call.result {
            Ok(response) => Reply::Guest(response),
            Err(failure) => Reply::failed(record, Failure::Guest(failure)),
        }
    }
}
