//! What the host shares with one live component instance: the requests it is
//! serving (to attribute the guest's output lines exactly, and to know when
//! it may take another request), how it ended, and its line-buffered stdout
//! and stderr.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::task::AtomicWaker;

use crate::telemetry::logs::{GuestOrigin, LogSink};
use crate::telemetry::trace::TraceContext;

/// Longest guest line kept whole; the rest of a longer line is dropped (the
/// log line says `truncated`).
const MAX_GUEST_LINE: usize = 16 * 1024;

/// One request, as the runtime and the log see it.
pub struct RequestInfo {
    /// Unique id (32 hex digits).
    pub request_id: String,
    /// Its trace and span.
    pub trace: TraceContext,
    assignment: OnceLock<Assignment>,
    failure: Mutex<Option<String>>,
}

/// Where a request ran.
pub struct Assignment {
    /// The instance.
    pub instance: Arc<InstanceShared>,
    /// Whether the instance had served an earlier request.
    pub reused: bool,
}

impl RequestInfo {
    /// A request not yet given to an instance.
    pub fn new(request_id: String, trace: TraceContext) -> Self {
        RequestInfo {
            request_id,
            trace,
            assignment: OnceLock::new(),
            failure: Mutex::new(None),
        }
    }

    /// The instance it ran on, once it started.
    pub fn assignment(&self) -> Option<&Assignment> {
        self.assignment.get()
    }

    /// Records why the request went wrong inside the host (e.g. a key-value
    /// backend failure), for its invocation line. The first reason wins.
    pub fn note_failure(&self, reason: String) {
        let mut failure = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        failure.get_or_insert(reason);
    }

    /// The recorded failure, if any.
    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// How an instance ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// It expired or was retired normally.
    Retired,
    /// It trapped (`kind` is a metric label, e.g. `timeout`, `unreachable`).
    Trapped {
        /// Short kind.
        kind: &'static str,
        /// The error text.
        detail: String,
    },
}

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
    /// Set by the epoch callback when it interrupts a guest past its deadline.
    pub timed_out: AtomicBool,
    /// Memory growths refused by the limit.
    pub memory_refusals: AtomicU64,
    outcome: OnceLock<Outcome>,
    ended: tokio::sync::Notify,
    stdout: Mutex<LineBuffer>,
    stderr: Mutex<LineBuffer>,
}

#[derive(Default)]
struct LineBuffer {
    pending: Vec<u8>,
    /// Dropping the rest of an over-long line until its newline.
    discarding: bool,
}

/// Which guest output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// stdout
    Stdout,
    /// stderr
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
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
            stdout: Mutex::new(LineBuffer::default()),
            stderr: Mutex::new(LineBuffer::default()),
        }
    }

    /// A request starts on this instance.
    pub fn start(self: &Arc<Self>, request: Arc<RequestInfo>) {
        let reused = self.served.fetch_add(1, Ordering::Relaxed) > 0;
        let _ = request.assignment.set(Assignment {
            instance: self.clone(),
            reused,
        });
        self.lock_in_flight().push(request);
    }

    /// A request's response ended (or failed). Output the guest left without
    /// a newline is written now, while it can still be attributed.
    pub fn finish(&self, request: &RequestInfo) {
        // Lock order is always stream buffer, then `in_flight`: never hold
        // `in_flight` while flushing.
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

    fn lock_in_flight(&self) -> std::sync::MutexGuard<'_, Vec<Arc<RequestInfo>>> {
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

    /// The one request a guest line belongs to: the only one in flight.
    /// With several in flight it cannot be known, and none is named.
    pub fn attributed(&self) -> Option<Arc<RequestInfo>> {
        match self.lock_in_flight().as_slice() {
            [only] => Some(only.clone()),
            _ => None,
        }
    }

    /// Bytes the guest wrote to a stream: complete lines are logged at once.
    pub fn write_output(&self, stream: Stream, mut bytes: &[u8]) {
        let mut buffer = self.buffer(stream);
        while !bytes.is_empty() {
            let newline = bytes.iter().position(|b| *b == b'\n');
            let (chunk, rest) = match newline {
                Some(at) => (&bytes[..at], &bytes[at + 1..]),
                None => (bytes, &[][..]),
            };
            bytes = rest;
            if !buffer.discarding {
                let room = MAX_GUEST_LINE - buffer.pending.len();
                buffer
                    .pending
                    .extend_from_slice(&chunk[..chunk.len().min(room)]);
                if buffer.pending.len() == MAX_GUEST_LINE {
                    // Log what fits now; drop the rest of the line.
                    self.emit(stream, &buffer.pending, None);
                    buffer.pending.clear();
                    buffer.discarding = true;
                }
            }
            if newline.is_some() {
                if buffer.discarding {
                    buffer.discarding = false;
                } else {
                    self.emit(stream, &buffer.pending, None);
                    buffer.pending.clear();
                }
            }
        }
    }

    /// The unfinished line of `stream`, locked.
    fn buffer(&self, stream: Stream) -> std::sync::MutexGuard<'_, LineBuffer> {
        let buffer = match stream {
            Stream::Stdout => &self.stdout,
            Stream::Stderr => &self.stderr,
        };
        buffer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn flush_partial(&self, stream: Stream, request: Option<&RequestInfo>) {
        let mut buffer = self.buffer(stream);
        if !buffer.pending.is_empty() {
            self.emit(stream, &buffer.pending, Some(request));
            buffer.pending.clear();
        }
        buffer.discarding = false;
    }

    /// Logs one line. `request` overrides attribution when the caller knows
    /// it (`Some(None)`: known to be nobody's).
    fn emit(&self, stream: Stream, line: &[u8], request: Option<Option<&RequestInfo>>) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
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
    pub fn end(&self, outcome: Outcome) {
        let _ = self.outcome.set(outcome);
        let only = self.attributed();
        for stream in [Stream::Stdout, Stream::Stderr] {
            self.flush_partial(stream, only.as_deref());
        }
        self.ended.notify_waiters();
    }

    /// How the instance ended, waiting up to `wait` for it: a caller that sees
    /// a failed request may learn of it before the instance's end is recorded.
    pub async fn outcome(&self, wait: Duration) -> Option<Outcome> {
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
    pub fn outcome_now(&self) -> Option<&Outcome> {
        self.outcome.get()
    }
}

/// The name of a trap kind, as a metric label.
pub fn trap_kind(trap: wasmtime::Trap) -> &'static str {
    use wasmtime::Trap;
    match trap {
        Trap::Interrupt => "timeout",
        Trap::StackOverflow => "stack_overflow",
        Trap::MemoryOutOfBounds => "memory_out_of_bounds",
        Trap::HeapMisaligned => "heap_misaligned",
        Trap::TableOutOfBounds => "table_out_of_bounds",
        Trap::IndirectCallToNull => "indirect_call_to_null",
        Trap::BadSignature => "bad_signature",
        Trap::IntegerOverflow => "integer_overflow",
        Trap::IntegerDivisionByZero => "integer_division_by_zero",
        Trap::BadConversionToInteger => "bad_conversion_to_integer",
        Trap::UnreachableCodeReached => "unreachable",
        Trap::OutOfFuel => "out_of_fuel",
        _ => "other",
    }
}
