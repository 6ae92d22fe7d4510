//! Indexing a store the previous version wrote (heroes, no log), once, on
//! first use; and the list that reads every hero, as that version did, for
//! the moments while the index is being built (see the module docs of
//! [`super`]).

use std::collections::BTreeMap;

use super::codec::{LOG_KEY, Leaf, Lease, Log, SetName, decode_log, encode_log};
use super::list::{Found, Page};
use super::log::new_op;
use super::sets::{Change, LEAF_MAX};
use super::{LEASE_MS, MAX_ATTEMPTS, Registry};
use crate::error::ApiError;
use crate::hero::HeroId;
use crate::store::{KeyValue, Swapped};

/// Heroes read per `get-many` while indexing.
const BATCH: usize = 256;

impl<S: KeyValue> Registry<'_, S> {
    /// Makes sure the store has an index: if it has no log (or an abandoned
    /// indexing lease), takes the lease and builds every set. Returns
    /// without waiting when another request is building it.
    pub(super) async fn ensure_indexed(&self) -> Result<(), ApiError> {
        let mut watched = self.store.watch(LOG_KEY).await?;
        for _ in 0..MAX_ATTEMPTS {
            let now = self.now_ms();
            let mut log = match &watched.current {
                Some(bytes) => decode_log(bytes)?,
                None => Log::default(),
            };
            let indexed = watched.current.is_some() && log.indexing.is_none();
            let building = log.indexing.is_some_and(|lease| lease.holds(now));
            if indexed || building {
                return Ok(());
            }
            let lease = Lease {
                owner: new_op(),
                until_ms: now + LEASE_MS,
            };
            log.indexing = Some(lease);
            match self.store.swap(watched.handle, &encode_log(&log)).await? {
                Swapped::Done => return self.build(&lease).await,
                Swapped::Conflict(next) => watched = next,
            }
        }
        Err(ApiError::Unavailable("the intent log kept changing".into()))
    }

    /// Builds every set from every hero key, reading each hero once (the
    /// set of every hero a leaf's worth at a time, with their values), then
    /// clears the lease.
    async fn build(&self, lease: &Lease) -> Result<(), ApiError> {
        let ids = self.sorted_hero_ids().await?;
        // An earlier, abandoned attempt may have left members: clear them.
        self.fill(SetName::All, &[], lease).await?;
        let mut teams: BTreeMap<String, Vec<HeroId>> = BTreeMap::new();
        self.carry_values(&ids, lease, |id, team| {
            if let Some(team) = team {
                teams.entry(team).or_default().push(id);
            }
        })
        .await?;
        for (team, ids) in &teams {
            self.fill(SetName::Team(team), ids, lease).await?;
        }
        let (log, _) = super::log::update_log(self.store, |log| {
            let ours = log.indexing.is_some_and(|held| held.owner == lease.owner);
            ours.then(|| log.indexing = None)
        })
        .await?
        .ok_or_else(|| ApiError::Internal("the intent log vanished while indexing".into()))?;
        if log.indexing.is_some() {
            return Err(ApiError::Unavailable("indexing outlived its lease".into()));
        }
        Ok(())
    }

    /// Makes `set` hold exactly `ids`, while the indexing `lease` holds.
    async fn fill(&self, set: SetName<'_>, ids: &[HeroId], lease: &Lease) -> Result<(), ApiError> {
        // An earlier, abandoned attempt may have left members: clear them.
        let current = self.members(set).await?;
        let mut changes: BTreeMap<HeroId, Change<'_>> =
            current.into_iter().map(|id| (id, Change::Out)).collect();
        changes.extend(ids.iter().map(|id| (*id, Change::In(None))));
        self.change_set(set, &changes, lease).await?;
        Ok(())
    }

    /// Makes the live heroes of `ids` members of the set of every hero,
    /// their leaves carrying their stored values, a leaf's worth at a time
    /// (so a store of any size is indexed in bounded memory), while `lease`
    /// (indexing or fold) holds; tells `live` each one's id and team. A hero
    /// changed since the log was read is named by its write's intent, which
    /// lists resolve and the next fold settles; one deleted since is left as
    /// it is, for the same reason.
    pub(super) async fn carry_values(
        &self,
        ids: &[HeroId],
        lease: &Lease,
        mut live: impl FnMut(HeroId, Option<String>),
    ) -> Result<(), ApiError> {
        for batch in ids.chunks(LEAF_MAX) {
            let keys: Vec<String> = batch.iter().map(HeroId::key).collect();
            let mut heroes = Vec::with_capacity(batch.len());
            for ((id, key), value) in batch
                .iter()
                .zip(&keys)
                .zip(self.store.get_many(&keys).await?)
            {
                if let Found::Live { team, value } = Found::parse(key, value)? {
                    live(*id, team);
                    heroes.push((*id, value));
                }
            }
            let changes: BTreeMap<HeroId, Change<'_>> = heroes
                .iter()
                .map(|(id, value)| (*id, Change::In(Some(value.as_slice()))))
                .collect();
            self.change_set(SetName::All, &changes, lease).await?;
        }
        Ok(())
    }

    /// Every id a set's leaves hold.
    async fn members(&self, set: SetName<'_>) -> Result<Vec<HeroId>, ApiError> {
        let key = set.key();
        let dir = super::sets::parse_directory(&key, self.store.get(&key).await?.as_deref())?;
        let leaves = super::sets::read_leaves(self.store, &dir.leaves)
            .await?
            .ok_or_else(|| ApiError::Internal(format!("a leaf of {key} is gone")))?;
        Ok(leaves.iter().flat_map(Leaf::ids).collect())
    }

    /// Every stored hero's id, in creation order (ids are ULIDs), read
    /// through every key: used only to build the index and before it exists.
    async fn sorted_hero_ids(&self) -> Result<Vec<HeroId>, ApiError> {
        let mut ids: Vec<HeroId> = self
            .store
            .keys()
            .await?
            .iter()
            .filter_map(|key| HeroId::from_key(key))
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// A page read from every hero, as the previous version listed.
    pub(super) async fn scan_list(&self, page: &Page<'_>) -> Result<Vec<u8>, ApiError> {
        let ids = self.sorted_hero_ids().await?;
        let mut body = vec![b'['];
        let (mut skip, mut taken) = (page.offset, 0);
        for batch in ids.chunks(BATCH) {
            let keys: Vec<String> = batch.iter().map(HeroId::key).collect();
            for (key, value) in keys.iter().zip(self.store.get_many(&keys).await?) {
                let Found::Live { team, value } = Found::parse(key, value)? else {
                    continue;
                };
                if page
                    .team
                    .is_some_and(|wanted| team.as_deref() != Some(wanted))
                {
                    continue;
                }
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                if taken > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(&value);
                taken += 1;
                if taken == page.limit {
                    body.push(b']');
                    return Ok(body);
                }
            }
        }
        body.push(b']');
        Ok(body)
    }
}
