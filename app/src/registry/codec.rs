//! The index's stored values and their keys: the intent log, set
//! directories (postcard, after a format byte) and leaves (sorted 16-byte
//! ids, after a format byte).

use serde::{Deserialize, Serialize};

use crate::hero::HeroId;
use crate::store::StoreError;

/// First byte of every index value; a value with another one was written by
/// a version this one does not understand.
const FORMAT: u8 = 1;

/// The intent log's key.
pub const LOG_KEY: &str = "heroes:log";

/// Bytes of one id in a leaf.
const ID_BYTES: usize = 16;

/// Where a hero stands, as far as the sets care.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Standing {
    /// Not (or no longer) a hero: never written, or deleted.
    Gone,
    /// A hero, in this team (or none).
    Live(Option<String>),
}

/// A set of heroes kept in creation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SetName<'a> {
    /// Every hero.
    All,
    /// The heroes of one team.
    Team(&'a str),
}

impl<'a> SetName<'a> {
    /// Whether a hero standing so belongs to this set.
    pub fn contains(self, standing: &Standing) -> bool {
        match (self, standing) {
            (_, Standing::Gone) => false,
            (SetName::All, Standing::Live(_)) => true,
            (SetName::Team(team), Standing::Live(Some(of))) => team == of,
            (SetName::Team(_), Standing::Live(None)) => false,
        }
    }

    /// The sets a hero standing so belongs to.
    pub fn of(standing: &'a Standing) -> impl Iterator<Item = SetName<'a>> {
        let team = match standing {
            Standing::Live(Some(team)) => Some(SetName::Team(team)),
            _ => None,
        };
        let all = matches!(standing, Standing::Live(_)).then_some(SetName::All);
        all.into_iter().chain(team)
    }

    /// The key of this set's directory. A team name is hex-encoded: any
    /// string is a valid, distinct key.
    pub fn key(self) -> String {
        match self {
            SetName::All => "heroes:all".to_owned(),
            SetName::Team(team) => {
                let mut key = String::with_capacity(13 + 2 * team.len());
                key.push_str("heroes:team:");
                for byte in team.bytes() {
                    key.push_str(&format!("{byte:02x}"));
                }
                key
            }
        }
    }
}

/// What a write is about to do to one hero, logged before it does it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// Random; tells two intents on the same hero apart.
    pub op: u64,
    /// The hero.
    pub id: [u8; ID_BYTES],
    /// When it was logged, in milliseconds since the epoch (writer's clock).
    pub at_ms: u64,
    /// The hero as the writer found it.
    pub before: Standing,
    /// The hero as the writer will leave it.
    pub after: Standing,
    /// Set by its writer once it will never swap for this intent again.
    pub done: bool,
}

impl Intent {
    /// The hero's id.
    pub fn hero(&self) -> HeroId {
        HeroId::from_bytes(self.id)
    }

    /// Whether the write changes who belongs to `set`.
    pub fn touches(&self, set: SetName<'_>) -> bool {
        set.contains(&self.before) != set.contains(&self.after)
    }
}

/// A time-limited claim on work only one request should do at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Random, per request.
    pub owner: u64,
    /// Void after this, in milliseconds since the epoch.
    pub until_ms: u64,
}

impl Lease {
    /// Whether it still holds at `now_ms`.
    pub fn holds(&self, now_ms: u64) -> bool {
        now_ms < self.until_ms
    }
}

/// The intent log: writes in progress or not yet folded into the sets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Log {
    /// In the order they were logged.
    pub intents: Vec<Intent>,
    /// A fold in progress.
    pub fold: Option<Lease>,
    /// While the store is being indexed for the first time; `None` once
    /// the sets hold every hero.
    pub indexing: Option<Lease>,
    /// Intents the last fold had to keep (the next fold starts once
    /// enough new ones have come).
    pub kept: u32,
}

/// One leaf of a set, as its directory lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeafRef {
    /// Names the leaf's key; a leaf is written once under a fresh key and
    /// never changed.
    pub key: u64,
    /// Ids at or above this one (and below the next leaf's) belong here.
    pub low: [u8; ID_BYTES],
    /// Ids in the leaf.
    pub count: u32,
}

