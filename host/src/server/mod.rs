//! The HTTP servers: the public listener that serves components, the admin
//! listener (metrics, health, readiness), and graceful shutdown.

pub mod admin;
pub mod body;
pub mod linger;
pub mod proxy;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use self::linger::LingeringStream;
use self::proxy::App;
use crate::telemetry::logs::{Invocation, level_of};
use crate::telemetry::metrics::RequestRecord;
use crate::telemetry::trace::{TraceContext, new_request_id};

/// Connection-level limits of the public listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Time allowed to send a request head; also bounds keep-alive idling.
    pub header_read_timeout: Duration,
    /// Most headers in a request (431 beyond).
    pub max_headers: usize,
    /// Largest request head (431 beyond).
    pub max_head_size: usize,
    /// Connections open at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
}

/// Serves the public listener until `shutdown` resolves, then stops
/// accepting, lets in-flight requests finish and closes keep-alive
/// connections, waiting at most `grace`. Returns whether every connection
/// closed in time.
pub async fn serve_public(
    listener: TcpListener,
    app: Arc<App>,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> bool {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_headers(limits.max_headers)
        .max_buf_size(limits.max_head_size.max(8192))
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    // The connection tasks, to cut off those still open when the grace ends.
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while tasks.try_join_next().is_some() {}
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = connections.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let (stream, client) = tokio::select! {
            () = &mut shutdown => break,
            accepted = accept(&listener, "public") => accepted,
        };
        let _ = stream.set_nodelay(true);
        let served = app.clone();
        // `spin-client-addr`, the same for every request on this connection.
        let client_header = http::HeaderValue::try_from(client.to_string()).ok();
        let service = hyper::service::service_fn(move |request| {
            served.clone().serve(client, client_header.clone(), request)
        });
        let connection = graceful
            .watch(builder.serve_connection(TokioIo::new(LingeringStream::new(stream)), service));
        let app = app.clone();
        tasks.spawn(async move {
            if let Err(error) = connection.await {
                connection_failed(&app, client, &error);
            }
            drop(permit);
        });
    }
    drop(listener);
    let open = graceful.count();
    tracing::info!(
        open_connections = open,
        "stopped accepting connections; draining"
    );
    let started = Instant::now();
    tokio::select! {
        () = graceful.shutdown() => {
            tracing::info!(took_ms = started.elapsed().as_millis() as u64, "all connections closed");
            true
        }
        () = tokio::time::sleep(grace) => {
            tracing::warn!(
                grace_ms = grace.as_millis() as u64,
                open_connections = tasks.len(),
                "shutdown grace period elapsed; cutting off the requests still in flight"
            );
            // Dropping a connection's task ends its request with a 503 line
            // (`error_type` shutdown), before the host says it stopped.
            app.cut_off_in_flight();
            tasks.abort_all();
            let _ = tokio::time::timeout(CUT_OFF_WAIT, async {
                while tasks.join_next().await.is_some() {}
            })
            .await;
            false
        }
    }
}

/// How long cut-off connection tasks get to record their requests.
const CUT_OFF_WAIT: Duration = Duration::from_secs(1);

/// The next connection of `listener`. A failed accept (out of file
/// descriptors and the like) is logged and retried after a short pause.
pub async fn accept(listener: &TcpListener, which: &str) -> (tokio::net::TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(error) => {
                tracing::warn!(listener = which, error = %error, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A connection ended in error. A malformed request still gets its one
/// invocation line (hyper has answered it already: 400, 414 or 431); slow or
/// vanished clients are only worth a debug line.
fn connection_failed(app: &App, client: SocketAddr, error: &hyper::Error) {
    if !error.is_parse() {
        tracing::debug!(client = %client, error = %error, "connection closed");
        return;
    }
    let status = if error.is_parse_too_large() {
        if error.to_string().contains("URI") {
            414
        } else {
            431
        }
    } else {
        400
    };
    let trace = TraceContext::from_traceparent(None);
    let reason = format!("malformed request: {error}");
    app.logs().invocation(&Invocation {
        level: level_of(status),
        request_id: &new_request_id(),
        trace_id: &trace.trace_id,
        span_id: &trace.span_id,
        component: None,
        route: None,
        method: "",
        path: "",
        status,
        duration: Duration::ZERO,
        request_bytes: 0,
        response_bytes: 0,
        client_addr: client,
        user_agent: None,
        instance_reused: None,
        error: Some(&reason),
    });
    app.metrics().request_rejected(&RequestRecord {
        method: "_OTHER",
        route: None,
        component: None,
        status,
        error_type: None,
        duration: Duration::ZERO,
        request_bytes: 0,
        response_bytes: 0,
    });
}
