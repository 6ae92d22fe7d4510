//! The Wasm runtime: one engine and linker, each component compiled once (or
//! loaded from the cache) and pre-instantiated at start-up; per request, an
//! instance from `wasmtime-wasi-http`'s `ProxyHandler`, which reuses WASIp3
//! instances and streams responses.
//!
//! Instance reuse is sequential by default: an instance takes its next
//! request only once the previous response has ended, so every line the
//! guest prints belongs to exactly one request. A trap or a timeout discards
//! the instance; with reuse, that affects only the request it was serving.

pub mod engine;
pub mod guest_clock;
pub mod instance;
pub mod state;

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use wasmtime::component::{GuestTaskId, Linker};
use wasmtime::{CallHook, Engine, Store, StoreContextMut, UpdateDeadline};
use wasmtime_wasi_http::WasiBody;
use wasmtime_wasi_http::handler::{
    HandlerState, Instance, ProxyHandler, ProxyPre, ShouldAccept, WorkerExpiration, WorkerState,
    WorkerStatus,
};

use self::engine::EpochTicker;
use self::instance::{InstanceShared, Outcome, RequestInfo};
use self::state::{HostState, MemoryLimiter, OutboundHooks};
use crate::kv::Stores;
use crate::kv::host::{KeyValueCtx, KeyValueState};
use crate::manifest::Component;
use crate::telemetry::logs::LogSink;
use crate::telemetry::metrics::InvocationCounts;
use crate::telemetry::metrics::Metrics;

/// How instances are run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Longest a request may run in the guest.
    pub request_timeout: Duration,
    /// Largest linear memory of one instance.
    pub max_instance_memory: u64,
    /// Requests per WASIp3 instance before it is retired.
    pub max_reuse: usize,
    /// Requests one instance serves at the same time.
    pub max_concurrent_reuse: usize,
    /// How long an idle instance waits for reuse.
    pub idle_instance_timeout: Duration,
    /// Instances that may be alive at once, all components together.
    pub max_instances: u32,
}

/// A WASIp3 (`wasi:http/handler@0.3`) or WASIp2 (`incoming-handler@0.2`) component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasiVersion {
    /// WASIp2.
    P2,
    /// WASIp3.
    P3,
}

impl WasiVersion {
    /// `p2` or `p3`.
    pub fn name(self) -> &'static str {
        match self {
            WasiVersion::P2 => "p2",
            WasiVersion::P3 => "p3",
        }
    }
}

/// The runtime: every served component, ready to handle requests.
pub struct Runtime {
    /// Components, in the order the router refers to them.
    pub components: Vec<ComponentRuntime>,
    stopping: Arc<AtomicBool>,
    _ticker: EpochTicker,
}

/// One component, ready to serve.
pub struct ComponentRuntime {
    /// The component id.
    pub id: Arc<str>,
    /// Its WASI HTTP world.
    pub wasi: WasiVersion,
    /// Whether its compiled code came from the cache.
    pub from_cache: bool,
    /// Its invocation counts, for `wasm_invocations_total`.
    pub invocations: Arc<InvocationCounts>,
    handler: ProxyHandler<ComponentHost>,
}

impl Runtime {
    /// Compiles (or loads from `cache_dir`) and pre-instantiates every
    /// component. Fails, naming the component, when one is not a valid
    /// component or imports something the host does not provide.
    pub fn new(
        components: &[&Component],
        settings: Settings,
        stores: &Stores,
        cache_dir: &Path,
        logs: &LogSink,
        metrics: &Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let engine = engine::engine(settings.max_instances, settings.max_instance_memory)?;
        let linker = linker(&engine)?;
        let settings = Arc::new(settings);
        let stopping = Arc::new(AtomicBool::new(false));
        let mut usage = Vec::new();
        let mut cpu = Vec::new();
        let mut runtimes = Vec::new();
        for component in components {
            let (runtime, memory, wasm_time) = ComponentRuntime::new(
                &engine, &linker, component, &settings, &stopping, stores, cache_dir, logs, metrics,
            )
            .with_context(|| format!("component `{}`", component.id))?;
            usage.push((runtime.id.clone(), memory));
            cpu.push((runtime.id.clone(), wasm_time));
            runtimes.push(runtime);
        }
        metrics.observe_memory(usage);
        metrics.observe_wasm_time(cpu);
        Ok(Runtime {
            components: runtimes,
            stopping,
            _ticker: EpochTicker::start(engine)?,
        })
    }

    /// A flag to raise once no more requests will come: instances cut short
    /// by the shutdown after that are retired quietly, not reported as
    /// failures.
    pub fn stopping(&self) -> Arc<AtomicBool> {
        self.stopping.clone()
    }
}

