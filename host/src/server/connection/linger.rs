//! Lingering close.
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

/// Where the shutdown of a connection stands.
#[derive(Default)]
pub enum Linger {
    /// Not shutting down.
    #[default]
    Open,
    /// Write side closed; discarding input until EOF, idle or deadline.
    Draining {
        /// Closes when the client has been quiet this long.
        idle: Pin<Box<Sleep>>,
        /// Closes at this time whatever the client does.
        deadline: Instant,
    },
    /// Done; further shutdowns return at once.
    Closed,
}

impl Linger {
    /// Shuts `stream`'s write side down, then drains its input.
    pub fn poll_close(
        &mut self,
        cx: &mut Context<'_>,
        stream: &mut TcpStream,
    ) -> Poll<io::Result<()>> {
        loop {
            match self {
                Linger::Open => {
                    ready!(Pin::new(&mut *stream).poll_shutdown(cx))?;
                    let now = Instant::now();
                    *self = Linger::Draining {
                        idle: Box::pin(tokio::time::sleep_until(now + LINGER_IDLE)),
                        deadline: now + LINGER_TOTAL,
                    };
                }
                Linger::Draining { idle, deadline } => {
                    let mut scratch = [0u8; 8192];
                    let mut buf = ReadBuf::new(&mut scratch);
                    match Pin::new(&mut *stream).poll_read(cx, &mut buf) {
                        Poll::Ready(Ok(())) if !buf.filled().is_empty() => {
                            // Still sending: keep draining, within the deadline.
                            let now = Instant::now();
                            if now >= *deadline {
                                *self = Linger::Closed;
                            } else {
                                idle.as_mut().reset((now + LINGER_IDLE).min(*deadline));
                            }
                        }
                        // EOF or an error: the client is gone.
                        Poll::Ready(_) => *self = Linger::Closed,
                        Poll::Pending => {
                            ready!(idle.as_mut().poll(cx));
                            *self = Linger::Closed;
                        }
                    }
                }
                Linger::Closed => return Poll::Ready(Ok(())),
            }
        }
    }
}
