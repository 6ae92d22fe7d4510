//! Folding the intent log into the sets (see the module docs of [`super`]):
//! under the fold lease, read the heroes the intents name, make each touched
//! set agree with them, then remove the finished intents and the tombstones
//! nothing names any more.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::codec::{Directory, Intent, Leaf, LeafRef, Lease, Log, LogHead, SetName, Standing};
use super::list::Found;
use super::sets::{Change, parse_directory, read_leaves};
use super::{FOLD_EVERY, GRACE_MS, Registry};
use crate::error::ApiError;
use crate::hero::HeroId;
use crate::store::KeyValue;

/// Whether a write's fold is due, by the head of the log as the write left
/// it (an abandoned indexing is taken over by the fold).
pub fn due(log: &LogHead, now_ms: u64) -> bool {
    let held = |lease: Option<Lease>| lease.is_some_and(|lease| lease.holds(now_ms));
    log.intents >= log.kept.saturating_add(FOLD_EVERY) && !held(log.indexing) && !held(log.fold)
}

/// Whether an intent needs to stay in the log, given what its hero holds.
fn finished(intent: &Intent, found: &Found, now_ms: u64) -> bool {
    let stale = now_ms.saturating_sub(intent.at_ms) > GRACE_MS;
    stale
        || match found {
            // Deleted for good: ids are never reused.
            Found::Tombstone => true,
            // Only a creation can be waiting for its hero to appear.
            Found::Absent => intent.before != Standing::Gone,
            // A move between two live standings also needs its writer's
            // word: the value it read may come back (moved away and back
            // by others), and then its swap would still succeed.
            Found::Live { .. } => {
                found.standing() == intent.after && (intent.done || intent.before == Standing::Gone)
            }
        }
}

impl<S: KeyValue> Registry<'_, S> {
    /// Folds the log if `log` (its head as a write left it) says a fold is
    /// due and no other request holds the lease. A failed fold changes
    /// nothing a list could see wrongly, so its error is only logged.
    pub(super) async fn fold_if_due(&self, log: &LogHead) {
        if !due(log, self.now_ms()) {
            return;
        }
        if let Err(error) = self.fold().await {
            let error = format!("{error:?}");
            crate::routes::log_line("warn", "index fold failed", &[("error", &error)]);
        }
    }

    /// Folds every intent of the log into the sets (indexing the store
    /// first if an indexing was abandoned).
    pub(super) async fn fold(&self) -> Result<(), ApiError> {
        self.ensure_indexed().await?;
        let Some((lease, log)) = self.take_fold_lease().await? else {
            return Ok(());
        };
        let folded = self.fold_under(&lease, &log).await;
        if folded.is_err() {
            // Best effort: the lease expires by itself anyway.
            let _ = self.release_fold_lease(lease.owner).await;
        }
        folded
    }

    /// The fold proper, under `lease`, of the intents of `log`.
    async fn fold_under(&self, lease: &Lease, log: &Log) -> Result<(), ApiError> {
        let mut ids: Vec<HeroId> = log.intents.iter().map(Intent::hero).collect();
        ids.sort_unstable();
        ids.dedup();
        let keys: Vec<String> = ids.iter().map(HeroId::key).collect();
        let mut found = HashMap::new();
        for ((id, key), value) in ids.iter().zip(&keys).zip(self.store.get_many(&keys).await?) {
            found.insert(*id, Found::parse(key, value)?);
        }
        let mut every_hero = None;
        for (set, changes) in set_changes(log, &found) {
            let dir = self.change_set(set, &changes, lease).await?;
            if set == SetName::All {
                every_hero = Some(dir);
            }
        }
        self.carry_bare_leaves(every_hero, lease).await?;
        let now = self.now_ms();
        let done: HashSet<u64> = log
            .intents
            .iter()
            .filter(|intent| finished(intent, &found[&intent.hero()], now))
            .map(|intent| intent.op)
            .collect();
        let after = self.finish_fold(lease.owner, &done).await?;
        // Tombstones no intent names any more: every set is without them.
        let named: HashSet<HeroId> = after.intents.iter().map(Intent::hero).collect();
        let buried: Vec<String> = ids
            .iter()
            .filter(|id| matches!(found[*id], Found::Tombstone) && !named.contains(*id))
            .map(HeroId::key)
            .collect();
        self.store.delete_many(&buried).await?;
        Ok(())
    }
}

/// Leaves of every hero's set without their heroes' values (an index the
/// version before leaves carried them wrote) that one fold fills in.
pub const BARE_LEAVES_PER_FOLD: usize = 2;

