//! The registry's data model: heroes, and the ordering index kept beside
//! them so that a page of the list costs what the page costs.
//!
//! # Keys
//!
//! - `hero:<id>`: the hero, exactly the JSON the API returns, or `null` once
//!   deleted (a tombstone, removed again by a later fold).
//! - `heroes:all` and `heroes:team:<hex of the team name>`: the directory of
//!   a *set* (every hero; the heroes of one team): its leaves in id order,
//!   each with the lowest id it covers and how many ids it holds.
//! - `heroes:leaf:<random>`: a leaf, up to [`sets::LEAF_MAX`] sorted ids.
//!   Leaves are written once under a fresh key and never changed, so the
//!   compare-and-swap of a directory commits a whole change of its set. The
//!   leaves of every hero's set also carry each hero's stored value beside
//!   its id (about [`sets::LEAF_VALUE_BYTES`] a leaf), so a list copies its
//!   page out of one or two leaves; a team's leaves carry ids alone.
//! - `heroes:log`: the intent log, every write not yet folded into the sets:
//!   a head (leases, counts), then the intents, so a write appends its own
//!   by copying the others' bytes, without decoding them.
//!
//! Only `spin:key-value` and `wasi:keyvalue` (batch, compare-and-swap) are
//! used: what both `spin up` and hero-host provide, on SQLite and on Redis
//! shared by several replicas. No cursor of `list-keys` is needed; all keys
//! are listed once only, to index a store the previous version wrote.
//!
//! # Writes
//!
//! Every write that may change who belongs to a set first appends an
//! [`Intent`](codec::Intent) to the log (compare-and-swap on `heroes:log`):
//! the hero, where it stood (`before`) and where it will stand (`after`).
//! Then it changes the hero with a compare-and-swap on `hero:<id>`, against
//! the value it read. That swap is the write's linearization point:
//!
//! - POST logs `gone -> team`, then stores the new hero (its id is fresh).
//! - PUT logs `old team -> new team` (the same team when it stays: the
//!   leaves carry the value it changes), then swaps the value it read for
//!   the new one. A swap that finds another value starts again from that
//!   value (logging again if the team it found differs), so a PUT never
//!   overwrites a write it did not see, and one that finds a tombstone
//!   answers 404: it never resurrects a hero. After its swap it marks its
//!   intents `done` in the log.
//! - DELETE logs `team -> gone`, then swaps the value it read for the
//!   tombstone. Of two racing DELETEs only one swap succeeds (204); the
//!   other finds the tombstone (404). An acknowledged DELETE stays deleted.
//!
//! A write checks, just before its swap, that its intent is younger than
//! [`WRITE_DEADLINE_MS`]; an older one answers 503 and changes nothing.
//!
//! # The invariant
//!
//! For every hero X and set S: **X is in S's leaves exactly when X's stored
//! value puts it in S, unless the log holds an intent for X that touches S**
//! (one of its `before` and `after` is in S and the other is not); and
//! **where a leaf carries a value for X, it is X's stored value, unless the
//! log holds an intent for X**.
//!
//! Each write keeps it: its swap turns the hero from `before` into `after`,
//! so it changes membership only of the sets its intent touches, and the
//! intent is logged before the swap (every write logs one, so none changes a
//! value a leaf carries unannounced). A list keeps to it by trusting the
//! leaves except for ids with an intent touching its set (for the set of
//! every hero: any intent), whose standing and value it reads from the hero
//! itself. So a list is right at every
//! moment, including after a host was killed between any two writes: an
//! intent whose write never happened is resolved the same way (its hero is
//! absent, or unchanged).
//!
//! # Folding
//!
//! Once [`FOLD_EVERY`] intents have gathered, the next write (holding a
//! lease in the log, so one request at a time) folds them: it reads the
//! heroes, writes each touched set's changed leaves under fresh keys (with
//! the values it read), swaps each directory, then removes from the log the
//! intents that are *finished*, and deletes tombstones no intent names any more. An intent is
//! finished when its hero stands where it said it would, or is deleted (for
//! good: ids are never reused), or when it is older than [`GRACE_MS`], long
//! after its writer gave up (a writer killed mid-way). A move between two
//! teams also needs its writer's `done` mark before it counts as finished by
//! where its hero stands: others may have moved the hero there and back to
//! the very bytes the writer read, and then its swap, still to come, would
//! succeed. (A creation's key is fresh, and a deletion is finished only by
//! a tombstone, so neither can be overtaken so.) Intents still in progress
//! stay. An intent logged after the fold read the log is never
//! removed by it, so the invariant survives folds that race writes, and a
//! fold killed half-way leaves intents that the next fold folds again
//! (changing a set is idempotent). A value a fold writes into a leaf was
//! read after the log: an intent finished by its writer's `done` mark (set
//! after its swap, and seen in that log) was swapped before the value was
//! read, and a write whose swap may come later keeps its intent, so the
//! value a leaf carries is stale only while an intent names its hero.
//! Leaves a directory no longer lists are
//! deleted by the following fold of that set, so a list that read the old
//! directory a moment ago still finds them.
//!
//! # Lists
//!
//! A list reads the log and its set's directory in one `get-many`, skips
//! whole leaves by their counts up to `offset` (a leaf with pending intents
//! in its id range is read, and those heroes resolved), reads the one or two
//! leaves holding the page, then the heroes whose values no leaf carries in
//! one `get-many` (a team's page; heroes indexed before leaves carried
//! values): the log, a directory (a few bytes per leaf), one or two leaves
//! and at most `limit` values, whatever the store holds. The list of every
//! hero is a snapshot of the leaves as of the log it read, so it reads no
//! hero on its page unless an intent names it.
//!
//! # A store without an index
//!
//! A store the previous version wrote (heroes, no log) is indexed by the
//! first request that needs the index: it creates the log with an
//! `indexing` lease, lists every key once, builds every set, reading each
//! hero once (the set of every hero a leaf's worth at a time, its leaves
//! carrying the values), then clears the lease. Writes meanwhile log their intents as usual, so a hero created,
//! changed or deleted while the index is built is resolved from its intent;
//! lists meanwhile read every hero, as the previous version did. A builder
//! killed half-way leaves the lease to expire; the next request starts over.
//!
//! An index whose leaves carry no values (written by the version before
//! leaves carried them; its directory says so) serves lists as that version
//! did, reading the page's heroes, and each fold fills in the values of
//! [`fold::BARE_LEAVES_PER_FOLD`] such leaves of every hero's set, reading
//! their heroes after the fold read the log (so a hero written since keeps
//! its intent): an upgraded store comes to copy its pages out of its leaves
//! a few leaves every [`FOLD_EVERY`] writes.
//!
//! # Assumptions
//!
//! Clocks of replicas agree within a minute or so ([`GRACE_MS`] minus
//! [`WRITE_DEADLINE_MS`] is the margin); a fold's or a builder's swap lands
//! within its lease. Compare-and-swap from "absent" is atomic on hero-host;
//! Spin's SQLite store writes unconditionally in that case, which matters
//! only when two requests race to create the log of an empty store.

