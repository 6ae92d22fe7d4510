//! A host killed between any two writes: every list is still right at
//! once, and later requests finish the job by themselves.

use std::time::Duration;

use super::{TestClock, assert_lists_are_right, hero, live_heroes, log_of, with};
use crate::registry::{FOLD_EVERY, GRACE_MS};
use crate::store::memory::MemoryStore;

/// Creates, moves and deletes heroes, enough to fold; stops at the first
/// failure (the host is dead).
fn scenario(store: &MemoryStore, clock: &TestClock) {
    let _ = with(store, clock, async |r| {
        let mut ids = Vec::new();
        for i in 0..(FOLD_EVERY + 5) {
            let team = ["A", "B"].get(i as usize % 3).copied();
            ids.push(r.create(hero("h", team)).await?.0);
        }
        for (n, id) in ids.iter().enumerate().step_by(5) {
            if n % 2 == 0 {
                r.remove(*id).await?;
            } else {
                r.replace(*id, hero("moved", Some("C"))).await?;
            }
        }
        Ok::<_, crate::error::ApiError>(())
    });
}

/// Requests after the restart: more writes (so folds run), then time.
fn aftermath(store: &MemoryStore, clock: &TestClock) {
    for _ in 0..FOLD_EVERY {
        with(store, clock, async |r| {
            r.create(hero("later", Some("A"))).await.unwrap()
        });
    }
    assert_lists_are_right(store, clock, 11);
    clock.advance(Duration::from_millis(GRACE_MS + 1));
    with(store, clock, async |r| r.fold().await.unwrap());
    assert_lists_are_right(store, clock, 11);
    assert!(log_of(store).intents.is_empty(), "{:?}", log_of(store));
}

#[test]
fn a_host_killed_between_any_two_writes_leaves_every_list_right() {
    let (store, clock) = (MemoryStore::default(), TestClock::new());
    store.writes_left.set(Some(usize::MAX));
    scenario(&store, &clock);
    let writes = usize::MAX - store.writes_left.get().unwrap();
    assert!(writes > 80, "{writes}");
    for killed_after in 0..writes {
        let (store, clock) = (MemoryStore::default(), TestClock::new());
        store.writes_left.set(Some(killed_after));
        scenario(&store, &clock);
        store.writes_left.set(None);
        assert_lists_are_right(&store, &clock, 11);
        aftermath(&store, &clock);
    }
}

#[test]
fn a_host_killed_while_indexing_an_old_store_leaves_it_to_the_next_request() {
    for killed_after in 0..6 {
        let (store, clock) = (MemoryStore::default(), TestClock::new());
        super::seed_unindexed(&store, &clock, 700);
        let heroes = live_heroes(&store).len();
        store.writes_left.set(Some(killed_after));
        let _ = with(&store, &clock, async |r| {
            r.create(hero("first", None)).await
        });
        store.writes_left.set(None);
        // Lists are right while the lease of the dead builder holds (they
        // read every hero), and after it expires (the next request builds).
        assert_lists_are_right(&store, &clock, 250);
        clock.advance(Duration::from_millis(crate::registry::LEASE_MS + 1));
        assert_lists_are_right(&store, &clock, 250);
        assert!(log_of(&store).indexing.is_none());
        assert!(live_heroes(&store).len() >= heroes, "no hero lost");
        aftermath(&store, &clock);
    }
}
