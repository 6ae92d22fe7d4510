//! The host side of `wasi:otel@0.2.0-rc.2` (the interfaces spin-sdk 7
//! carries, as Spin implements them): a guest's telemetry joins its
//! request's.
//!
//! - `tracing`: `outer-span-context` gives the guest its request's innermost
//!   host span, so the guest's spans are children of the invocation;
//!   `on-start`/`on-end` tell the host which guest span is open (host spans
//!   started meanwhile, such as key-value operations, become its children)
//!   and hand the ended span to the export pipeline.
//! - `logs`: each log record becomes a JSON line with the request's ids.
//! - `metrics`: accepted and dropped (hero-host exports its own metrics).
//!
//! Which request a call belongs to is the calling guest task's, as for
//! stdout (see [`crate::runtime::attribution`]). Calls outside any request
//! still log, with `request_id: null`; their spans are dropped.

mod records;
mod spans;
mod values;

use std::sync::Arc;

use wasmtime::component::{HasData, Linker};

use crate::runtime::RequestInfo;
use crate::runtime::instance::InstanceShared;

mod generated {
    wasmtime::component::bindgen!({
        inline: "
            package hero-host:otel;
            world otel-imports {
                import wasi:otel/types@0.2.0-rc.2;
                import wasi:otel/tracing@0.2.0-rc.2;
                import wasi:otel/logs@0.2.0-rc.2;
                import wasi:otel/metrics@0.2.0-rc.2;
            }
        ",
        path: [
            "wit/deps/io@0.2.0",
            "wit/deps/clocks@0.2.0",
            "wit/deps/otel@0.2.0-rc.2",
        ],
        imports: { default: trappable },
        require_store_data_send: true,
        with: {
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        },
    });
}

use self::generated::wasi::otel as bindings;

/// The per-call view: the instance the calling guest runs in.
pub struct OtelView<'a> {
    /// The instance, which knows which request is calling.
    pub instance: &'a Arc<InstanceShared>,
}

impl OtelView<'_> {
    /// The request whose task is calling, if any.
    fn caller(&self) -> Option<Arc<RequestInfo>> {
        self.instance.calling_request()
    }
}

/// Implemented by the store data.
pub trait OtelHostView: Send {
    /// Borrows the view.
    fn otel(&mut self) -> OtelView<'_>;
}

/// The `HasData` marker of these interfaces.
pub struct WasiOtel;

impl HasData for WasiOtel {
    type Data<'a> = OtelView<'a>;
}

/// Adds `wasi:otel`'s interfaces to a linker.
pub fn add_to_linker<T: OtelHostView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    bindings::types::add_to_linker::<T, WasiOtel>(linker, T::otel)?;
    bindings::tracing::add_to_linker::<T, WasiOtel>(linker, T::otel)?;
    bindings::logs::add_to_linker::<T, WasiOtel>(linker, T::otel)?;
    bindings::metrics::add_to_linker::<T, WasiOtel>(linker, T::otel)?;
    Ok(())
}

impl bindings::types::Host for OtelView<'_> {}

impl bindings::metrics::Host for OtelView<'_> {
    /// Accepted and dropped: the host's own metrics are on its admin port.
    fn export(
        &mut self,
        _metrics: bindings::metrics::ResourceMetrics,
    ) -> wasmtime::Result<Result<(), bindings::metrics::Error>> {
        Ok(Ok(()))
    }
}
