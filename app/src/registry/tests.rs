//! The data model against the in-memory store: pages across leaves, what a
//! list costs, writes that show at once, folding, indexing an old store;
//! racing writers (`races`), hosts killed between two writes (`crashes`),
//! and a delete landing inside a list's read (`deleted_mid_list`).

mod crashes;
mod deleted_mid_list;
mod races;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::executor::block_on;
use serde_json::Value;

use super::codec::{LOG_KEY, Log, decode_log, encode_first_format, encode_log};
use super::{FOLD_EVERY, GRACE_MS, Page, Registry, TOMBSTONE};
use crate::error::ApiError;
use crate::hero::{Hero, HeroId, NewHero};
use crate::store::memory::MemoryStore;

/// A clock tests move by hand.
#[derive(Clone)]
pub struct TestClock(Rc<Cell<SystemTime>>);

impl TestClock {
    pub fn new() -> Self {
        TestClock(Rc::new(Cell::new(
            UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        )))
    }

    pub fn advance(&self, by: Duration) {
        self.0.set(self.0.get() + by);
    }

    pub fn now(&self) -> SystemTime {
        self.0.get()
    }
}

pub fn hero(name: &str, team: Option<&str>) -> NewHero {
    NewHero {
        name: name.into(),
        power: "flight".into(),
        team: team.map(Into::into),
    }
}

