//! Where heroes live: the key-value operations the registry needs, behind a
//! trait so the registry runs natively in unit tests against memory.
//!
//! On Spin (and hero-host) single reads and writes go through
//! `spin:key-value` (asynchronous), batches and compare-and-swap through
//! `wasi:keyvalue` 2024-10-17, both on the store labelled `default`, which
//! both runtimes back with the same data.

/// A key-value failure; the text is for the log, never for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The value under a key as a compare-and-swap saw it, and the handle that
/// stores a new value only if the key still holds that one.
pub struct Watched<H> {
    /// Passed back to [`KeyValue::swap`].
    pub handle: H,
    /// The value seen (`None`: absent).
    pub current: Option<Vec<u8>>,
}

/// How a [`KeyValue::swap`] ended.
pub enum Swapped<H> {
    /// The new value is stored.
    Done,
    /// The key held something else, now watched afresh.
    Conflict(Watched<H>),
}

/// The key-value operations the registry uses.
#[expect(
    async_fn_in_trait,
    reason = "the component is single-threaded; no caller needs Send futures"
)]
pub trait KeyValue {
    /// A compare-and-swap in progress.
    type Swap;

    /// The value under `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// The values under `keys`, in their order (`None` where absent).
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError>;
    /// Stores `value` under `key`, replacing what was there.
    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError>;
    /// Stores every pair (not atomically as a whole).
    async fn set_many(&self, pairs: &[(String, Vec<u8>)]) -> Result<(), StoreError>;
    /// Removes every key; absent ones are no error.
    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError>;
    /// Every key in the store, in no particular order (costly: only for
    /// indexing a store once).
    async fn keys(&self) -> Result<Vec<String>, StoreError>;
    /// Reads `key` for a compare-and-swap.
    async fn watch(&self, key: &str) -> Result<Watched<Self::Swap>, StoreError>;
    /// Stores `value` if the key still holds what [`KeyValue::watch`] saw.
    async fn swap(&self, swap: Self::Swap, value: &[u8])
    -> Result<Swapped<Self::Swap>, StoreError>;
}

impl<T: KeyValue> KeyValue for &T {
    type Swap = T::Swap;

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        (*self).get(key).await
    }
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        (*self).get_many(keys).await
    }
    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        (*self).set(key, value).await
    }
    async fn set_many(&self, pairs: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        (*self).set_many(pairs).await
    }
    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        (*self).delete_many(keys).await
    }
    async fn keys(&self) -> Result<Vec<String>, StoreError> {
        (*self).keys().await
    }
    async fn watch(&self, key: &str) -> Result<Watched<Self::Swap>, StoreError> {
        (*self).watch(key).await
    }
    async fn swap(
        &self,
        swap: Self::Swap,
        value: &[u8],
    ) -> Result<Swapped<Self::Swap>, StoreError> {
        (*self).swap(swap, value).await
    }
}

#[cfg(target_arch = "wasm32")]
pub use self::spin::SpinStore;

#[cfg(target_arch = "wasm32")]
mod spin {
    //! The store the component was granted, through both interfaces.

    use std::rc::Rc;

    // spin-sdk 7 generates the `wasi:keyvalue` bindings in this module.
    use spin_sdk::experimental::wasi::keyvalue::{atomics, batch, store as wasi};

    use super::{KeyValue, StoreError, Swapped, Watched};

    /// The Spin key-value store with one label, opened through both
    /// interfaces.
    #[derive(Clone)]
    pub struct SpinStore(Rc<Handles>);

    struct Handles {
        label: String,
        spin: spin_sdk::key_value::Store,
        wasi: wasi::Bucket,
    }

    thread_local! {
        /// The store opened by an earlier request on this instance: an
        /// instance serves many requests, and opening is a host call each time.
        static OPENED: std::cell::RefCell<Option<SpinStore>> = const { std::cell::RefCell::new(None) };
    }

    impl SpinStore {
        /// Opens the store with this label (`default` for the registry),
        /// reusing the handles this instance opened before. A failed open is
        /// not kept, so the next request tries again.
        pub async fn open(label: &str) -> Result<Self, StoreError> {
            let cached = OPENED.with_borrow(|opened| {
                opened
                    .as_ref()
                    .filter(|store| store.0.label == label)
                    .cloned()
            });
            if let Some(store) = cached {
                return Ok(store);
            }
            let spin = spin_sdk::key_value::Store::open(label)
                .await
                .map_err(|e| StoreError(format!("opening key-value store {label:?}: {e:?}")))?;
            let wasi = wasi::open(label).map_err(|e| {
                StoreError(format!("opening wasi:keyvalue bucket {label:?}: {e:?}"))
            })?;
            let store = SpinStore(Rc::new(Handles {
                label: label.to_owned(),
                spin,
                wasi,
            }));
            OPENED.with_borrow_mut(|opened| *opened = Some(store.clone()));
            Ok(store)
        }
    }

    fn failed(operation: &str, error: impl std::fmt::Debug) -> StoreError {
        StoreError(format!("key-value {operation}: {error:?}"))
    }

    impl KeyValue for SpinStore {
        type Swap = atomics::Cas;

        async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
            self.0.spin.get(key).await.map_err(|e| failed("get", e))
        }

        async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            let found = batch::get_many(&self.0.wasi, keys).map_err(|e| failed("get-many", e))?;
            // hero-host answers one entry per key, in order; Spin's SQLite
            // store answers only the keys it found, in any order.
            if found.len() == keys.len() && found.iter().zip(keys).all(|((k, _), key)| k == key) {
                return Ok(found.into_iter().map(|(_, value)| value).collect());
            }
            let mut by_key: std::collections::HashMap<String, Option<Vec<u8>>> =
                found.into_iter().collect();
            Ok(keys
                .iter()
                .map(|key| by_key.remove(key).flatten())
                .collect())
        }

        async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
            self.0
                .spin
                .set(key, value)
                .await
                .map_err(|e| failed("set", e))
        }

        async fn set_many(&self, pairs: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
            if pairs.is_empty() {
                return Ok(());
            }
            batch::set_many(&self.0.wasi, pairs).map_err(|e| failed("set-many", e))
        }

        async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
            if keys.is_empty() {
                return Ok(());
            }
            batch::delete_many(&self.0.wasi, keys).map_err(|e| failed("delete-many", e))
        }

        async fn keys(&self) -> Result<Vec<String>, StoreError> {
            self.0
                .spin
                .get_keys()
                .await
                .collect()
                .await
                .map_err(|e| failed("get-keys", e))
        }

        async fn watch(&self, key: &str) -> Result<Watched<Self::Swap>, StoreError> {
            let handle = atomics::Cas::new(&self.0.wasi, key).map_err(|e| failed("cas", e))?;
            let current = handle.current().map_err(|e| failed("cas current", e))?;
            Ok(Watched { handle, current })
        }

        async fn swap(
            &self,
            swap: Self::Swap,
            value: &[u8],
        ) -> Result<Swapped<Self::Swap>, StoreError> {
            match atomics::swap(swap, value) {
                Ok(()) => Ok(Swapped::Done),
                Err(atomics::CasError::CasFailed(handle)) => {
                    let current = handle.current().map_err(|e| failed("cas current", e))?;
                    Ok(Swapped::Conflict(Watched { handle, current }))
                }
                Err(atomics::CasError::StoreError(e)) => Err(failed("swap", e)),
            }
        }
    }
}

#[cfg(test)]
pub mod memory;