fn linker(engine: &Engine) -> anyhow::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    // WASIp2 (Rust std uses it in both kinds of component), wasi:http 0.2
    // types and outgoing handler, WASIp3 and wasi:http 0.3, Spin key-value.
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    wasmtime_wasi::p3::add_to_linker(&mut linker)?;
    wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
    crate::kv::host::add_to_linker(&mut linker)?;
    Ok(linker)
}

impl ComponentRuntime {
    #[expect(
        clippy::too_many_arguments,
        reason = "set-up wiring, called once per component"
    )]
    fn new(
        engine: &Engine,
        linker: &Linker<HostState>,
        component: &Component,
        settings: &Arc<Settings>,
        stopping: &Arc<AtomicBool>,
        stores: &Stores,
        cache_dir: &Path,
        logs: &LogSink,
        metrics: &Arc<Metrics>,
    ) -> anyhow::Result<(Self, Arc<AtomicI64>, Arc<AtomicU64>)> {
        let (compiled, from_cache) = engine::load_component(engine, &component.source, cache_dir)?;
        let instance_pre = linker.instantiate_pre(&compiled).map_err(|e| {
            anyhow!("{e}: hero-host provides WASI 0.2 and 0.3, wasi:http and spin:key-value@3.0.0")
        })?;
        let (pre, wasi) = match wasmtime_wasi_http::p3::bindings::ServicePre::new(
            instance_pre.clone(),
        ) {
            Ok(p3) => (ProxyPre::P3(p3), WasiVersion::P3),
            Err(p3_error) => match wasmtime_wasi_http::p2::bindings::ProxyPre::new(instance_pre) {
                Ok(p2) => (ProxyPre::P2(p2), WasiVersion::P2),
                Err(p2_error) => {
                    return Err(anyhow!(
                        "not an HTTP component: it exports neither wasi:http/handler@0.3 ({p3_error}) \
                         nor wasi:http/incoming-handler@0.2 ({p2_error})"
                    ));
                }
            },
        };
        let id: Arc<str> = component.id.as_str().into();
        let memory = Arc::new(AtomicI64::new(0));
        let wasm_time = Arc::new(AtomicU64::new(0));
        let shared = Arc::new(ComponentShared {
            id: id.clone(),
            settings: settings.clone(),
            stopping: stopping.clone(),
            // WASIp2 instances cannot be reused.
            max_reuse: if wasi == WasiVersion::P3 {
                settings.max_reuse
            } else {
                1
            },
            environment: component.environment.clone(),
            outbound: component.allowed_outbound_hosts.clone().into(),
            kv: Arc::new(KeyValueCtx::new(
                stores.clone(),
                &component.key_value_stores,
                metrics.clone(),
            )),
            logs: logs.clone(),
            metrics: metrics.clone(),
            memory: memory.clone(),
            wasm_time_nanos: wasm_time.clone(),
            next_instance: AtomicU64::new(0),
        });
        let invocations = metrics.invocation_counts(&id);
        let handler = ProxyHandler::new(ComponentHost {
            engine: engine.clone(),
            pre,
            shared,
        });
        Ok((
            ComponentRuntime {
                id,
                wasi,
                from_cache,
                invocations,
                handler,
            },
            memory,
            wasm_time,
        ))
    }

    /// Runs one request on an instance. `info` learns which instance ran it.
    pub async fn handle(
        &self,
        info: Arc<RequestInfo>,
        request: http::Request<WasiBody>,
    ) -> wasmtime::Result<http::Response<WasiBody>> {
        self.handler.handle(info, request).await
    }
}

/// What every instance of one component shares.
struct ComponentShared {
    id: Arc<str>,
    settings: Arc<Settings>,
    stopping: Arc<AtomicBool>,
    max_reuse: usize,
    environment: Vec<(String, String)>,
    outbound: Arc<[crate::outbound::OutboundRule]>,
    kv: Arc<KeyValueCtx>,
    logs: LogSink,
    metrics: Arc<Metrics>,
    memory: Arc<AtomicI64>,
    wasm_time_nanos: Arc<AtomicU64>,
    next_instance: AtomicU64,
}

impl ComponentShared {
    /// Adds the store's unreported wasm time to the component's counter.
    fn report_wasm_time(&self, state: &mut HostState) {
        let nanos = std::mem::take(&mut state.wasm_time);
        if nanos > 0 {
            self.wasm_time_nanos.fetch_add(nanos, Ordering::Relaxed);
        }
    }
}

/// `ProxyHandler`'s view of one component: how to make an instance.
struct ComponentHost {
    engine: Engine,
    pre: ProxyPre<HostState>,
    shared: Arc<ComponentShared>,
}