impl<S: KeyValue> Registry<'_, S> {
    /// Fills in the heroes' values of the first few leaves of every hero's
    /// set that lack them (`dir` is its directory, if the fold just had it),
    /// so a store indexed by an earlier version comes to copy its pages out
    /// of its leaves, [`BARE_LEAVES_PER_FOLD`] leaves a fold. It runs under
    /// the fold lease after the fold read the log, so a hero written since
    /// keeps its intent in the log, which this fold does not remove.
    async fn carry_bare_leaves(
        &self,
        dir: Option<Directory>,
        lease: &Lease,
    ) -> Result<(), ApiError> {
        let dir = match dir {
            Some(dir) => dir,
            None => {
                let key = SetName::All.key();
                parse_directory(&key, self.store.get(&key).await?.as_deref())?
            }
        };
        let bare: Vec<LeafRef> = dir
            .leaves
            .iter()
            .filter(|leaf| !leaf.carries_values)
            .take(BARE_LEAVES_PER_FOLD)
            .copied()
            .collect();
        if bare.is_empty() {
            return Ok(());
        }
        // A leaf retired since is left to the next fold.
        let Some(leaves) = read_leaves(self.store, &bare).await? else {
            return Ok(());
        };
        let ids: Vec<HeroId> = leaves.iter().flat_map(Leaf::ids).collect();
        self.carry_values(&ids, lease, |_, _| {}).await
    }
}

/// For each set an intent names (where its hero stood or will stand), the
/// membership each of its heroes has now, with the stored value the leaves
/// of every hero carry.
fn set_changes<'a>(
    log: &'a Log,
    found: &'a HashMap<HeroId, Found>,
) -> BTreeMap<SetName<'a>, BTreeMap<HeroId, Change<'a>>> {
    let mut changes: BTreeMap<SetName<'a>, BTreeMap<HeroId, Change<'a>>> = BTreeMap::new();
    for intent in &log.intents {
        let id = intent.hero();
        let hero = &found[&id];
        let now = hero.standing();
        for set in SetName::of(&intent.before).chain(SetName::of(&intent.after)) {
            let change = match hero {
                Found::Live { value, .. } if set.contains(&now) => {
                    Change::In(set.carries_values().then_some(value.as_slice()))
                }
                _ => Change::Out,
            };
            changes.entry(set).or_default().insert(id, change);
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(before: Standing, after: Standing, at_ms: u64) -> Intent {
        Intent {
            op: 1,
            id: [1; 16],
            at_ms,
            before,
            after,
            done: false,
        }
    }

    fn live(team: &str) -> Found {
        Found::Live {
            team: Some(team.into()),
            value: b"{}".to_vec(),
        }
    }

    #[test]
    fn intents_finish_when_their_hero_stands_where_they_said() {
        let x = || Standing::Live(Some("X".into()));
        let y = || Standing::Live(Some("Y".into()));
        let now = 1_000_000;
        let create = intent(Standing::Gone, x(), now);
        assert!(
            !finished(&create, &Found::Absent, now),
            "its hero may still come"
        );
        assert!(finished(&create, &live("X"), now));
        assert!(finished(&create, &Found::Tombstone, now));
        assert!(
            finished(&create, &Found::Absent, now + GRACE_MS + 1),
            "stale"
        );
        let mut moved = intent(x(), y(), now);
        assert!(!finished(&moved, &live("X"), now), "not swapped yet");
        assert!(
            !finished(&moved, &live("Y"), now),
            "its writer may still swap"
        );
        moved.done = true;
        assert!(finished(&moved, &live("Y"), now));
        assert!(!finished(&moved, &live("X"), now));
        assert!(finished(&moved, &Found::Absent, now), "deleted and buried");
        let deleted = intent(y(), Standing::Gone, now);
        assert!(!finished(&deleted, &live("Y"), now));
        assert!(finished(&deleted, &Found::Tombstone, now));
    }

    #[test]
    fn folds_are_due_every_so_many_new_intents_without_a_lease() {
        let mut log = LogHead {
            intents: FOLD_EVERY,
            ..LogHead::default()
        };
        assert!(due(&log, 0));
        log.kept = 1;
        assert!(!due(&log, 0));
        log.kept = 0;
        log.fold = Some(Lease {
            owner: 1,
            until_ms: 10,
        });
        assert!(!due(&log, 5));
        assert!(due(&log, 10), "an expired lease is no lease");
    }
}