impl LeafRef {
    /// The leaf's key in the store.
    pub fn store_key(&self) -> String {
        leaf_key(self.key)
    }
}

/// The store key of the leaf named `key`.
pub fn leaf_key(key: u64) -> String {
    format!("heroes:leaf:{key:016x}")
}

/// A set's directory: its leaves in id order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Directory {
    /// Ordered by `low`; ranges do not overlap.
    pub leaves: Vec<LeafRef>,
    /// Leaves the last change replaced, deleted by the next change (a list
    /// that read the previous directory may still be reading them).
    pub retired: Vec<u64>,
}

/// Encodes an index value.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let bytes = vec![FORMAT];
    postcard::to_extend(value, bytes).expect("index values are plain data and always encode")
}

/// Decodes an index value stored under `key`.
pub fn decode<T: for<'de> Deserialize<'de>>(key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&FORMAT, rest)) => postcard::from_bytes(rest)
            .map_err(|e| StoreError(format!("index value {key} is corrupt: {e}"))),
        _ => Err(StoreError(format!(
            "index value {key} has an unknown format"
        ))),
    }
}

/// A leaf's stored bytes.
pub fn encode_leaf(ids: &[HeroId]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(1 + ids.len() * ID_BYTES);
    bytes.push(FORMAT);
    for id in ids {
        bytes.extend_from_slice(&id.to_bytes());
    }
    bytes
}

/// A leaf's ids.
pub fn decode_leaf(key: &str, bytes: &[u8]) -> Result<Vec<HeroId>, StoreError> {
    match bytes.split_first() {
        Some((&FORMAT, rest)) if rest.len() % ID_BYTES == 0 => Ok(rest
            .chunks_exact(ID_BYTES)
            .map(|chunk| HeroId::from_bytes(chunk.try_into().expect("chunks are 16 bytes")))
            .collect()),
        _ => Err(StoreError(format!("leaf {key} is corrupt"))),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn values_round_trip_and_foreign_formats_are_errors() {
        let log = Log {
            intents: vec![Intent {
                op: 7,
                id: [3; 16],
                at_ms: 1_700_000_000_000,
                before: Standing::Live(Some("X".into())),
                after: Standing::Gone,
                done: true,
            }],
            fold: Some(Lease {
                owner: 1,
                until_ms: 2,
            }),
            indexing: None,
            kept: 4,
        };
        let bytes = encode(&log);
        assert_eq!(decode::<Log>(LOG_KEY, &bytes).unwrap(), log);
        assert!(decode::<Log>(LOG_KEY, b"").is_err());
        assert!(decode::<Log>(LOG_KEY, &[2, 0]).is_err());
        assert!(decode::<Log>(LOG_KEY, &bytes[..bytes.len() - 1]).is_err());

        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let ids = [HeroId::generate(at), HeroId::generate(at)];
        let leaf = encode_leaf(&ids);
        assert_eq!(leaf.len(), 33);
        assert_eq!(decode_leaf("l", &leaf).unwrap(), ids);
        assert!(decode_leaf("l", &leaf[..20]).is_err());
    }

    #[test]
    fn sets_know_their_members_and_keys() {
        let x = Standing::Live(Some("X".into()));
        let none = Standing::Live(None);
        assert!(SetName::All.contains(&none) && SetName::All.contains(&x));
        assert!(SetName::Team("X").contains(&x));
        assert!(!SetName::Team("X").contains(&none));
        assert!(!SetName::All.contains(&Standing::Gone));
        assert_eq!(
            SetName::of(&x).collect::<Vec<_>>(),
            [SetName::All, SetName::Team("X")]
        );
        assert_eq!(SetName::of(&Standing::Gone).count(), 0);
        assert_eq!(SetName::Team("A b").key(), "heroes:team:412062");
        assert_ne!(SetName::Team("").key(), SetName::All.key());
    }
}
