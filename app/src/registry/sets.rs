//! A set's directory and leaves: which leaf covers an id, reading leaves,
//! and changing a set: the changed leaves rewritten under fresh keys, then
//! one compare-and-swap of the directory commits the whole change. The
//! leaves of the set of every hero carry each hero's stored value beside its
//! id, so that a list copies its page out of one or two leaves.

use std::collections::{BTreeMap, BTreeSet};

use super::codec::{
    Directory, Leaf, LeafRef, Lease, Member, SetName, decode_directory, decode_leaf,
    encode_directory, encode_leaf, leaf_key,
};
use super::{MAX_ATTEMPTS, Registry, random_u64};
use crate::error::ApiError;
use crate::hero::HeroId;
use crate::store::{KeyValue, Swapped, Watched};

/// Most ids in one leaf (16 KiB of ids); a fuller one is split.
pub const LEAF_MAX: usize = 1024;
/// About the most bytes of values one leaf carries; a fuller one is split
/// (a page of 100 heroes of the usual size spans one or two leaves).
pub const LEAF_VALUE_BYTES: usize = 32 * 1024;
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
        Some(bytes) => decode_directory(key, bytes)?,
        None => Directory::default(),
    })
}

/// What a change makes of one id of a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change<'a> {
    /// Not a member.
    Out,
    /// A member, carrying this stored value in its leaf (or none: a list
    /// reads the hero).
    In(Option<&'a [u8]>),
}

