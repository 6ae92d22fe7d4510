//! A set's directory and leaves: which leaf covers an id, reading leaves,
//! and changing a set: the changed leaves rewritten under fresh keys, then
//! one compare-and-swap of the directory commits the whole change.

use std::collections::{BTreeMap, BTreeSet};

use super::codec::{
    Directory, LeafRef, Lease, SetName, decode, decode_leaf, encode, encode_leaf, leaf_key,
};
use super::{MAX_ATTEMPTS, Registry, random_u64};
use crate::error::ApiError;
use crate::hero::HeroId;
use crate::store::{KeyValue, Swapped, Watched};

/// Most ids in one leaf (16 KiB); a fuller one is split.
pub const LEAF_MAX: usize = 1024;
/// A leaf left with fewer ids is merged with a neighbour.
const LEAF_MIN: usize = LEAF_MAX / 8;

/// The leaf covering `id`: the last whose `low` is at most `id` (the first
/// one for ids below every `low`).
pub fn leaf_of(dir: &Directory, id: HeroId) -> usize {
    let bytes = id.to_bytes();
    dir.leaves
        .partition_point(|leaf| leaf.low <= bytes)
        .saturating_sub(1)
}

/// A directory as stored (`None`: an empty set).
pub fn parse_directory(key: &str, bytes: Option<&[u8]>) -> Result<Directory, ApiError> {
    Ok(match bytes {
        Some(bytes) => decode(key, bytes)?,
        None => Directory::default(),
    })
}

/// The ids of `leaves`, in their order; `None` if one is gone (retired by a
/// change since its directory was read).
pub async fn read_leaves<S: KeyValue>(
    store: &S,
    leaves: &[LeafRef],
) -> Result<Option<Vec<Vec<HeroId>>>, ApiError> {
    let keys: Vec<String> = leaves.iter().map(LeafRef::store_key).collect();
    let mut read = Vec::with_capacity(leaves.len());
    for (key, value) in keys.iter().zip(store.get_many(&keys).await?) {
        let Some(bytes) = value else {
            return Ok(None);
        };
        read.push(decode_leaf(key, &bytes)?);
    }
    Ok(Some(read))
}

/// A directory changed, and the leaves to write for it.
#[derive(Default)]
struct Rewrite {
    dir: Directory,
    written: Vec<(String, Vec<u8>)>,
}

