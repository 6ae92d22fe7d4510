//! The hero: its id, its stored and returned shape, and validation of input.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use ulid::Ulid;

use crate::error::{ApiError, FieldError, Loc};

/// Longest accepted `name`, in characters.
pub const NAME_MAX: usize = 100;
/// Longest accepted `power`, in characters.
pub const POWER_MAX: usize = 200;
/// Longest accepted `team`, in characters.
pub const TEAM_MAX: usize = 100;

/// Prefix of every hero key in the key-value store.
const KEY_PREFIX: &str = "hero:";

/// A hero's id: a ULID, so ids sort in creation order.
///
/// The 80 bits a ULID leaves random after its millisecond timestamp start here
/// with the nanoseconds within that millisecond (20 bits), then 60 random bits.
/// Instances do not share memory, so a per-instance monotonic counter alone
/// would order two heroes created in the same millisecond by different instances
/// at random; the sub-millisecond clock orders them by the wall clock every
/// instance of a host reads (and across replicas, as well as their clocks agree).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HeroId(Ulid);

/// Bits of a ULID after its millisecond timestamp.
const ULID_RANDOM_BITS: u32 = 80;
/// Of those, the bits holding nanoseconds within the millisecond (< 2^20).
const SUB_MILLI_BITS: u32 = 20;

impl HeroId {
    /// A new id for a hero created at `at`: ordered by `at` to the nanosecond,
    /// and strictly after every id this instance made before, so heroes created
    /// within one clock tick keep their order too.
    pub fn generate(at: SystemTime) -> Self {
        use std::sync::Mutex;
        static LAST: Mutex<Option<Ulid>> = Mutex::new(None);
        // Random bits only: `at` is the one clock reading this id gets.
        let candidate = Self::at_time(at, Ulid::from_datetime(at).random());
        let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
        let id = match *last {
            // The clock stood still or stepped back: count on from the last id
            // (into the next millisecond if this one is full).
            Some(previous) if candidate <= previous => {
                previous.increment().unwrap_or_else(|overflowed| overflowed)
            }
            _ => candidate,
        };
        *last = Some(id);
        HeroId(id)
    }

    /// The id for `at` with `random` supplying the random bits (only the low
    /// 60 are used).
    fn at_time(at: SystemTime, random: u128) -> Ulid {
        let since_epoch = at.duration_since(UNIX_EPOCH).unwrap_or_default();
        let random_bits = ULID_RANDOM_BITS - SUB_MILLI_BITS;
        let random = random & ((1u128 << random_bits) - 1);
        let sub_milli = u128::from(since_epoch.subsec_nanos() % 1_000_000);
        Ulid::from_parts(
            u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX),
            (sub_milli << random_bits) | random,
        )
    }

    /// Parses the canonical 26-character form; `None` for anything else.
    ///
    /// Only the form ids are written in names a hero: the decoder also takes
    /// lowercase letters, and a first character above `7` (past 128 bits)
    /// wraps around, so without the round trip one hero would have many
    /// addresses.
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != ulid::ULID_LEN {
            return None;
        }
        let id = Ulid::from_string(text).ok()?;
        let mut canonical = [0u8; ulid::ULID_LEN];
        (id.array_to_str(&mut canonical) == text).then_some(HeroId(id))
    }

    /// The key this hero is stored under.
    pub fn key(&self) -> String {
        let mut text = [0; ulid::ULID_LEN];
        let mut key = String::with_capacity(KEY_PREFIX.len() + ulid::ULID_LEN);
        key.push_str(KEY_PREFIX);
        key.push_str(self.0.array_to_str(&mut text));
        key
    }

    /// The id of a hero key; `None` for any other key (other apps may share
    /// the store).
    pub fn from_key(key: &str) -> Option<Self> {
        key.strip_prefix(KEY_PREFIX).and_then(Self::parse)
    }

    /// The id's 16 bytes, big-endian: byte order is id order.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_bytes()
    }

    /// The id of [`HeroId::to_bytes`]'s bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        HeroId(Ulid::from_bytes(bytes))
    }
}

impl std::fmt::Display for HeroId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A stored hero, exactly as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hero {
    /// The ULID, 26 characters.
    pub id: String,
    /// 1 to 100 characters, trimmed.
    pub name: String,
    /// 1 to 200 characters, trimmed.
    pub power: String,
    /// Up to 100 characters, trimmed, or none.
    pub team: Option<String>,
    /// RFC 3339 UTC with microseconds.
    pub created_at: String,
}

