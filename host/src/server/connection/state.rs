//! What a connection's byte-level side and its requests share: the refused
//! head waiting for its answer, how many requests came and ended, the
//! records of responses not yet written to the socket, whether the client
//! stopped reading, and whether the connection should end once idle.
//!
//! Both sides run in the connection's task; the atomics and locks here are
//! never contended, they only make the state shareable.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use futures::task::AtomicWaker;

use super::head::Refusal;
use crate::request::outcome::{ClientGone, Failure};
use crate::request::{Peer, Record};

/// One connection's shared state.
pub struct ConnectionState {
    /// The client.
    pub peer: Peer,
    /// Heads handed to hyper so far, refused ones included.
    heads: AtomicU64,
    /// Requests the service has taken.
    requests: AtomicU64,
    /// Requests whose record is complete.
    finished: AtomicU64,
    /// A refused head and its number among the heads.
    refusal: Mutex<Option<(u64, Refusal)>>,
    /// Records of responses handed to hyper whole, waiting until hyper has
    /// written them to the socket.
    unflushed: Mutex<Vec<Record>>,
    has_unflushed: AtomicBool,
    /// The client stopped reading (see `--response-write-timeout`).
    write_stalled: AtomicBool,
    /// The byte-level side holds input not yet handed to hyper.
    input_waiting: AtomicBool,
    /// End the connection once it is idle: the host is shutting down, or
    /// it is among the longest idle past `--max-idle-connections`.
    closing: AtomicBool,
    /// Wakes the connection's task when `closing` is set.
    waker: AtomicWaker,
    /// When it became idle (nanoseconds on the registry's clock, plus one);
    /// zero while busy.
    idle_since: AtomicU64,
}

impl ConnectionState {
    /// A new connection from `peer`.
    pub fn new(peer: Peer) -> Self {
        ConnectionState {
            peer,
            heads: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            refusal: Mutex::new(None),
            unflushed: Mutex::new(Vec::new()),
            has_unflushed: AtomicBool::new(false),
            write_stalled: AtomicBool::new(false),
            input_waiting: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            idle_since: AtomicU64::new(0),
        }
    }

    // ---------------------------------------------------- the byte side

    /// A head was handed to hyper.
    pub(super) fn head_passed(&self) {
        self.heads.fetch_add(1, Ordering::Relaxed);
    }

    /// A refused head was replaced by a stand-in hyper will hand to the
    /// service, which answers it with `refusal`.
    pub(super) fn refuse(&self, refusal: Refusal) {
        let number = self.heads.fetch_add(1, Ordering::Relaxed) + 1;
        *lock(&self.refusal) = Some((number, refusal));
    }

    /// Whether a request is being served or answered, or a head handed to
    /// hyper waits in hyper's buffer for its turn.
    pub(super) fn busy(&self) -> bool {
        let requests = self.requests.load(Ordering::Relaxed);
        requests != self.finished.load(Ordering::Relaxed)
            || requests != self.heads.load(Ordering::Relaxed)
    }

    /// Says whether input is waiting to be handed to hyper.
    pub(super) fn set_input_waiting(&self, waiting: bool) {
        self.input_waiting.store(waiting, Ordering::Relaxed);
    }

    /// Everything hyper wrote has reached the socket: responses handed over
    /// whole are delivered.
    pub(super) fn flushed(&self) {
        if !self.has_unflushed.load(Ordering::Relaxed) {
            return;
        }
        let mut unflushed = lock(&self.unflushed);
        for record in unflushed.drain(..) {
            record.delivered();
        }
        self.has_unflushed.store(false, Ordering::Relaxed);
    }

    /// The connection is ending: responses not yet written never will be.
    pub(super) fn abandon(&self) {
        let failure = || {
            if self.write_stalled() {
                Failure::WriteStalled
            } else {
                Failure::ClientGone(ClientGone::BeforeEnd)
            }
        };
        let abandoned = std::mem::take(&mut *lock(&self.unflushed));
        for record in abandoned {
            record.undelivered(failure());
        }
    }

    /// Writing made no progress for the write timeout.
    pub(super) fn set_write_stalled(&self) {
        self.write_stalled.store(true, Ordering::Relaxed);
    }

    /// Whether the connection should end once idle.
    pub(super) fn closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    /// Registers the task to wake when the connection should close.
    pub(super) fn register_waker(&self, waker: &std::task::Waker) {
        self.waker.register(waker);
    }

    /// Asks the connection to end once idle, waking its task.
    pub(super) fn close_when_idle(&self) {
        self.closing.store(true, Ordering::Relaxed);
        self.waker.wake();
    }

    /// The idle mark (see the registry).
    pub(super) fn idle_since(&self) -> &AtomicU64 {
        &self.idle_since
    }

    // ---------------------------------------------------- the request side

    /// The service takes a request: returns the refusal to answer instead
    /// of serving it, when the request is the stand-in for a refused head.
    pub fn request_started(&self) -> (u64, Option<Refusal>) {
        let number = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        let mut slot = lock(&self.refusal);
        let refusal = match &*slot {
            Some((refused, _)) if *refused == number => slot.take().map(|(_, r)| r),
            _ => None,
        };
        (number, refusal)
    }

    /// A request's record is complete.
    pub fn request_finished(&self) {
        self.finished.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the connection ends after the response to request `number`:
    /// it is to close once idle, and no more input has arrived (which would
    /// still be answered). That response then says `Connection: close`.
    pub fn ends_after(&self, number: u64) -> bool {
        self.closing()
            && self.heads.load(Ordering::Relaxed) <= number
            && !self.input_waiting.load(Ordering::Relaxed)
    }

    /// Keeps a record until hyper has written its response to the socket.
    pub fn hold_until_flushed(&self, record: Record) {
        lock(&self.unflushed).push(record);
        self.has_unflushed.store(true, Ordering::Relaxed);
    }

    /// Whether the client stopped reading.
    pub fn write_stalled(&self) -> bool {
        self.write_stalled.load(Ordering::Relaxed)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_hyper_has_buffered_but_not_served_keeps_the_connection_busy() {
        let state = ConnectionState::new(Peer::new("127.0.0.1:9".parse().unwrap()));
        assert!(!state.busy());
        // Two pipelined heads handed over; hyper serves the first.
        state.head_passed();
        state.head_passed();
        let (first, _) = state.request_started();
        state.request_finished();
        assert!(state.busy(), "the second head waits in hyper's buffer");
        assert!(!state.ends_after(first));
        let (second, _) = state.request_started();
        state.request_finished();
        assert!(!state.busy());
        state.close_when_idle();
        assert!(state.ends_after(second));
    }
}
