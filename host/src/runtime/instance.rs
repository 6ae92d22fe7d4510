//! What the host shares with one live component instance: the requests it is
//! serving (to know when it may take another, and whose guest output is
//! whose), how it ended, and its output lines.
//!
//! Guest output is attributed by task (see [`super::attribution`]): bytes go
//! to the line buffers of the request whose task wrote them, so the lines of
//! requests served at once never mix; a line a task leaves unfinished is
//! completed by that task's next newline, or written when its response
//! ends. Output of no request's task has its own buffers and names no
//! request.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use futures::task::AtomicWaker;

use super::attribution::{CurrentWriter, Writer};
use super::invocation::RequestInfo;
use super::outcome::InstanceOutcome;
use super::output::LineSplitter;
use crate::kv::{KeyValueFailure, KeyValueFailures, WriterId};
use crate::sqlite::{SqliteFailure, SqliteFailures};
use crate::telemetry::logs::{GuestOrigin, GuestStream, GuestWriter, LogSink, Outside};
use crate::telemetry::traces::SpanParent;

/// Per-instance state shared between its store and the host.
pub struct InstanceShared {
    /// A number unique within the process.
    pub id: u64,
    component: Arc<str>,
    logs: LogSink,
    /// Whether tracing is on: host calls then look for their request's spans.
    traced: bool,
    /// Requests started so far.
    started: AtomicU64,
    /// Requests started and whose response has not ended yet.
    in_flight: Mutex<Vec<Arc<RequestInfo>>>,
    /// Their count, read without the lock on every scheduling decision.
    in_flight_count: AtomicUsize,
    /// Stalled instances of the lane this instance belongs to (see
    /// [`super::lanes`]).
    lane_stalls: Arc<AtomicUsize>,
    /// Wakes the instance's worker when it may accept a request again.
    waker: AtomicWaker,
    /// Set while the worker refuses requests because as many as it may
    /// serve at once are in flight: the next response to end wakes it.
    refusing: AtomicBool,
    /// Who is calling the host now.
    writer: CurrentWriter,
    /// Set when the guest ran past a deadline.
    timed_out: AtomicBool,
    /// Memory growths refused by the limit.
    memory_refusals: AtomicU64,
    outcome: OnceLock<InstanceOutcome>,
    ended: tokio::sync::Notify,
    /// Lines of no request's task, in the making.
    unattributed: Mutex<[LineSplitter; 2]>,
}

impl InstanceShared {
    /// State for a new instance of `component`; `traced` when tracing is on;
    /// `lane_stalls` counts the stalled instances of its lane.
    pub fn new(
        id: u64,
        component: Arc<str>,
        logs: LogSink,
        traced: bool,
        lane_stalls: Arc<AtomicUsize>,
    ) -> Self {
        InstanceShared {
            id,
            component,
            logs,
            traced,
            started: AtomicU64::new(0),
            in_flight: Mutex::new(Vec::new()),
            in_flight_count: AtomicUsize::new(0),
            lane_stalls,
            waker: AtomicWaker::new(),
            refusing: AtomicBool::new(false),
            writer: CurrentWriter::default(),
            timed_out: AtomicBool::new(false),
            memory_refusals: AtomicU64::new(0),
            outcome: OnceLock::new(),
            ended: tokio::sync::Notify::new(),
            unattributed: Mutex::default(),
        }
    }

    /// A request starts on this instance; returns its number here.
    pub fn start(self: &Arc<Self>, request: Arc<RequestInfo>) -> u64 {
        let number = self.started.fetch_add(1, Ordering::Relaxed) + 1;
        if request.start(self.clone(), number) {
            self.lock_in_flight().push(request);
            self.in_flight_count.fetch_add(1, Ordering::Relaxed);
        }
        number
    }

    /// A request's response ended (or failed): what its task left without a
    /// newline is written now, and the instance may take another request.
    pub fn finish(&self, request: &RequestInfo) {
        for stream in [GuestStream::Stdout, GuestStream::Stderr] {
            request.with_output(stream, |splitter| {
                splitter.flush(|line| self.emit(stream, line, request_writer(request)))
            });
        }
        let idle = {
            let mut in_flight = self.lock_in_flight();
            let before = in_flight.len();
            in_flight.retain(|r| !std::ptr::eq(&**r, request));
            if in_flight.len() < before {
                self.in_flight_count.fetch_sub(1, Ordering::SeqCst);
            }
            in_flight.is_empty()
        };
        // Idle, the worker may end; below the limit, take the next request.
        if idle
            || (self.refusing.load(Ordering::SeqCst) && self.refusing.swap(false, Ordering::SeqCst))
        {
            self.waker.wake();
        }
    }

    fn lock_in_flight(&self) -> MutexGuard<'_, Vec<Arc<RequestInfo>>> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `limit` requests are in flight. While they are, the worker
    /// is woken by the first of them to end, not only once all have: until
    /// then it takes no request, and waiting for the last would leave
    /// requests queued on an instance with room.
    pub fn at_limit(&self, limit: usize) -> bool {
        if self.in_flight_count.load(Ordering::SeqCst) < limit {
            return false;
        }
        self.refusing.store(true, Ordering::SeqCst);
        // A response that ended between the count and the flag missed the
        // flag: count again (the flag left set costs one spare wake-up).
        self.in_flight_count.load(Ordering::SeqCst) >= limit
    }

