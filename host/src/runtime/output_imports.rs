//! The host functions through which a guest writes to stdout and stderr,
//! wrapped so that each names the request whose task is writing.
//!
//! wasmtime-wasi provides these functions; hero-host defines them again over
//! wasmtime-wasi's own implementations (the linker allows shadowing for
//! this), asking wasmtime for the calling task before each write (see
//! [`super::attribution`]). Only writes ask: the other host calls a request
//! makes, thirty-odd for a hello, do not pay for it.
//!
//! A guest writes its output through one of two paths:
//! - WASIp3's `wasi:cli/stdout` and `stderr` `write-via-stream`: the guest
//!   hands the host a stream once, and the host reads it later; the writer
//!   is taken at the call and kept for the stream ([`super::output`]).
//! - WASIp2's `wasi:io/streams` output stream, which Rust's standard library
//!   uses in both kinds of component: each write is a host call, so each of
//!   the methods that write names its writer. They serve every output stream
//!   a WASIp2 guest has, not only stdout and stderr; for the others the
//!   writer is named and never read.
//!
//! The writer is published in the instance's `CurrentWriter` and read by
//! the guest's output stream within the same call, before anything awaits:
//! the stream takes every write at once.

use wasmtime::component::{
    Access, FutureReader, HasData, Linker, Resource, ResourceTable, StreamReader,
};
use wasmtime::{AsContextMut, StoreContextMut};
use wasmtime_wasi::WasiView;
use wasmtime_wasi::cli::{WasiCli, WasiCliCtxView, WasiCliView};
use wasmtime_wasi::p2::bindings::io::streams::{self, HostOutputStream};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, StreamResult};
use wasmtime_wasi::p3::bindings::cli::{stderr, stdout};

use super::state::HostState;

/// The WASIp2 streams interface as wasmtime-wasi defines it in the linker.
const P2_STREAMS: &str = "wasi:io/streams@0.2.12";

/// Defines the output functions again, over the ones wasmtime-wasi put in
/// `linker`.
pub fn shadow_output_functions(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    linker.allow_shadowing(true);
    let shadowed = shadow_p3(linker).and_then(|()| shadow_p2(linker));
    linker.allow_shadowing(false);
    shadowed
}

/// Publishes, for the guest's output streams, who the calling task writes
/// for.
fn name_writer(store: &mut StoreContextMut<'_, HostState>) -> wasmtime::Result<()> {
    let root = store.async_call_stack()?.last();
    let state = store.data_mut();
    state.instance.writer().set(state.tasks.writer(root));
    Ok(())
}

/// WASIp3's stdout and stderr, with the writer named first.
struct TaskNamedCli;

impl HasData for TaskNamedCli {
    type Data<'a> = WasiCliCtxView<'a>;
}

fn cli(state: &mut HostState) -> WasiCliCtxView<'_> {
    WasiCliView::cli(state)
}

impl stdout::HostWithStore<HostState> for TaskNamedCli {
    fn write_via_stream(
        mut host: Access<'_, HostState, Self>,
        data: StreamReader<u8>,
    ) -> wasmtime::Result<FutureReader<Result<(), stdout::ErrorCode>>> {
        name_writer(&mut host.as_context_mut())?;
        <WasiCli as stdout::HostWithStore<HostState>>::write_via_stream(
            Access::<HostState, WasiCli>::new(host.as_context_mut(), cli),
            data,
        )
    }
}

impl stderr::HostWithStore<HostState> for TaskNamedCli {
    fn write_via_stream(
        mut host: Access<'_, HostState, Self>,
        data: StreamReader<u8>,
    ) -> wasmtime::Result<FutureReader<Result<(), stderr::ErrorCode>>> {
        name_writer(&mut host.as_context_mut())?;
        <WasiCli as stderr::HostWithStore<HostState>>::write_via_stream(
            Access::<HostState, WasiCli>::new(host.as_context_mut(), cli),
            data,
        )
    }
}

fn shadow_p3(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    stdout::add_to_linker::<HostState, TaskNamedCli>(linker, cli)?;
    stderr::add_to_linker::<HostState, TaskNamedCli>(linker, cli)?;
    Ok(())
}

/// A stream method's result as the guest receives it: a stream error as the
/// WIT variant (trapping where wasmtime-wasi's own binding traps).
fn lowered<R>(
    table: &mut ResourceTable,
    result: StreamResult<R>,
) -> wasmtime::Result<(Result<R, streams::StreamError>,)> {
    Ok((match result {
        Ok(value) => Ok(value),
        Err(error) => Err(streams::Host::convert_stream_error(table, error)?),
    },))
}

fn table<'a>(store: &'a mut StoreContextMut<'_, HostState>) -> &'a mut ResourceTable {
    store.data_mut().ctx().table
}

type Output = Resource<DynOutputStream>;
type Input = Resource<DynInputStream>;

fn shadow_p2(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    let mut streams = linker.instance(P2_STREAMS)?;
    streams.func_wrap(
        "[method]output-stream.write",
        |mut store, (stream, bytes): (Output, Vec<u8>)| {
            name_writer(&mut store)?;
            let table = table(&mut store);
            let result = HostOutputStream::write(table, stream, bytes);
            lowered(table, result)
        },
    )?;
    streams.func_wrap(
        "[method]output-stream.write-zeroes",
        |mut store, (stream, len): (Output, u64)| {
            name_writer(&mut store)?;
            let table = table(&mut store);
            let result = HostOutputStream::write_zeroes(table, stream, len);
            lowered(table, result)
        },
    )?;
    streams.func_wrap(
        "[method]output-stream.splice",
        |mut store, (stream, source, len): (Output, Input, u64)| {
            name_writer(&mut store)?;
            let table = table(&mut store);
            let result = HostOutputStream::splice(table, stream, source, len);
            lowered(table, result)
        },
    )?;
    streams.func_wrap_async(
        "[method]output-stream.blocking-write-and-flush",
        |mut store, (stream, bytes): (Output, Vec<u8>)| {
            Box::new(async move {
                name_writer(&mut store)?;
                let table = table(&mut store);
                let result = HostOutputStream::blocking_write_and_flush(table, stream, bytes).await;
                lowered(table, result)
            })
        },
    )?;
    streams.func_wrap_async(
        "[method]output-stream.blocking-write-zeroes-and-flush",
        |mut store, (stream, len): (Output, u64)| {
            Box::new(async move {
                name_writer(&mut store)?;
                let table = table(&mut store);
                let result =
                    HostOutputStream::blocking_write_zeroes_and_flush(table, stream, len).await;
                lowered(table, result)
            })
        },
    )?;
    streams.func_wrap_async(
        "[method]output-stream.blocking-splice",
        |mut store, (stream, source, len): (Output, Input, u64)| {
            Box::new(async move {
                name_writer(&mut store)?;
                let table = table(&mut store);
                let result = HostOutputStream::blocking_splice(table, stream, source, len).await;
                lowered(table, result)
            })
        },
    )?;
    Ok(())
}
