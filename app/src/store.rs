//! Where heroes live: the key-value operations the handlers need, behind a
//! trait so the handlers run natively in unit tests against memory.

/// A key-value failure; the text is for the log, never for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The key-value operations of `spin:key-value`, as the registry uses them.
#[expect(
    async_fn_in_trait,
    reason = "the component is single-threaded; no caller needs Send futures"
)]
pub trait KeyValue {
    /// The value under `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Stores `value` under `key`, replacing what was there.
    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError>;
    /// Removes `key`; no error if it is absent.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Every key in the store, in no particular order.
    async fn keys(&self) -> Result<Vec<String>, StoreError>;
}

/// The Spin key-value store the component was granted.
pub struct SpinStore(std::rc::Rc<spin_sdk::key_value::Store>);

thread_local! {
    /// The store opened by an earlier request on this instance: an instance
    /// serves many requests, and opening is a host call each time.
    static OPENED: std::cell::RefCell<Option<(String, std::rc::Rc<spin_sdk::key_value::Store>)>> =
        const { std::cell::RefCell::new(None) };
}

impl SpinStore {
    /// Opens the store with this label (`default` for the registry), reusing
    /// the handle this instance opened before. A failed open is not kept, so
    /// the next request tries again.
    pub async fn open(label: &str) -> Result<Self, StoreError> {
        let cached = OPENED.with_borrow(|opened| match opened {
            Some((opened_label, store)) if opened_label == label => Some(store.clone()),
            _ => None,
        });
        if let Some(store) = cached {
            return Ok(SpinStore(store));
        }
        let store = spin_sdk::key_value::Store::open(label)
            .await
            .map(std::rc::Rc::new)
            .map_err(|e| StoreError(format!("opening key-value store {label:?}: {e:?}")))?;
        OPENED.with_borrow_mut(|opened| *opened = Some((label.to_owned(), store.clone())));
        Ok(SpinStore(store))
    }
}

fn kv_error(operation: &str, error: spin_sdk::key_value::Error) -> StoreError {
    StoreError(format!("key-value {operation}: {error:?}"))
}

impl KeyValue for SpinStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.get(key).await.map_err(|e| kv_error("get", e))
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.0.set(key, value).await.map_err(|e| kv_error("set", e))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.0.delete(key).await.map_err(|e| kv_error("delete", e))
    }

    async fn keys(&self) -> Result<Vec<String>, StoreError> {
        self.0
            .get_keys()
            .await
            .collect()
            .await
            .map_err(|e| kv_error("get-keys", e))
    }
}

#[cfg(test)]
pub mod memory {
    //! An in-memory store for unit tests, with switchable failure.

    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;

    use super::{KeyValue, StoreError};

    /// A `HashMap` behind the store trait.
    #[derive(Default)]
    pub struct MemoryStore {
        /// The stored pairs.
        pub map: RefCell<HashMap<String, Vec<u8>>>,
        /// When set, every operation fails.
        pub broken: Cell<bool>,
    }

    impl MemoryStore {
        fn check(&self) -> Result<(), StoreError> {
            if self.broken.get() {
                Err(StoreError("store unreachable".into()))
            } else {
                Ok(())
            }
        }
    }

    impl KeyValue for MemoryStore {
        async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
            self.check()?;
            Ok(self.map.borrow().get(key).cloned())
        }

        async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
            self.check()?;
            self.map.borrow_mut().insert(key.into(), value.into());
            Ok(())
        }

        async fn delete(&self, key: &str) -> Result<(), StoreError> {
            self.check()?;
            self.map.borrow_mut().remove(key);
            Ok(())
        }

        async fn keys(&self) -> Result<Vec<String>, StoreError> {
            self.check()?;
            Ok(self.map.borrow().keys().cloned().collect())
        }
    }
}
