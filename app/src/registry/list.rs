//! A page of a set: the leaves skipped by their counts, the page's leaves
//! read, ids with pending intents resolved from their heroes, then the
//! page copied out of the leaves that carry its heroes' values, and the
//! heroes no leaf carries read in one `get-many` (see the module docs of
//! [`super`]).

use std::collections::BTreeMap;

use super::codec::{Directory, LOG_KEY, Leaf, Log, SetName, Standing, decode_log};
use super::sets::{leaf_of, parse_directory, read_leaves};
use super::{Registry, TOMBSTONE};
use crate::error::ApiError;
use crate::hero::{Hero, HeroId};
use crate::store::KeyValue;

/// Which heroes a list wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page<'a> {
    /// At most this many.
    pub limit: usize,
    /// After skipping this many.
    pub offset: usize,
    /// Only this team's (all heroes when `None`).
    pub team: Option<&'a str>,
}

/// What a hero key held when read.
pub enum Found {
    /// Nothing: never written, or a deleted hero's tombstone since removed.
    Absent,
    /// A deleted hero.
    Tombstone,
    /// A hero: its team and the stored JSON.
    Live {
        /// The hero's team.
        team: Option<String>,
        /// The stored value, as the API returns it.
        value: Vec<u8>,
    },
}

impl Found {
    /// Reads a stored value (`key` names it in errors).
    pub fn parse(key: &str, value: Option<Vec<u8>>) -> Result<Found, ApiError> {
        Ok(match value {
            None => Found::Absent,
            Some(value) if value == TOMBSTONE => Found::Tombstone,
            Some(value) => {
                let hero: Hero = serde_json::from_slice(&value).map_err(|e| {
                    ApiError::Internal(format!("stored value of {key} is not a hero: {e}"))
                })?;
                Found::Live {
                    team: hero.team,
                    value,
                }
            }
        })
    }

    /// Where the hero stands.
    pub fn standing(&self) -> Standing {
        match self {
            Found::Absent | Found::Tombstone => Standing::Gone,
            Found::Live { team, .. } => Standing::Live(team.clone()),
        }
    }
}

/// Reads of a page before it gives up (`503`) or, on the last, answers a
/// page short of a hero deleted meanwhile.
const LIST_ATTEMPTS: usize = 4;

