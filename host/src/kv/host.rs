//! The host side of `spin:key-value/key-value@3.0.0` for WASIp3 guests.
//!
//! Shape (as `wasmtime-wasi`'s own interfaces): `bindgen!` in a private
//! module; [`KeyValueCtx`] built once per component at set-up;
//! [`KeyValueState`] per instance; [`KeyValueView`] borrowed per call.
//! Host methods copy what they need out of the store in one synchronous
//! `Accessor::with`, then await the backend with no store borrow held.
//!
//! Errors: a backend failure is `error::other` for the guest (a generic text;
//! the detail goes to the host log and the request's invocation line); a
//! broken host invariant is a trap.

use std::collections::HashSet;
use std::sync::Arc;

use wasmtime::component::{
    Accessor, FutureReader, HasData, Linker, Resource, ResourceTable, ResourceTableError,
    StreamReader,
};

pub use super::operation::{FailedOperation, Operation, timed};
use super::{KeyValueFailures, LabeledStore, Stores};
use crate::guest_stream::ListStream;
use crate::telemetry::metrics::Metrics;

mod generated {
    wasmtime::component::bindgen!({
        inline: "
            package hero-host:key-value;
            world key-value-imports {
                import spin:key-value/key-value@3.0.0;
            }
        ",
        path: "wit/key-value.wit",
        // WIT `async func`s are `async | store` already; `trappable` lets
        // every function (and `get-keys`, which has no error type) trap.
        imports: { default: trappable },
        with: { "spin:key-value/key-value.store": crate::kv::host::StoreHandle },
        trappable_error_type: { "spin:key-value/key-value.error" => crate::kv::host::KvError },
    });
}

pub use self::bindings::Error as WitError;
use self::generated::spin::key_value::key_value as bindings;

/// Open store handles (of both interfaces) one instance may hold
/// (`store-table-full` beyond), as Spin's table capacity.
const MAX_OPEN_STORES: u32 = 256;

/// What a guest's `store` resource points at: the opened store itself.
pub struct StoreHandle(Arc<LabeledStore>);

/// The error of host methods whose WIT result has `error`.
pub enum KvError {
    /// What the guest sees.
    Guest(WitError),
    /// A host bug: the guest traps.
    Trap(wasmtime::Error),
}

impl From<WitError> for KvError {
    fn from(error: WitError) -> Self {
        KvError::Guest(error)
    }
}

impl From<ResourceTableError> for KvError {
    // The component model validates handles before they reach the host, so a
    // missing or mistyped entry is a host bug.
    fn from(error: ResourceTableError) -> Self {
        KvError::Trap(wasmtime::Error::new(error))
    }
}

/// Set-up state of one component: the stores it may open.
pub struct KeyValueCtx {
    stores: Stores,
    granted: HashSet<String>,
    metrics: Arc<Metrics>,
}

impl KeyValueCtx {
    /// The component may open `granted` labels among the host's `stores`.
    pub fn new(stores: Stores, granted: &[String], metrics: Arc<Metrics>) -> Self {
        KeyValueCtx {
            stores,
            granted: granted.iter().cloned().collect(),
            metrics,
        }
    }

    /// `no-such-store` for a label the host does not have, `access-denied`
    /// for one the component was not granted.
    fn open(&self, label: &str) -> Result<Arc<LabeledStore>, WitError> {
        match self.stores.get(label) {
            Some(store) if self.granted.contains(label) => Ok(store.clone()),
            Some(_) => Err(WitError::AccessDenied),
            None => Err(WitError::NoSuchStore),
        }
    }
}

/// Per-instance state, held in the store data; shared by both interfaces.
pub struct KeyValueState {
    ctx: Arc<KeyValueCtx>,
    open_stores: u32,
    /// Open `wasi:keyvalue` compare-and-swap handles.
    pub(super) open_swaps: u32,
    failures: Arc<dyn KeyValueFailures>,
}

impl KeyValueState {
    /// Fresh state for a new instance; `failures` is told of each failed
    /// operation.
    pub fn new(ctx: Arc<KeyValueCtx>, failures: Arc<dyn KeyValueFailures>) -> Self {
        KeyValueState {
            ctx,
            open_stores: 0,
            open_swaps: 0,
            failures,
        }
    }
}

/// The per-call borrow of the state and the instance's resource table.
pub struct KeyValueView<'a> {
    /// Per-instance state.
    pub state: &'a mut KeyValueState,
    /// The table shared with WASI.
    pub table: &'a mut ResourceTable,
}

/// Implemented by the store data.
pub trait KeyValueHostView: Send {
    /// Borrows the key-value view.
    fn key_value(&mut self) -> KeyValueView<'_>;
}

/// The `HasData` marker of this interface.
pub struct KeyValue;

impl HasData for KeyValue {
    type Data<'a> = KeyValueView<'a>;
}

/// Adds the interface to a linker.
pub fn add_to_linker<T: KeyValueHostView + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    bindings::add_to_linker::<T, KeyValue>(linker, T::key_value)
}

