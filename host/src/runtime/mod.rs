//! The Wasm runtime: one engine and linker, each component compiled once (or
//! loaded from the cache) and pre-instantiated at start-up; per request, an
//! instance from `wasmtime-wasi-http`'s `ProxyHandler`, which reuses WASIp3
//! instances and streams responses.
//!
//! [`ComponentRuntime::handle`] is the one entry of the request path: it
//! returns the guest's response or a typed [`GuestFailure`], and an
//! [`InstanceLease`] that frees the instance when dropped.
//!
//! A WASIp3 instance serves up to `--max-instance-concurrent-reuse-count`
//! requests at once (16 by default); every line the guest prints is still
//! named after the request whose task wrote it ([`attribution`]). A trap or a
//! timeout discards the instance and fails the requests it was serving.

pub mod attribution;
mod componentize;
pub mod engine;
pub mod guest_calls;
pub mod guest_clock;
mod imports;
pub mod instance;
pub mod invocation;
mod lanes;
mod outbound_hooks;
mod outbound_span;
pub mod outcome;
pub mod output;
pub mod state;
mod worker;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use wasmtime::Engine;
use wasmtime::component::Linker;
use wasmtime_wasi_http::WasiBody;
use wasmtime_wasi_http::handler::ProxyPre;

use self::engine::EpochTicker;
pub use self::invocation::{GuestFailure, InstanceLease, RequestInfo};
use self::lanes::Lanes;
use self::state::HostState;
use self::worker::{ComponentHost, ComponentShared};
use crate::capabilities::Capabilities;
use crate::kv::Stores;
use crate::kv::host::KeyValueCtx;
use crate::manifest::Component;
use crate::shutdown::Shutdown;
use crate::sqlite::Databases;
use crate::sqlite::ctx::SqliteMetrics;
use crate::telemetry::logs::LogSink;
use crate::telemetry::metrics::{InvocationCounts, Metrics};
use crate::variables::AppVariables;

/// How instances are run.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// What the runtime is built with, besides the components.
pub struct Environment<'a> {
    /// The key-value stores components may open.
    pub stores: &'a Stores,
    /// The SQLite databases components may open.
    pub databases: &'a Databases,
    /// The application variables' values.
    pub variables: &'a AppVariables,
    /// Where compiled components are cached.
    pub cache_dir: &'a Path,
    /// Where guest output lines go.
    pub logs: &'a LogSink,
    /// The instruments.
    pub metrics: &'a Arc<Metrics>,
    /// The host's shutdown: instances cancelled once it has stopped are
    /// retired quietly, not reported as failures.
    pub shutdown: &'a Shutdown,
    /// Whether tracing is on (host calls then look for their request's
    /// spans).
    pub traced: bool,
    /// Where the app itself listens, for requests to `self`.
    pub own_app: &'a crate::outbound::OwnApp,
}

/// The runtime: every served component, ready to handle requests.
pub struct Runtime {
    /// Components, in the order they were given.
    pub components: Vec<ComponentRuntime>,
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
    /// Where its requests run (see [`lanes`]).
    lanes: Lanes,
}

/// What a guest call gives back.
pub struct GuestCall {
    /// The response, or why there is none.
    pub result: Result<http::Response<WasiBody>, GuestFailure>,
    /// Holds the instance until the response has ended.
    pub lease: InstanceLease,
}

impl Runtime {
    /// Compiles (or loads from the cache) and pre-instantiates every
    /// component. Fails, naming the component, when one is not a valid
    /// component or imports something the host does not provide.
    pub fn new(
        components: &[&Component],
        settings: Settings,
        environment: &Environment<'_>,
    ) -> anyhow::Result<Self> {
        let engine = engine::engine(settings.max_instances, settings.max_instance_memory)?;
        let linker = linker(&engine)?;
        let sqlite_metrics = Arc::new(SqliteMetrics::new(environment.metrics));
        let settings = Arc::new(settings);
        let mut usage = Vec::new();
        let mut cpu = Vec::new();
        let mut runtimes = Vec::new();
        for component in components {
            let (runtime, memory, wasm_time) = ComponentRuntime::new(
                &engine,
                &linker,
                component,
                &settings,
                environment,
                &sqlite_metrics,
            )
            .with_context(|| format!("component `{}`", component.id))?;
            usage.push((runtime.id.clone(), memory));
            cpu.push((runtime.id.clone(), wasm_time));
            runtimes.push(runtime);
        }
        environment.metrics.observe_memory(usage);
        environment.metrics.observe_wasm_time(cpu);
        Ok(Runtime {
            components: runtimes,
            _ticker: EpochTicker::start(engine)?,
        })
    }
}

