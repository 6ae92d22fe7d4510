//! `fermyon:spin/key-value@2.0.0` on the key-value stores: the same labels,
//! metrics and failure reports as `spin:key-value@3.0.0`.

use wasmtime::component::Resource;

use super::kv2::{Error, Host, HostStore};
use crate::kv::host::{KeyValueView, KvError, StoreHandle, WitError, timed};

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
        let operation = self.operation(&handle);
        convert(match operation {
            Ok(op) => timed(op, "get", async |s| s.backend.get(&key).await)
                .await
                .map_err(KvError::from),
            Err(error) => Err(error),
        })
    }

    async fn set(
        &mut self,
        handle: Resource<StoreHandle>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        let operation = self.operation(&handle);
        convert(match operation {
            Ok(op) => timed(op, "set", async |s| s.backend.set(&key, &value).await)
                .await
                .map_err(KvError::from),
            Err(error) => Err(error),
        })
    }

    async fn delete(
        &mut self,
        handle: Resource<StoreHandle>,
        key: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        let operation = self.operation(&handle);
        convert(match operation {
            Ok(op) => timed(op, "delete", async |s| s.backend.delete(&key).await)
                .await
                .map_err(KvError::from),
            Err(error) => Err(error),
        })
    }

    async fn exists(
        &mut self,
        handle: Resource<StoreHandle>,
        key: String,
    ) -> wasmtime::Result<Result<bool, Error>> {
        let operation = self.operation(&handle);
        convert(match operation {
            Ok(op) => timed(op, "exists", async |s| s.backend.exists(&key).await)
                .await
                .map_err(KvError::from),
            Err(error) => Err(error),
        })
    }

    async fn get_keys(
        &mut self,
        handle: Resource<StoreHandle>,
    ) -> wasmtime::Result<Result<Vec<String>, Error>> {
        let operation = self.operation(&handle);
        convert(match operation {
            Ok(op) => timed(op, "get_keys", async |s| s.backend.keys().await)
                .await
                .map_err(KvError::from),
            Err(error) => Err(error),
        })
    }

    async fn drop(&mut self, handle: Resource<StoreHandle>) -> wasmtime::Result<()> {
        self.close_handle(handle)
    }
}