    /// Registers the waker to call when the instance may take a request
    /// again, or has become idle.
    pub fn register_waker(&self, waker: &std::task::Waker) {
        self.waker.register(waker);
    }

    /// Who is calling the host now (set by the store's call hook).
    pub fn writer(&self) -> &CurrentWriter {
        &self.writer
    }

    /// The guest ran past a deadline.
    pub fn set_timed_out(&self) {
        self.timed_out.store(true, Ordering::Relaxed);
    }

    /// Every request in flight ran out of time (the instance was stuck).
    pub fn expire_all(&self) {
        self.set_timed_out();
        for request in self.lock_in_flight().iter() {
            request.set_timed_out();
        }
    }

    /// Whether the guest ran past a deadline.
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

    /// The component's id.
    pub fn component(&self) -> &str {
        &self.component
    }

    /// Where its lines go.
    pub fn logs(&self) -> &LogSink {
        &self.logs
    }

    /// The request whose task is calling the host now, or why there is none.
    pub fn calling(&self) -> Result<Arc<RequestInfo>, Outside> {
        match self.writer.get() {
            Writer::Request(number) => self.request(number).ok_or(Outside::AfterResponse),
            Writer::Outside(outside) => Err(outside),
        }
    }

    /// The request whose task is calling the host now, if any.
    pub fn calling_request(&self) -> Option<Arc<RequestInfo>> {
        self.calling().ok()
    }

    /// The calling request, when tracing is on (no lookup when it is off).
    pub fn traced_request(&self) -> Option<Arc<RequestInfo>> {
        if self.traced {
            self.calling_request()
        } else {
            None
        }
    }

    /// The request in flight with `number`, if its response has not ended.
    fn request(&self, number: u64) -> Option<Arc<RequestInfo>> {
        self.lock_in_flight()
            .iter()
            .find(|r| r.assignment().is_some_and(|a| a.number == number))
            .cloned()
    }

    /// Bytes `writer` wrote to a stream: complete lines are logged at once.
    pub fn write_output(&self, writer: Writer, stream: GuestStream, bytes: &[u8]) {
        let outside = match writer {
            Writer::Request(number) => match self.request(number) {
                Some(request) => {
                    request.with_output(stream, |splitter| {
                        splitter.push(bytes, |line| {
                            self.emit(stream, line, request_writer(&request))
                        })
                    });
                    return;
                }
                None => Outside::AfterResponse,
            },
            Writer::Outside(outside) => outside,
        };
        let mut buffers = self.lock_unattributed();
        buffers[stream as usize].push(bytes, |line| {
            self.emit(stream, line, GuestWriter::Outside(outside))
        });
    }

    fn lock_unattributed(&self) -> MutexGuard<'_, [LineSplitter; 2]> {
        self.unattributed.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn emit(&self, stream: GuestStream, line: &[u8], writer: GuestWriter<'_>) {
        let origin = GuestOrigin {
            stream,
            component: &self.component,
            writer,
        };
        self.logs.guest_line(&origin, line);
    }

    /// Records how the instance ended (first call wins) and writes out every
    /// unfinished output line.
    pub fn end(&self, outcome: InstanceOutcome) {
        let _ = self.outcome.set(outcome);
        let in_flight = self.lock_in_flight().clone();
        for request in &in_flight {
            for stream in [GuestStream::Stdout, GuestStream::Stderr] {
                request.with_output(stream, |splitter| {
                    splitter.flush(|line| self.emit(stream, line, request_writer(request)))
                });
            }
        }
        let mut buffers = self.lock_unattributed();
        for stream in [GuestStream::Stdout, GuestStream::Stderr] {
            buffers[stream as usize]
                .flush(|line| self.emit(stream, line, GuestWriter::Outside(Outside::Background)));
        }
        drop(buffers);
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

/// The writer field of a request's lines.
fn request_writer(request: &RequestInfo) -> GuestWriter<'_> {
    GuestWriter::Request {
        request_id: &request.request_id,
        trace_id: &request.trace.trace_id,
    }
}

impl KeyValueFailures for InstanceShared {
    fn caller(&self) -> WriterId {
        match self.writer.get() {
            Writer::Request(number) => WriterId(Some(number)),
            Writer::Outside(_) => WriterId(None),
        }
    }

    fn failed(&self, caller: WriterId, failure: KeyValueFailure) {
        if let Some(request) = caller.0.and_then(|number| self.request(number)) {
            request.key_value_failed(failure);
        }
    }

    fn span_parent(&self, caller: WriterId) -> Option<SpanParent> {
        if !self.traced {
            return None;
        }
        let request = caller.0.and_then(|number| self.request(number))?;
        request.spans()?.parent()
    }

    fn stall_started(&self) {
        self.lane_stalls.fetch_add(1, Ordering::Relaxed);
    }

    fn stall_ended(&self) {
        self.lane_stalls.fetch_sub(1, Ordering::Relaxed);
    }
}

impl SqliteFailures for InstanceShared {
    fn caller(&self) -> WriterId {
        KeyValueFailures::caller(self)
    }

    fn sqlite_failed(&self, caller: WriterId, failure: SqliteFailure) {
        if let Some(request) = caller.0.and_then(|number| self.request(number)) {
            request.sqlite_failed(failure);
        }
    }
}
