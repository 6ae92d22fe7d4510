//! The host side of `wasi:keyvalue` 2024-10-17 (`wasi:keyvalue@0.2.0-draft2`:
//! `store`, `atomics`, `batch`), on the same stores, keys, handle limit and
//! per-instance state as `spin:key-value` ([`super::host`]), so a guest may
//! use both interfaces on the same data. Every backend operation goes through
//! [`timed`]: one metric, one log line and one report per failure.
//!
//! Semantics follow Spin's implementation where the WIT leaves room:
//! - `list-keys` answers every key at once with no cursor; a cursor is
//!   refused (`cursor not supported`), as Spin does.
//! - `increment` counts an absent key as 0 and keeps the counter in the
//!   backend's own format (Spin's): 8 bytes little-endian in SQLite, decimal
//!   text in Redis. A value that is not a counter is an `other` error.
//! - Compare-and-swap compares whole values. `cas.new` reads the value once;
//!   `current` returns that snapshot without reading again; `swap` stores the
//!   new value only if the key still holds the snapshot (or is still absent),
//!   atomically on both backends, and otherwise fails with a new handle whose
//!   snapshot is the value found. Spin takes its snapshot in `current`; a
//!   guest that calls `current` before `swap`, as the WIT intends, sees the
//!   same behaviour, and one that does not gets a check against the value at
//!   `new` instead of Spin's unconditional write.
//! - `get-many` answers one entry per requested key, in order, `none` for an
//!   absent key, as the WIT describes (Spin's SQLite store leaves them out).
//! - Batches are not atomic as a whole (the WIT promises no more), though
//!   each backend does apply one batch in one transaction or command.

use std::sync::Arc;

use wasmtime::component::{Linker, Resource, ResourceTableError};

use super::LabeledStore;
use super::host::{FailedOperation, KeyValue, KeyValueHostView, KeyValueView, Operation, timed};

mod generated {
    wasmtime::component::bindgen!({
        path: "wit/wasi-keyvalue",
        world: "wasi:keyvalue/imports",
        // The WIT functions are synchronous: the calling guest task waits
        // while the host awaits the backend. `trappable` lets a broken host
        // invariant trap.
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": crate::kv::wasi_keyvalue::Bucket,
            "wasi:keyvalue/atomics.cas": crate::kv::wasi_keyvalue::CompareAndSwap,
        },
        trappable_error_type: {
            "wasi:keyvalue/store.error" => crate::kv::wasi_keyvalue::StoreFailure,
            "wasi:keyvalue/atomics.cas-error" => crate::kv::wasi_keyvalue::SwapFailure,
        },
    });
}

use self::generated::wasi::keyvalue::{atomics, batch, store};

/// Compare-and-swap handles one instance may hold open at once.
const MAX_OPEN_SWAPS: u32 = 256;

/// What a guest's `bucket` resource points at: the opened store.
pub struct Bucket(Arc<LabeledStore>);

/// What a guest's `cas` resource holds: the key and the value `cas.new`
/// found there (the snapshot `swap` compares with).
pub struct CompareAndSwap {
    store: Arc<LabeledStore>,
    key: String,
    snapshot: Option<Vec<u8>>,
}

/// The error of functions whose WIT result has `store.error`.
pub enum StoreFailure {
    /// What the guest sees.
    Guest(store::Error),
    /// A host bug: the guest traps.
    Trap(wasmtime::Error),
}

/// The error of `swap`.
pub enum SwapFailure {
    /// What the guest sees.
    Guest(atomics::CasError),
    /// A host bug: the guest traps.
    Trap(wasmtime::Error),
}

impl From<ResourceTableError> for StoreFailure {
    // The component model validates handles before they reach the host, so a
    // missing or mistyped entry is a host bug.
    fn from(error: ResourceTableError) -> Self {
        StoreFailure::Trap(wasmtime::Error::new(error))
    }
}

impl From<FailedOperation> for StoreFailure {
    fn from(failed: FailedOperation) -> Self {
        StoreFailure::Guest(store::Error::Other(failed.0))
    }
}

impl From<StoreFailure> for SwapFailure {
    fn from(failure: StoreFailure) -> Self {
        match failure {
            StoreFailure::Guest(error) => SwapFailure::Guest(atomics::CasError::StoreError(error)),
            StoreFailure::Trap(error) => SwapFailure::Trap(error),
        }
    }
}

impl From<ResourceTableError> for SwapFailure {
    fn from(error: ResourceTableError) -> Self {
        StoreFailure::from(error).into()
    }
}

/// Adds `store`, `atomics` and `batch` to a linker, on the same data as
/// `spin:key-value` (its `HasData` marker).
pub fn add_to_linker<T: KeyValueHostView + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    generated::Imports::add_to_linker::<T, KeyValue>(linker, T::key_value)
}

impl KeyValueView<'_> {
    /// The operation context of a bucket handle, and its store.
    fn resolve(
        &mut self,
        bucket: &Resource<Bucket>,
    ) -> Result<(Operation, Arc<LabeledStore>), StoreFailure> {
        let store = self.table.get(bucket)?.0.clone();
        Ok((self.state.blocking_operation(store.clone()), store))
    }

    /// Keeps a compare-and-swap handle in the instance's table, within
    /// [`MAX_OPEN_SWAPS`].
    fn keep_swap(
        &mut self,
        swap: CompareAndSwap,
    ) -> Result<Resource<CompareAndSwap>, StoreFailure> {
        if self.state.open_swaps >= MAX_OPEN_SWAPS {
            return Err(StoreFailure::Guest(store::Error::Other(
                "too many compare-and-swap handles are open".into(),
            )));
        }
        let handle = self.table.push(swap)?;
        self.state.open_swaps += 1;
        Ok(handle)
    }
}

