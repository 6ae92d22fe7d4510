//! How `ProxyHandler` makes and drives instances of one component: the
//! store each instance gets (memory limit, epoch deadline, guest CPU time),
//! when an instance takes another request, and how its end is reported.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::KeyValue;
use wasmtime::component::GuestTaskId;
use wasmtime::{CallHook, Engine, Store, StoreContextMut, UpdateDeadline};
use wasmtime_wasi_http::handler::{
    HandlerState, Instance, ProxyPre, ShouldAccept, WorkerExpiration, WorkerState, WorkerStatus,
};

use super::Settings;
use super::guest_calls::GuestCalls;
use super::instance::InstanceShared;
use super::invocation::RequestInfo;
use super::outbound_hooks::OutboundHooks;
use super::outcome::{InstanceOutcome, TrapKind};
use super::state::{HostState, MemoryLimiter};
use crate::capabilities::Capabilities;
use crate::kv::host::{KeyValueCtx, KeyValueState};
use crate::shutdown::{Phase, Shutdown};
use crate::telemetry::logs::LogSink;
use crate::telemetry::metrics::Metrics;

/// What every instance of one component shares.
pub(super) struct ComponentShared {
    pub id: Arc<str>,
    pub settings: Arc<Settings>,
    pub shutdown: Shutdown,
    pub max_reuse: usize,
    pub environment: Vec<(String, String)>,
    pub outbound: Arc<[crate::outbound::OutboundRule]>,
    pub own_app: crate::outbound::OwnApp,
    pub kv: Arc<KeyValueCtx>,
    pub capabilities: Capabilities,
    pub logs: LogSink,
    pub metrics: Arc<Metrics>,
    pub memory: Arc<AtomicI64>,
    pub wasm_time_nanos: Arc<AtomicU64>,
    pub next_instance: AtomicU64,
    /// Whether tracing is on.
    pub traced: bool,
}

impl ComponentShared {
    /// Adds the store's unreported wasm time to the component's counter.
    fn report_wasm_time(&self, state: &mut HostState) {
        let nanos = state.guest_calls.take_time();
        if nanos > 0 {
            self.wasm_time_nanos.fetch_add(nanos, Ordering::Relaxed);
        }
    }
}

/// `ProxyHandler`'s view of one component: how to make an instance.
pub(super) struct ComponentHost {
    engine: Engine,
    pre: ProxyPre<HostState>,
    shared: Arc<ComponentShared>,
    /// Stalled instances of this host's lane (see [`super::lanes`]).
    lane_stalls: Arc<AtomicUsize>,
}

impl ComponentHost {
    /// Makes instances of `pre` in stores of `engine`; they report stalls
    /// to `lane_stalls`.
    pub fn new(
        engine: Engine,
        pre: ProxyPre<HostState>,
        shared: Arc<ComponentShared>,
        lane_stalls: Arc<AtomicUsize>,
    ) -> Self {
        ComponentHost {
            engine,
            pre,
            shared,
            lane_stalls,
        }
    }

