//! One client connection at the byte level, under hyper: what it may read
//! (each request head checked whole first, see [`gate`]), how long a write
//! may make no progress, when it ends by itself (idle while the host shuts
//! down, or among the longest idle past the cap), and how it closes
//! ([`linger`]).
//!
//! - [`head`] and [`framing`]: the checks of a head and where its body ends;
//! - [`gate`]: the input between the socket and hyper;
//! - [`state`]: what the connection shares with its requests;
//! - [`registry`]: every open connection, the idle cap, shutdown.

pub mod framing;
pub mod gate;
pub mod head;
pub mod linger;
pub mod registry;
pub mod state;

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_util::io::poll_read_buf;

pub use self::gate::Protocol;
use self::gate::{Found, Gate};
use self::head::HeadLimits;
use self::linger::Linger;
use self::registry::Registered;
pub use self::state::ConnectionState;

/// A client connection as hyper reads and writes it.
pub struct ConnectionIo {
    stream: TcpStream,
    gate: Gate,
    state: Arc<ConnectionState>,
    registered: Registered,
    stall: WriteStall,
    linger: Linger,
}

impl ConnectionIo {
    /// Wraps an accepted `stream`, whose shared `state` is `registered`.
    pub fn new(
        stream: TcpStream,
        registered: Registered,
        limits: HeadLimits,
        write_timeout: Duration,
    ) -> Self {
        ConnectionIo {
            stream,
            gate: Gate::new(limits),
            state: registered.state().clone(),
            registered,
            stall: WriteStall {
                timeout: write_timeout,
                timer: None,
                armed: false,
            },
            linger: Linger::default(),
        }
    }

    /// Reads what the socket has into the gate: the bytes read (0 at EOF).
    ///
    /// Readiness first: an idle connection reserves no buffer. The read
    /// itself goes through tokio's `poll_read`, which takes a short read as
    /// proof the socket is drained: hyper's next read after a request then
    /// waits for readiness instead of a `recvfrom` that finds nothing.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        ready!(self.stream.poll_read_ready(cx))?;
        poll_read_buf(Pin::new(&mut self.stream), cx, self.gate.input())
    }

    /// Reads until the first bytes tell the protocol. `None`: the client
    /// closed (or the connection broke, or was closed idle) before sending
    /// anything that could be served.
    pub async fn protocol(&mut self) -> Option<Protocol> {
        std::future::poll_fn(|cx| self.poll_protocol(cx)).await
    }

    fn poll_protocol(&mut self, cx: &mut Context<'_>) -> Poll<Option<Protocol>> {
        loop {
            if let Some(protocol) = self.gate.protocol() {
                return Poll::Ready(Some(protocol));
            }
            match self.poll_fill(cx) {
                // A few bytes then the end: HTTP/1 sees them as before.
                Poll::Ready(Ok(0)) if self.gate.holds_input() => {
                    return Poll::Ready(Some(Protocol::Http1));
                }
                Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(None),
                Poll::Ready(Ok(_)) => self.registered.set_idle(false),
                Poll::Pending if self.rest(cx) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// The connection waits for a request: nothing buffered, nothing in
    /// flight.
    fn at_rest(&self) -> bool {
        self.gate.at_rest() && !self.state.busy()
    }

    /// Nothing more to read now. A connection at rest counts as idle (and
    /// gives back its input buffer) until input comes, and is woken when it
    /// is to be closed; returns whether it should end now (closed from our
    /// side while at rest).
    fn rest(&mut self, cx: &Context<'_>) -> bool {
        if !self.at_rest() {
            return false;
        }
        self.state.register_waker(cx.waker());
        if self.state.closing() {
            return true;
        }
        self.registered.set_idle(true);
        self.gate.release_memory();
        false
    }
}

impl AsyncRead for ConnectionIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            match this.gate.examine() {
                Found::Head => this.state.head_passed(),
                Found::Refused(refusal) => this.state.refuse(refusal),
                Found::Body => {}
                Found::NeedMore if this.gate.refused() => {
                    // Nothing more goes to hyper, and an end of input now
                    // would cut the answer to the refused head short.
                    return Poll::Pending;
                }
                Found::NeedMore => match this.poll_fill(cx) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Ok(())),
                    Poll::Ready(Ok(_)) => {
                        this.registered.set_idle(false);
                        continue;
                    }
                    Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                    // Ended from our side, between requests and with
                    // nothing unread: hyper closes quietly.
                    Poll::Pending if this.rest(cx) => return Poll::Ready(Ok(())),
                    Poll::Pending => return Poll::Pending,
                },
            }
            this.gate.hand_over(out);
            this.state.set_input_waiting(this.gate.holds_input());
            return Poll::Ready(Ok(()));
        }
    }
}

impl AsyncWrite for ConnectionIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let written = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.stall.check(cx, written, &this.state)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let written = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.stall.check(cx, written, &this.state)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(Pin::new(&mut this.stream).poll_flush(cx))?;
        // hyper flushes its own buffer into the socket before flushing us:
        // every response it finished is written.
        this.state.flushed();
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.state.flushed();
        this.linger.poll_close(cx, &mut this.stream)
    }
}

impl Drop for ConnectionIo {
    fn drop(&mut self) {
        self.state.abandon();
    }
}

/// Ends a connection whose writes make no progress for the timeout: a
/// client that stops reading holds its connection that long, no longer.
struct WriteStall {
    timeout: Duration,
    /// Made at the first stalled write, then reused.
    timer: Option<Pin<Box<Sleep>>>,
    /// Whether the timer runs for the current stall.
    armed: bool,
}

impl WriteStall {
    fn check<T>(
        &mut self,
        cx: &mut Context<'_>,
        written: Poll<io::Result<T>>,
        state: &ConnectionState,
    ) -> Poll<io::Result<T>> {
        if !written.is_pending() {
            self.armed = false;
            return written;
        }
        let deadline = Instant::now() + self.timeout;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !self.armed {
            timer.as_mut().reset(deadline);
            self.armed = true;
        }
        if timer.as_mut().poll(cx).is_ready() {
            state.set_write_stalled();
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client read nothing for --response-write-timeout",
            )));
        }
        Poll::Pending
    }
}
