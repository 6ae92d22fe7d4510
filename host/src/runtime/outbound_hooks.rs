//! The wasi:http hooks of an instance: which outbound requests it may send
//! (`allowed_outbound_hosts`, and `http://self` for its own app), with the
//! trace context and, when traced, a client span.

use std::sync::Arc;

use wasmtime_wasi_http::{WasiBody, WasiHttpHooks};

use super::instance::InstanceShared;
use super::outbound_span;
use crate::outbound::{self, OutboundRule, OwnApp};
use crate::telemetry::trace::TRACEPARENT;

/// The wasi:http hooks: outbound requests only to `allowed_outbound_hosts`,
/// each a client span of its request when traced, with the trace context in
/// `traceparent`.
pub struct OutboundHooks {
    component: Arc<str>,
    rules: Arc<[OutboundRule]>,
    own_app: OwnApp,
    instance: Arc<InstanceShared>,
}

impl OutboundHooks {
    /// Hooks enforcing `rules` for `component`, whose requests run on
    /// `instance`; requests with no host go to `own_app`.
    pub fn new(
        component: Arc<str>,
        rules: Arc<[OutboundRule]>,
        own_app: OwnApp,
        instance: Arc<InstanceShared>,
    ) -> Self {
        OutboundHooks {
            component,
            rules,
            own_app,
            instance,
        }
    }
}

type IoFuture = Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>;

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _request_io: IoFuture,
    ) -> Box<
        dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), wasmtime_wasi_http::Error>>
            + Send,
    > {
        let mut request = request;
        let own_app = match outbound::destination(&self.rules, &self.own_app, request.uri()) {
            Ok(own_app) => own_app,
            Err(why) => {
                tracing::warn!(
                    component = &*self.component,
                    destination = %why,
                    "outbound request denied: not in allowed_outbound_hosts"
                );
                return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
            }
        };
        let to_own_app = own_app.is_some();
        if let Some(uri) = own_app {
            *request.uri_mut() = uri;
        }
        // The caller is looked up only when its trace context is needed.
        let caller = if to_own_app {
            self.instance.calling_request()
        } else {
            self.instance.traced_request()
        };
        let span = caller
            .as_ref()
            .and_then(|caller| outbound_span::start(caller, &mut request));
        // A call to the app itself is a request of the same trace even when
        // no trace is exported: its invocation line names the caller's trace.
        if to_own_app
            && let Some(caller) = &caller
            && !request.headers().contains_key(TRACEPARENT)
        {
            caller.trace.set_traceparent(request.headers_mut());
        }
        Box::new(async move {
            use http_body_util::BodyExt as _;
            let sent = wasmtime_wasi_http::default_send_request(request, options).await;
            if let Some(span) = span {
                outbound_span::end(span, &sent);
            }
            let (response, io) = sent?;
            Ok((
                response.map(|body| body.boxed_unsync()),
                Box::new(io) as IoFuture,
            ))
        })
    }
}