    fn new_store(&self, instance: Arc<InstanceShared>) -> Store<HostState> {
        let shared = &self.shared;
        let kv = KeyValueState::new(shared.kv.clone(), instance.clone());
        let state = HostState::new(
            instance.clone(),
            &shared.environment,
            OutboundHooks::new(
                shared.id.clone(),
                shared.outbound.clone(),
                shared.own_app.clone(),
                instance.clone(),
            ),
            kv,
            shared.capabilities.instance(instance.clone()),
            MemoryLimiter::new(
                shared.settings.max_instance_memory,
                shared.memory.clone(),
                instance,
            ),
            GuestCalls::new(shared.metrics.enabled()),
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(interrupt_past_deadline);
        store.call_hook(on_call);
        store
    }
}

/// The epoch callback: interrupts the guest when a request it serves is past
/// its deadline; else, when the guest has run since the previous tick without
/// returning, lets other tasks on this thread run (a plain `Yield` starves
/// them while a guest spins). A guest that was merely running when the tick
/// came goes on (see [`GuestCalls`]).
fn interrupt_past_deadline(
    mut context: StoreContextMut<'_, HostState>,
) -> wasmtime::Result<UpdateDeadline> {
    let state = context.data_mut();
    if state.tasks.expire(Instant::now()) {
        state.instance.set_timed_out();
        return Ok(UpdateDeadline::Interrupt);
    }
    if state.guest_calls.ran_through_a_tick() {
        return Ok(UpdateDeadline::YieldCustom(
            1,
            Box::pin(tokio::task::yield_now()),
        ));
    }
    Ok(UpdateDeadline::Continue(1))
}

/// The store's call hook. On each call into the host it names the request
/// whose task is calling (see [`super::attribution`]); on each entry into
/// wasm and return from it, it tells the store's [`GuestCalls`], which keep
/// their CPU time for `wasm_guest_cpu_time_seconds_total`.
fn on_call(mut context: StoreContextMut<'_, HostState>, hook: CallHook) -> wasmtime::Result<()> {
    match hook {
        CallHook::CallingHost => {
            let root = context.async_call_stack()?.last();
            let state = context.data_mut();
            state.instance.writer().set(state.tasks.writer(root));
        }
        CallHook::CallingWasm => {
            context.data_mut().guest_calls.enter();
        }
        CallHook::ReturningFromWasm => {
            context.data_mut().guest_calls.leave();
        }
        CallHook::ReturningFromHost => {}
    }
    Ok(())
}

impl HandlerState for ComponentHost {
    type StoreData = HostState;
    type WorkerExpiration = Expiry;
    type WorkerState = Worker;

    async fn instantiate(&self) -> wasmtime::Result<Instance<HostState, Expiry, Worker>> {
        let shared = &self.shared;
        let id = shared.next_instance.fetch_add(1, Ordering::Relaxed);
        let instance = Arc::new(InstanceShared::new(
            id,
            shared.id.clone(),
            shared.logs.clone(),
            shared.traced,
            self.lane_stalls.clone(),
        ));
        let mut store = self.new_store(instance.clone());
        let (started, began) = (Instant::now(), SystemTime::now());
        let proxy = self.pre.instantiate_async(&mut store).await?;
        let took = started.elapsed();
        shared.metrics.instantiated(&shared.id, took);
        Ok(Instance {
            store,
            proxy,
            view: HostState::http_view,
            expiration: Expiry {
                instance: instance.clone(),
                idle_timeout: shared.settings.idle_instance_timeout,
                // The guest-side deadline interrupts a busy guest; this one,
                // polled outside the store, also ends a guest stuck waiting.
                busy_timeout: shared.settings.request_timeout + Duration::from_millis(250),
                timer: Box::pin(tokio::time::sleep(Duration::from_secs(3600))),
            },
            state: Worker {
                instance,
                component: shared.clone(),
                instantiated: (began, began + took),
            },
        })
    }
}

/// Decides, from outside the store's event loop, when an instance ends.
pub(super) struct Expiry {
    instance: Arc<InstanceShared>,
    idle_timeout: Duration,
    busy_timeout: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl WorkerExpiration for Expiry {
    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        status: WorkerStatus,
        since: Instant,
    ) -> Poll<()> {
        let this = self.get_mut();
        // The worker must look again when a response ends (see
        // `Worker::should_accept_request`).
        this.instance.register_waker(cx.waker());
        let timeout = match status {
            WorkerStatus::Idle => this.idle_timeout,
            WorkerStatus::Requests | WorkerStatus::PostReturn => this.busy_timeout,
        };
        let deadline = tokio::time::Instant::from_std(since + timeout);
        if this.timer.deadline() != deadline {
            this.timer.as_mut().reset(deadline);
        }
        let expired = this.timer.as_mut().poll(cx);
        if expired.is_ready() && status != WorkerStatus::Idle {
            // A busy instance out of time (`since` is its latest request's
            // start, so every request on it is): what `Worker::drop` reports.
            this.instance.expire_all();
        }
        expired
    }
}

/// Held by the future `ProxyHandler` races against a request's response,
/// which ends at the deadline: dropped before then, the guest has answered,
/// and the deadline no longer applies to the request.
struct UntilAnswered {
    request: Arc<RequestInfo>,
    expired: bool,
}

impl Drop for UntilAnswered {
    fn drop(&mut self) {
        if !self.expired {
            self.request.set_responded();
        }
    }
}

pub(super) struct Worker {
    instance: Arc<InstanceShared>,
    component: Arc<ComponentShared>,
    /// When the instance was made: the first request it serves waited for
    /// that, and its trace shows it.
    instantiated: (SystemTime, SystemTime),
}

impl WorkerState for Worker {
    type StoreData = HostState;
    type RequestData = Arc<RequestInfo>;

