//! Lingering close for client connections.
//!
//! When the host answers before reading a whole request body (a 413 for an
//! announced length over the limit, a guest that ignores its body), closing
//! the socket with the client's bytes still arriving makes the kernel send a
//! reset, and the client typically sees "broken pipe" or "connection reset"
//! instead of the answer it was sent. Like nginx's `lingering_close`, the
//! host therefore half-closes (FIN after the response) and reads and discards
//! what the client is still sending, until the client closes, goes quiet, or
//! a hard deadline passes.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// Longest a closing connection is drained.
const LINGER_TOTAL: Duration = Duration::from_secs(5);
/// A closing connection whose client sends nothing for this long is closed.
const LINGER_IDLE: Duration = Duration::from_millis(250);

/// A TCP stream whose shutdown lingers to drain the client's unread bytes.
pub struct LingeringStream {
    inner: TcpStream,
    closing: Closing,
}

/// Where the shutdown stands.
enum Closing {
    /// Not shutting down.
    Open,
    /// Write side closed; discarding input until EOF, idle or deadline.
    Draining {
        idle: Pin<Box<Sleep>>,
        deadline: Instant,
    },
    /// Done; further shutdowns return at once.
    Closed,
}

impl LingeringStream {
    /// Wraps an accepted stream.
    pub fn new(inner: TcpStream) -> Self {
        LingeringStream {
            inner,
            closing: Closing::Open,
        }
    }
}

impl AsyncRead for LingeringStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for LingeringStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            match &mut this.closing {
                Closing::Open => {
                    ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
                    let now = Instant::now();
                    this.closing = Closing::Draining {
                        idle: Box::pin(tokio::time::sleep_until(now + LINGER_IDLE)),
                        deadline: now + LINGER_TOTAL,
                    };
                }
                Closing::Draining { idle, deadline } => {
                    let mut scratch = [0u8; 8192];
                    let mut buf = ReadBuf::new(&mut scratch);
                    match Pin::new(&mut this.inner).poll_read(cx, &mut buf) {
                        Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                            // Still sending: keep draining, within the deadline.
                            let now = Instant::now();
                            if now >= *deadline {
                                this.closing = Closing::Closed;
                            } else {
                                idle.as_mut().reset((now + LINGER_IDLE).min(*deadline));
                            }
                        }
                        // EOF or an error: the client is gone.
                        Poll::Ready(_) => this.closing = Closing::Closed,
                        Poll::Pending => {
                            ready!(idle.as_mut().poll(cx));
                            this.closing = Closing::Closed;
                        }
                    }
                }
                Closing::Closed => return Poll::Ready(Ok(())),
            }
        }
    }
}