fn linker(engine: &Engine) -> anyhow::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    // WASIp2 (Rust std uses it in both kinds of component), wasi:http 0.2
    // types and outgoing handler, WASIp3 and wasi:http 0.3, Spin key-value,
    // wasi:keyvalue, wasi:otel.
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    wasmtime_wasi::p3::add_to_linker(&mut linker)?;
    wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
    crate::kv::host::add_to_linker(&mut linker)?;
    // Variables, SQLite, and the spin-sdk 2 to 5 generation of both and of
    // key-value.
    crate::variables::host::add_to_linker(&mut linker)?;
    crate::sqlite::host::add_to_linker(&mut linker)?;
    crate::spin_v2::add_to_linker(&mut linker)?;
    crate::kv::wasi_keyvalue::add_to_linker(&mut linker)?;
    crate::otel::add_to_linker(&mut linker)?;
    Ok(linker)
}

/// The pre-instance of an HTTP component, and its world.
fn http_pre(
    linker: &Linker<HostState>,
    compiled: &wasmtime::component::Component,
) -> anyhow::Result<(ProxyPre<HostState>, WasiVersion)> {
    let instance_pre = linker
        .instantiate_pre(compiled)
        .map_err(|e| match imports::unsupported(compiled) {
            Some(unsupported) => anyhow!("it {unsupported}"),
            None => anyhow!(
                "{e:#}: hero-host provides WASI 0.2 and 0.3, wasi:http, and Spin's key-value, \
                 variables and SQLite interfaces, wasi:keyvalue@0.2.0-draft2 (store, atomics, batch) and wasi:otel@0.2.0-rc.2"
            ),
        })?;
    match wasmtime_wasi_http::p3::bindings::ServicePre::new(instance_pre.clone()) {
        Ok(p3) => Ok((ProxyPre::P3(p3), WasiVersion::P3)),
        Err(p3_error) => match wasmtime_wasi_http::p2::bindings::ProxyPre::new(instance_pre) {
            Ok(p2) => Ok((ProxyPre::P2(p2), WasiVersion::P2)),
            Err(p2_error) => Err(anyhow!(
                "not an HTTP component: it exports neither wasi:http/handler@0.3 ({p3_error}) \
                 nor wasi:http/incoming-handler@0.2 ({p2_error})"
            )),
        },
    }
}

/// Another handle on the same pre-instance (one per lane).
fn same_pre(pre: &ProxyPre<HostState>) -> ProxyPre<HostState> {
    match pre {
        ProxyPre::P2(p2) => ProxyPre::P2(p2.clone()),
        ProxyPre::P3(p3) => ProxyPre::P3(p3.clone()),
    }
}

impl ComponentRuntime {
    fn new(
        engine: &Engine,
        linker: &Linker<HostState>,
        component: &Component,
        settings: &Arc<Settings>,
        environment: &Environment<'_>,
        sqlite_metrics: &Arc<SqliteMetrics>,
    ) -> anyhow::Result<(Self, Arc<AtomicI64>, Arc<AtomicU64>)> {
        let (compiled, from_cache) =
            engine::load_component(engine, &component.source, environment.cache_dir)?;
        let (pre, wasi) = http_pre(linker, &compiled)?;
        let id: Arc<str> = component.id.as_str().into();
        let memory = Arc::new(AtomicI64::new(0));
        let wasm_time = Arc::new(AtomicU64::new(0));
        let metrics = environment.metrics;
        let shared = Arc::new(ComponentShared {
            id: id.clone(),
            settings: settings.clone(),
            shutdown: environment.shutdown.clone(),
            // WASIp2 instances cannot be reused.
            max_reuse: if wasi == WasiVersion::P3 {
                settings.max_reuse
            } else {
                1
            },
            environment: component.environment.clone(),
            outbound: component.allowed_outbound_hosts.clone().into(),
            own_app: environment.own_app.clone(),
            kv: Arc::new(KeyValueCtx::new(
                environment.stores.clone(),
                &component.key_value_stores,
                metrics.clone(),
            )),
            capabilities: Capabilities::new(
                component,
                environment.variables,
                environment.databases,
                sqlite_metrics.clone(),
                settings.max_instance_memory,
            ),
            logs: environment.logs.clone(),
            metrics: metrics.clone(),
            memory: memory.clone(),
            wasm_time_nanos: wasm_time.clone(),
            next_instance: AtomicU64::new(0),
            traced: environment.traced,
        });
        let runtime = ComponentRuntime {
            invocations: metrics.invocation_counts(&id),
            id,
            wasi,
            from_cache,
            lanes: Lanes::new(|stalls| {
                ComponentHost::new(engine.clone(), same_pre(&pre), shared.clone(), stalls)
            }),
        };
        Ok((runtime, memory, wasm_time))
    }

    /// Runs one request on an instance.
    pub async fn handle(
        &self,
        request: Arc<RequestInfo>,
        http_request: http::Request<WasiBody>,
    ) -> GuestCall {
        // Made before the call, so a caller that gives up (and drops this
        // future) still frees the instance.
        let lease = InstanceLease::new(request.clone());
        let result = match self
            .lanes
            .pick()
            .handle(request.clone(), http_request)
            .await
        {
            Ok(response) => Ok(response),
            Err(error) => Err(GuestFailure::classify(error, &request).await),
        };
        GuestCall { result, lease }
    }
}