impl store::Host for KeyValueView<'_> {
    fn convert_error(&mut self, error: StoreFailure) -> wasmtime::Result<store::Error> {
        match error {
            StoreFailure::Guest(error) => Ok(error),
            StoreFailure::Trap(error) => Err(error),
        }
    }

    async fn open(&mut self, identifier: String) -> Result<Resource<Bucket>, StoreFailure> {
        use super::host::WitError as SpinError;
        let store = self.state.open(&identifier).map_err(|error| {
            StoreFailure::Guest(match error {
                SpinError::NoSuchStore => store::Error::NoSuchStore,
                SpinError::AccessDenied => store::Error::AccessDenied,
                // The WIT has no such case; Spin says the same.
                SpinError::StoreTableFull => store::Error::Other("store table full".into()),
                SpinError::Other(message) => store::Error::Other(message),
            })
        })?;
        match self.table.push(Bucket(store)) {
            Ok(handle) => Ok(handle),
            Err(error) => {
                self.state.closed();
                Err(error.into())
            }
        }
    }
}

impl store::HostBucket for KeyValueView<'_> {
    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        self.state.closed();
        Ok(())
    }

    async fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> Result<Option<Vec<u8>>, StoreFailure> {
        let (operation, _) = self.resolve(&bucket)?;
        Ok(timed(operation, "get", async |s| s.backend.get(&key).await).await?)
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), StoreFailure> {
        let (operation, _) = self.resolve(&bucket)?;
        Ok(timed(operation, "set", async |s| {
            s.backend.set(&key, &value).await
        })
        .await?)
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> Result<(), StoreFailure> {
        let (operation, _) = self.resolve(&bucket)?;
        Ok(timed(operation, "delete", async |s| s.backend.delete(&key).await).await?)
    }

    async fn exists(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> Result<bool, StoreFailure> {
        let (operation, _) = self.resolve(&bucket)?;
        Ok(timed(operation, "exists", async |s| s.backend.exists(&key).await).await?)
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<String>,
    ) -> Result<store::KeyResponse, StoreFailure> {
        if cursor.is_some() {
            return Err(StoreFailure::Guest(store::Error::Other(
                "list_keys: cursor not supported".into(),
            )));
        }
        let (operation, _) = self.resolve(&bucket)?;
        let keys = timed(operation, "list_keys", async |s| s.backend.keys().await).await?;
        Ok(store::KeyResponse { keys, cursor: None })
    }
}

impl atomics::Host for KeyValueView<'_> {
    fn convert_cas_error(&mut self, error: SwapFailure) -> wasmtime::Result<atomics::CasError> {
        match error {
            SwapFailure::Guest(error) => Ok(error),
            SwapFailure::Trap(error) => Err(error),
        }
    }

    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: i64,
    ) -> Result<i64, StoreFailure> {
        let (operation, _) = self.resolve(&bucket)?;
        Ok(timed(operation, "increment", async |s| {
            s.backend.increment(&key, delta).await
        })
        .await?)
    }

    async fn swap(
        &mut self,
        cas: Resource<CompareAndSwap>,
        value: Vec<u8>,
    ) -> Result<(), SwapFailure> {
        // The handle is consumed whatever happens.
        let CompareAndSwap {
            store,
            key,
            snapshot,
        } = self.table.delete(cas)?;
        self.state.open_swaps = self.state.open_swaps.saturating_sub(1);
        let operation = self.state.blocking_operation(store.clone());
        // On a conflict, the value found then is the next handle's snapshot.
        let conflict = timed(operation, "cas_swap", async |s| {
            if s.backend
                .compare_and_swap(&key, snapshot.as_deref(), &value)
                .await?
            {
                Ok(None)
            } else {
                s.backend.get(&key).await.map(Some)
            }
        })
        .await
        .map_err(|failed| SwapFailure::from(StoreFailure::from(failed)))?;
        let Some(current) = conflict else {
            return Ok(());
        };
        let next = self.keep_swap(CompareAndSwap {
            store,
            key,
            snapshot: current,
        })?;
        Err(SwapFailure::Guest(atomics::CasError::CasFailed(next)))
    }
}

impl atomics::HostCas for KeyValueView<'_> {
    async fn drop(&mut self, cas: Resource<CompareAndSwap>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        self.state.open_swaps = self.state.open_swaps.saturating_sub(1);
        Ok(())
    }

    async fn new(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> Result<Resource<CompareAndSwap>, StoreFailure> {
        let (operation, store) = self.resolve(&bucket)?;
        let snapshot = timed(operation, "cas_new", async |s| s.backend.get(&key).await).await?;
        self.keep_swap(CompareAndSwap {
            store,
            key,
            snapshot,
        })
    }

    async fn current(
        &mut self,
        cas: Resource<CompareAndSwap>,
    ) -> Result<Option<Vec<u8>>, StoreFailure> {
        Ok(self.table.get(&cas)?.snapshot.clone())
    }
}

impl batch::Host for KeyValueView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<Vec<(String, Option<Vec<u8>>)>, StoreFailure> {
        let (operation, _) = self.resolve(&bucket)?;
        let values = timed(operation, "get_many", async |s| {
            s.backend.get_many(&keys).await
        })
        .await?;
        Ok(keys.into_iter().zip(values).collect())
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Result<(), StoreFailure> {
        let (operation, _) = self.resolve(&bucket)?;
        Ok(timed(operation, "set_many", async |s| {
            s.backend.set_many(&key_values).await
        })
        .await?)
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<(), StoreFailure> {
        let (operation, _) = self.resolve(&bucket)?;
        Ok(timed(operation, "delete_many", async |s| {
            s.backend.delete_many(&keys).await
        })
        .await?)
    }
}

#[cfg(test)]
mod tests;