    fn should_accept_request(&self, _handling: usize, served: usize) -> ShouldAccept {
        if served >= self.component.max_reuse {
            ShouldAccept::Never
        } else if self
            .instance
            .at_limit(self.component.settings.max_concurrent_reuse)
        {
            // Counted until the response body has ended, not just until the
            // guest returned the response head.
            ShouldAccept::No
        } else {
            ShouldAccept::Yes
        }
    }

    fn on_request_start(
        &self,
        mut store: StoreContextMut<'_, HostState>,
        request: Arc<RequestInfo>,
        task: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync + 'static>> {
        let timeout = self.component.settings.request_timeout;
        // Re-arm: an epoch that passed while the instance was idle must not
        // count against this request.
        store.set_epoch_deadline(1);
        let state = store.data_mut();
        self.component.report_wasm_time(state);
        let number = self.instance.start(request.clone());
        if number == 1
            && let Some(spans) = request.spans()
        {
            let (began, ended) = self.instantiated;
            spans.record_past(
                format!("instantiate {}", self.component.id),
                began,
                ended,
                vec![
                    KeyValue::new("spin.component", self.component.id.clone()),
                    KeyValue::new("wasm.instance.id", self.instance.id as i64),
                ],
            );
        }
        state
            .tasks
            .started(task, number, Instant::now() + timeout, request.clone());
        Box::pin(async move {
            let mut waiting = UntilAnswered {
                request,
                expired: false,
            };
            tokio::time::sleep(timeout).await;
            waiting.expired = true;
        })
    }

    fn drop(&self, mut store: Store<HostState>, result: wasmtime::Result<()>) {
        self.component.report_wasm_time(store.data_mut());
        let outcome = match result {
            Ok(()) => InstanceOutcome::Retired,
            // Idle instances cancelled by the shutdown.
            Err(_) if self.component.shutdown.reached(Phase::Stopped) => InstanceOutcome::Retired,
            Err(error) => self.trapped(&error),
        };
        // Record the outcome before the store goes: dropping it ends the
        // guest's response stream, and a body cut short by a trap must be
        // seen as failed, not as complete.
        self.instance.end(outcome);
        drop(store);
    }
}

impl Worker {
    /// Names, logs and counts how the instance failed.
    fn trapped(&self, error: &wasmtime::Error) -> InstanceOutcome {
        let kind = match error.downcast_ref::<wasmtime::Trap>() {
            Some(_) if self.instance.ran_out_of_memory() => TrapKind::OutOfMemory,
            Some(trap) => TrapKind::of(*trap),
            None if self.instance.timed_out() => TrapKind::Timeout,
            None => TrapKind::HostError,
        };
        let detail: Arc<str> = format!("{:#}", error.root_cause()).into();
        tracing::error!(
            component = &*self.component.id,
            instance = self.instance.id,
            kind = kind.as_str(),
            error = &*detail,
            "guest instance ended abnormally"
        );
        self.component
            .metrics
            .guest_trapped(&self.component.id, kind.as_str());
        InstanceOutcome::Trapped { kind, detail }
    }
}
