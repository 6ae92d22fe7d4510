//! Writers racing on one executor, interleaved at every store call (a
//! different interleaving per seed): single-hero writes stay linearizable
//! and every list stays right.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use futures::executor::LocalPool;
use futures::task::LocalSpawnExt;

use super::{TestClock, assert_lists_are_right, hero, live_heroes, with};
use crate::hero::HeroId;
use crate::registry::Registry;
use crate::store::memory::MemoryStore;

/// Spawns `task` on `pool` with a registry of its own on `store`.
fn spawn<T: 'static>(
    pool: &LocalPool,
    store: &Rc<MemoryStore>,
    clock: &TestClock,
    out: &Rc<RefCell<Vec<T>>>,
    task: impl AsyncFnOnce(&Registry<'_, MemoryStore>) -> T + 'static,
) {
    let (store, clock, out) = (store.clone(), clock.clone(), out.clone());
    pool.spawner()
        .spawn_local(async move {
            let tick = || {
                clock.advance(Duration::from_micros(1));
                clock.now()
            };
            let registry = Registry::new(&*store, &tick);
            let result = task(&registry).await;
            out.borrow_mut().push(result);
        })
        .unwrap();
}

#[test]
fn racing_deletes_and_puts_on_one_hero_stay_linearizable() {
    for seed in 1..=300u64 {
        let (store, clock) = (Rc::new(MemoryStore::default()), TestClock::new());
        let (id, _) = with(&store, &clock, async |r| {
            r.create(hero("a", Some("A"))).await.unwrap()
        });
        store.interleave.set(seed);
        let mut pool = LocalPool::new();
        let deletes = Rc::new(RefCell::new(Vec::new()));
        let puts = Rc::new(RefCell::new(Vec::new()));
        for _ in 0..2 {
            spawn(&pool, &store, &clock, &deletes, async move |r| {
                r.remove(id).await.unwrap()
            });
        }
        spawn(&pool, &store, &clock, &puts, async move |r| {
            r.replace(id, hero("b", Some("B"))).await.unwrap().is_some()
        });
        pool.run();
        store.interleave.set(0);
        let deletes = deletes.borrow();
        assert_eq!(
            deletes.iter().filter(|deleted| **deleted).count(),
            1,
            "seed {seed}: exactly one DELETE answers 204: {deletes:?}"
        );
        let now = with(&store, &clock, async |r| r.read(id).await.unwrap());
        assert_eq!(
            now, None,
            "seed {seed}: an acknowledged DELETE stays deleted"
        );
        assert_lists_are_right(&store, &clock, 3);
    }
}

/// What a storm task did.
enum Done {
    Created(HeroId),
    Deleted(HeroId),
    Other,
}

#[test]
fn a_storm_of_writers_leaves_every_list_right() {
    for seed in 1..=12u64 {
        let (store, clock) = (Rc::new(MemoryStore::default()), TestClock::new());
        let mut ids = Vec::new();
        for i in 0..40 {
            let team = ["A", "B"].get(i % 3).copied();
            ids.push(
                with(&store, &clock, async |r| {
                    r.create(hero("pre", team)).await.unwrap()
                })
                .0,
            );
        }
        store.interleave.set(seed);
        let mut pool = LocalPool::new();
        let done = Rc::new(RefCell::new(Vec::new()));
        for n in 0..160usize {
            let pick = ids[(n * 7 + seed as usize) % ids.len()];
            let team = ["A", "B", "C"].get((n + seed as usize) % 4).copied();
            spawn(&pool, &store, &clock, &done, async move |r| match n % 4 {
                0 => Done::Created(r.create(hero("new", team)).await.unwrap().0),
                1 => match r.remove(pick).await.unwrap() {
                    true => Done::Deleted(pick),
                    false => Done::Other,
                },
                2 => {
                    r.replace(pick, hero("put", team)).await.unwrap();
                    Done::Other
                }
                _ => {
                    let page = crate::registry::Page {
                        limit: 20,
                        offset: 5,
                        team,
                    };
                    r.list(&page).await.unwrap();
                    Done::Other
                }
            });
        }
        pool.run();
        store.interleave.set(0);
        let mut expected: Vec<HeroId> = ids;
        for done in done.borrow().iter() {
            match done {
                Done::Created(id) => expected.push(*id),
                Done::Deleted(id) => expected.retain(|kept| kept != id),
                Done::Other => {}
            }
        }
        expected.sort_unstable();
        let live: Vec<HeroId> = live_heroes(&store).into_iter().map(|(id, _)| id).collect();
        assert_eq!(
            live, expected,
            "seed {seed}: acknowledged writes are what the store holds"
        );
        assert_lists_are_right(&store, &clock, 9);
        with(&store, &clock, async |r| r.fold().await.unwrap());
        assert_lists_are_right(&store, &clock, 9);
    }
}

/// A PUT that moves a hero to team B, paused between logging its intent and
/// its swap, while other PUTs move the hero to B and back to A with folds in
/// between: the value it read is back, byte for byte, so its swap succeeds.
/// Its intent must still be in the log then, or no list would know the hero
/// moved.
#[test]
fn a_paused_put_whose_value_comes_back_still_has_its_intent() {
    use crate::registry::codec::{Intent, Standing};
    use crate::registry::log::new_op;
    use crate::registry::writes::encode;
    use crate::store::{KeyValue, Swapped};

    let (store, clock) = (MemoryStore::default(), TestClock::new());
    let (id, _) = with(&store, &clock, async |r| {
        r.create(hero("a", Some("A"))).await.unwrap()
    });
    // The paused PUT: it read the hero and logged `A -> B`.
    let watched = with(&store, &clock, async |r| {
        let watched = store.watch(&id.key()).await.unwrap();
        let intent = Intent {
            op: new_op(),
            id: id.to_bytes(),
            at_ms: r.now_ms(),
            before: Standing::Live(Some("A".into())),
            after: Standing::Live(Some("B".into())),
            done: false,
        };
        r.log_intent(&intent).await.unwrap();
        watched
    });
    with(&store, &clock, async |r| {
        r.replace(id, hero("a", Some("B"))).await.unwrap().unwrap();
        r.fold().await.unwrap();
        r.replace(id, hero("a", Some("A"))).await.unwrap().unwrap();
        r.fold().await.unwrap();
    });
    // The paused PUT swaps now, against the value it read.
    let mut moved: crate::hero::Hero =
        serde_json::from_slice(watched.current.as_deref().unwrap()).unwrap();
    moved.team = Some("B".into());
    with(&store, &clock, async |_| {
        let swapped = store.swap(watched.handle, &encode(&moved)).await.unwrap();
        assert!(matches!(swapped, Swapped::Done), "the value came back");
    });
    assert_lists_are_right(&store, &clock, 1);
    with(&store, &clock, async |r| r.fold().await.unwrap());
    assert_lists_are_right(&store, &clock, 1);
}
