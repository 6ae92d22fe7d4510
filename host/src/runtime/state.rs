//! The data each instance's store holds, and the per-instance capabilities
//! built from it: WASI (stdout/stderr captured, nothing else granted),
//! wasi:http with the outbound allow-list, the key-value stores, the memory
//! limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::attribution::TaskTable;
use super::guest_calls::GuestCalls;
use super::instance::InstanceShared;
use super::outbound_hooks::OutboundHooks;
use super::output::GuestOutput;
use crate::capabilities::InstanceCapabilities;
use crate::kv::host::{KeyValueHostView, KeyValueState, KeyValueView};
use crate::otel::{OtelHostView, OtelView};
use crate::sqlite::ctx::{SqliteHostView, SqliteView};
use crate::telemetry::logs::GuestStream;
use crate::variables::host::{VariablesHostView, VariablesView};

/// Everything one instance's store holds.
pub struct HostState {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: OutboundHooks,
    kv: KeyValueState,
    capabilities: InstanceCapabilities,
    /// Enforces the memory limit and keeps the memory gauge.
    pub limiter: MemoryLimiter,
    /// Shared with the host.
    pub instance: Arc<InstanceShared>,
    /// The tasks of the requests the instance has started, with their
    /// deadlines.
    pub tasks: TaskTable,
    /// The guest calls in progress and ended, and their CPU time (for the
    /// epoch callback and `wasm_guest_cpu_time_seconds_total`).
    pub guest_calls: GuestCalls,
}

impl HostState {
    /// State for a new instance.
    pub fn new(
        instance: Arc<InstanceShared>,
        environment: &[(String, String)],
        hooks: OutboundHooks,
        kv: KeyValueState,
        capabilities: InstanceCapabilities,
        limiter: MemoryLimiter,
        guest_calls: GuestCalls,
    ) -> Self {
        let mut wasi = WasiCtx::builder();
        // Spin's guest capabilities: the component's own environment and
        // nothing else; no files, no sockets, no name lookup.
        wasi.envs(environment)
            .stdout(GuestOutput::new(instance.clone(), GuestStream::Stdout))
            .stderr(GuestOutput::new(instance.clone(), GuestStream::Stderr))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        HostState {
            table: ResourceTable::new(),
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            hooks,
            kv,
            capabilities,
            limiter,
            instance,
            tasks: TaskTable::default(),
            guest_calls,
        }
    }

    /// The `view` function `ProxyHandler` needs.
    pub fn http_view(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpView::http(self)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl KeyValueHostView for HostState {
    fn key_value(&mut self) -> KeyValueView<'_> {
        KeyValueView {
            state: &mut self.kv,
            table: &mut self.table,
        }
    }
}

impl VariablesHostView for HostState {
    fn variables(&mut self) -> VariablesView<'_> {
        VariablesView(&self.capabilities.variables)
    }
}

impl SqliteHostView for HostState {
    fn sqlite(&mut self) -> SqliteView<'_> {
        SqliteView {
            state: &mut self.capabilities.sqlite,
            table: &mut self.table,
        }
    }
}

impl OtelHostView for HostState {
    fn otel(&mut self) -> OtelView<'_> {
        OtelView {
            instance: &self.instance,
        }
    }
}

/// The per-instance memory limit; also keeps the component's memory gauge
/// (linear memory held by its live instances) up to date.
pub struct MemoryLimiter {
    limit: usize,
    held: usize,
    gauge: Arc<AtomicI64>,
    instance: Arc<InstanceShared>,
}

impl MemoryLimiter {
    /// A limiter of `limit` bytes per instance feeding `gauge`.
    pub fn new(limit: u64, gauge: Arc<AtomicI64>, instance: Arc<InstanceShared>) -> Self {
        MemoryLimiter {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            held: 0,
            gauge,
            instance,
        }
    }
}

/// Table elements an instance may have (a guard against runaway guests).
const MAX_TABLE_ELEMENTS: usize = 1_000_000;

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            // The guest sees `memory.grow` fail (Rust aborts on it); the
            // count lets the host name the trap that follows.
            self.instance.memory_refused();
            return Ok(false);
        }
        let grown = desired.saturating_sub(current);
        self.held += grown;
        self.gauge
            .fetch_add(i64::try_from(grown).unwrap_or(i64::MAX), Ordering::Relaxed);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

impl Drop for MemoryLimiter {
    fn drop(&mut self) {
        self.gauge.fetch_sub(
            i64::try_from(self.held).unwrap_or(i64::MAX),
            Ordering::Relaxed,
        );
    }
}
