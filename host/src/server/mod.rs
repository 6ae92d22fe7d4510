//! The HTTP servers: the public listener, which hands each request to the
//! request path, and the admin listener (metrics, health, readiness). Both
//! follow the host's one [`Shutdown`].

pub mod admin;
pub mod linger;
pub mod listener;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use self::linger::LingeringStream;
use self::listener::Listener;
use crate::request::outcome::Malformed;
use crate::request::{Peer, Record, Recorder, RequestHandler};
use crate::shutdown::{Phase, Shutdown};

/// Connection-level limits of the public listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// How long cut-off connection tasks get to record their requests.
const CUT_OFF_WAIT: Duration = Duration::from_secs(1);

/// Serves the public listener until shutdown starts draining, then stops
/// accepting, lets in-flight requests finish and closes keep-alive
/// connections, waiting at most `grace` before cutting off what still runs.
/// Returns whether every connection closed in time.
pub async fn serve_public(
    listener: TcpListener,
    handler: Arc<RequestHandler>,
    limits: ConnectionLimits,
    shutdown: &Shutdown,
    grace: Duration,
) -> bool {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_headers(limits.max_headers)
        // The head is measured exactly as parsed; the buffer may hold more.
        .max_header_size(limits.max_head_size)
        .max_buf_size(limits.max_head_size.max(8192))
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut listener = Listener::new(listener, "public");
    // The connection tasks, to cut off those still open when the grace ends.
    let mut tasks = JoinSet::new();
    let draining = shutdown.wait_for(Phase::Draining);
    tokio::pin!(draining);
    loop {
        while tasks.try_join_next().is_some() {}
        let slot = tokio::select! {
            () = &mut draining => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let (stream, client) = tokio::select! {
            () = &mut draining => break,
            accepted = listener.accept() => accepted,
        };
        let _ = stream.set_nodelay(true);
        let peer = Peer::new(client);
        let served = handler.clone();
        let service =
            hyper::service::service_fn(move |request| served.clone().serve(peer.clone(), request));
        let connection = graceful
            .watch(builder.serve_connection(TokioIo::new(LingeringStream::new(stream)), service));
        let recorder = handler.recorder().clone();
        tasks.spawn(async move {
            if let Err(error) = connection.await {
                connection_failed(recorder, client, &error);
            }
            drop(slot);
        });
    }
    drop(listener);
    drain(graceful, tasks, shutdown, grace).await
}

/// Waits for open connections to finish, up to `grace`; then cuts off what
/// is left (each cut request is logged as such) and says whether all closed.
async fn drain(
    graceful: GracefulShutdown,
    mut tasks: JoinSet<()>,
    shutdown: &Shutdown,
    grace: Duration,
) -> bool {
    tracing::info!(
        open_connections = graceful.count(),
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
            shutdown.advance(Phase::CuttingOff);
            tasks.abort_all();
            let _ = tokio::time::timeout(CUT_OFF_WAIT, async {
                while tasks.join_next().await.is_some() {}
            })
            .await;
            false
        }
    }
}

/// A connection ended in error. A malformed request still gets its one
/// invocation line (hyper has answered it already: 400 or 431); slow or
/// vanished clients are only worth a debug line.
fn connection_failed(recorder: Arc<Recorder>, client: std::net::SocketAddr, error: &hyper::Error) {
    if !error.is_parse() {
        tracing::debug!(client = %client, error = %error, "connection closed");
        return;
    }
    // The head limit is at most 64 KiB (see `config`), so a URI over hyper's
    // own limit (64 KiB less 2 bytes) is in a head over ours: hyper answers
    // 431 for it, never 414.
    let malformed = if error.is_parse_too_large() {
        Malformed::HeadTooLarge
    } else {
        Malformed::Invalid
    };
    Record::rejected(recorder, client, malformed);
}