impl Hero {
    /// A hero made from validated input.
    pub fn new(id: HeroId, input: NewHero, created_at: SystemTime) -> Self {
        Hero {
            id: id.to_string(),
            name: input.name,
            power: input.power,
            team: input.team,
            created_at: rfc3339_micros(created_at),
        }
    }

    /// The same hero with its fields replaced; id and creation time are kept.
    pub fn replaced(self, input: NewHero) -> Self {
        Hero {
            name: input.name,
            power: input.power,
            team: input.team,
            ..self
        }
    }
}

/// Validated input of `POST /heroes` and `PUT /heroes/{id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewHero {
    /// Trimmed name.
    pub name: String,
    /// Trimmed power.
    pub power: String,
    /// Trimmed team, if any.
    pub team: Option<String>,
}

impl NewHero {
    /// Parses and validates a request body, reporting every problem at once
    /// as pydantic does.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::Validation(vec![FieldError::new(
                vec!["body".into()],
                "missing",
                "Field required",
            )]));
        }
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::Validation(vec![json_error(body, &e)]))?;
        let Value::Object(mut fields) = value else {
            return Err(ApiError::Validation(vec![FieldError::new(
                vec!["body".into()],
                "model_attributes_type",
                "Input should be a valid dictionary or object to extract fields from",
            )]));
        };

        let mut errors = Vec::new();
        let name = text_field(&mut fields, "name", NAME_MAX, &mut errors);
        let power = text_field(&mut fields, "power", POWER_MAX, &mut errors);
        let team = match fields.remove("team") {
            None | Some(Value::Null) => Some(None),
            Some(value) => check_text("team", value, TEAM_MAX, &mut errors).map(Some),
        };
        for unknown in fields.keys() {
            errors.push(FieldError::new(
                vec!["body".into(), unknown.as_str().into()],
                "extra_forbidden",
                "Extra inputs are not permitted",
            ));
        }
        match (name, power, team) {
            (Some(name), Some(power), Some(team)) if errors.is_empty() => {
                Ok(NewHero { name, power, team })
            }
            _ => Err(ApiError::Validation(errors)),
        }
    }
}

/// A required string field: present, a string, 1..=max characters once trimmed.
fn text_field(
    fields: &mut Map<String, Value>,
    name: &str,
    max: usize,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    match fields.remove(name) {
        Some(value) => check_text(name, value, max, errors),
        None => {
            errors.push(FieldError::new(
                vec!["body".into(), name.into()],
                "missing",
                "Field required",
            ));
            None
        }
    }
}

fn check_text(
    name: &str,
    value: Value,
    max: usize,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    let loc = || vec![Loc::from("body"), Loc::from(name)];
    let Value::String(text) = value else {
        errors.push(FieldError::new(
            loc(),
            "string_type",
            "Input should be a valid string",
        ));
        return None;
    };
    let trimmed = text.trim();
    let chars = trimmed.chars().count();
    if chars == 0 {
        errors.push(
            FieldError::new(
                loc(),
                "string_too_short",
                "String should have at least 1 character",
            )
            .with_ctx("min_length", 1),
        );
        None
    } else if chars > max {
        errors.push(
            FieldError::new(
                loc(),
                "string_too_long",
                format!("String should have at most {max} characters"),
            )
            .with_ctx("max_length", max),
        );
        None
    } else if trimmed.len() == text.len() {
        Some(text)
    } else {
        Some(trimmed.to_owned())
    }
}

/// A JSON syntax error located, as pydantic does, by its offset in the body.
fn json_error(body: &[u8], error: &serde_json::Error) -> FieldError {
    let offset = offset_of(body, error.line(), error.column());
    let message = error.to_string();
    // serde_json appends " at line L column C"; the offset already says where.
    let reason = message
        .rsplit_once(" at line ")
        .map_or(message.as_str(), |(reason, _)| reason);
    FieldError::new(
        vec!["body".into(), offset.into()],
        "json_invalid",
        "JSON decode error",
    )
    .with_ctx("error", reason)
}

/// Byte offset of a 1-based line and column (serde_json's position).
fn offset_of(body: &[u8], line: usize, column: usize) -> usize {
    let line_start: usize = body
        .split_inclusive(|b| *b == b'\n')
        .take(line.saturating_sub(1))
        .map(<[u8]>::len)
        .sum();
    (line_start + column.saturating_sub(1)).min(body.len())
}

