//! The admin listener: `/metrics` (Prometheus text), `/healthz` (alive) and
//! `/readyz` (components loaded, key-value stores reachable, not draining).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Response, StatusCode, header};
use http_body_util::Full;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use super::listener::Listener;
use crate::kv::Stores;
use crate::shutdown::{Phase, Shutdown};
use crate::telemetry::metrics::Metrics;

/// How long `/readyz` waits for the key-value stores to answer.
const READY_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// What the admin endpoints read.
pub struct Admin {
    /// The registry to expose.
    pub metrics: Arc<Metrics>,
    /// The stores `/readyz` checks.
    pub stores: Stores,
    /// Readiness turns false once shutdown starts draining.
    pub shutdown: Shutdown,
}

/// Serves the admin listener until the host has stopped serving requests, so
/// metrics stay scrapeable while it drains.
pub async fn serve_admin(listener: TcpListener, admin: Arc<Admin>) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    let stopped = admin.shutdown.clone();
    let stopped = stopped.wait_for(Phase::Stopped);
    tokio::pin!(stopped);
    let mut listener = Listener::new(listener, "admin");
    loop {
        let (stream, _) = tokio::select! {
            () = &mut stopped => return,
            accepted = listener.accept() => accepted,
        };
        let admin = admin.clone();
        let service =
            hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let admin = admin.clone();
                async move {
                    Ok::<_, Infallible>(admin.answer(request.method(), request.uri().path()).await)
                }
            });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(error = %error, "admin connection closed");
            }
        });
    }
}

impl Admin {
    async fn answer(&self, method: &Method, path: &str) -> Response<Full<Bytes>> {
        if method != Method::GET && method != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
        }
        match path {
            "/metrics" => match self.metrics.encode() {
                Ok(body) => {
                    let mut response = Response::new(Full::new(Bytes::from(body)));
                    response.headers_mut().insert(
                        header::CONTENT_TYPE,
                        http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                    );
                    response
                }
                Err(error) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{error:#}\n")),
            },
            "/healthz" => text(StatusCode::OK, "ok\n".into()),
            "/readyz" => self.readiness().await,
            _ => text(
                StatusCode::NOT_FOUND,
                "not found: try /metrics, /healthz or /readyz\n".into(),
            ),
        }
    }

    async fn readiness(&self) -> Response<Full<Bytes>> {
        if self.shutdown.reached(Phase::Draining) {
            return text(StatusCode::SERVICE_UNAVAILABLE, "draining\n".into());
        }
        match tokio::time::timeout(READY_CHECK_TIMEOUT, self.stores.check()).await {
            Ok(Ok(())) => text(StatusCode::OK, "ready\n".into()),
            Ok(Err((label, error))) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("key-value store `{label}` unreachable: {error}\n"),
            ),
            Err(_) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "key-value stores did not answer in time\n".into(),
            ),
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