/// `leaves`, in their order; `None` if one is gone (retired by a change
/// since its directory was read).
pub async fn read_leaves<S: KeyValue>(
    store: &S,
    leaves: &[LeafRef],
) -> Result<Option<Vec<Leaf>>, ApiError> {
    let keys: Vec<String> = leaves.iter().map(LeafRef::store_key).collect();
    let mut read = Vec::with_capacity(leaves.len());
    for (key, value) in keys.iter().zip(store.get_many(&keys).await?) {
        let Some(bytes) = value else {
            return Ok(None);
        };
        read.push(decode_leaf(key, bytes)?);
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
    /// Makes each id's membership of `set`, and the value its leaf carries,
    /// what `changes` says, committed by one swap of the directory while
    /// `lease` holds. Returns the directory as it stands afterwards.
    pub(super) async fn change_set(
        &self,
        set: SetName<'_>,
        changes: &BTreeMap<HeroId, Change<'_>>,
        lease: &Lease,
    ) -> Result<Directory, ApiError> {
        let key = set.key();
        let mut watched: Watched<S::Swap> = self.store.watch(&key).await?;
        for _ in 0..MAX_ATTEMPTS {
            let dir = parse_directory(&key, watched.current.as_deref())?;
            let Some(rewrite) = self.rewrite(&dir, changes).await? else {
                return Ok(dir);
            };
            self.store.set_many(&rewrite.written).await?;
            let written: Vec<String> = rewrite.written.into_iter().map(|(k, _)| k).collect();
            if !lease.holds(self.now_ms()) {
                self.store.delete_many(&written).await?;
                return Err(ApiError::Unavailable("a fold outlived its lease".into()));
            }
            match self
                .store
                .swap(watched.handle, &encode_directory(&rewrite.dir))
                .await?
            {
                Swapped::Done => {
                    let retired: Vec<String> = dir.retired.iter().map(|k| leaf_key(*k)).collect();
                    self.store.delete_many(&retired).await?;
                    return Ok(rewrite.dir);
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
    /// if the leaves already say what `changes` says.
    async fn rewrite(
        &self,
        dir: &Directory,
        changes: &BTreeMap<HeroId, Change<'_>>,
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
            let leaves: Vec<Leaf> = contents.by_ref().take(run.len()).collect();
            let mut members: Vec<Member<'_>> = leaves.iter().flat_map(Leaf::members).collect();
            rewrite
                .dir
                .retired
                .extend(run.iter().map(|&i| dir.leaves[i].key));
            // Adjacent leaves hold ascending ranges, so this is a no-op
            // unless a leaf was written out of order.
            if !members.is_sorted_by_key(|(id, _)| *id) {
                members.sort_by_key(|(id, _)| *id);
                members.dedup_by_key(|(id, _)| *id);
            }
            let covered = changes.iter().filter(|(id, _)| run_covers(dir, run, **id));
            changed |= apply_changes(&mut members, covered.map(|(&id, &change)| (id, change)));
            let low = dir.leaves.get(first).map_or([0; 16], |leaf| leaf.low);
            // New ids (ULIDs, in creation order) arrive at the end of a set.
            let split = if run.last().is_none_or(|&last| last + 1 == dir.leaves.len()) {
                Split::FillFirst
            } else {
                Split::Even
            };
            for (members, low) in chunks(&members, low, split) {
                rewrite.add_leaf(members, low);
            }
            kept_from = run.last().map_or(0, |last| last + 1);
        }
        let kept = dir.leaves.get(kept_from..).unwrap_or_default();
        rewrite.dir.leaves.extend_from_slice(kept);
        Ok(changed.then_some(rewrite))
    }
}

impl Rewrite {
    /// Adds a leaf of `members` under a fresh key.
    fn add_leaf(&mut self, members: &[Member<'_>], low: [u8; 16]) {
        let key = random_u64();
        self.written.push((leaf_key(key), encode_leaf(members)));
        let count = u32::try_from(members.len()).expect("a leaf holds at most LEAF_MAX ids");
        self.dir.leaves.push(LeafRef {
            key,
            low,
            count,
            carries_values: members.iter().all(|(_, value)| value.is_some()),
        });
    }
}

/// Makes each id's membership of the sorted `members`, and the value it
/// carries, what `changes` (in id order) says, keeping them sorted, in one
/// merge; whether anything changed.
fn apply_changes<'a>(
    members: &mut Vec<Member<'a>>,
    changes: impl Iterator<Item = (HeroId, Change<'a>)>,
) -> bool {
    let mut old = std::mem::take(members).into_iter().peekable();
    let mut changed = false;
    for (id, change) in changes {
        while let Some(before) = old.next_if(|(old, _)| *old < id) {
            members.push(before);
        }
        let present = old.next_if(|(old, _)| *old == id);
        match change {
            Change::Out => changed |= present.is_some(),
            Change::In(value) => {
                changed |= present.is_none_or(|(_, was)| was != value);
                members.push((id, value));
            }
        }
    }
    members.extend(old);
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
fn affected_runs(dir: &Directory, changes: &BTreeMap<HeroId, Change<'_>>) -> Vec<Vec<usize>> {
    if dir.leaves.is_empty() {
        return if changes
            .values()
            .any(|change| matches!(change, Change::In(_)))
        {
            vec![Vec::new()]
        } else {
            Vec::new()
        };
    }
    let mut delta: BTreeMap<usize, i64> = BTreeMap::new();
    for (&id, change) in changes {
        *delta.entry(leaf_of(dir, id)).or_default() += match change {
            Change::In(_) => 1,
            Change::Out => -1,
        };
    }
    let mut chosen = BTreeSet::new();
    for (&i, &change) in &delta {
        chosen.insert(i);
        // Only a leaf that shrank: one left small at the end of its set by
        // a split fills up as heroes join it.
        let estimate = i64::from(dir.leaves[i].count) + change;
        if change < 0 && estimate < LEAF_MIN as i64 && dir.leaves.len() > 1 {
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

/// How a run of leaves that outgrew one is split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Split {
    /// Evenly, leaving room in each: a run inside the set, where a moved
    /// hero may join any leaf.
    Even,
    /// Full leaves first, the rest in the last: the run at the end of a set,
    /// where new heroes join, so the leaves before it stay full (and a set's
    /// directory lists half as many).
    FillFirst,
}

/// Splits sorted members into leaves of at most [`LEAF_MAX`] ids and about
/// [`LEAF_VALUE_BYTES`] of values, as `split` says; the first keeps `low`,
/// the others start at their first id.
fn chunks<'m, 'a>(
    members: &'m [Member<'a>],
    low: [u8; 16],
    split: Split,
) -> Vec<(&'m [Member<'a>], [u8; 16])> {
    if members.is_empty() {
        return Vec::new();
    }
    let bytes: usize = members
        .iter()
        .map(|(_, value)| value.map_or(0, <[u8]>::len))
        .sum();
    let parts = members
        .len()
        .div_ceil(LEAF_MAX)
        .max(bytes.div_ceil(LEAF_VALUE_BYTES));
    // Each leaf but the last takes members until it holds its share of the
    // ids or of the bytes.
    let (id_share, byte_share, most_cuts) = match split {
        Split::Even => (
            members.len().div_ceil(parts),
            bytes.div_ceil(parts),
            parts - 1,
        ),
        Split::FillFirst => (LEAF_MAX, LEAF_VALUE_BYTES, usize::MAX),
    };
    let mut cuts = Vec::with_capacity(parts);
    let (mut start, mut ids, mut held) = (0, 0, 0);
    for (i, (_, value)) in members.iter().enumerate() {
        ids += 1;
        held += value.map_or(0, <[u8]>::len);
        let full = ids >= id_share || (byte_share > 0 && held >= byte_share);
        if full && cuts.len() < most_cuts && i + 1 < members.len() {
            cuts.push(&members[start..=i]);
            (start, ids, held) = (i + 1, 0, 0);
        }
    }
    cuts.push(&members[start..]);
    cuts.into_iter()
        .enumerate()
        .map(|(i, chunk)| {
            let low = if i == 0 { low } else { chunk[0].0.to_bytes() };
            (chunk, low)
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

    fn bare(ids: &[HeroId]) -> Vec<Member<'static>> {
        ids.iter().map(|id| (*id, None)).collect()
    }

    #[test]
    fn chunks_split_evenly_and_keep_the_first_low() {
        let ids = bare(&ids(LEAF_MAX + 1));
        let parts = chunks(&ids, [0; 16], Split::Even);
        assert_eq!(parts.len(), 2);
        assert_eq!((parts[0].0.len(), parts[1].0.len()), (513, 512));
        assert_eq!(parts[0].1, [0; 16]);
        assert_eq!(parts[1].1, parts[1].0[0].0.to_bytes());
        assert!(chunks(&[], [0; 16], Split::Even).is_empty());
        let filled = chunks(&ids, [0; 16], Split::FillFirst);
        assert_eq!((filled[0].0.len(), filled[1].0.len()), (1024, 1));
        assert_eq!(filled[1].1, ids[1024].0.to_bytes());
    }

    #[test]
    fn chunks_carrying_values_split_by_their_bytes_too() {
        let value = [b'x'; 200];
        let ids = ids(400);
        let members: Vec<Member<'_>> = ids.iter().map(|id| (*id, Some(&value[..]))).collect();
        // 80,000 bytes of values: three leaves of about 26,700 bytes.
        let parts = chunks(&members, [0; 16], Split::Even);
        let sizes: Vec<usize> = parts.iter().map(|(part, _)| part.len()).collect();
        assert_eq!(sizes, [134, 134, 132]);
        assert_eq!(parts[1].1, ids[134].to_bytes());
        assert_eq!(parts[2].1, ids[268].to_bytes());
        let joined: Vec<Member<'_>> = parts.iter().flat_map(|(part, _)| part.to_vec()).collect();
        assert_eq!(joined, members, "nothing lost, nothing reordered");
        let few = &members[..100];
        assert_eq!(
            chunks(few, [0; 16], Split::Even).len(),
            1,
            "20,000 bytes fit one leaf"
        );
        // Filled first: 164 values reach 32 KiB; 400 make two full leaves.
        let filled = chunks(&members, [0; 16], Split::FillFirst);
        let sizes: Vec<usize> = filled.iter().map(|(part, _)| part.len()).collect();
        assert_eq!(sizes, [164, 164, 72]);
        assert_eq!(chunks(few, [0; 16], Split::FillFirst).len(), 1);
        let one_big = [(ids[0], Some(&[b'y'; LEAF_VALUE_BYTES * 2][..]))];
        for split in [Split::Even, Split::FillFirst] {
            assert_eq!(
                chunks(&one_big, [0; 16], split).len(),
                1,
                "an id is never split"
            );
        }
    }

    #[test]
    fn changes_merge_into_sorted_ids() {
        let ids = ids(6);
        let mut members = bare(&[ids[1], ids[3], ids[4]]);
        let changes = [
            (ids[0], Change::In(None)),
            (ids[3], Change::Out),
            (ids[4], Change::In(None)),
            (ids[5], Change::In(None)),
        ];
        assert!(apply_changes(&mut members, changes.into_iter()));
        assert_eq!(members, bare(&[ids[0], ids[1], ids[4], ids[5]]));
        let again = [
            (ids[0], Change::In(None)),
            (ids[2], Change::Out),
            (ids[4], Change::In(None)),
        ];
        assert!(
            !apply_changes(&mut members, again.into_iter()),
            "already so"
        );
        assert_eq!(members, bare(&[ids[0], ids[1], ids[4], ids[5]]));
        assert!(apply_changes(
            &mut members,
            [(ids[5], Change::Out)].into_iter()
        ));
        assert_eq!(members, bare(&[ids[0], ids[1], ids[4]]));
    }

    #[test]
    fn a_change_of_value_alone_is_a_change() {
        let ids = ids(2);
        let mut members: Vec<Member<'_>> = vec![(ids[0], Some(b"old")), (ids[1], None)];
        let same = [(ids[0], Change::In(Some(&b"old"[..])))];
        assert!(!apply_changes(&mut members, same.into_iter()));
        let new = [(ids[0], Change::In(Some(&b"new"[..])))];
        assert!(apply_changes(&mut members, new.into_iter()));
        assert_eq!(members, [(ids[0], Some(&b"new"[..])), (ids[1], None)]);
        let dropped = [(ids[0], Change::In(None))];
        assert!(apply_changes(&mut members, dropped.into_iter()));
        assert_eq!(members, bare(&ids));
    }

    #[test]
    fn ids_map_to_the_leaf_whose_range_holds_them() {
        let ids = ids(3);
        let leaf = |low: HeroId| LeafRef {
            key: 0,
            low: low.to_bytes(),
            count: 1,
            carries_values: false,
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
            carries_values: false,
        };
        let dir = Directory {
            leaves: vec![leaf(ids[0], 500), leaf(ids[1], 10)],
            retired: Vec::new(),
        };
        let removal = BTreeMap::from([(ids[1], Change::Out)]);
        assert_eq!(affected_runs(&dir, &removal), [vec![0, 1]]);
        let addition = BTreeMap::from([(ids[0], Change::In(None))]);
        assert_eq!(affected_runs(&dir, &addition), [vec![0]]);
        let growing = BTreeMap::from([(ids[1], Change::In(None))]);
        assert_eq!(
            affected_runs(&dir, &growing),
            [vec![1]],
            "a small leaf that grows fills up by itself"
        );
    }
}