impl<S: KeyValue> Registry<'_, S> {
    /// The JSON array of a page of heroes, in creation order.
    pub async fn list(&self, page: &Page<'_>) -> Result<Vec<u8>, ApiError> {
        let set = page.team.map_or(SetName::All, SetName::Team);
        let keys = [LOG_KEY.to_owned(), set.key()];
        for attempt in 1..=LIST_ATTEMPTS {
            // The log before the directory: a fold commits the directory
            // before it removes intents, so this pair is never torn.
            let mut values = self.store.get_many(&keys).await?.into_iter();
            let (log, dir) = (values.next().flatten(), values.next().flatten());
            let Some(log) = log else {
                self.ensure_indexed().await?;
                continue;
            };
            let log = decode_log(&log)?;
            if let Some(lease) = log.indexing {
                if lease.holds(self.now_ms()) {
                    return self.scan_list(page).await;
                }
                self.ensure_indexed().await?;
                continue;
            }
            let dir = parse_directory(&keys[1], dir.as_deref())?;
            let tolerate_deleted = attempt == LIST_ATTEMPTS;
            if let Some(body) = self.page(set, &log, &dir, page, tolerate_deleted).await? {
                return Ok(body);
            }
        }
        Err(ApiError::Unavailable(
            "the index kept changing under this list".into(),
        ))
    }

    /// The page, or `None` if a leaf was retired meanwhile or, unless
    /// `tolerate_deleted` (the last attempt), a chosen hero was deleted
    /// meanwhile (read again).
    async fn page(
        &self,
        set: SetName<'_>,
        log: &Log,
        dir: &Directory,
        page: &Page<'_>,
        tolerate_deleted: bool,
    ) -> Result<Option<Vec<u8>>, ApiError> {
        // Ids whose membership, or value, the leaves may not show yet, by
        // leaf.
        let mut pending: BTreeMap<usize, Vec<HeroId>> = BTreeMap::new();
        for intent in &log.intents {
            if !(intent.touches(set) || set.carries_values()) {
                continue;
            }
            let id = intent.hero();
            let ids = pending.entry(leaf_of(dir, id)).or_default();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        let mut resolved = BTreeMap::new();
        let mut skip = page.offset;
        let mut leaves: Vec<Leaf> = Vec::new();
        let mut chosen: Vec<Chosen> = Vec::with_capacity(page.limit);
        // An empty set still has one (empty) leaf for pending creations.
        for i in 0..dir.leaves.len().max(1) {
            let leaf = dir.leaves.get(i);
            let pending = pending.get(&i).map(Vec::as_slice).unwrap_or_default();
            let count = leaf.map_or(0, |leaf| leaf.count as usize);
            if pending.is_empty() && skip >= count {
                skip -= count;
                continue;
            }
            if let Some(leaf) = leaf {
                match read_leaves(self.store, std::slice::from_ref(leaf)).await? {
                    Some(mut read) => leaves.extend(read.pop()),
                    None => return Ok(None),
                }
            }
            let mut members: Vec<Chosen> = match leaf.and(leaves.last()) {
                Some(read) => {
                    let this = leaves.len() - 1;
                    let stored = |at| read.value(at).map(|_| (this, at));
                    let ids = read.ids().enumerate();
                    ids.map(|(at, id)| Chosen {
                        id,
                        stored: stored(at),
                    })
                    .collect()
                }
                None => Vec::new(),
            };
            if !pending.is_empty() {
                self.resolve(pending, &mut resolved).await?;
                members.retain(|member| !pending.contains(&member.id));
                members.extend(
                    pending
                        .iter()
                        .filter(|id| set.contains(&resolved[*id].standing()))
                        .map(|&id| Chosen { id, stored: None }),
                );
                members.sort_unstable_by_key(|member| member.id);
            }
            let skipped = skip.min(members.len());
            skip -= skipped;
            let wanted = page.limit - chosen.len();
            chosen.extend(members.into_iter().skip(skipped).take(wanted));
            if chosen.len() == page.limit {
                break;
            }
        }
        self.body(&chosen, &leaves, resolved, tolerate_deleted)
            .await
    }

    /// Reads the heroes of `ids` into `resolved`.
    async fn resolve(
        &self,
        ids: &[HeroId],
        resolved: &mut BTreeMap<HeroId, Found>,
    ) -> Result<(), ApiError> {
        let keys: Vec<String> = ids.iter().map(HeroId::key).collect();
        let values = self.store.get_many(&keys).await?;
        for ((id, key), value) in ids.iter().zip(&keys).zip(values) {
            resolved.insert(*id, Found::parse(key, value)?);
        }
        Ok(())
    }

    /// The JSON array of the chosen heroes: stored values are the JSON the
    /// API returns, copied as they are, from the leaves that carry them or
    /// else from the heroes. A hero read from its key and deleted since the
    /// log was read would leave the page short, and a client paging through
    /// would stop there: `None` (read the page again, the delete's intent
    /// now in the log), unless `tolerate_deleted`, when it is left out.
    async fn body(
        &self,
        chosen: &[Chosen],
        leaves: &[Leaf],
        mut resolved: BTreeMap<HeroId, Found>,
        tolerate_deleted: bool,
    ) -> Result<Option<Vec<u8>>, ApiError> {
        let unread: Vec<String> = chosen
            .iter()
            .filter(|member| member.stored.is_none() && !resolved.contains_key(&member.id))
            .map(|member| member.id.key())
            .collect();
        let mut read = self.store.get_many(&unread).await?.into_iter();
        let mut body = Vec::with_capacity(256 * chosen.len() + 2);
        body.push(b'[');
        for member in chosen {
            let stored = member
                .stored
                .and_then(|(leaf, at)| leaves.get(leaf)?.value(at));
            let fetched;
            let value = match stored {
                Some(value) => Some(value),
                None => match resolved.remove(&member.id) {
                    Some(Found::Live { value, .. }) => {
                        fetched = value;
                        Some(fetched.as_slice())
                    }
                    Some(Found::Absent | Found::Tombstone) => None,
                    None => match read.next().flatten() {
                        Some(value) if value != TOMBSTONE => {
                            fetched = value;
                            Some(fetched.as_slice())
                        }
                        _ => None,
                    },
                },
            };
            let Some(value) = value else {
                if tolerate_deleted {
                    continue;
                }
                return Ok(None);
            };
            if body.len() > 1 {
                body.push(b',');
            }
            body.extend_from_slice(value);
        }
        body.push(b']');
        Ok(Some(body))
    }
}

/// A hero chosen for the page, and where its value lies in the leaves
/// read (leaf, position), when one carries it.
struct Chosen {
    id: HeroId,
    stored: Option<(usize, usize)>,
}