pub mod codec;
mod fold;
mod index;
mod list;
mod log;
mod sets;
mod writes;

use std::time::{SystemTime, UNIX_EPOCH};

pub use self::list::Page;
use crate::error::ApiError;
use crate::hero::HeroId;
use crate::store::KeyValue;

/// A write whose intent is older than this at its swap gives up (503).
pub const WRITE_DEADLINE_MS: u64 = 20_000;
/// An intent older than this is finished whatever its hero says: its writer
/// gave up long ago.
pub const GRACE_MS: u64 = 120_000;
/// How long a fold, or the first indexing, may hold its lease.
pub const LEASE_MS: u64 = 30_000;
/// A fold starts once this many intents gathered since the last one.
pub const FOLD_EVERY: u32 = 32;
/// Compare-and-swap attempts on one key before a request gives up (503).
const MAX_ATTEMPTS: usize = 200;

/// What a deleted hero's key holds until a fold removes it.
pub const TOMBSTONE: &[u8] = b"null";

/// The registry on one store, with the clock it reads.
pub struct Registry<'s, S> {
    store: &'s S,
    clock: &'s dyn Fn() -> SystemTime,
}

impl<'s, S: KeyValue> Registry<'s, S> {
    /// The registry on `store`, telling time by `clock`.
    pub fn new(store: &'s S, clock: &'s dyn Fn() -> SystemTime) -> Self {
        Registry { store, clock }
    }

    /// Now, in milliseconds since the epoch.
    fn now_ms(&self) -> u64 {
        millis((self.clock)())
    }

    /// The stored value of a hero, `None` if there is none (or it was
    /// deleted).
    pub async fn read(&self, id: HeroId) -> Result<Option<Vec<u8>>, ApiError> {
        Ok(self
            .store
            .get(&id.key())
            .await?
            .filter(|value| value != TOMBSTONE))
    }
}

/// Milliseconds since the epoch.
fn millis(at: SystemTime) -> u64 {
    u64::try_from(
        at.duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(u64::MAX)
}

/// A random 64-bit number (op ids, lease owners, leaf keys).
fn random_u64() -> u64 {
    // A ULID's random part comes from the platform's secure source.
    ulid::Ulid::generate().random() as u64
}

#[cfg(test)]
mod tests;
