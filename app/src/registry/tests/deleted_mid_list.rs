//! A delete that lands between a list's read of the index and its read of
//! the page's heroes: the page is still full, without the deleted hero (a
//! client paging through takes a short page for the last one). A team's
//! leaves carry ids alone, so its list reads the page's heroes; the leaves of
//! every hero carry their values, and that list reads no hero to race with.

use std::cell::Cell;
use std::time::Duration;

use futures::executor::block_on;

use super::{TestClock, hero, ids_of, with};
use crate::hero::HeroId;
use crate::registry::{Page, Registry};
use crate::store::memory::MemoryStore;
use crate::store::{KeyValue, StoreError, Swapped, Watched};

/// The memory store, except that the first read of several keys that
/// include `doomed`'s (a list reading its page's heroes) first deletes that
/// hero through a registry of its own, as a concurrent DELETE would.
struct DeletesMidList<'a> {
    inner: &'a MemoryStore,
    clock: &'a TestClock,
    doomed: HeroId,
    fired: Cell<bool>,
}

impl KeyValue for DeletesMidList<'_> {
    type Swap = <MemoryStore as KeyValue>::Swap;

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key).await
    }
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if !self.fired.get() && keys.len() > 2 && keys.contains(&self.doomed.key()) {
            self.fired.set(true);
            let tick = || {
                self.clock.advance(Duration::from_micros(1));
                self.clock.now()
            };
            let deleted = Registry::new(self.inner, &tick).remove(self.doomed).await;
            assert!(deleted.unwrap(), "the racing DELETE answers 204");
        }
        self.inner.get_many(keys).await
    }
    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.inner.set(key, value).await
    }
    async fn set_many(&self, pairs: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        self.inner.set_many(pairs).await
    }
    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        self.inner.delete_many(keys).await
    }
    async fn keys(&self) -> Result<Vec<String>, StoreError> {
        self.inner.keys().await
    }
    async fn watch(&self, key: &str) -> Result<Watched<Self::Swap>, StoreError> {
        self.inner.watch(key).await
    }
    async fn swap(
        &self,
        swap: Self::Swap,
        value: &[u8],
    ) -> Result<Swapped<Self::Swap>, StoreError> {
        self.inner.swap(swap, value).await
    }
}

#[test]
fn a_hero_deleted_while_its_page_is_read_leaves_the_page_full() {
    let (store, clock) = (MemoryStore::default(), TestClock::new());
    let ids: Vec<HeroId> = (0..30)
        .map(|_| {
            with(&store, &clock, async |r| {
                r.create(hero("h", Some("T"))).await.unwrap()
            })
            .0
        })
        .collect();
    // Folded into the index: the list reads ids from its leaves, and heroes
    // only for its page.
    with(&store, &clock, async |r| r.fold().await.unwrap());
    let racing = DeletesMidList {
        inner: &store,
        clock: &clock,
        doomed: ids[3],
        fired: Cell::new(false),
    };
    let tick = || {
        clock.advance(Duration::from_micros(1));
        clock.now()
    };
    let page = Page {
        limit: 20,
        offset: 0,
        team: Some("T"),
    };
    let body = block_on(Registry::new(&racing, &tick).list(&page)).unwrap();
    assert!(racing.fired.get(), "the delete landed inside the list");
    let expected: Vec<HeroId> = ids
        .iter()
        .filter(|id| **id != ids[3])
        .take(20)
        .copied()
        .collect();
    assert_eq!(
        ids_of(&body),
        expected,
        "a full page, without the deleted hero"
    );
}
