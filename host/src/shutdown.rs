//! The host's one shutdown state, shared by the accept loop, the admin server,
//! the request path and the runtime.
//!
//! Shutdown moves through phases in one direction only: serving, then
//! draining (a signal came: readiness turns false, no new connections,
//! in-flight requests finish), then cutting off (the grace period ran out:
//! requests still running are ended by the host), then stopped (no request
//! will come again: instances cancelled now are retired quietly).

use std::sync::Arc;

use tokio::sync::watch;

/// Where shutdown stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Normal operation.
    Serving,
    /// A stop was asked for: finish what is in flight, take nothing new.
    Draining,
    /// The grace period elapsed: what still runs is cut off by the host.
    CuttingOff,
    /// Serving is over.
    Stopped,
}

/// A handle on the shared shutdown state; cheap to clone.
#[derive(Clone)]
pub struct Shutdown {
    phase: Arc<watch::Sender<Phase>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A host that is serving.
    pub fn new() -> Self {
        Shutdown {
            phase: Arc::new(watch::Sender::new(Phase::Serving)),
        }
    }

    /// Moves to `phase` unless shutdown is already past it.
    pub fn advance(&self, phase: Phase) {
        self.phase.send_if_modified(|current| {
            let later = phase > *current;
            if later {
                *current = phase;
            }
            later
        });
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// Whether shutdown has reached `phase` (or gone past it).
    pub fn reached(&self, phase: Phase) -> bool {
        self.phase() >= phase
    }

    /// Resolves once shutdown reaches `phase`.
    pub async fn wait_for(&self, phase: Phase) {
        let mut changes = self.phase.subscribe();
        // The sender lives as long as `self`, so waiting cannot fail.
        let _ = changes.wait_for(|current| *current >= phase).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_only_move_forward() {
        let shutdown = Shutdown::new();
        assert_eq!(shutdown.phase(), Phase::Serving);
        shutdown.advance(Phase::CuttingOff);
        shutdown.advance(Phase::Draining);
        assert_eq!(shutdown.phase(), Phase::CuttingOff);
        assert!(shutdown.reached(Phase::Draining));
        assert!(!shutdown.reached(Phase::Stopped));
    }

    #[tokio::test]
    async fn waiters_wake_when_their_phase_or_a_later_one_comes() {
        let shutdown = Shutdown::new();
        let draining = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { shutdown.wait_for(Phase::Draining).await }
        });
        tokio::task::yield_now().await;
        assert!(!draining.is_finished());
        shutdown.advance(Phase::Stopped);
        draining.await.unwrap();
        // Already reached: returns at once.
        shutdown.wait_for(Phase::CuttingOff).await;
    }
}
