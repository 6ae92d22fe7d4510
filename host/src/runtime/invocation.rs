//! One request as the runtime sees it: its identity, the instance it ran on,
//! what failed underneath it, and how a failed guest call is classified.
//!
//! A request is handed to the runtime with a [`RequestInfo`]; the call
//! returns the response (or a typed [`GuestFailure`]) and an
//! [`InstanceLease`], which the caller drops when the response has ended:
//! that frees the instance for its next request.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use wasmtime_wasi_http::handler::{ExpirationError, InstantiationError, TrapOrPanicError};

use super::instance::InstanceShared;
use super::outcome::{InstanceOutcome, TrapKind};
use super::output::LineSplitter;
use crate::kv::KeyValueFailure;
use crate::sqlite::SqliteFailure;
use crate::telemetry::logs::GuestStream;
use crate::telemetry::trace::{RequestId, TraceContext};
use crate::telemetry::traces::RequestSpans;

/// How long to wait for a failed instance to say why it failed.
const OUTCOME_WAIT: Duration = Duration::from_millis(200);

/// Where a request stands with its instance.
const WAITING: u8 = 0;
const STARTED: u8 = 1;
const RELEASED: u8 = 2;

/// One request, as the runtime and the log see it.
pub struct RequestInfo {
    /// Unique id.
    pub request_id: RequestId,
    /// Its trace and span.
    pub trace: TraceContext,
    /// Its spans, when tracing is on.
    spans: Option<Box<RequestSpans>>,
    assignment: OnceLock<Assignment>,
    /// `WAITING`, then `STARTED` on an instance, then `RELEASED`; or straight
    /// to `RELEASED` when the caller gave up before it started.
    state: AtomicU8,
    /// Set when it ran past its deadline.
    timed_out: AtomicBool,
    /// Set when the guest produced its response head: the deadline no longer
    /// applies to it.
    responded: AtomicBool,
    key_value_failure: OnceLock<KeyValueFailure>,
    /// Its own stdout and stderr lines in the making, so that lines of
    /// requests served at once never mix.
    output: Mutex<[LineSplitter; 2]>,
    sqlite_failure: OnceLock<SqliteFailure>,
}

/// Where a request ran.
pub struct Assignment {
    /// The instance.
    pub instance: Arc<InstanceShared>,
    /// Its number on the instance (1 for the first request).
    pub number: u64,
    /// Whether the instance had served an earlier request.
    pub reused: bool,
}

impl RequestInfo {
    /// A request not yet given to an instance; `spans` when tracing is on.
    pub fn new(
        request_id: RequestId,
        trace: TraceContext,
        spans: Option<Box<RequestSpans>>,
    ) -> Self {
        RequestInfo {
            request_id,
            trace,
            spans,
            assignment: OnceLock::new(),
            state: AtomicU8::new(WAITING),
            timed_out: AtomicBool::new(false),
            responded: AtomicBool::new(false),
            key_value_failure: OnceLock::new(),
            output: Mutex::default(),
            sqlite_failure: OnceLock::new(),
        }
    }

    /// Its spans, when tracing is on.
    pub fn spans(&self) -> Option<&RequestSpans> {
        self.spans.as_deref()
    }

    /// The instance it ran on, once it started.
    pub fn assignment(&self) -> Option<&Assignment> {
        self.assignment.get()
    }

    /// Records that a key-value operation failed under this request (the
    /// first failure is kept), for its invocation line.
    pub fn key_value_failed(&self, failure: KeyValueFailure) {
        let _ = self.key_value_failure.set(failure);
    }

    /// The first key-value failure under this request, if any.
    pub fn key_value_failure(&self) -> Option<&KeyValueFailure> {
        self.key_value_failure.get()
    }

    /// Records that a SQLite statement failed under this request (the first
    /// failure is kept), for its invocation line.
    pub fn sqlite_failed(&self, failure: SqliteFailure) {
        let _ = self.sqlite_failure.set(failure);
    }

    /// The first SQLite failure under this request, if any.
    pub fn sqlite_failure(&self) -> Option<&SqliteFailure> {
        self.sqlite_failure.get()
    }

