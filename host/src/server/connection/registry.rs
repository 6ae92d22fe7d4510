//! The open connections: a cap on idle ones (the longest idle are closed
//! first, as nginx reuses its idle keep-alive connections), and a way to
//! tell every one of them that the host is shutting down.
//!
//! A connection is idle while it waits for a request with nothing buffered
//! and nothing in flight: between keep-alive requests, or new and silent.
//! Becoming idle and busy again costs two atomic operations; only going
//! over the cap takes the lock, to pick the longest idle.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::state::ConnectionState;

/// Every open connection.
pub struct Connections {
    open: Mutex<HashMap<u64, Arc<ConnectionState>>>,
    /// The most connections open at once since [`Connections::take_peak`].
    peak: AtomicUsize,
    next_id: AtomicU64,
    idle: AtomicUsize,
    max_idle: usize,
    clock: Instant,
}

/// A connection's place in the registry; leaving it when dropped.
pub struct Registered {
    connections: Arc<Connections>,
    id: u64,
    state: Arc<ConnectionState>,
}

impl Connections {
    /// A registry closing the longest idle connections past `max_idle`.
    pub fn new(max_idle: usize) -> Arc<Self> {
        Arc::new(Connections {
            open: Mutex::new(HashMap::new()),
            peak: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            idle: AtomicUsize::new(0),
            max_idle,
            clock: Instant::now(),
        })
    }

    /// Adds a connection.
    pub fn register(self: &Arc<Self>, state: Arc<ConnectionState>) -> Registered {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let open = {
            let mut open = self.lock();
            open.insert(id, state.clone());
            open.len()
        };
        self.peak.fetch_max(open, Ordering::Relaxed);
        Registered {
            connections: self.clone(),
            id,
            state,
        }
    }

    /// Connections open now.
    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// The most connections open at once since the last call, and the
    /// number open now (the next period's starting peak).
    pub fn take_peak(&self) -> (usize, usize) {
        let open = self.count();
        (self.peak.swap(open, Ordering::Relaxed).max(open), open)
    }

    /// Connections idle now.
    pub fn idle(&self) -> usize {
        self.idle.load(Ordering::Relaxed)
    }

    /// Asks every connection to end once idle (the host is shutting down).
    pub fn close_all_when_idle(&self) {
        for state in self.lock().values() {
            state.close_when_idle();
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<ConnectionState>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Closes the `count` longest idle connections (fewer if fewer are
    /// idle), to free their descriptors for new clients.
    pub fn close_longest_idle(&self, count: usize) {
        self.close_idle(|_| count);
    }

    /// Closes the longest idle connections until at most `max_idle` are
    /// left, and a sixteenth of the cap more, so that a stream of new idle
    /// connections takes the lock once in a while, not every time.
    fn shed_idle(&self) {
        let max_idle = self.max_idle;
        self.close_idle(|idle| match idle.saturating_sub(max_idle) {
            0 => 0,
            excess => excess + max_idle / 16,
        });
    }

    /// Closes the longest idle connections, as many as `how_many` says for
    /// the number idle (and not closing yet).
    fn close_idle(&self, how_many: impl FnOnce(usize) -> usize) {
        let open = self.lock();
        let mut idle: Vec<(u64, &Arc<ConnectionState>)> = open
            .values()
            .filter_map(|state| {
                let since = state.idle_since().load(Ordering::Relaxed);
                (since != 0 && !state.closing()).then_some((since, state))
            })
            .collect();
        let count = how_many(idle.len()).min(idle.len());
        if count == 0 {
            return;
        }
        if count < idle.len() {
            idle.select_nth_unstable_by_key(count, |(since, _)| *since);
        }
        for (_, state) in &idle[..count] {
            state.close_when_idle();
        }
        tracing::debug!(
            closed = count,
            max_idle_connections = self.max_idle,
            "closing the longest idle connections"
        );
    }
}

impl Registered {
    /// The connection's shared state.
    pub fn state(&self) -> &Arc<ConnectionState> {
        &self.state
    }

    /// Marks the connection idle or busy; closes the longest idle ones when
    /// this one goes over the cap.
    pub fn set_idle(&self, idle: bool) {
        let mark = self.state.idle_since();
        let connections = &self.connections;
        if idle {
            if mark.load(Ordering::Relaxed) != 0 {
                return;
            }
            let now = connections.clock.elapsed().as_nanos() as u64 + 1;
            mark.store(now, Ordering::Relaxed);
            if connections.idle.fetch_add(1, Ordering::Relaxed) >= connections.max_idle {
                connections.shed_idle();
            }
        } else if mark.swap(0, Ordering::Relaxed) != 0 {
            connections.idle.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.set_idle(false);
        self.connections.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Peer;

    fn connection(connections: &Arc<Connections>) -> Registered {
        let peer = Peer::new("127.0.0.1:9".parse().unwrap());
        connections.register(Arc::new(ConnectionState::new(peer)))
    }

    #[test]
    fn past_the_cap_the_longest_idle_are_closed_first() {
        let connections = Connections::new(32);
        let all: Vec<Registered> = (0..40).map(|_| connection(&connections)).collect();
        for (n, registered) in all.iter().enumerate().take(32) {
            registered.set_idle(true);
            assert!(!registered.state.closing(), "{n} is within the cap");
        }
        assert_eq!(connections.idle(), 32);
        all[32].set_idle(true);
        // One over the cap: that one and two more (32 / 16), the oldest.
        let closed: Vec<usize> = (0..40).filter(|&n| all[n].state.closing()).collect();
        assert_eq!(closed, [0, 1, 2]);
        // Busy connections are never closed, and leave the idle count.
        all[33].set_idle(false);
        all[5].set_idle(false);
        assert_eq!(connections.idle(), 32);
        drop(all);
        assert_eq!((connections.idle(), connections.count()), (0, 0));
    }

    #[test]
    fn closing_for_room_takes_the_longest_idle_only() {
        let connections = Connections::new(100);
        let all: Vec<Registered> = (0..6).map(|_| connection(&connections)).collect();
        for registered in &all[..5] {
            registered.set_idle(true);
        }
        connections.close_longest_idle(2);
        let closed: Vec<usize> = (0..6).filter(|&n| all[n].state.closing()).collect();
        assert_eq!(closed, [0, 1]);
        connections.close_longest_idle(10);
        let closed: Vec<usize> = (0..6).filter(|&n| all[n].state.closing()).collect();
        assert_eq!(closed, [0, 1, 2, 3, 4], "never a busy one");
    }

    #[test]
    fn shutting_down_closes_every_connection_once_idle() {
        let connections = Connections::new(100);
        let all: Vec<Registered> = (0..3).map(|_| connection(&connections)).collect();
        connections.close_all_when_idle();
        assert!(all.iter().all(|c| c.state.closing()));
    }
}
