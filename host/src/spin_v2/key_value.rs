//! `fermyon:spin/key-value@2.0.0` on the key-value stores: the same labels,
//! metrics and failure reports as `spin:key-value@3.0.0`.

use wasmtime::component::Resource;

use super::kv2::{Error, Host, HostStore};
use crate::kv::host::{KeyValueView, KvError, Operation, StoreHandle, WitError, timed};
use crate::kv::{LabeledStore, StoreError};

/// A v3 error in this version's type; a host bug stays a trap.
fn convert<T>(result: Result<T, KvError>) -> wasmtime::Result<Result<T, Error>> {
    match result {
        Ok(value) => Ok(Ok(value)),
        Err(KvError::Trap(error)) => Err(error),
        Err(KvError::Guest(error)) => Ok(Err(match error {
            WitError::StoreTableFull => Error::StoreTableFull,
            WitError::NoSuchStore => Error::NoSuchStore,
            WitError::AccessDenied => Error::AccessDenied,
            WitError::Other(text) => Error::Other(text),
        })),
    }
}

/// Runs `run` on the store of a resolved handle as the timed operation
/// `name`; the outcome, or why the handle did not resolve, in this version's
/// types.
async fn run_timed<R>(
    operation: Result<Operation, KvError>,
    name: &'static str,
    run: impl AsyncFnOnce(&LabeledStore) -> Result<R, StoreError>,
) -> wasmtime::Result<Result<R, Error>> {
    convert(match operation {
        Ok(op) => timed(op, name, run).await.map_err(KvError::from),
        Err(error) => Err(error),
    })
}

impl Host for KeyValueView<'_> {}

impl HostStore for KeyValueView<'_> {
    async fn open(
        &mut self,
        label: String,
    ) -> wasmtime::Result<Result<Resource<StoreHandle>, Error>> {
        convert(self.open_handle(&label))
    }

    async fn get(
        &mut self,
        handle: Resource<StoreHandle>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        run_timed(self.operation(&handle), "get", async |s| {
            s.backend.get(&key).await
        })
        .await
    }

    async fn set(
        &mut self,
        handle: Resource<StoreHandle>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        run_timed(self.operation(&handle), "set", async |s| {
            s.backend.set(&key, &value).await
        })
        .await
    }

    async fn delete(
        &mut self,
        handle: Resource<StoreHandle>,
        key: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        run_timed(self.operation(&handle), "delete", async |s| {
            s.backend.delete(&key).await
        })
        .await
    }

    async fn exists(
        &mut self,
        handle: Resource<StoreHandle>,
        key: String,
    ) -> wasmtime::Result<Result<bool, Error>> {
        run_timed(self.operation(&handle), "exists", async |s| {
            s.backend.exists(&key).await
        })
        .await
    }

    async fn get_keys(
        &mut self,
        handle: Resource<StoreHandle>,
    ) -> wasmtime::Result<Result<Vec<String>, Error>> {
        run_timed(self.operation(&handle), "get_keys", async |s| {
            s.backend.keys().await
        })
        .await
    }

    async fn drop(&mut self, handle: Resource<StoreHandle>) -> wasmtime::Result<()> {
        self.close_handle(handle)
    }
}