    /// The request starts on `instance` as its request `number`. Returns
    /// false when its caller has already given up on it (the guest still runs
    /// it, but nobody counts on its instance being held).
    pub(super) fn start(&self, instance: Arc<InstanceShared>, number: u64) -> bool {
        let _ = self.assignment.set(Assignment {
            instance,
            number,
            reused: number > 1,
        });
        self.state
            .compare_exchange(WAITING, STARTED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Whether its response has ended (or its caller gave up on it).
    pub fn has_ended(&self) -> bool {
        self.state.load(Ordering::Acquire) == RELEASED
    }

    /// It ran past its deadline.
    pub(super) fn set_timed_out(&self) {
        self.timed_out.store(true, Ordering::Relaxed);
    }

    /// Whether it ran past its deadline.
    pub(super) fn timed_out(&self) -> bool {
        self.timed_out.load(Ordering::Relaxed)
    }

    /// The guest produced the response head.
    pub(super) fn set_responded(&self) {
        self.responded.store(true, Ordering::Relaxed);
    }

    /// Whether its deadline still applies: the guest has not answered yet,
    /// and the response has not ended.
    pub(super) fn awaits_guest(&self) -> bool {
        !self.responded.load(Ordering::Relaxed) && !self.has_ended()
    }

    /// Runs `write` on the line splitter of one of its output streams.
    pub(super) fn with_output<R>(
        &self,
        stream: GuestStream,
        write: impl FnOnce(&mut LineSplitter) -> R,
    ) -> R {
        let mut output = self.output.lock().unwrap_or_else(|p| p.into_inner());
        write(&mut output[stream as usize])
    }

    /// Frees the instance, if the request started on one; returns whether
    /// it had.
    fn release(&self) -> bool {
        self.state.swap(RELEASED, Ordering::AcqRel) == STARTED
    }
}

/// Holds a request's place on its instance until dropped. Drop it when the
/// response has ended (or failed): the instance may then take another
/// request.
pub struct InstanceLease {
    request: Arc<RequestInfo>,
}

impl InstanceLease {
    /// A lease for a request about to be handed to the runtime.
    pub(super) fn new(request: Arc<RequestInfo>) -> Self {
        InstanceLease { request }
    }

    /// Whether the instance had served an earlier request; `None` when the
    /// request never reached an instance.
    pub fn reused(&self) -> Option<bool> {
        self.request.assignment().map(|a| a.reused)
    }

    /// A trap that ended the instance, if it has ended so: a response body
    /// that ends then was cut short, not finished.
    pub fn trapped(&self) -> Option<GuestFailure> {
        match self.request.assignment()?.instance.outcome_now()? {
            InstanceOutcome::Trapped { kind, detail } => Some(GuestFailure::Trapped {
                kind: *kind,
                detail: detail.clone(),
            }),
            InstanceOutcome::Retired => None,
        }
    }
}

impl Drop for InstanceLease {
    fn drop(&mut self) {
        if self.request.release()
            && let Some(assignment) = self.request.assignment()
        {
            assignment.instance.finish(&self.request);
        }
    }
}

/// Why a guest call produced no response.
#[derive(Debug, Clone)]
pub enum GuestFailure {
    /// No instance could be made for it (the pool is full, instantiation
    /// failed).
    NoInstance(String),
    /// The guest did not answer within the request timeout.
    DeadlineExceeded,
    /// The guest was interrupted past its deadline.
    Interrupted,
    /// The instance was interrupted because another request it served at
    /// the same time ran past its deadline.
    InstanceInterrupted,
    /// The instance trapped.
    Trapped {
        /// The kind.
        kind: TrapKind,
        /// The error text.
        detail: Arc<str>,
    },
    /// The guest answered with an error, or failed otherwise.
    Failed(String),
}

impl fmt::Display for GuestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuestFailure::NoInstance(why) => write!(f, "no instance available: {why}"),
            GuestFailure::DeadlineExceeded => {
                f.write_str("the guest did not answer within --request-timeout")
            }
            GuestFailure::Interrupted => {
                f.write_str("the guest ran past --request-timeout and was interrupted")
            }
            GuestFailure::InstanceInterrupted => f.write_str(
                "the instance was interrupted: another request it served at the same time \
                 ran past --request-timeout",
            ),
            GuestFailure::Trapped { kind, detail } => {
                write!(f, "guest trapped ({kind}): {detail}")
            }
            GuestFailure::Failed(why) => write!(f, "guest failed: {why}"),
        }
    }
}

impl GuestFailure {
    /// Classifies the error of a guest call. A trap is reported by the
    /// instance's end, which may come a moment after the call failed, so this
    /// waits briefly for it.
    pub(super) async fn classify(error: wasmtime::Error, request: &RequestInfo) -> Self {
        if error.is::<InstantiationError<Arc<RequestInfo>>>() {
            return GuestFailure::NoInstance(format!("{error:#}"));
        }
        if error.is::<ExpirationError>() {
            return GuestFailure::DeadlineExceeded;
        }
        let instance = request.assignment().map(|a| &a.instance);
        let guest_error_code = is_guest_error_code(&error) && !error.is::<TrapOrPanicError>();
        let outcome = match instance {
            Some(instance) if !guest_error_code => instance.outcome(OUTCOME_WAIT).await,
            _ => None,
        };
        // The epoch callback marks the requests past their deadline before
        // it interrupts the instance, so the flag is set by now.
        match outcome {
            _ if request.timed_out() => GuestFailure::Interrupted,
            Some(InstanceOutcome::Trapped {
                kind: TrapKind::Timeout,
                ..
            }) => GuestFailure::InstanceInterrupted,
            Some(InstanceOutcome::Trapped { kind, detail }) => {
                GuestFailure::Trapped { kind, detail }
            }
            _ => GuestFailure::Failed(format!("{error:#}")),
        }
    }
}

/// Whether the guest answered with a wasi:http `error-code` (as opposed to
/// trapping).
fn is_guest_error_code(error: &wasmtime::Error) -> bool {
    error.is::<wasmtime_wasi_http::p3::bindings::http::types::ErrorCode>()
        || error.is::<wasmtime_wasi_http::p2::bindings::http::types::ErrorCode>()
}