/// Formats a time as RFC 3339 UTC with microseconds, e.g.
/// `2026-11-24T09:30:00.123456Z`.
pub fn rfc3339_micros(at: SystemTime) -> String {
    let since_epoch = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (days, secs_of_day) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        secs_of_day / 3600,
        secs_of_day / 60 % 60,
        secs_of_day % 60,
        since_epoch.subsec_micros()
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01
/// (Howard Hinnant's `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    fn errors_of(body: &str) -> Vec<FieldError> {
        match NewHero::parse(body.as_bytes()) {
            Err(ApiError::Validation(errors)) => errors,
            other => panic!("expected a validation error for {body}, got {other:?}"),
        }
    }

    fn kinds_and_locs(body: &str) -> Vec<(&'static str, String)> {
        errors_of(body)
            .into_iter()
            .map(|e| (e.kind, serde_json::to_string(&e.loc).unwrap()))
            .collect()
    }

    #[test]
    fn parses_a_valid_hero_and_trims_strings() {
        let hero =
            NewHero::parse(br#"{"name":"  Deadpond ","power":"regeneration\t","team":" X "}"#)
                .unwrap();
        assert_eq!(
            hero,
            NewHero {
                name: "Deadpond".into(),
                power: "regeneration".into(),
                team: Some("X".into())
            }
        );
    }

    #[test]
    fn team_is_optional_and_may_be_null() {
        let absent = NewHero::parse(br#"{"name":"a","power":"b"}"#).unwrap();
        let null = NewHero::parse(br#"{"name":"a","power":"b","team":null}"#).unwrap();
        assert_eq!(absent.team, None);
        assert_eq!(null.team, None);
    }

    #[test]
    fn rejects_missing_required_fields_all_at_once() {
        assert_eq!(
            kinds_and_locs("{}"),
            vec![
                ("missing", r#"["body","name"]"#.to_owned()),
                ("missing", r#"["body","power"]"#.to_owned())
            ]
        );
    }

    #[test]
    fn rejects_strings_empty_after_trimming() {
        let errors = errors_of(r#"{"name":"   ","power":"x","team":" "}"#);
        assert_eq!(errors.len(), 2);
        assert!(errors.iter().all(|e| e.kind == "string_too_short"));
        assert_eq!(errors[0].ctx.as_ref().unwrap()["min_length"], 1);
    }

    #[test]
    fn length_limits_count_characters_not_bytes() {
        let at_limit = "é".repeat(NAME_MAX);
        let body =
            json!({"name": at_limit, "power": "p".repeat(POWER_MAX), "team": "t".repeat(TEAM_MAX)});
        assert!(NewHero::parse(body.to_string().as_bytes()).is_ok());

        let body = json!({"name": "n".repeat(NAME_MAX + 1), "power": "p".repeat(POWER_MAX + 1), "team": "t".repeat(TEAM_MAX + 1)});
        let errors = errors_of(&body.to_string());
        assert_eq!(errors.len(), 3);
        assert!(errors.iter().all(|e| e.kind == "string_too_long"));
        assert_eq!(errors[1].msg, "String should have at most 200 characters");
        assert_eq!(errors[1].ctx.as_ref().unwrap()["max_length"], 200);
    }

    #[test]
    fn trimming_happens_before_the_length_check() {
        let name = format!("  {}  ", "n".repeat(NAME_MAX));
        let body = json!({"name": name, "power": "p"});
        assert_eq!(
            NewHero::parse(body.to_string().as_bytes())
                .unwrap()
                .name
                .len(),
            NAME_MAX
        );
    }

    #[test]
    fn rejects_non_string_values() {
        assert_eq!(
            kinds_and_locs(r#"{"name":1,"power":["x"],"team":false}"#),
            vec![
                ("string_type", r#"["body","name"]"#.to_owned()),
                ("string_type", r#"["body","power"]"#.to_owned()),
                ("string_type", r#"["body","team"]"#.to_owned())
            ]
        );
    }

    #[test]
    fn rejects_unknown_fields() {
        assert_eq!(
            kinds_and_locs(r#"{"name":"a","power":"b","id":"x"}"#),
            vec![("extra_forbidden", r#"["body","id"]"#.to_owned())]
        );
    }

    #[test]
    fn rejects_a_body_that_is_not_an_object() {
        assert_eq!(
            kinds_and_locs(r#"["name"]"#),
            vec![("model_attributes_type", r#"["body"]"#.to_owned())]
        );
    }

    #[test]
    fn rejects_an_empty_body_as_missing() {
        assert_eq!(
            kinds_and_locs("  "),
            vec![("missing", r#"["body"]"#.to_owned())]
        );
    }

    #[test]
    fn malformed_json_is_json_invalid_at_its_offset() {
        let errors = errors_of("{\"name\": \"a\",\n  oops}");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].kind, "json_invalid");
        assert_eq!(errors[0].loc, vec![Loc::from("body"), Loc::Index(16)]);
        let reason = errors[0].ctx.as_ref().unwrap()["error"].as_str().unwrap();
        assert!(!reason.contains("line"), "{reason}");
    }

    #[test]
    fn replacing_keeps_id_and_creation_time() {
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let id = HeroId::generate(at);
        let first = NewHero::parse(br#"{"name":"a","power":"b","team":"c"}"#).unwrap();
        let second = NewHero::parse(br#"{"name":"x","power":"y"}"#).unwrap();
        let hero = Hero::new(id, first, at);
        let replaced = hero.clone().replaced(second);
        assert_eq!(replaced.id, hero.id);
        assert_eq!(replaced.created_at, hero.created_at);
        assert_eq!((replaced.name.as_str(), replaced.team), ("x", None));
    }

    #[test]
    fn ids_order_by_time_within_a_millisecond() {
        let start = UNIX_EPOCH + Duration::from_millis(1_795_513_845_250);
        // As two instances would: an id made a nanosecond later sorts later
        // whatever the random bits, and keeps the millisecond timestamp.
        let nanos = [1u64, 2, 500, 999_999];
        let at = |n: u64| start + Duration::from_nanos(n);
        for pair in nanos.windows(2) {
            let earlier = HeroId::at_time(at(pair[0]), u128::MAX);
            let later = HeroId::at_time(at(pair[1]), 0);
            assert!(earlier < later, "{earlier} !< {later}");
            assert_eq!(later.timestamp_ms(), 1_795_513_845_250);
        }
        let ids: Vec<HeroId> = nanos.iter().map(|&n| HeroId::generate(at(n))).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        // A clock that steps back still yields a later id on this instance.
        let earlier = HeroId::generate(start);
        assert!(earlier > ids[3]);
    }

    #[test]
    fn ids_are_ulids_in_creation_order() {
        let at = SystemTime::now();
        let ids: Vec<HeroId> = (0..100).map(|_| HeroId::generate(at)).collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "same-millisecond ids keep order"
        );
        let text = ids[0].to_string();
        assert_eq!(text.len(), 26);
        assert_eq!(HeroId::parse(&text), Some(ids[0]));
        assert_eq!(HeroId::from_key(&ids[0].key()), Some(ids[0]));
        assert_eq!(ids[0].key(), format!("hero:{}", ids[0]));
        assert_eq!(HeroId::from_key("hero:short"), None);
        assert_eq!(HeroId::from_key("heroes:log"), None);
        assert_eq!(HeroId::from_bytes(ids[0].to_bytes()), ids[0]);
        assert_eq!(HeroId::parse("not-a-ulid"), None);
        assert_eq!(
            HeroId::parse("UUUUUUUUUUUUUUUUUUUUUUUUUU"),
            None,
            "U is not Crockford base32"
        );
    }

    #[test]
    fn only_the_canonical_form_of_an_id_parses() {
        let id = HeroId::generate(SystemTime::now()).to_string();
        assert!(HeroId::parse(&id).is_some());
        assert_eq!(HeroId::parse(&id.to_lowercase()), None, "lowercase");
        // Past 128 bits: `8…` would decode to the same value as `0…`.
        let overflowing = format!("8{}", &id[1..]);
        assert_eq!(HeroId::parse(&overflowing), None, "{overflowing}");
        assert_eq!(
            HeroId::parse("7ZZZZZZZZZZZZZZZZZZZZZZZZZ")
                .map(|i| i.to_string())
                .as_deref(),
            Some("7ZZZZZZZZZZZZZZZZZZZZZZZZZ"),
            "the largest ULID"
        );
        assert_eq!(HeroId::parse("80000000000000000000000000"), None);
        assert_eq!(HeroId::parse("ZZZZZZZZZZZZZZZZZZZZZZZZZZ"), None);
    }

    #[test]
    fn formats_rfc3339_utc_with_microseconds() {
        let at = UNIX_EPOCH + Duration::from_micros(951_782_400_000_001); // 2000-02-29
        assert_eq!(rfc3339_micros(at), "2000-02-29T00:00:00.000001Z");
        let at = UNIX_EPOCH + Duration::from_secs(1_795_513_845) + Duration::from_millis(250);
        assert_eq!(rfc3339_micros(at), "2026-11-24T09:50:45.250000Z");
        assert_eq!(rfc3339_micros(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
    }
}
