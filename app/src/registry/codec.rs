//! The index's stored values and their keys: the intent log (a head, then
//! its intents, each in postcard, after a format byte), set directories
//! (fixed-width, after a format byte) and leaves (sorted 16-byte ids, each with
//! its hero's stored value or not, after a format byte).

use serde::{Deserialize, Serialize};

use crate::hero::HeroId;
use crate::store::StoreError;

/// First byte of every index value; a value with another one was written by
/// a version this one does not understand.
const FORMAT: u8 = 1;

/// First byte of the intent log as this version writes it: a [`LogHead`],
/// then the intents to the end, so that a write appends its intent without
/// decoding the others. A log of [`FORMAT`] (the whole [`Log`] in postcard,
/// as the first indexing version wrote it) is still read, and rewritten in
/// this format by the next change. That version reads only its own format
/// and answers 500 to this one: replicas sharing a store move past it
/// together.
const LOG_FORMAT: u8 = 2;

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

    /// Whether this set's leaves carry their heroes' stored values beside
    /// their ids (only the set of every hero: a team's carry ids alone).
    pub fn carries_values(self) -> bool {
        self == SetName::All
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
/// (Deserialize reads the first format; [`encode_log`] and [`decode_log`]
/// are its codec.)
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
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

impl Log {
    /// Everything but the intents, and how many there are.
    pub fn head(&self) -> LogHead {
        LogHead {
            intents: u32::try_from(self.intents.len()).unwrap_or(u32::MAX),
            fold: self.fold,
            indexing: self.indexing,
            kept: self.kept,
        }
    }
}

/// The intent log without its intents: what a write needs to know after
/// appending one (whether a fold is due).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogHead {
    /// Intents in the log.
    pub intents: u32,
    /// A fold in progress.
    pub fold: Option<Lease>,
    /// While the store is being indexed for the first time.
    pub indexing: Option<Lease>,
    /// Intents the last fold had to keep.
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
    /// Whether the leaf carries every one of its heroes' values (not in a
    /// directory of [`FORMAT`]: the version that wrote those wrote leaves
    /// of ids alone).
    #[serde(skip)]
    pub carries_values: bool,
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

/// First byte of a directory as this version writes it: the number of
/// leaves (4 bytes), each leaf in [`LEAF_REF_BYTES`] (key, low, count,
/// whether it carries values; fixed width, little-endian), then the retired
/// keys (8 bytes each) to the end.
/// A directory of [`FORMAT`] (postcard) is still read; a set of 100,000
/// heroes has about 500 leaves, which postcard decoded byte by byte on every
/// list.
const DIRECTORY_FORMAT: u8 = 2;
/// Bytes of one leaf in a directory of [`DIRECTORY_FORMAT`].
const LEAF_REF_BYTES: usize = 8 + ID_BYTES + 4 + 1;

/// A directory's stored bytes.
pub fn encode_directory(dir: &Directory) -> Vec<u8> {
    let mut bytes =
        Vec::with_capacity(5 + dir.leaves.len() * LEAF_REF_BYTES + dir.retired.len() * 8);
    bytes.push(DIRECTORY_FORMAT);
    let leaves = u32::try_from(dir.leaves.len()).expect("a directory lists under 4 billion leaves");
    bytes.extend_from_slice(&leaves.to_le_bytes());
    for leaf in &dir.leaves {
        bytes.extend_from_slice(&leaf.key.to_le_bytes());
        bytes.extend_from_slice(&leaf.low);
        bytes.extend_from_slice(&leaf.count.to_le_bytes());
        bytes.push(u8::from(leaf.carries_values));
    }
    for key in &dir.retired {
        bytes.extend_from_slice(&key.to_le_bytes());
    }
    bytes
}

/// A directory as stored under `key` (either format).
pub fn decode_directory(key: &str, bytes: &[u8]) -> Result<Directory, StoreError> {
    let Some((&DIRECTORY_FORMAT, rest)) = bytes.split_first() else {
        return decode(key, bytes);
    };
    let corrupt = || StoreError(format!("index value {key} is corrupt"));
    let (count, rest) = rest.split_first_chunk::<4>().ok_or_else(corrupt)?;
    let count = u32::from_le_bytes(*count) as usize;
    let (leaves, retired) = rest
        .split_at_checked(count.checked_mul(LEAF_REF_BYTES).ok_or_else(corrupt)?)
        .ok_or_else(corrupt)?;
    if !retired.len().is_multiple_of(8) {
        return Err(corrupt());
    }
    let le_u64 = |bytes: &[u8]| u64::from_le_bytes(bytes.try_into().expect("8 bytes"));
    Ok(Directory {
        leaves: leaves
            .chunks_exact(LEAF_REF_BYTES)
            .map(|leaf| {
                let (count, flags) = leaf[8 + ID_BYTES..].split_at(4);
                LeafRef {
                    key: le_u64(&leaf[..8]),
                    low: leaf[8..8 + ID_BYTES].try_into().expect("16 bytes"),
                    count: u32::from_le_bytes(count.try_into().expect("4 bytes")),
                    carries_values: flags[0] == 1,
                }
            })
            .collect(),
        retired: retired.chunks_exact(8).map(le_u64).collect(),
    })
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

/// The intent log's stored bytes.
pub fn encode_log(log: &Log) -> Vec<u8> {
    let mut bytes = encode_log_head(&log.head(), 64 * log.intents.len());
    for intent in &log.intents {
        bytes = postcard::to_extend(intent, bytes).expect("an intent is plain data");
    }
    bytes
}

/// The format byte and `head`, in a buffer with room for `more` bytes.
fn encode_log_head(head: &LogHead, more: usize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(32 + more);
    bytes.push(LOG_FORMAT);
    postcard::to_extend(head, bytes).expect("a log head is plain data")
}

/// Decodes the intent log (either format).
pub fn decode_log(bytes: &[u8]) -> Result<Log, StoreError> {
    match bytes.split_first() {
        Some((&FORMAT, _)) => decode(LOG_KEY, bytes),
        Some((&LOG_FORMAT, rest)) => {
            let (head, mut rest) = take_log_head(rest)?;
            let mut intents = Vec::with_capacity((head.intents as usize).min(rest.len()));
            for _ in 0..head.intents {
                let (intent, after) = postcard::take_from_bytes(rest).map_err(corrupt_log)?;
                intents.push(intent);
                rest = after;
            }
            if !rest.is_empty() {
                return Err(corrupt_log("bytes after the last intent"));
            }
            Ok(Log {
                intents,
                fold: head.fold,
                indexing: head.indexing,
                kept: head.kept,
            })
        }
        _ => Err(StoreError(format!(
            "index value {LOG_KEY} has an unknown format"
        ))),
    }
}

/// The log `bytes` with `intent` appended, and its head; the intents
/// already there are copied, not decoded.
pub fn append_to_log(bytes: &[u8], intent: &Intent) -> Result<(Vec<u8>, LogHead), StoreError> {
    let Some((&LOG_FORMAT, rest)) = bytes.split_first() else {
        let mut log = decode_log(bytes)?;
        log.intents.push(intent.clone());
        return Ok((encode_log(&log), log.head()));
    };
    let (mut head, intents) = take_log_head(rest)?;
    head.intents = head
        .intents
        .checked_add(1)
        .ok_or_else(|| corrupt_log("too many intents"))?;
    let mut appended = encode_log_head(&head, intents.len() + 64);
    appended.extend_from_slice(intents);
    let appended = postcard::to_extend(intent, appended).expect("an intent is plain data");
    Ok((appended, head))
}

/// The head of a log of [`LOG_FORMAT`] (after the format byte) and the
/// intents' bytes after it.
fn take_log_head(bytes: &[u8]) -> Result<(LogHead, &[u8]), StoreError> {
    postcard::take_from_bytes(bytes).map_err(corrupt_log)
}

/// The error for a log of [`LOG_FORMAT`] that does not decode.
fn corrupt_log(error: impl std::fmt::Display) -> StoreError {
    StoreError(format!("index value {LOG_KEY} is corrupt: {error}"))
}

/// The log as the first indexing version wrote it: the whole `Log` in
/// postcard after format byte 1 (its fields in declaration order), for
/// tests that read such a store.
#[cfg(test)]
pub fn encode_first_format(log: &Log) -> Vec<u8> {
    #[derive(Serialize)]
    struct Written<'a>(&'a [Intent], Option<Lease>, Option<Lease>, u32);
    let written = Written(&log.intents, log.fold, log.indexing, log.kept);
    postcard::to_extend(&written, vec![FORMAT]).expect("a log is plain data")
}

/// First byte of a leaf whose ids carry their heroes' stored values: each
/// id, then the value's length (4 bytes, little-endian; [`NO_VALUE`] when it
/// carries none), then the value. Versions before it read only leaves of
/// [`FORMAT`] and answer 500 to these, and their PUTs that keep a hero's
/// team log no intent, which a value in a leaf relies on: as with
/// [`LOG_FORMAT`], replicas sharing a store move past it together.
const LEAF_WITH_VALUES: u8 = 2;
/// The length of an id's value in a leaf of [`LEAF_WITH_VALUES`] when it
/// carries none.
const NO_VALUE: u32 = u32::MAX;

/// One id of a leaf as stored: the hero, and its stored value as the change
/// that wrote the leaf saw it, when the leaf carries one.
pub type Member<'a> = (HeroId, Option<&'a [u8]>);

