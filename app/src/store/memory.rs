//! An in-memory store for unit tests: compare-and-swap as the hosts do it,
//! switchable failure, a write budget after which everything fails (a host
//! killed between two writes), and optional yields before every operation so
//! that operations run concurrently on one executor interleave at each store
//! call.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::{KeyValue, StoreError, Swapped, Watched};

/// A `BTreeMap` behind the store trait.
#[derive(Default)]
pub struct MemoryStore {
    /// The stored pairs.
    pub map: RefCell<BTreeMap<String, Vec<u8>>>,
    /// When set, every operation fails.
    pub broken: Cell<bool>,
    /// Writes that may still happen; once spent, every operation fails, as
    /// if the host had been killed. `None`: unlimited.
    pub writes_left: Cell<Option<usize>>,
    /// Yield to the executor before each operation (see the module docs):
    /// 0 never; otherwise the seed of a generator choosing 0 to 2 yields.
    pub interleave: Cell<u64>,
    /// Operations so far (reads and writes), to check what a request costs.
    pub operations: Cell<usize>,
    /// Values read so far (one per key read).
    pub values_read: Cell<usize>,
}

/// The snapshot a memory compare-and-swap compares with.
pub struct MemorySwap {
    key: String,
    seen: Option<Vec<u8>>,
}

impl MemoryStore {
    async fn enter(&self) -> Result<(), StoreError> {
        let seed = self.interleave.get();
        if seed != 0 {
            // xorshift64: a different interleaving per seed, the same per run.
            let mut next = seed;
            next ^= next << 13;
            next ^= next >> 7;
            next ^= next << 17;
            self.interleave.set(next);
            for _ in 0..next % 3 {
                YieldOnce(false).await;
            }
        }
        self.operations.set(self.operations.get() + 1);
        if self.broken.get() || self.writes_left.get() == Some(0) {
            Err(StoreError("store unreachable".into()))
        } else {
            Ok(())
        }
    }

    fn spend_write(&self) -> Result<(), StoreError> {
        match self.writes_left.get() {
            Some(0) => Err(StoreError("store unreachable".into())),
            Some(n) => {
                self.writes_left.set(Some(n - 1));
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn read(&self, key: &str) -> Option<Vec<u8>> {
        self.values_read.set(self.values_read.get() + 1);
        self.map.borrow().get(key).cloned()
    }
}

/// Pending once, then ready: lets other tasks of the executor run.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

impl KeyValue for MemoryStore {
    type Swap = MemorySwap;

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.enter().await?;
        Ok(self.read(key))
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.enter().await?;
        Ok(keys.iter().map(|key| self.read(key)).collect())
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.enter().await?;
        self.spend_write()?;
        self.map.borrow_mut().insert(key.into(), value.into());
        Ok(())
    }

    async fn set_many(&self, pairs: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        self.enter().await?;
        self.spend_write()?;
        let mut map = self.map.borrow_mut();
        for (key, value) in pairs {
            map.insert(key.clone(), value.clone());
        }
        Ok(())
    }

    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        self.enter().await?;
        self.spend_write()?;
        let mut map = self.map.borrow_mut();
        for key in keys {
            map.remove(key);
        }
        Ok(())
    }

    async fn keys(&self) -> Result<Vec<String>, StoreError> {
        self.enter().await?;
        Ok(self.map.borrow().keys().cloned().collect())
    }

    async fn watch(&self, key: &str) -> Result<Watched<MemorySwap>, StoreError> {
        self.enter().await?;
        let seen = self.read(key);
        Ok(Watched {
            handle: MemorySwap {
                key: key.to_owned(),
                seen: seen.clone(),
            },
            current: seen,
        })
    }

    async fn swap(
        &self,
        swap: MemorySwap,
        value: &[u8],
    ) -> Result<Swapped<MemorySwap>, StoreError> {
        self.enter().await?;
        let current = self.map.borrow().get(&swap.key).cloned();
        if current != swap.seen {
            return Ok(Swapped::Conflict(Watched {
                handle: MemorySwap {
                    key: swap.key,
                    seen: current.clone(),
                },
                current,
            }));
        }
        self.spend_write()?;
        self.map.borrow_mut().insert(swap.key, value.into());
        Ok(Swapped::Done)
    }
}
