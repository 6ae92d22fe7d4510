//! What the host shares with one live component instance: the requests it is
//! serving (to attribute the guest's output lines exactly, and to know when
//! it may take another request), how it ended, and its stdout and stderr
//! lines.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use futures::task::AtomicWaker;

use super::invocation::RequestInfo;
use super::outcome::InstanceOutcome;
use super::output::{LineSplitter, Stream};
use crate::kv::{KeyValueFailure, KeyValueFailures};
use crate::sqlite::{SqliteFailure, SqliteFailures};
use crate::telemetry::logs::{GuestOrigin, LogSink};

/// Per-instance state shared between its store and the host.
pub struct InstanceShared {
    /// A number unique within the process.
    pub id: u64,
    component: Arc<str>,
    logs: LogSink,
    served: AtomicU64,
    /// Requests started and whose response has not ended yet.
    in_flight: Mutex<Vec<Arc<RequestInfo>>>,
    /// Wakes the instance's worker when it may accept a request again.
    waker: AtomicWaker,
    /// Set when the guest ran past its deadline.
    timed_out: AtomicBool,
    /// Memory growths refused by the limit.
    memory_refusals: AtomicU64,
    outcome: OnceLock<InstanceOutcome>,
    ended: tokio::sync::Notify,
    stdout: Mutex<LineSplitter>,
    stderr: Mutex<LineSplitter>,
}

impl InstanceShared {
    /// State for a new instance of `component`.
    pub fn new(id: u64, component: Arc<str>, logs: LogSink) -> Self {
        InstanceShared {
            id,
            component,
            logs,
            served: AtomicU64::new(0),
            in_flight: Mutex::new(Vec::new()),
            waker: AtomicWaker::new(),
            timed_out: AtomicBool::new(false),
            memory_refusals: AtomicU64::new(0),
            outcome: OnceLock::new(),
            ended: tokio::sync::Notify::new(),
            stdout: Mutex::new(LineSplitter::default()),
            stderr: Mutex::new(LineSplitter::default()),
        }
    }

    /// A request starts on this instance.
    pub fn start(self: &Arc<Self>, request: Arc<RequestInfo>) {
        let reused = self.served.fetch_add(1, Ordering::Relaxed) > 0;
        if request.start(self.clone(), reused) {
            self.lock_in_flight().push(request);
        }
    }

    /// A request's response ended (or failed). Output the guest left without
    /// a newline is written now, while it can still be attributed.
    pub fn finish(&self, request: &RequestInfo) {
        // Lock order is always stream, then `in_flight`: never hold
        // `in_flight` while writing a line.
        let only_this =
            matches!(self.lock_in_flight().as_slice(), [only] if std::ptr::eq(&**only, request));
        if only_this {
            for stream in [Stream::Stdout, Stream::Stderr] {
                self.flush_partial(stream, Some(request));
            }
        }
        let idle = {
            let mut in_flight = self.lock_in_flight();
            in_flight.retain(|r| !std::ptr::eq(&**r, request));
            in_flight.is_empty()
        };
        if idle {
            self.waker.wake();
        }
    }

    fn lock_in_flight(&self) -> MutexGuard<'_, Vec<Arc<RequestInfo>>> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Requests in flight (started, response not ended).
    pub fn in_flight(&self) -> usize {
        self.lock_in_flight().len()
    }

    /// Registers the waker to call when the instance becomes idle.
    pub fn register_waker(&self, waker: &std::task::Waker) {
        self.waker.register(waker);
    }

    /// The guest ran past its deadline.
    pub fn set_timed_out(&self) {
        self.timed_out.store(true, Ordering::Relaxed);
    }

    /// Whether the guest ran past its deadline.
    pub fn timed_out(&self) -> bool {
        self.timed_out.load(Ordering::Relaxed)
    }

    /// The memory limit refused to grow the guest's memory.
    pub fn memory_refused(&self) {
        self.memory_refusals.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the memory limit ever refused to grow the guest's memory.
    pub fn ran_out_of_memory(&self) -> bool {
        self.memory_refusals.load(Ordering::Relaxed) > 0
    }

    /// The one request a guest line belongs to: the only one in flight.
    /// With several in flight it cannot be known, and none is named.
    pub fn attributed(&self) -> Option<Arc<RequestInfo>> {
        match self.lock_in_flight().as_slice() {
            [only] => Some(only.clone()),
            _ => None,
        }
    }

    /// Bytes the guest wrote to a stream: complete lines are logged at once.
    pub fn write_output(&self, stream: Stream, bytes: &[u8]) {
        self.splitter(stream)
            .push(bytes, |line| self.emit(stream, line, None));
    }

    /// The line splitter of `stream`, locked.
    fn splitter(&self, stream: Stream) -> MutexGuard<'_, LineSplitter> {
        let splitter = match stream {
            Stream::Stdout => &self.stdout,
            Stream::Stderr => &self.stderr,
        };
        splitter.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn flush_partial(&self, stream: Stream, request: Option<&RequestInfo>) {
        self.splitter(stream)
            .flush(|line| self.emit(stream, line, Some(request)));
    }

    /// Logs one line. `request` overrides attribution when the caller knows
    /// it (`Some(None)`: known to be nobody's).
    fn emit(&self, stream: Stream, line: &[u8], request: Option<Option<&RequestInfo>>) {
        let attributed;
        let request = match request {
            Some(request) => request,
            None => {
                attributed = self.attributed();
                attributed.as_deref()
            }
        };
        let origin = GuestOrigin {
            stream: stream.name(),
            component: &self.component,
            request: request.map(|r| (r.request_id.as_str(), r.trace.trace_id.as_str())),
        };
        self.logs.guest_line(&origin, line);
    }

    /// Records how the instance ended (first call wins) and writes out any
    /// unfinished output line.
    pub fn end(&self, outcome: InstanceOutcome) {
        let _ = self.outcome.set(outcome);
        let only = self.attributed();
        for stream in [Stream::Stdout, Stream::Stderr] {
            self.flush_partial(stream, only.as_deref());
        }
        self.ended.notify_waiters();
    }

    /// How the instance ended, waiting up to `wait` for it: a caller that sees
    /// a failed request may learn of it before the instance's end is recorded.
    pub async fn outcome(&self, wait: Duration) -> Option<InstanceOutcome> {
        let ended = self.ended.notified();
        tokio::pin!(ended);
        ended.as_mut().enable();
        if let Some(outcome) = self.outcome.get() {
            return Some(outcome.clone());
        }
        let _ = tokio::time::timeout(wait, ended).await;
        self.outcome.get().cloned()
    }

    /// How the instance ended, if it has.
    pub fn outcome_now(&self) -> Option<&InstanceOutcome> {
        self.outcome.get()
    }
}

impl KeyValueFailures for InstanceShared {
    fn failed(&self, failure: KeyValueFailure) {
        if let Some(request) = self.attributed() {
            request.key_value_failed(failure);
        }
    }
}

impl SqliteFailures for InstanceShared {
    fn sqlite_failed(&self, failure: SqliteFailure) {
        if let Some(request) = self.attributed() {
            request.sqlite_failed(failure);
        }
    }
}
