//! The Hero Registry: a Spin HTTP component (WASIp3) that stores heroes in the
//! Spin key-value store labelled `default`.
//!
//! This file is only the component's entry point; the API lives in
//! [`routes`], the data model (heroes and their ordering index) in
//! [`registry`].

pub mod error;
pub mod hero;
pub mod registry;
pub mod routes;
pub mod store;

use bytes::Bytes;
use http_body_util::Full;

use crate::routes::Reply;

/// The key-value store the registry keeps its heroes in.
pub const STORE_LABEL: &str = "default";

/// The exported handler. Compiled only for wasm: a native build (for unit
/// tests) cannot link WIT export names.
///
/// Written out rather than with `#[spin_sdk::http_service]`, whose handler
/// turns every request into an `http::Request` by copying all its headers
/// into the guest (two guest allocations and a lowering each, with the
/// `spin-*` headers about fifteen) and asks for the scheme, authority and
/// options besides: about 90k instructions a request, a third of a
/// `GET /heroes/{id}` (see bench/README.md, "Where the time goes").
/// The API reads the method, the path and query, and, for the methods that
/// carry one, the body, whose announced length the body itself knows; the
/// headers stay with the host, where the guest could still ask for them one
/// by one.
#[cfg(target_arch = "wasm32")]
mod component {
    use bytes::Bytes;
    use http_body_util::{Either, Empty};
    use spin_sdk::http::IntoResponse;
    use spin_sdk::wasip3::http::types::{ErrorCode, Request, Response};
    use spin_sdk::wasip3::http_compat::IncomingRequestBody;

    use crate::store::SpinStore;

    struct Registry;
    spin_sdk::wasip3::http::service::export!(Registry);

    impl spin_sdk::wasip3::exports::http::handler::Guest for Registry {
        async fn handle(request: Request) -> Result<Response, ErrorCode> {
            let request = api_request(request)?;
            let reply =
                crate::routes::handle(request, || SpinStore::open(super::STORE_LABEL)).await;
            super::to_response(reply).into_response()
        }
    }

    /// A request's body as the API sees it: none for methods it reads none
    /// of (the body's stream is then never opened).
    type Body = Either<IncomingRequestBody, Empty<Bytes>>;

    /// The parts of `request` the API reads: method, path and query, body.
    fn api_request(request: Request) -> Result<http::Request<Body>, ErrorCode> {
        let method = http::Method::try_from(request.get_method())
            .map_err(|_| ErrorCode::HttpRequestMethodInvalid)?;
        let uri = request.get_path_with_query();
        let body = if crate::routes::reads_body(&method) {
            Either::Left(IncomingRequestBody::new(request)?)
        } else {
            Either::Right(Empty::new())
        };
        http::Request::builder()
            .method(method)
            .uri(uri.as_deref().unwrap_or("/"))
            .body(body)
            .map_err(|_| ErrorCode::HttpRequestUriInvalid)
    }
}

/// Turns a handler's reply into the HTTP response; every response is
/// `application/json`.
pub fn to_response(reply: Reply) -> http::Response<Full<Bytes>> {
    let mut builder = http::Response::builder()
        .status(reply.status)
        .header(http::header::CONTENT_TYPE, "application/json");
    if let Some(location) = reply.location {
        builder = builder.header(http::header::LOCATION, location);
    }
    if let Some(allow) = reply.allow {
        builder = builder.header(http::header::ALLOW, allow);
    }
    builder
        .body(Full::new(Bytes::from(reply.body)))
        .expect("status and headers are valid by construction")
}