/// A leaf as read: its ids in order, each with where its value lies in the
/// leaf's bytes (read in place, not copied out).
pub struct Leaf {
    bytes: Vec<u8>,
    entries: Vec<(HeroId, Option<std::ops::Range<usize>>)>,
}

impl Leaf {
    /// The ids, in order.
    pub fn ids(&self) -> impl Iterator<Item = HeroId> + '_ {
        self.entries.iter().map(|(id, _)| *id)
    }

    /// The ids with their values, in order.
    pub fn members(&self) -> impl Iterator<Item = Member<'_>> {
        self.entries
            .iter()
            .map(|(id, range)| (*id, range.clone().map(|range| &self.bytes[range])))
    }

    /// The `i`th id's value, if the leaf carries one.
    pub fn value(&self, i: usize) -> Option<&[u8]> {
        let range = self.entries.get(i)?.1.clone()?;
        Some(&self.bytes[range])
    }
}

/// A leaf's stored bytes: ids only (the first format) when no member
/// carries a value, so sets that never carry values read as before.
pub fn encode_leaf(members: &[Member<'_>]) -> Vec<u8> {
    if members.iter().all(|(_, value)| value.is_none()) {
        let mut bytes = Vec::with_capacity(1 + members.len() * ID_BYTES);
        bytes.push(FORMAT);
        for (id, _) in members {
            bytes.extend_from_slice(&id.to_bytes());
        }
        return bytes;
    }
    let values: usize = members
        .iter()
        .map(|(_, value)| value.map_or(0, <[u8]>::len))
        .sum();
    let mut bytes = Vec::with_capacity(1 + members.len() * (ID_BYTES + 4) + values);
    bytes.push(LEAF_WITH_VALUES);
    for (id, value) in members {
        bytes.extend_from_slice(&id.to_bytes());
        match value {
            Some(value) => {
                let len = u32::try_from(value.len())
                    .ok()
                    .filter(|&len| len != NO_VALUE)
                    .expect("a hero's stored value is far below 4 GiB");
                bytes.extend_from_slice(&len.to_le_bytes());
                bytes.extend_from_slice(value);
            }
            None => bytes.extend_from_slice(&NO_VALUE.to_le_bytes()),
        }
    }
    bytes
}

/// A leaf as stored under `key` (either format).
pub fn decode_leaf(key: &str, bytes: Vec<u8>) -> Result<Leaf, StoreError> {
    let corrupt = || StoreError(format!("leaf {key} is corrupt"));
    let id_at = |at: usize| -> Option<HeroId> {
        let chunk = bytes.get(at..at + ID_BYTES)?;
        Some(HeroId::from_bytes(chunk.try_into().ok()?))
    };
    let entries = match bytes.split_first() {
        Some((&FORMAT, ids)) if ids.len().is_multiple_of(ID_BYTES) => ids
            .chunks_exact(ID_BYTES)
            .map(|id| (HeroId::from_bytes(id.try_into().expect("16 bytes")), None))
            .collect(),
        Some((&LEAF_WITH_VALUES, _)) => {
            let mut entries = Vec::new();
            let mut at = 1;
            while at < bytes.len() {
                let id = id_at(at).ok_or_else(corrupt)?;
                let len = bytes
                    .get(at + ID_BYTES..at + ID_BYTES + 4)
                    .and_then(|len| len.try_into().ok())
                    .map(u32::from_le_bytes)
                    .ok_or_else(corrupt)?;
                at += ID_BYTES + 4;
                let value = if len == NO_VALUE {
                    None
                } else {
                    let end = at
                        .checked_add(len as usize)
                        .filter(|&end| end <= bytes.len())
                        .ok_or_else(corrupt)?;
                    let range = at..end;
                    at = end;
                    Some(range)
                };
                entries.push((id, value));
            }
            entries
        }
        _ => return Err(corrupt()),
    };
    Ok(Leaf { bytes, entries })
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
        let bytes = encode_log(&log);
        assert_eq!(bytes[0], LOG_FORMAT);
        assert_eq!(decode_log(&bytes).unwrap(), log);
        assert!(decode_log(b"").is_err());
        assert!(decode_log(&[3, 0]).is_err());
        assert!(decode_log(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode_log(&[bytes.as_slice(), &[0]].concat()).is_err());

        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let ids = [HeroId::generate(at), HeroId::generate(at)];
        let leaf = encode_leaf(&[(ids[0], None), (ids[1], None)]);
        assert_eq!(leaf.len(), 33, "ids alone: the first format");
        assert_eq!(leaf[0], FORMAT);
        let read = decode_leaf("l", leaf.clone()).unwrap();
        assert_eq!(read.ids().collect::<Vec<_>>(), ids);
        assert_eq!(
            (read.value(0), read.value(1), read.value(2)),
            (None, None, None)
        );
        assert!(decode_leaf("l", leaf[..20].to_vec()).is_err());
    }

    #[test]
    fn leaves_carry_values_beside_their_ids_and_truncation_is_an_error() {
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let ids = [
            HeroId::generate(at),
            HeroId::generate(at),
            HeroId::generate(at),
        ];
        let members: [Member<'_>; 3] = [
            (ids[0], Some(b"{\"name\":\"A\"}")),
            (ids[1], None),
            (ids[2], Some(b"")),
        ];
        let bytes = encode_leaf(&members);
        assert_eq!(bytes[0], LEAF_WITH_VALUES);
        assert_eq!(bytes.len(), 1 + 3 * (ID_BYTES + 4) + 12);
        let leaf = decode_leaf("l", bytes.clone()).unwrap();
        assert_eq!(leaf.members().collect::<Vec<_>>(), members);
        assert_eq!(leaf.ids().collect::<Vec<_>>(), ids);
        assert_eq!(leaf.value(0), Some(&b"{\"name\":\"A\"}"[..]));
        assert_eq!(leaf.value(1), None);
        assert_eq!(leaf.value(2), Some(&b""[..]));
        for cut in 2..bytes.len() {
            let truncated = &bytes[..cut];
            let read = decode_leaf("l", truncated.to_vec());
            let whole = [1 + ID_BYTES + 4 + 12, 1 + 2 * (ID_BYTES + 4) + 12];
            assert_eq!(read.is_ok(), whole.contains(&cut), "cut at {cut}");
        }
        assert!(decode_leaf("l", vec![3]).is_err(), "an unknown format");
        assert!(decode_leaf("l", Vec::new()).is_err());
    }

    #[test]
    fn directories_round_trip_in_either_format_and_truncation_is_an_error() {
        let dir = Directory {
            leaves: vec![
                LeafRef {
                    key: 0x0123_4567_89ab_cdef,
                    low: [0; 16],
                    count: 7,
                    carries_values: true,
                },
                LeafRef {
                    key: u64::MAX,
                    low: [0xa5; 16],
                    count: 1024,
                    carries_values: false,
                },
            ],
            retired: vec![1, u64::MAX - 1],
        };
        let bytes = encode_directory(&dir);
        assert_eq!(bytes[0], DIRECTORY_FORMAT);
        assert_eq!(bytes.len(), 5 + 2 * LEAF_REF_BYTES + 16);
        assert_eq!(decode_directory("d", &bytes).unwrap(), dir);
        let first = encode(&dir);
        assert_eq!(first[0], FORMAT, "as the first indexing version wrote it");
        let mut bare = dir.clone();
        bare.leaves[0].carries_values = false;
        assert_eq!(
            decode_directory("d", &first).unwrap(),
            bare,
            "leaves of that version carry no values"
        );
        let empty = encode_directory(&Directory::default());
        assert_eq!(decode_directory("d", &empty).unwrap(), Directory::default());
        for cut in 0..bytes.len() {
            let read = decode_directory("d", &bytes[..cut]);
            // Cut between two retired keys, it is a shorter list of them.
            let whole = cut == 5 + 2 * LEAF_REF_BYTES || cut == 5 + 2 * LEAF_REF_BYTES + 8;
            assert_eq!(read.is_ok(), whole, "cut at {cut}");
        }
        assert!(decode_directory("d", &[3]).is_err(), "an unknown format");
    }

    #[test]
    fn appending_an_intent_is_decoding_pushing_and_encoding_in_either_format() {
        let intent = |op, team: &str| Intent {
            op,
            id: [op as u8; 16],
            at_ms: 1_700_000_000_000 + op,
            before: Standing::Gone,
            after: Standing::Live(Some(team.into())),
            done: false,
        };
        let mut log = Log {
            intents: vec![intent(1, "A"), intent(2, "B")],
            fold: None,
            indexing: Some(Lease {
                owner: 9,
                until_ms: 10,
            }),
            kept: 1,
        };
        let old = encode_first_format(&log);
        assert_eq!(decode_log(&old).unwrap(), log, "the first format reads");
        let (from_old, head) = append_to_log(&old, &intent(3, "C")).unwrap();
        let (from_new, same_head) = append_to_log(&encode_log(&log), &intent(3, "C")).unwrap();
        log.intents.push(intent(3, "C"));
        assert_eq!(from_old, encode_log(&log), "rewritten in this format");
        assert_eq!(from_new, from_old);
        assert_eq!((head, same_head), (log.head(), log.head()));
        assert_eq!(head.intents, 3);
        assert_eq!(decode_log(&from_new).unwrap(), log);
        assert!(append_to_log(&[LOG_FORMAT], &intent(4, "D")).is_err());
        let empty = encode_log(&Log::default());
        let (one, _) = append_to_log(&empty, &intent(4, "D")).unwrap();
        assert_eq!(decode_log(&one).unwrap().intents, [intent(4, "D")]);
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
