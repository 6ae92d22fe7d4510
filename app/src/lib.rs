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
#[cfg(target_arch = "wasm32")]
mod component {
    use spin_sdk::http::Request;

    use crate::store::SpinStore;

    #[spin_sdk::http_service]
    async fn handle(request: Request) -> http::Response<http_body_util::Full<bytes::Bytes>> {
        super::to_response(
            crate::routes::handle(request, || SpinStore::open(super::STORE_LABEL)).await,
        )
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