impl ComponentHost {
    fn new_store(&self, instance: Arc<InstanceShared>) -> Store<HostState> {
        let shared = &self.shared;
        let report_to = instance.clone();
        let kv = KeyValueState::new(
            shared.kv.clone(),
            Arc::new(move |reason| {
                if let Some(request) = report_to.attributed() {
                    request.note_failure(reason);
                }
            }),
        );
        let state = HostState::new(
            instance.clone(),
            &shared.environment,
            OutboundHooks::new(shared.id.clone(), shared.outbound.clone()),
            kv,
            MemoryLimiter::new(
                shared.settings.max_instance_memory,
                shared.memory.clone(),
                instance,
            ),
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut context: StoreContextMut<'_, HostState>| {
            let state = context.data_mut();
            if state
                .deadline
                .is_some_and(|deadline| Instant::now() >= deadline)
            {
                state.instance.timed_out.store(true, Ordering::Relaxed);
                return Ok(UpdateDeadline::Interrupt);
            }
            // Let other tasks on this thread run (a plain `Yield` starves them
            // while a guest spins).
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(tokio::task::yield_now()),
            ))
        });
        if shared.metrics.enabled() {
            // Time in wasm, for `wasm_guest_cpu_time_seconds_total`, on the
            // cheap clock of `guest_clock`. Host calls the guest makes count
            // as its time; only the outermost entry and exit read the clock,
            // so the host calling back into the guest during a guest call
            // does not restart the outer measurement.
            store.call_hook(|mut context, hook| {
                let state = context.data_mut();
                match hook {
                    CallHook::CallingWasm => {
                        if state.wasm_depth == 0 {
                            state.entered_wasm = Some(guest_clock::now_nanos());
                        }
                        state.wasm_depth += 1;
                    }
                    CallHook::ReturningFromWasm => {
                        state.wasm_depth = state.wasm_depth.saturating_sub(1);
                        if state.wasm_depth == 0
                            && let Some(entered) = state.entered_wasm.take()
                        {
                            state.wasm_time += guest_clock::now_nanos().saturating_sub(entered);
                        }
                    }
                    CallHook::CallingHost | CallHook::ReturningFromHost => {}
                }
                Ok(())
            });
        }
        store
    }
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
        ));
        let mut store = self.new_store(instance.clone());
        let started = Instant::now();
        let proxy = self.pre.instantiate_async(&mut store).await?;
        shared.metrics.instantiated(&shared.id, started.elapsed());
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
            },
        })
    }
}

/// Decides, from outside the store's event loop, when an instance ends.
struct Expiry {
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
        // The worker must look again when its last response ends (see
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
            // A busy instance out of time: what `Worker::drop` reports.
            this.instance.timed_out.store(true, Ordering::Relaxed);
        }
        expired
    }
}

/// One live instance, as `ProxyHandler` drives it.
struct Worker {
    instance: Arc<InstanceShared>,
    component: Arc<ComponentShared>,
}

impl WorkerState for Worker {
    type StoreData = HostState;
    type RequestData = Arc<RequestInfo>;

    fn should_accept_request(&self, _handling: usize, served: usize) -> ShouldAccept {
        if served >= self.component.max_reuse {
            ShouldAccept::Never
        } else if self.instance.in_flight() >= self.component.settings.max_concurrent_reuse {
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
        _task: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync + 'static>> {
        let timeout = self.component.settings.request_timeout;
        // Re-arm: an epoch that passed while the instance was idle must not
        // count against this request.
        store.set_epoch_deadline(1);
        let state = store.data_mut();
        state.deadline = Some(Instant::now() + timeout);
        self.component.report_wasm_time(state);
        self.instance.start(request);
        Box::pin(tokio::time::sleep(timeout))
    }

    fn drop(&self, mut store: Store<HostState>, result: wasmtime::Result<()>) {
        self.component.report_wasm_time(store.data_mut());
        let outcome = match result {
            Ok(()) => Outcome::Retired,
            // Idle instances cancelled by the shutdown.
            Err(_) if self.component.stopping.load(Ordering::Relaxed) => Outcome::Retired,
            Err(error) => {
                let kind = match error.downcast_ref::<wasmtime::Trap>() {
                    Some(_) if self.instance.memory_refusals.load(Ordering::Relaxed) > 0 => {
                        "out_of_memory"
                    }
                    Some(trap) => instance::trap_kind(*trap),
                    None if self.instance.timed_out.load(Ordering::Relaxed) => "timeout",
                    None => "host_error",
                };
                let detail = format!("{:#}", error.root_cause());
                tracing::error!(
                    component = &*self.component.id,
                    instance = self.instance.id,
                    kind,
                    error = %detail,
                    "guest instance ended abnormally"
                );
                self.component
                    .metrics
                    .guest_trapped(&self.component.id, kind);
                Outcome::Trapped { kind, detail }
            }
        };
        // Record the outcome before the store goes: dropping it ends the
        // guest's response stream, and a body cut short by a trap must be
        // seen as failed, not as complete.
        self.instance.end(outcome);
        drop(store);
    }
}
