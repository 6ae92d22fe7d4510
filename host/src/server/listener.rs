//! Accepting connections, with back-off when accepting fails.
//!
//! Accepting fails mostly when the process is out of file descriptors
//! (`EMFILE`) or the system is (`ENFILE`); retrying at once would spin. The
//! listener waits, doubling the wait from [`FIRST_BACKOFF`] up to
//! [`MAX_BACKOFF`], logs once per run of failures, and says when accepting
//! works again.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// The first wait after a failed accept.
const FIRST_BACKOFF: Duration = Duration::from_millis(5);
/// The longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// A listener that accepts with back-off.
pub struct Listener {
    inner: TcpListener,
    name: &'static str,
}

impl Listener {
    /// Wraps `inner`; `name` says which listener in log lines.
    pub fn new(inner: TcpListener, name: &'static str) -> Self {
        Listener { inner, name }
    }

    /// The next connection. Failures are retried after a growing pause.
    pub async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        let mut backoff = FIRST_BACKOFF;
        let mut failures = 0u64;
        loop {
            match self.inner.accept().await {
                Ok(accepted) => {
                    if failures > 0 {
                        tracing::info!(
                            listener = self.name,
                            failed_attempts = failures,
                            "accepting connections again"
                        );
                    }
                    return accepted;
                }
                Err(error) => {
                    if failures == 0 {
                        tracing::warn!(
                            listener = self.name,
                            error = %error,
                            "accepting a connection failed; backing off"
                        );
                    }
                    failures += 1;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}
