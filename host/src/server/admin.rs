//! The admin listener: `/metrics` (Prometheus text 0.0.4, or OpenMetrics
//! with exemplars when the scraper asks for it), `/healthz` (alive) and
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
use crate::telemetry::metrics::{Metrics, openmetrics};

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
                    let accept = request.headers().get(header::ACCEPT);
                    let openmetrics = accept
                        .and_then(|a| a.to_str().ok())
                        .is_some_and(prefers_openmetrics);
                    let answer = admin.answer(request.method(), request.uri().path(), openmetrics);
                    Ok::<_, Infallible>(answer.await)
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
    async fn answer(
        &self,
        method: &Method,
        path: &str,
        openmetrics: bool,
    ) -> Response<Full<Bytes>> {
        if method != Method::GET && method != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
        }
        match path {
            "/metrics" if openmetrics => {
                let body = self.metrics.encode_openmetrics();
                let mut response = Response::new(Full::new(Bytes::from(body)));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    http::HeaderValue::from_static(openmetrics::CONTENT_TYPE),
                );
                response
            }
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

/// Whether an `Accept` header prefers OpenMetrics to the 0.0.4 text: it
/// names `application/openmetrics-text` with a weight at least that of any
/// plain text it accepts (Prometheus asks for OpenMetrics first, curl and
/// browsers for anything, which gets the text).
pub fn prefers_openmetrics(accept: &str) -> bool {
    let (mut openmetrics, mut plain) = (0.0_f32, 0.0_f32);
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media_type = parts.next().unwrap_or("").to_ascii_lowercase();
        let weight = parts
            .filter_map(|p| p.strip_prefix("q="))
            .find_map(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        match media_type.as_str() {
            "application/openmetrics-text" => openmetrics = openmetrics.max(weight),
            "text/plain" | "text/*" | "*/*" => plain = plain.max(weight),
            _ => {}
        }
    }
    openmetrics > 0.0 && openmetrics >= plain
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_only_when_preferred() {
        // What Prometheus 2.42 sends.
        assert!(prefers_openmetrics(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        ));
        assert!(prefers_openmetrics("application/openmetrics-text"));
        assert!(!prefers_openmetrics("*/*"));
        assert!(!prefers_openmetrics("text/plain;version=0.0.4"));
        assert!(!prefers_openmetrics(
            "text/plain;q=1,application/openmetrics-text;q=0.5"
        ));
        assert!(!prefers_openmetrics("application/openmetrics-text;q=0"));
    }
}