/// Runs `f` with a registry on `store` telling time by `clock` (each call
/// advances it by a microsecond, so ids follow the order of calls).
pub fn with<T>(
    store: &MemoryStore,
    clock: &TestClock,
    f: impl AsyncFnOnce(&Registry<'_, MemoryStore>) -> T,
) -> T {
    let tick = || {
        clock.advance(Duration::from_micros(1));
        clock.now()
    };
    block_on(f(&Registry::new(store, &tick)))
}

/// The live heroes as the hero keys hold them, in id order: the truth lists
/// must show.
pub fn live_heroes(store: &MemoryStore) -> Vec<(HeroId, Option<String>)> {
    store
        .map
        .borrow()
        .iter()
        .filter_map(|(key, value)| Some((HeroId::from_key(key)?, value)))
        .filter(|(_, value)| value.as_slice() != TOMBSTONE)
        .map(|(id, value)| {
            let hero: Hero = serde_json::from_slice(value).unwrap();
            (id, hero.team)
        })
        .collect()
}

/// The ids a list answered.
pub fn ids_of(body: &[u8]) -> Vec<HeroId> {
    let heroes: Vec<Value> = serde_json::from_slice(body).unwrap();
    heroes
        .iter()
        .map(|hero| HeroId::parse(hero["id"].as_str().unwrap()).unwrap())
        .collect()
}

/// Pages through every list (all heroes, each team) `step` at a time and
/// checks each shows exactly the live heroes, in id order, each as its key
/// holds it now.
pub fn assert_lists_are_right(store: &MemoryStore, clock: &TestClock, step: usize) {
    let truth = live_heroes(store);
    let stored: BTreeMap<HeroId, Value> = truth
        .iter()
        .map(|(id, _)| {
            let value = &store.map.borrow()[&id.key()];
            (*id, serde_json::from_slice(value).unwrap())
        })
        .collect();
    let mut teams: BTreeMap<Option<&str>, Vec<HeroId>> = BTreeMap::new();
    for (id, team) in &truth {
        teams.entry(None).or_default().push(*id);
        if let Some(team) = team {
            teams.entry(Some(team)).or_default().push(*id);
        }
    }
    teams.entry(None).or_default();
    for (team, expected) in teams {
        let mut listed = Vec::new();
        loop {
            let page = Page {
                limit: step,
                offset: listed.len(),
                team,
            };
            let body = with(store, clock, async |r| r.list(&page).await.unwrap());
            let ids = ids_of(&body);
            let heroes: Vec<Value> = serde_json::from_slice(&body).unwrap();
            for (id, hero) in ids.iter().zip(&heroes) {
                assert_eq!(
                    Some(hero),
                    stored.get(id),
                    "the list of {team:?} shows {id:?} as stored"
                );
            }
            let done = ids.len() < step;
            listed.extend(ids);
            if done {
                break;
            }
        }
        assert_eq!(listed, expected, "the list of {team:?}");
    }
}

/// Creates `count` heroes named `h0`, `h1`, … in `team`; their ids.
fn create_heroes(
    store: &MemoryStore,
    clock: &TestClock,
    count: u32,
    team: Option<&str>,
) -> Vec<HeroId> {
    (0..count)
        .map(|i| {
            let created = with(store, clock, async |r| {
                r.create(hero(&format!("h{i}"), team)).await.unwrap()
            });
            created.0
        })
        .collect()
}

/// How many values a list of `page` reads.
fn values_a_list_reads(store: &MemoryStore, clock: &TestClock, page: &Page<'_>) -> usize {
    store.values_read.set(0);
    let body = with(store, clock, async |r| r.list(page).await.unwrap());
    assert_eq!(ids_of(&body).len(), page.limit, "a full page");
    store.values_read.get()
}

pub fn log_of(store: &MemoryStore) -> Log {
    decode_log(&store.map.borrow()[LOG_KEY]).unwrap()
}

#[test]
fn pages_come_in_creation_order_across_leaves_and_teams() {
    let (store, clock) = (MemoryStore::default(), TestClock::new());
    for i in 0..2_600 {
        let team = ["X", "Y", "Z"][i % 3];
        with(&store, &clock, async |r| {
            r.create(hero(&format!("h{i}"), (i % 4 != 0).then_some(team)))
                .await
                .unwrap()
        });
    }
    assert_lists_are_right(&store, &clock, 317);
    assert!(
        log_of(&store).intents.len() < 2 * FOLD_EVERY as usize,
        "folds keep the log short"
    );
    let dir = store.map.borrow()["heroes:all"].clone();
    let dir = super::codec::decode_directory("heroes:all", &dir).unwrap();
    assert!(dir.leaves.len() >= 3, "the set spans leaves: {dir:?}");
}

#[test]
fn a_log_in_the_first_format_is_read_then_rewritten_by_the_next_write() {
    let (store, clock) = (MemoryStore::default(), TestClock::new());
    for i in 0..FOLD_EVERY + 8 {
        let team = ["X", "Y"][i as usize % 2];
        with(&store, &clock, async |r| {
            r.create(hero(&format!("h{i}"), Some(team))).await.unwrap()
        });
    }
    // The same log as the first indexing version would have stored it.
    let log = log_of(&store);
    assert!(log.intents.len() >= 8, "intents still to fold: {log:?}");
    let first = encode_first_format(&log);
    assert_ne!(first, encode_log(&log));
    store.map.borrow_mut().insert(LOG_KEY.into(), first);
    assert_lists_are_right(&store, &clock, 7);
    with(&store, &clock, async |r| {
        r.create(hero("after", Some("X"))).await.unwrap()
    });
    let stored = store.map.borrow()[LOG_KEY].clone();
    let mut expected = log.intents.clone();
    expected.push(log_of(&store).intents.last().unwrap().clone());
    assert_eq!(
        stored,
        encode_log(&log_of(&store)),
        "rewritten in this format"
    );
    assert_eq!(log_of(&store).intents, expected, "no intent lost");
    assert_lists_are_right(&store, &clock, 7);
}

/// Writes `count` heroes as the previous version did (hero keys only), in
/// teams `T` and `U` alternately; their ids in order.
pub fn seed_unindexed(store: &MemoryStore, clock: &TestClock, count: u64) -> Vec<HeroId> {
    let mut ids = Vec::new();
    for i in 0..count {
        let at = clock.now() + Duration::from_millis(i);
        let id = HeroId::generate(at);
        let team = ["T", "U"][i as usize % 2];
        let value = serde_json::to_vec(&Hero::new(id, hero("old", Some(team)), at)).unwrap();
        store.map.borrow_mut().insert(id.key(), value);
        ids.push(id);
    }
    ids
}

#[test]
fn a_list_reads_its_page_whatever_the_store_holds() {
    let costs = |size: u64| {
        let (store, clock) = (MemoryStore::default(), TestClock::new());
        seed_unindexed(&store, &clock, size);
        // Indexed by the first request; then a few writes left in the log.
        for i in 0..10 {
            with(&store, &clock, async |r| {
                r.create(hero(&format!("new{i}"), Some("T"))).await.unwrap()
            });
        }
        let size = size as usize;
        let mut costs = Vec::new();
        for (offset, team) in [(0, None), (size / 2, None), (size / 2 - 150, Some("T"))] {
            store.values_read.set(0);
            store.operations.set(0);
            let page = Page {
                limit: 100,
                offset,
                team,
            };
            let body = with(&store, &clock, async |r| r.list(&page).await.unwrap());
            assert_eq!(ids_of(&body).len(), 100);
            costs.push((store.values_read.get(), store.operations.get()));
        }
        costs
    };
    let small = costs(3_000);
    let large = costs(30_000);
    for ((values, calls), (small_values, _)) in large.iter().zip(&small) {
        // The page (100), the log and a directory, a leaf or two, and the
        // heroes of pending intents (fewer than a fold's worth).
        assert!(*values <= 100 + 4 + FOLD_EVERY as usize, "{large:?}");
        assert!(*calls <= 6, "{large:?}");
        assert!(values.abs_diff(*small_values) <= 2, "{small:?} {large:?}");
    }
}

#[test]
fn deletes_and_team_changes_show_at_once_and_after_folding() {
    let (store, clock) = (MemoryStore::default(), TestClock::new());
    let ids = create_heroes(&store, &clock, 3 * FOLD_EVERY, Some("A"));
    assert_lists_are_right(&store, &clock, 10);
    for (n, id) in ids.iter().enumerate().step_by(3) {
        with(&store, &clock, async |r| {
            if n % 2 == 0 {
                assert!(r.remove(*id).await.unwrap());
            } else {
                r.replace(*id, hero("moved", Some("B")))
                    .await
                    .unwrap()
                    .unwrap();
            }
        });
        assert_lists_are_right(&store, &clock, 7);
    }
    for _ in 0..3 {
        with(&store, &clock, async |r| r.fold().await.unwrap());
    }
    assert_lists_are_right(&store, &clock, 7);
    assert!(log_of(&store).intents.is_empty(), "every intent finished");
    let tombstones = store
        .map
        .borrow()
        .values()
        .filter(|v| v.as_slice() == TOMBSTONE)
        .count();
    assert_eq!(tombstones, 0, "folded tombstones are removed");
    let deleted = ids[0];
    let gone = with(&store, &clock, async |r| r.read(deleted).await.unwrap());
    assert_eq!(gone, None);
}

#[test]
fn a_list_of_every_hero_copies_its_page_out_of_the_leaves() {
    let (store, clock) = (MemoryStore::default(), TestClock::new());
    create_heroes(&store, &clock, 1_000, Some("T"));
    let team_most = 104 + FOLD_EVERY as usize;
    for (offset, team, most) in [(0, None, 4), (450, None, 4), (0, Some("T"), team_most)] {
        let page = Page {
            limit: 100,
            offset,
            team,
        };
        // The log and the directory, then one or two leaves; a team's
        // leaves carry ids alone, so its list reads its page's heroes too,
        // and those of pending intents in its one leaf.
        let read = values_a_list_reads(&store, &clock, &page);
        assert!(read <= most, "{offset} {team:?}: {read} values read");
    }
    assert_lists_are_right(&store, &clock, 97);
}

#[test]
fn heroes_created_in_order_leave_full_leaves_behind_that_no_fold_rewrites() {
    let (store, clock) = (MemoryStore::default(), TestClock::new());
    let directory = |store: &MemoryStore| {
        let key = super::codec::SetName::Team("T").key();
        super::codec::decode_directory(&key, &store.map.borrow()[&key]).unwrap()
    };
    create_heroes(&store, &clock, 2_100, Some("T"));
    with(&store, &clock, async |r| r.fold().await.unwrap());
    let before = directory(&store);
    let counts: Vec<u32> = before.leaves.iter().map(|leaf| leaf.count).collect();
    assert_eq!(counts, [1024, 1024, 52], "full leaves first, the rest last");
    create_heroes(&store, &clock, 100, Some("T"));
    with(&store, &clock, async |r| r.fold().await.unwrap());
    let after = directory(&store);
    assert_eq!(
        after.leaves[..2],
        before.leaves[..2],
        "the full leaves kept"
    );
    assert_eq!(after.leaves[2].count, 152, "the small last one grew alone");
    assert_lists_are_right(&store, &clock, 301);
}

#[test]
fn renames_show_at_once_and_after_folding() {
    let (store, clock) = (MemoryStore::default(), TestClock::new());
    let ids = create_heroes(&store, &clock, 3 * FOLD_EVERY, Some("A"));
    with(&store, &clock, async |r| r.fold().await.unwrap());
    for (n, id) in ids.iter().enumerate().step_by(2) {
        let team = if n % 4 == 0 { Some("A") } else { None };
        with(&store, &clock, async |r| {
            r.replace(*id, hero(&format!("renamed {n}"), team))
                .await
                .unwrap()
                .unwrap()
        });
        assert_lists_are_right(&store, &clock, 9);
    }
    for _ in 0..3 {
        with(&store, &clock, async |r| r.fold().await.unwrap());
    }
    assert!(log_of(&store).intents.is_empty(), "every intent finished");
    assert_lists_are_right(&store, &clock, 9);
    let page = Page {
        limit: 3 * FOLD_EVERY as usize,
        offset: 0,
        team: None,
    };
    let read = values_a_list_reads(&store, &clock, &page);
    assert!(read <= 4, "the leaves carry the new names: {read} read");
}

#[test]
fn an_index_whose_leaves_carry_no_values_comes_to_carry_them_a_few_leaves_a_fold() {
    use super::codec::{decode_directory, decode_leaf, encode, encode_leaf};
    use super::fold::BARE_LEAVES_PER_FOLD;

    let (store, clock) = (MemoryStore::default(), TestClock::new());
    create_heroes(&store, &clock, 3_000, Some("T"));
    // As the version before values wrote it: leaves of ids alone, and the
    // directory in postcard.
    let bare_leaves = |store: &MemoryStore| {
        let map = store.map.borrow();
        let dir = decode_directory("heroes:all", &map["heroes:all"]).unwrap();
        dir.leaves
            .iter()
            .filter(|leaf| !leaf.carries_values)
            .count()
    };
    {
        let mut map = store.map.borrow_mut();
        let dir = decode_directory("heroes:all", &map["heroes:all"]).unwrap();
        for leaf in &dir.leaves {
            let key = leaf.store_key();
            let read = decode_leaf(&key, map[&key].clone()).unwrap();
            let ids: Vec<_> = read.ids().map(|id| (id, None)).collect();
            map.insert(key, encode_leaf(&ids));
        }
        map.insert("heroes:all".into(), encode(&dir));
    }
    let leaves = bare_leaves(&store);
    assert!(leaves > 2 * BARE_LEAVES_PER_FOLD, "{leaves} leaves");
    assert_lists_are_right(&store, &clock, 211);
    let page = Page {
        limit: 100,
        offset: 1_500,
        team: None,
    };
    let read = values_a_list_reads(&store, &clock, &page);
    assert!(read > 100, "the heroes are read: {read}");
    for folds in 1..=leaves.div_ceil(BARE_LEAVES_PER_FOLD) {
        with(&store, &clock, async |r| r.fold().await.unwrap());
        let left = leaves.saturating_sub(folds * BARE_LEAVES_PER_FOLD);
        assert_eq!(bare_leaves(&store), left, "after {folds} folds");
        assert_lists_are_right(&store, &clock, 211);
    }
    for offset in [0, 1_500, 2_900] {
        let read = values_a_list_reads(&store, &clock, &Page { offset, ..page });
        assert!(
            read <= 4,
            "offset {offset}: the leaves carry them: {read} read"
        );
    }
}

#[test]
fn a_store_without_an_index_is_indexed_once_on_first_use() {
    let (store, clock) = (MemoryStore::default(), TestClock::new());
    // As the previous version wrote them: hero keys only.
    let expected = seed_unindexed(&store, &clock, 1_500);
    store
        .map
        .borrow_mut()
        .insert("other-app:thing".into(), b"x".to_vec());
    let page = Page {
        limit: 1000,
        offset: 0,
        team: None,
    };
    store.values_read.set(0);
    let body = with(&store, &clock, async |r| r.list(&page).await.unwrap());
    assert_eq!(ids_of(&body), expected[..1000]);
    assert!(log_of(&store).indexing.is_none(), "indexed");
    // Indexing reads each hero once; the page then comes out of the leaves.
    let read = store.values_read.get();
    assert!((1_500..1_600).contains(&read), "{read} values read");
    assert_lists_are_right(&store, &clock, 400);
    // The next list reads the log, the directory and the leaves of its
    // page, which carry the heroes' values.
    let read = values_a_list_reads(&store, &clock, &page);
    assert!(read < 20, "{read} values read");
}

#[test]
fn a_write_that_outlives_its_deadline_changes_nothing() {
    let (store, clock) = (MemoryStore::default(), TestClock::new());
    let (id, _) = with(&store, &clock, async |r| {
        r.create(hero("a", Some("A"))).await.unwrap()
    });
    let slow = || {
        // Every reading of this clock is 21 s after the last.
        clock.advance(Duration::from_secs(21));
        clock.now()
    };
    let registry = Registry::new(&store, &slow);
    let moved = block_on(registry.replace(id, hero("b", Some("B"))));
    assert!(matches!(moved, Err(ApiError::Unavailable(_))), "{moved:?}");
    assert_lists_are_right(&store, &clock, 5);
    let value = with(&store, &clock, async |r| r.read(id).await.unwrap().unwrap());
    assert!(String::from_utf8(value).unwrap().contains(r#""team":"A""#));
    // Its intent is folded away once stale.
    clock.advance(Duration::from_millis(GRACE_MS + 1));
    with(&store, &clock, async |r| r.fold().await.unwrap());
    assert!(log_of(&store).intents.is_empty());
    assert_lists_are_right(&store, &clock, 5);
}