impl KeyValueView<'_> {
    /// Opens `label` for the guest: a handle in the table, counted against
    /// the instance's limit (shared by every key-value interface version).
    pub fn open_handle(&mut self, label: &str) -> Result<Resource<StoreHandle>, KvError> {
        let store = self.state.open(label)?;
        self.table.push(StoreHandle(store)).map_err(|error| {
            self.state.closed();
            error.into()
        })
    }

    /// Closes a handle the guest dropped.
    pub fn close_handle(&mut self, handle: Resource<StoreHandle>) -> wasmtime::Result<()> {
        self.table.delete(handle)?;
        self.state.closed();
        Ok(())
    }

    /// What an operation on `handle` needs, without a borrow of the store.
    pub fn operation(&self, handle: &Resource<StoreHandle>) -> Result<Operation, KvError> {
        Ok(self.state.operation(self.table.get(handle)?.0.clone()))
    }
}

impl KeyValueState {
    /// The operation context for `store`.
    pub(super) fn operation(&self, store: Arc<LabeledStore>) -> Operation {
        Operation {
            store,
            metrics: self.ctx.metrics.clone(),
            // Resolved as the guest's call starts, so its caller is known.
            caller: self.failures.caller(),
            failures: self.failures.clone(),
            blocks_instance: false,
        }
    }

    /// The operation context for `store` in a synchronous WIT function (the
    /// instance can run nothing else until it returns).
    pub(super) fn blocking_operation(&self, store: Arc<LabeledStore>) -> Operation {
        Operation {
            blocks_instance: true,
            ..self.operation(store)
        }
    }

    /// Opens `label` for a new handle of either interface: `no-such-store`,
    /// `access-denied`, or `store-table-full` beyond [`MAX_OPEN_STORES`].
    pub(super) fn open(&mut self, label: &str) -> Result<Arc<LabeledStore>, WitError> {
        let store = self.ctx.open(label)?;
        if self.open_stores >= MAX_OPEN_STORES {
            return Err(WitError::StoreTableFull);
        }
        self.open_stores += 1;
        Ok(store)
    }

    /// A handle of either interface was dropped.
    pub(super) fn closed(&mut self) {
        self.open_stores = self.open_stores.saturating_sub(1);
    }
}

/// The operation context of a handle.
fn resolve<T>(
    accessor: &Accessor<T, KeyValue>,
    handle: &Resource<StoreHandle>,
) -> Result<Operation, KvError> {
    accessor.with(|mut access| access.get().operation(handle))
}

impl From<FailedOperation> for KvError {
    fn from(failed: FailedOperation) -> Self {
        KvError::Guest(WitError::Other(failed.0))
    }
}

impl bindings::Host for KeyValueView<'_> {
    fn convert_error(&mut self, error: KvError) -> wasmtime::Result<WitError> {
        match error {
            KvError::Guest(error) => Ok(error),
            KvError::Trap(error) => Err(error),
        }
    }
}

impl bindings::HostStore for KeyValueView<'_> {
    fn drop(&mut self, handle: Resource<StoreHandle>) -> wasmtime::Result<()> {
        self.close_handle(handle)
    }
}

impl<T> bindings::HostStoreWithStore<T> for KeyValue {
    async fn open(
        accessor: &Accessor<T, Self>,
        label: String,
    ) -> Result<Resource<StoreHandle>, KvError> {
        accessor.with(|mut access| access.get().open_handle(&label))
    }

    async fn get(
        accessor: &Accessor<T, Self>,
        handle: Resource<StoreHandle>,
        key: String,
    ) -> Result<Option<Vec<u8>>, KvError> {
        Ok(timed(resolve(accessor, &handle)?, "get", async |s| {
            s.backend.get(&key).await
        })
        .await?)
    }

    async fn set(
        accessor: &Accessor<T, Self>,
        handle: Resource<StoreHandle>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), KvError> {
        Ok(timed(resolve(accessor, &handle)?, "set", async |s| {
            s.backend.set(&key, &value).await
        })
        .await?)
    }

    async fn delete(
        accessor: &Accessor<T, Self>,
        handle: Resource<StoreHandle>,
        key: String,
    ) -> Result<(), KvError> {
        Ok(timed(resolve(accessor, &handle)?, "delete", async |s| {
            s.backend.delete(&key).await
        })
        .await?)
    }

    async fn exists(
        accessor: &Accessor<T, Self>,
        handle: Resource<StoreHandle>,
        key: String,
    ) -> Result<bool, KvError> {
        Ok(timed(resolve(accessor, &handle)?, "exists", async |s| {
            s.backend.exists(&key).await
        })
        .await?)
    }

    async fn get_keys(
        accessor: &Accessor<T, Self>,
        handle: Resource<StoreHandle>,
    ) -> wasmtime::Result<(StreamReader<String>, FutureReader<Result<(), WitError>>)> {
        let resolved = resolve(accessor, &handle).map_err(|error| match error {
            KvError::Trap(error) => error,
            KvError::Guest(error) => wasmtime::format_err!("unexpected key-value error {error:?}"),
        })?;
        // The backends list every key at once (sorted); the stream hands them
        // to the guest as fast as it reads, and the future says how it ended.
        let (keys, outcome) =
            match timed(resolved, "get_keys", async |s| s.backend.keys().await).await {
                Ok(keys) => (keys, Ok(())),
                Err(failed) => (Vec::new(), Err(WitError::Other(failed.0))),
            };
        accessor.with(|mut access| {
            let keys =
                StreamReader::new(&mut access, ListStream::new(keys, KEYS_PER_READ, |key| key))?;
            let outcome =
                FutureReader::new(
                    &mut access,
                    async move { Ok::<_, wasmtime::Error>(outcome) },
                )?;
            Ok((keys, outcome))
        })
    }
}

/// Keys handed over per read when the reader does not say how many it wants.
const KEYS_PER_READ: usize = 256;
