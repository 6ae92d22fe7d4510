//! Accepting connections, with back-off when accepting fails.
//!
//! Accepting fails mostly when the process is out of file descriptors
//! (`EMFILE`) or the system is (`ENFILE`); retrying at once would spin. The
//! listener waits, doubling the wait from [`FIRST_BACKOFF`] up to
//! [`MAX_BACKOFF`], logs once per run of failures, and says when accepting
//! works again. Out of descriptors, it may first ask for some to be freed
//! (the public listener closes its longest idle connections, as nginx does
//! when it runs out of connections), so that new clients are not shut out
//! by idle ones.

use std::net::SocketAddr;
use std::time::Duration;

use rustix::io::Errno;
use tokio::net::{TcpListener, TcpStream};

/// The first wait after a failed accept.
const FIRST_BACKOFF: Duration = Duration::from_millis(5);
/// The longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Frees file descriptors when accepting runs out of them.
type Relieve = Box<dyn Fn() + Send + Sync>;

/// A listener that accepts with back-off.
pub struct Listener {
    inner: TcpListener,
    name: &'static str,
    relieve: Option<Relieve>,
}

impl Listener {
    /// Wraps `inner`; `name` says which listener in log lines.
    pub fn new(inner: TcpListener, name: &'static str) -> Self {
        Listener {
            inner,
            name,
            relieve: None,
        }
    }

    /// Calls `relieve` whenever accepting fails for lack of descriptors,
    /// before waiting to try again.
    pub fn relieved_by(mut self, relieve: impl Fn() + Send + Sync + 'static) -> Self {
        self.relieve = Some(Box::new(relieve));
        self
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
                    let exhausted = matches!(
                        Errno::from_io_error(&error),
                        Some(Errno::MFILE | Errno::NFILE)
                    );
                    if let (true, Some(relieve)) = (exhausted, &self.relieve) {
                        relieve();
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}
