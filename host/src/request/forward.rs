//! The request as the guest gets it: an absolute URI, the `spin-*` headers,
//! the host's span in `traceparent`, and no transport headers (its body is
//! already counted and limited, see `body`).

use http::header::{self, HeaderValue};
use http::{Request, Uri};
use wasmtime_wasi_http::WasiBody;

use super::spin_headers::{self, RequestValues, RouteHeaders};
use crate::runtime::RequestInfo;

/// What the forwarded request is made from, besides the request itself.
pub struct Forwarding<'a> {
    /// The matched route's header values.
    pub route: &'a RouteHeaders,
    /// The part of the path under a wildcard route.
    pub path_info: &'a str,
    /// `:name` segments and their values.
    pub params: &'a [(&'a str, &'a str)],
    /// The peer, as a header value.
    pub client_addr: Option<&'a HeaderValue>,
    /// The request's identity and trace.
    pub info: &'a RequestInfo,
}

/// The guest's request; fails (naming why) when the client's request cannot
/// be expressed to the guest.
pub fn guest_request(
    request: Request<WasiBody>,
    forwarding: Forwarding<'_>,
) -> Result<Request<WasiBody>, &'static str> {
    let (mut parts, body) = request.into_parts();
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| http::uri::Authority::try_from(*h).is_ok())
        .unwrap_or("localhost");
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    // One buffer serves as both the URI and `spin-full-url`.
    let full_url = spin_headers::full_url(host, path_and_query);
    parts.uri = Uri::from_maybe_shared(full_url.clone()).map_err(|_| "invalid request URI")?;
    let headers = &mut parts.headers;
    // Transport details of this connection mean nothing to the guest.
    headers.remove(header::CONNECTION);
    spin_headers::insert(
        headers,
        forwarding.route,
        &RequestValues {
            full_url,
            path_info: forwarding.path_info,
            params: forwarding.params,
            client_addr: forwarding.client_addr,
        },
    )
    .map_err(|_| "a path segment cannot be a header value")?;
    forwarding.info.trace.set_traceparent(headers);
    Ok(Request::from_parts(parts, body))
}
