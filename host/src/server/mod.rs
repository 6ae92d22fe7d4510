//! The HTTP servers: the public listener, which hands each request to the
//! request path, and the admin listener (metrics, health, readiness). Both
//! follow the host's one [`Shutdown`].

pub mod admin;
pub mod connection;
pub mod listener;
pub mod memory;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use self::connection::head::HeadLimits;
use self::connection::registry::Connections;
use self::connection::{ConnectionIo, ConnectionState, Protocol};
use self::listener::Listener;
use crate::request::outcome::Malformed;
use crate::request::{Peer, Record, Recorder, RequestHandler};
use crate::shutdown::{Phase, Shutdown};

/// Connection-level limits of the public listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Time allowed to send a request head; also bounds keep-alive idling.
    pub header_read_timeout: Duration,
    /// What a request head may be (431, 400, 413 beyond).
    pub head: HeadLimits,
    /// Connections open at once; more wait in the kernel's accept queue.
    pub max_connections: usize,
    /// Connections idle at once; past it the longest idle are closed.
    pub max_idle_connections: usize,
    /// A write that makes no progress for this long ends the connection.
    pub response_write_timeout: Duration,
}

/// Idle connections closed each time accepting runs out of descriptors.
const RELIEF: usize = 16;

/// How long cut-off connection tasks get to record their requests.
const CUT_OFF_WAIT: Duration = Duration::from_secs(1);

/// Serves the public listener until shutdown starts draining, then stops
/// accepting and lets every connection finish: requests already received
/// are served (those that arrive now are answered 503), and each connection
/// closes once it has nothing left to answer. Waits at most `grace` before
/// cutting off what still runs. Returns whether every connection closed in
/// time.
pub async fn serve_public(
    listener: TcpListener,
    handler: Arc<RequestHandler>,
    limits: ConnectionLimits,
    shutdown: &Shutdown,
    grace: Duration,
) -> bool {
    let builders = Arc::new(Builders::new(&limits));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let connections = Connections::new(limits.max_idle_connections);
    tokio::spawn(memory::give_back_after_crowds(
        connections.clone(),
        shutdown.clone(),
    ));
    let relieved = connections.clone();
    let mut listener =
        Listener::new(listener, "public").relieved_by(move || relieved.close_longest_idle(RELIEF));
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
        let state = Arc::new(ConnectionState::new(Peer::new(client)));
        let io = ConnectionIo::new(
            stream,
            connections.register(state.clone()),
            limits.head,
            limits.response_write_timeout,
        );
        let builders = builders.clone();
        let handler = handler.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            serve_connection(io, state, handler, &builders, &shutdown).await;
            drop(slot);
        });
    }
    drop(listener);
    connections.close_all_when_idle();
    drain(&connections, tasks, shutdown, grace).await
}

/// The hyper servers of the public port, one per protocol.
struct Builders {
    http1: hyper::server::conn::http1::Builder,
    http2: hyper::server::conn::http2::Builder<TokioExecutor>,
    /// How long a new connection may take to show its protocol.
    first_bytes: Duration,
}

impl Builders {
    fn new(limits: &ConnectionLimits) -> Self {
        let mut http1 = hyper::server::conn::http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_headers(limits.head.max_headers)
            // Heads reach hyper only whole and checked (see `connection`);
            // these are the same limits, for the record.
            .max_header_size(limits.head.max_head_size)
            .max_buf_size(limits.head.max_head_size.max(8192))
            .keep_alive(true);
        let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        // HTTP/2 has no head to check before hyper: its header list has the
        // head's size limit; a larger one is refused by hyper (431).
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limits.head.max_head_size).unwrap_or(u32::MAX));
        Builders {
            http1,
            http2,
            first_bytes: limits.header_read_timeout,
        }
    }
}

/// Serves one connection in the protocol its first bytes tell. An HTTP/2
/// connection is told to go away (GOAWAY) when the host starts draining:
/// its streams in flight finish, new ones are refused.
async fn serve_connection(
    mut io: ConnectionIo,
    state: Arc<ConnectionState>,
    handler: Arc<RequestHandler>,
    builders: &Builders,
    shutdown: &Shutdown,
) {
    let client = state.peer.addr;
    let recorder = handler.recorder().clone();
    let protocol = match tokio::time::timeout(builders.first_bytes, io.protocol()).await {
        Ok(Some(protocol)) => protocol,
        // Nothing sent, as hyper's own header read timeout would end it.
        Ok(None) | Err(_) => return,
    };
    let service =
        hyper::service::service_fn(move |request| handler.clone().serve(state.clone(), request));
    let io = TokioIo::new(io);
    let result = match protocol {
        Protocol::Http1 => builders.http1.serve_connection(io, service).await,
        Protocol::Http2 => {
            let connection = builders.http2.serve_connection(io, service);
            let draining = shutdown.wait_for(Phase::Draining);
            tokio::pin!(connection, draining);
            tokio::select! {
                result = &mut connection => result,
                () = &mut draining => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            }
        }
    };
    if let Err(error) = result {
        connection_failed(recorder, client, &error);
    }
}

/// Waits for open connections to finish, up to `grace`; then cuts off what
/// is left (each cut request is logged as such) and says whether all closed.
async fn drain(
    connections: &Connections,
    mut tasks: JoinSet<()>,
    shutdown: &Shutdown,
    grace: Duration,
) -> bool {
    tracing::info!(
        open_connections = connections.count(),
        idle_connections = connections.idle(),
        "stopped accepting connections; draining"
    );
    let started = Instant::now();
    let all_closed =
        tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} })
            .await
            .is_ok();
    if all_closed {
        tracing::info!(
            took_ms = started.elapsed().as_millis() as u64,
            "all connections closed"
        );
        return true;
    }
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

/// A connection ended in error. A head hyper refused (which the connection's
/// own checks should have refused first) still gets its one invocation line
/// (hyper has answered it already: 400 or 431); slow or vanished clients are
/// only worth a debug line.
fn connection_failed(recorder: Arc<Recorder>, client: std::net::SocketAddr, error: &hyper::Error) {
    if !error.is_parse() {
        tracing::debug!(client = %client, error = %error, "connection closed");
        return;
    }
    let malformed = if error.is_parse_too_large() {
        Malformed::HeadTooLarge
    } else {
        Malformed::Invalid
    };
    Record::rejected(recorder, client, malformed);
}