impl<S: KeyValue> Registry<'_, S> {
    /// Makes each id's membership of `set` what `changes` says (`true`: a
    /// member), committed by one swap of the directory while `lease` holds.
    pub(super) async fn change_set(
        &self,
        set: SetName<'_>,
        changes: &BTreeMap<HeroId, bool>,
        lease: &Lease,
    ) -> Result<(), ApiError> {
        let key = set.key();
        let mut watched: Watched<S::Swap> = self.store.watch(&key).await?;
        for _ in 0..MAX_ATTEMPTS {
            let dir = parse_directory(&key, watched.current.as_deref())?;
            let Some(rewrite) = self.rewrite(&dir, changes).await? else {
                return Ok(());
            };
            self.store.set_many(&rewrite.written).await?;
            let written: Vec<String> = rewrite.written.into_iter().map(|(k, _)| k).collect();
            if !lease.holds(self.now_ms()) {
                self.store.delete_many(&written).await?;
                return Err(ApiError::Unavailable("a fold outlived its lease".into()));
            }
            match self
                .store
                .swap(watched.handle, &encode(&rewrite.dir))
                .await?
            {
                Swapped::Done => {
                    let retired: Vec<String> = dir.retired.iter().map(|k| leaf_key(*k)).collect();
                    self.store.delete_many(&retired).await?;
                    return Ok(());
                }
                Swapped::Conflict(next) => {
                    self.store.delete_many(&written).await?;
                    watched = next;
                }
            }
        }
        Err(ApiError::Unavailable(format!(
            "the set {key} kept changing"
        )))
    }

    /// The directory with `changes` applied, and the leaves to write; `None`
    /// if membership is already as `changes` says.
    async fn rewrite(
        &self,
        dir: &Directory,
        changes: &BTreeMap<HeroId, bool>,
    ) -> Result<Option<Rewrite>, ApiError> {
        let runs = affected_runs(dir, changes);
        let refs: Vec<LeafRef> = runs.iter().flatten().map(|&i| dir.leaves[i]).collect();
        let contents = read_leaves(self.store, &refs)
            .await?
            .ok_or_else(|| ApiError::Internal("a directory lists a leaf that is gone".into()))?;
        let mut contents = contents.into_iter();
        let mut rewrite = Rewrite::default();
        // Leaves before `kept_from` that no run covers are kept as they are.
        let (mut kept_from, mut changed) = (0, false);
        for run in &runs {
            let first = run.first().copied().unwrap_or(0);
            let kept = dir.leaves.get(kept_from..first).unwrap_or_default();
            rewrite.dir.leaves.extend_from_slice(kept);
            let mut ids: Vec<HeroId> = Vec::new();
            for &i in run {
                ids.extend(contents.next().expect("one content per leaf read"));
                rewrite.dir.retired.push(dir.leaves[i].key);
            }
            // Adjacent leaves hold ascending ranges, so this is a no-op
            // unless a leaf was written out of order.
            if !ids.is_sorted() {
                ids.sort_unstable();
                ids.dedup();
            }
            let covered = changes.iter().filter(|(id, _)| run_covers(dir, run, **id));
            changed |= apply_changes(&mut ids, covered.map(|(&id, &member)| (id, member)));
            let low = dir.leaves.get(first).map_or([0; 16], |leaf| leaf.low);
            for (ids, low) in chunks(&ids, low) {
                rewrite.add_leaf(&ids, low);
            }
            kept_from = run.last().map_or(0, |last| last + 1);
        }
        let kept = dir.leaves.get(kept_from..).unwrap_or_default();
        rewrite.dir.leaves.extend_from_slice(kept);
        Ok(changed.then_some(rewrite))
    }
}

impl Rewrite {
    /// Adds a leaf of `ids` under a fresh key.
    fn add_leaf(&mut self, ids: &[HeroId], low: [u8; 16]) {
        let key = random_u64();
        self.written.push((leaf_key(key), encode_leaf(ids)));
        let count = u32::try_from(ids.len()).expect("a leaf holds at most LEAF_MAX ids");
        self.dir.leaves.push(LeafRef { key, low, count });
    }
}

/// Makes each id's membership of the sorted `ids` what `changes` (in id
/// order) says (`true`: a member), keeping them sorted, in one merge;
/// whether anything changed.
fn apply_changes(ids: &mut Vec<HeroId>, changes: impl Iterator<Item = (HeroId, bool)>) -> bool {
    let mut old = std::mem::take(ids).into_iter().peekable();
    let mut changed = false;
    for (id, member) in changes {
        while let Some(before) = old.next_if(|old| *old < id) {
            ids.push(before);
        }
        let present = old.next_if_eq(&id).is_some();
        if member {
            ids.push(id);
        }
        changed |= present != member;
    }
    ids.extend(old);
    changed
}

/// Whether `id` belongs to one of the leaves of `run` (an empty run: the
/// whole id space of an empty set).
fn run_covers(dir: &Directory, run: &[usize], id: HeroId) -> bool {
    run.is_empty() || run.contains(&leaf_of(dir, id))
}

/// Runs of adjacent leaves to rewrite: each leaf a change falls in, with a
/// neighbour when it would be left small (so small leaves merge). For an
/// empty set, one empty run if anything is added.
fn affected_runs(dir: &Directory, changes: &BTreeMap<HeroId, bool>) -> Vec<Vec<usize>> {
    if dir.leaves.is_empty() {
        return if changes.values().any(|&member| member) {
            vec![Vec::new()]
        } else {
            Vec::new()
        };
    }
    let mut delta: BTreeMap<usize, i64> = BTreeMap::new();
    for (&id, &member) in changes {
        *delta.entry(leaf_of(dir, id)).or_default() += if member { 1 } else { -1 };
    }
    let mut chosen = BTreeSet::new();
    for (&i, &change) in &delta {
        chosen.insert(i);
        let estimate = i64::from(dir.leaves[i].count) + change;
        if estimate < LEAF_MIN as i64 && dir.leaves.len() > 1 {
            chosen.insert(if i + 1 < dir.leaves.len() {
                i + 1
            } else {
                i - 1
            });
        }
    }
    let mut runs: Vec<Vec<usize>> = Vec::new();
    for i in chosen {
        match runs.last_mut() {
            Some(run) if run.last() == Some(&(i - 1)) => run.push(i),
            _ => runs.push(vec![i]),
        }
    }
    runs
}

