//! A stand-in OTLP/HTTP collector for pricing trace export: it answers every
//! `POST` with 200 and an empty protobuf message (a valid
//! `Export*ServiceResponse`), counts requests and body bytes, and reports
//! them as JSON on `GET /stats`. It decodes nothing: the price is the
//! exporter's, not the collector's.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

/// What the sink has received.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkStats {
    /// `POST` requests answered.
    pub requests: u64,
    /// Their body bytes.
    pub bytes: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    bytes: AtomicU64,
}

impl Counters {
    fn stats(&self) -> SinkStats {
        SinkStats {
            requests: self.requests.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }
}

/// Serves on `listener` until the process is killed.
pub async fn serve(listener: TcpListener) -> anyhow::Result<()> {
    let counters = Arc::new(Counters::default());
    loop {
        let (stream, _) = listener.accept().await?;
        let counters = Arc::clone(&counters);
        tokio::spawn(async move {
            let service = service_fn(move |request| answer(Arc::clone(&counters), request));
            // A client hanging up is not an error worth reporting here.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    counters: Arc<Counters>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.method() == Method::GET && request.uri().path() == "/stats" {
        let body = serde_json::to_vec(&counters.stats()).unwrap_or_default();
        return Ok(response(StatusCode::OK, "application/json", body));
    }
    if request.method() != Method::POST {
        return Ok(response(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            Vec::new(),
        ));
    }
    let bytes = match request.into_body().collect().await {
        Ok(body) => body.to_bytes().len() as u64,
        Err(_) => return Ok(response(StatusCode::BAD_REQUEST, "text/plain", Vec::new())),
    };
    counters.requests.fetch_add(1, Ordering::Relaxed);
    counters.bytes.fetch_add(bytes, Ordering::Relaxed);
    // An empty protobuf message: an export response with nothing rejected.
    Ok(response(
        StatusCode::OK,
        "application/x-protobuf",
        Vec::new(),
    ))
}

fn response(
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::server;

    #[test]
    fn counts_every_post_and_reports_on_stats() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let addr: SocketAddr = runtime.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(serve(listener));
            addr
        });
        let before = server::get(addr, "/stats").unwrap();
        assert_eq!(before.0, 200);
        let stats: SinkStats = serde_json::from_slice(&before.1).unwrap();
        assert_eq!(stats, SinkStats::default());

        for size in [100, 250] {
            let (status, body) = server::post(addr, "/v1/traces", &vec![7u8; size]).unwrap();
            assert_eq!((status, body.len()), (200, 0));
        }
        let (_, body) = server::get(addr, "/stats").unwrap();
        let stats: SinkStats = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            stats,
            SinkStats {
                requests: 2,
                bytes: 350
            }
        );
        assert_eq!(server::get(addr, "/v1/traces").unwrap().0, 405);
    }
}