/// Splits sorted ids into leaves of at most [`LEAF_MAX`], evenly; the
/// first keeps `low`, the others start at their first id.
fn chunks(ids: &[HeroId], low: [u8; 16]) -> Vec<(Vec<HeroId>, [u8; 16])> {
    if ids.is_empty() {
        return Vec::new();
    }
    let parts = ids.len().div_ceil(LEAF_MAX);
    let size = ids.len().div_ceil(parts);
    ids.chunks(size)
        .enumerate()
        .map(|(i, chunk)| {
            let low = if i == 0 { low } else { chunk[0].to_bytes() };
            (chunk.to_vec(), low)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn ids(n: usize) -> Vec<HeroId> {
        let at = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        (0..n).map(|_| HeroId::generate(at)).collect()
    }

    #[test]
    fn chunks_split_evenly_and_keep_the_first_low() {
        let ids = ids(LEAF_MAX + 1);
        let parts = chunks(&ids, [0; 16]);
        assert_eq!(parts.len(), 2);
        assert_eq!((parts[0].0.len(), parts[1].0.len()), (513, 512));
        assert_eq!(parts[0].1, [0; 16]);
        assert_eq!(parts[1].1, parts[1].0[0].to_bytes());
        assert!(chunks(&[], [0; 16]).is_empty());
    }

    #[test]
    fn changes_merge_into_sorted_ids() {
        let ids = ids(6);
        let mut members = vec![ids[1], ids[3], ids[4]];
        let changes = [
            (ids[0], true),
            (ids[3], false),
            (ids[4], true),
            (ids[5], true),
        ];
        assert!(apply_changes(&mut members, changes.into_iter()));
        assert_eq!(members, [ids[0], ids[1], ids[4], ids[5]]);
        let again = [(ids[0], true), (ids[2], false), (ids[4], true)];
        assert!(
            !apply_changes(&mut members, again.into_iter()),
            "already so"
        );
        assert_eq!(members, [ids[0], ids[1], ids[4], ids[5]]);
        assert!(apply_changes(&mut members, [(ids[5], false)].into_iter()));
        assert_eq!(members, [ids[0], ids[1], ids[4]]);
    }

    #[test]
    fn ids_map_to_the_leaf_whose_range_holds_them() {
        let ids = ids(3);
        let leaf = |low: HeroId| LeafRef {
            key: 0,
            low: low.to_bytes(),
            count: 1,
        };
        let dir = Directory {
            leaves: vec![leaf(ids[1]), leaf(ids[2])],
            retired: Vec::new(),
        };
        assert_eq!(leaf_of(&dir, ids[0]), 0, "below every low: the first");
        assert_eq!(leaf_of(&dir, ids[1]), 0);
        assert_eq!(leaf_of(&dir, ids[2]), 1);
        assert_eq!(leaf_of(&Directory::default(), ids[0]), 0);
    }

    #[test]
    fn small_leaves_take_a_neighbour_along() {
        let ids = ids(2);
        let leaf = |low: HeroId, count| LeafRef {
            key: 0,
            low: low.to_bytes(),
            count,
        };
        let dir = Directory {
            leaves: vec![leaf(ids[0], 500), leaf(ids[1], 10)],
            retired: Vec::new(),
        };
        let removal = BTreeMap::from([(ids[1], false)]);
        assert_eq!(affected_runs(&dir, &removal), [vec![0, 1]]);
        let addition = BTreeMap::from([(ids[0], true)]);
        assert_eq!(affected_runs(&dir, &addition), [vec![0]]);
    }
}
