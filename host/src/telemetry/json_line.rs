//! Builds one JSON object on one line, with every string escaped (control
//! characters, quotes, backslashes; invalid UTF-8 replaced) and the whole
//! line capped at [`MAX_LINE`] bytes. A value cut short ends in `…` and the
//! line gets `"truncated": true`.

use std::cell::Cell;
use std::io::Write;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::trace::HexId;

/// Longest line written, newline included.
pub const MAX_LINE: usize = 16 * 1024;
/// Room kept for the closing `,"truncated":true}` and the newline.
const CLOSING_RESERVE: usize = 24;
/// Room a string value leaves for the small fields that may follow it.
const SMALL_FIELDS_RESERVE: usize = 512;
/// Marks a value that was cut short.
const ELLIPSIS: &str = "…";

/// One part of a joined string field.
#[derive(Clone, Copy)]
pub enum Part<'a> {
    /// Text the host knows needs no escaping: its own literals, HTTP
    /// methods (tokens, which exclude quotes, backslashes and control
    /// characters), digits. Copied as it is, unscanned.
    Plain(&'a str),
    /// Any text: escaped where needed.
    Text(&'a str),
}

/// String fields rendered once (keys, quotes, escaped values), for lines
/// that all carry them with the same values: a route's component and route
/// on every invocation line. Each value is cut at [`Fields::VALUE_MAX`]
/// bytes, and a line that takes a cut one is marked truncated.
#[derive(Debug)]
pub struct Fields {
    text: Box<[u8]>,
    truncated: bool,
}

impl Fields {
    /// The longest value kept whole.
    pub const VALUE_MAX: usize = 1024;

    /// Renders `fields`, in order.
    pub fn strings(fields: &[(&'static str, &str)]) -> Self {
        let mut line = JsonLine {
            buf: Vec::new(),
            truncated: false,
        };
        for (key, value) in fields {
            line.str_capped(key, value, Self::VALUE_MAX);
        }
        Fields {
            text: line.buf.into_boxed_slice(),
            truncated: line.truncated,
        }
    }
}

/// Where a part of a string field went in its line: the range of the
/// line's bytes that holds its escaped text.
#[derive(Debug)]
pub struct Written(Range<usize>);

/// A string field opened: where its text starts and how many bytes of
/// text it may take.
struct OpenString {
    start: usize,
    limit: usize,
}

/// A JSON object being written into a reusable buffer.
pub struct JsonLine {
    buf: Vec<u8>,
    truncated: bool,
}

impl JsonLine {
    /// Starts a line with `timestamp` (RFC 3339 UTC, microseconds), `level`
    /// and `target`, the fields every line carries.
    pub fn start(buf: Vec<u8>, at: SystemTime, level: &'static str, target: &str) -> Self {
        let mut line = JsonLine {
            buf,
            truncated: false,
        };
        line.buf.clear();
        line.buf.push(b'{');
        line.buf.extend_from_slice(b"\"timestamp\":\"");
        push_timestamp(&mut line.buf, at);
        line.buf.push(b'"');
        line.plain("level", level, usize::MAX);
        line.str("target", target);
        line
    }

    /// Starts a field named by the host: its keys are literals that never
    /// need escaping, so they are copied as they are.
    fn key(&mut self, key: &'static str) {
        debug_assert_eq!(plain_prefix(key.as_bytes()), key.len(), "{key:?}");
        self.plain_key(key);
    }

    /// Starts a field named by a guest, escaping its key where needed.
    fn any_key(&mut self, key: &str) {
        if plain_prefix(key.as_bytes()) == key.len() {
            self.plain_key(key);
        } else {
            self.buf.push(b',');
            escape_into(&mut self.buf, key, usize::MAX);
            self.buf.push(b':');
        }
    }

    /// Starts a field whose key needs no escaping.
    fn plain_key(&mut self, key: &str) {
        // Whole slices, not byte pushes: one capacity check each.
        self.buf.extend_from_slice(b",\"");
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }

    fn room(&self) -> usize {
        MAX_LINE.saturating_sub(self.buf.len() + CLOSING_RESERVE)
    }

    /// Adds a string field, cut to at most `max` bytes of escaped text (and
    /// to what is left of the line).
    pub fn str_capped(&mut self, key: &'static str, value: &str, max: usize) {
        if let Some(text) = self.open_string(key, max) {
            self.truncated |= escape_text(&mut self.buf, value, text.start, text.limit);
            self.buf.push(b'"');
        }
    }

    /// Adds a string field, cut to what is left of the line.
    pub fn str(&mut self, key: &'static str, value: &str) {
        self.str_capped(key, value, usize::MAX);
    }

    /// Adds a string field made of `parts` joined by spaces, cut like
    /// [`JsonLine::str_capped`]. Returns where each part's text went in the
    /// line when none was cut (see [`JsonLine::str_again`]).
    pub fn str_joined<const N: usize>(
        &mut self,
        key: &'static str,
        parts: [Part<'_>; N],
        max: usize,
    ) -> Option<[Written; N]> {
        let text = self.open_string(key, max)?;
        let mut written = [const { Written(0..0) }; N];
        for (i, part) in parts.into_iter().enumerate() {
            let cut = (i > 0 && copy_plain(&mut self.buf, " ", text.start, text.limit)) || {
                let begin = self.buf.len();
                let cut = match part {
                    Part::Plain(part) => copy_plain(&mut self.buf, part, text.start, text.limit),
                    Part::Text(part) => escape_text(&mut self.buf, part, text.start, text.limit),
                };
                written[i] = Written(begin..self.buf.len());
                cut
            };
            if cut {
                self.truncated = true;
                self.buf.push(b'"');
                return None;
            }
        }
        self.buf.push(b'"');
        Some(written)
    }

    /// Adds a string field the host knows needs no escaping (see
    /// [`Part::Plain`]), cut like [`JsonLine::str_capped`] but not scanned.
    pub fn plain(&mut self, key: &'static str, value: &str, max: usize) {
        if let Some(text) = self.open_string(key, max) {
            self.truncated |= copy_plain(&mut self.buf, value, text.start, text.limit);
            self.buf.push(b'"');
        }
    }

    /// Adds a string field whose value is `value`, already written whole in
    /// this line at `earlier` (by [`JsonLine::str_joined`]): its escaped
    /// text is copied rather than escaped again, unless it would be cut
    /// here, when `value` is escaped and cut as [`JsonLine::str_capped`]
    /// does.
    pub fn str_again(&mut self, key: &'static str, value: &str, earlier: &Written, max: usize) {
        let Some(text) = self.open_string(key, max) else {
            return;
        };
        let Written(range) = earlier;
        if range.len() <= text.limit {
            self.buf.extend_from_within(range.clone());
        } else {
            self.truncated |= escape_text(&mut self.buf, value, text.start, text.limit);
        }
        self.buf.push(b'"');
    }

    /// Starts a string field (its key and opening quote) if there is room;
    /// returns where its text starts and how long it may be.
    fn open_string(&mut self, key: &'static str, max: usize) -> Option<OpenString> {
        if self.room() < key.len() + 8 {
            self.truncated = true;
            return None;
        }
        self.key(key);
        let limit = text_limit(max.min(self.room().saturating_sub(SMALL_FIELDS_RESERVE)));
        self.buf.push(b'"');
        Some(OpenString {
            start: self.buf.len(),
            limit,
        })
    }

    /// Adds a string field from a `Display` value whose text never needs
    /// escaping (numbers, socket addresses).
    fn display_plain(&mut self, key: &'static str, value: &impl std::fmt::Display) {
        if !self.fits_small(key) {
            return;
        }
        self.key(key);
        let _ = write!(self.buf, "\"{value}\"");
    }

    /// Adds a socket address as a string (`127.0.0.1:8080`, `[::1]:8080`);
    /// IPv4 without going through `Display`.
    pub fn socket_addr(&mut self, key: &'static str, value: &SocketAddr) {
        let SocketAddr::V4(v4) = value else {
            return self.display_plain(key, value);
        };
        if !self.fits_small(key) {
            return;
        }
        self.key(key);
        self.buf.push(b'"');
        let mut digits = itoa::Buffer::new();
        for (i, octet) in v4.ip().octets().into_iter().enumerate() {
            if i > 0 {
                self.buf.push(b'.');
            }
            self.buf.extend_from_slice(digits.format(octet).as_bytes());
        }
        self.buf.push(b':');
        self.buf
            .extend_from_slice(digits.format(v4.port()).as_bytes());
        self.buf.push(b'"');
    }

    /// Adds an id as its hex digits, which never need escaping.
    pub fn hex<const N: usize>(&mut self, key: &'static str, id: &HexId<N>) {
        if !self.fits(key.len() + N + 8) {
            return;
        }
        self.key(key);
        self.buf.push(b'"');
        self.buf.extend_from_slice(id.digits());
        self.buf.push(b'"');
    }

    /// Adds bytes that should be text: invalid UTF-8 becomes U+FFFD.
    pub fn bytes_capped(&mut self, key: &'static str, value: &[u8], max: usize) {
        self.str_capped(key, &String::from_utf8_lossy(value), max);
    }

    /// Whether a small field fits; if not, the line is marked truncated.
    fn fits_small(&mut self, key: &str) -> bool {
        self.fits(key.len() + 32)
    }

    /// Whether `bytes` more fit; if not, the line is marked truncated.
    fn fits(&mut self, bytes: usize) -> bool {
        let fits = self.room() >= bytes;
        self.truncated |= !fits;
        fits
    }

    /// Adds a number.
    pub fn u64(&mut self, key: &'static str, value: u64) {
        if !self.fits_small(key) {
            return;
        }
        self.key(key);
        let mut digits = itoa::Buffer::new();
        self.buf.extend_from_slice(digits.format(value).as_bytes());
    }

    /// Adds a duration in milliseconds with three decimals (to the nearest
    /// microsecond), as a number.
    pub fn millis(&mut self, key: &'static str, value: Duration) {
        if !self.fits_small(key) {
            return;
        }
        self.key(key);
        let micros = (value.as_nanos() + 500) / 1000;
        let mut digits = itoa::Buffer::new();
        self.buf
            .extend_from_slice(digits.format(micros / 1000).as_bytes());
        self.buf.push(b'.');
        push_digits(&mut self.buf, (micros % 1000) as u32, 3);
    }

    /// Adds a boolean.
    pub fn bool(&mut self, key: &'static str, value: bool) {
        if !self.fits_small(key) {
            return;
        }
        self.key(key);
        self.buf
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    /// Adds an already-encoded JSON value if it fits; otherwise marks the line
    /// truncated and leaves the field out. The key may be anyone's (a guest's
    /// fields are added so): it is escaped where needed.
    pub fn raw(&mut self, key: &str, json: &[u8]) {
        if !self.fits(key.len() + json.len() + 8) {
            return;
        }
        self.any_key(key);
        self.buf.extend_from_slice(json);
    }

    /// Adds fields rendered once beforehand (see [`Fields`]); if they do
    /// not fit, the line is marked truncated and they are left out.
    pub fn fields(&mut self, fields: &Fields) {
        if self.fits(fields.text.len()) {
            self.buf.extend_from_slice(&fields.text);
            self.truncated |= fields.truncated;
        }
    }

    /// Closes the object and adds the newline; returns the line.
    pub fn finish(mut self) -> Vec<u8> {
        if self.truncated {
            self.buf.extend_from_slice(b",\"truncated\":true");
        }
        self.buf.extend_from_slice(b"}\n");
        debug_assert!(self.buf.len() <= MAX_LINE);
        self.buf
    }
}

thread_local! {
    /// The last second this thread wrote a timestamp in, and its text up to
    /// the seconds (`2026-11-24T09:50:45`).
    static SECOND: Cell<Option<(u64, [u8; 19])>> = const { Cell::new(None) };
}

/// The last instant RFC 3339 has room for (the end of the year 9999).
const LAST_TIME: Duration = Duration::new(253_402_300_799, 999_999_999);

/// Appends `at` as RFC 3339 UTC with microseconds
/// (`2026-11-24T09:50:45.123456Z`), clamped to the years 1970 to 9999; the
/// text up to the seconds is formatted once a second on each thread.
fn push_timestamp(buf: &mut Vec<u8>, at: SystemTime) {
    let since_epoch = at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .min(LAST_TIME);
    let secs = since_epoch.as_secs();
    let prefix = match SECOND.get() {
        Some((cached, prefix)) if cached == secs => prefix,
        _ => {
            // `YYYY-MM-DDTHH:MM:SSZ`, of which the last byte is left out.
            let mut text = [0u8; 20];
            let second = humantime::format_rfc3339_seconds(UNIX_EPOCH + since_epoch);
            let _ = write!(&mut text[..], "{second}");
            let mut prefix = [0u8; 19];
            prefix.copy_from_slice(&text[..19]);
            SECOND.set(Some((secs, prefix)));
            prefix
        }
    };
    buf.extend_from_slice(&prefix);
    buf.push(b'.');
    push_digits(buf, since_epoch.subsec_micros(), 6);
    buf.push(b'Z');
}

/// Appends the last `width` decimal digits of `value`, zero-padded.
fn push_digits(buf: &mut Vec<u8>, value: u32, width: u32) {
    let mut place = 10u32.pow(width - 1);
    while place > 0 {
        buf.push(b'0' + (value / place % 10) as u8);
        place /= 10;
    }
}

/// Writes `value` as a JSON string, stopping before the escaped text exceeds
/// `budget` bytes; returns whether it was cut.
fn escape_into(buf: &mut Vec<u8>, value: &str, budget: usize) -> bool {
    buf.push(b'"');
    let start = buf.len();
    let cut = escape_text(buf, value, start, text_limit(budget));
    buf.push(b'"');
    cut
}

/// Room for escaped text inside `budget`, keeping space for the quotes and
/// the ellipsis.
fn text_limit(budget: usize) -> usize {
    budget.saturating_sub(2 + ELLIPSIS.len())
}

/// Whether a byte of UTF-8 text must be escaped in a JSON string (quotes,
/// backslashes, control characters and DEL).
fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\' || byte == 0x7f
}

/// How many leading bytes of `bytes` need no escaping: eight at a time,
/// the last few as one word too, and byte by byte only within the word that
/// holds the first byte to escape.
fn plain_prefix(bytes: &[u8]) -> usize {
    let word_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let whole_words = bytes.len() & !7;
    let mut at = 0;
    while at < whole_words {
        if word_needs_escape(word_at(at)) {
            return at + first_to_escape(&bytes[at..at + 8]);
        }
        at += 8;
    }
    if at == bytes.len() {
        return at;
    }
    let last = if bytes.len() >= 8 {
        // The last eight bytes: those before `at` among them are plain.
        word_at(bytes.len() - 8)
    } else {
        // The few bytes there are, padded with spaces (plain), put in place
        // one by one (copying them in would call memcpy).
        let spaces = u64::from_le_bytes([b' '; 8]);
        bytes.iter().enumerate().fold(spaces, |word, (i, byte)| {
            let shift = 8 * i;
            word & !(0xff << shift) | u64::from(*byte) << shift
        })
    };
    if word_needs_escape(last) {
        at + first_to_escape(&bytes[at..])
    } else {
        bytes.len()
    }
}

/// The position of the first byte of `bytes` to escape, or its length.
fn first_to_escape(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .position(|b| needs_escape(*b))
        .unwrap_or(bytes.len())
}

/// Whether any of the eight bytes of `word` needs escaping: one below 0x20,
/// or a quote, a backslash or DEL (each found as a zero byte after an
/// exclusive or). The classic tests for "a byte below n" and "a zero byte"
/// are exact as a whole, though not byte by byte: [`plain_prefix`] only
/// uses them to skip words.
fn word_needs_escape(word: u64) -> bool {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    let below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGHS != 0;
    let has = |byte: u8| below(word ^ (ONES * u64::from(byte)), 1);
    below(word, 0x20) || has(b'"') || has(b'\\') || has(0x7f)
}

/// Appends `value`, which needs no escaping, as long as the text written
/// since `start` stays within `limit` bytes; when it would not, appends as
/// much as fits and `…`, and returns true.
fn copy_plain(buf: &mut Vec<u8>, value: &str, start: usize, limit: usize) -> bool {
    debug_assert_eq!(plain_prefix(value.as_bytes()), value.len(), "{value:?}");
    let room = limit.saturating_sub(buf.len() - start);
    if value.len() <= room {
        buf.extend_from_slice(value.as_bytes());
        return false;
    }
    buf.extend_from_slice(&value.as_bytes()[..value.floor_char_boundary(room)]);
    buf.extend_from_slice(ELLIPSIS.as_bytes());
    true
}

/// Appends `value` escaped, as long as the text written since `start` stays
/// within `limit` bytes; when it would not, appends `…` and returns true.
/// Runs of plain text are copied whole.
fn escape_text(buf: &mut Vec<u8>, value: &str, start: usize, limit: usize) -> bool {
    let bytes = value.as_bytes();
    let mut at = 0;
    while at < bytes.len() {
        let plain = plain_prefix(&bytes[at..]);
        let room = limit.saturating_sub(buf.len() - start);
        if plain > room {
            let end = value.floor_char_boundary(at + room);
            buf.extend_from_slice(&bytes[at..end]);
            buf.extend_from_slice(ELLIPSIS.as_bytes());
            return true;
        }
        buf.extend_from_slice(&bytes[at..at + plain]);
        at += plain;
        let Some(&byte) = bytes.get(at) else { break };
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let unicode;
        let escaped: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            _ => {
                unicode = [
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(byte >> 4)],
                    HEX[usize::from(byte & 0xf)],
                ];
                &unicode
            }
        };
        if buf.len() - start + escaped.len() > limit {
            buf.extend_from_slice(ELLIPSIS.as_bytes());
            return true;
        }
        buf.extend_from_slice(escaped);
        at += 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use serde_json::Value;

    use super::*;

    #[test]
    fn a_word_needs_escaping_exactly_when_one_of_its_bytes_does() {
        // Every byte value at every position, among plain neighbours that
        // sit next to each byte to escape (0x20, `!`/`#`, `[`/`]`, `~`,
        // 0x80) or far from them.
        for filler in [b' ', b'!', b'#', b'[', b']', b'~', 0x80, 0xff, b'a'] {
            for byte in 0..=u8::MAX {
                for at in 0..8 {
                    let mut word = [filler; 8];
                    word[at] = byte;
                    assert_eq!(
                        word_needs_escape(u64::from_le_bytes(word)),
                        needs_escape(byte),
                        "{word:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn words_with_several_bytes_to_escape_or_none_are_told_apart() {
        // Pseudo-random words (xorshift) drawn mostly from the bytes around
        // the bounds, where a borrow between bytes could mislead the test.
        let near = [
            0x1f, 0x20, 0x21, b'"', b'#', b'[', b'\\', b']', 0x7e, 0x7f, 0x80, 0xff,
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let word: [u8; 8] = std::array::from_fn(|i| {
                let pick = (state >> (8 * i)) as u8;
                if pick & 1 == 0 {
                    near[usize::from(pick >> 1) % near.len()]
                } else {
                    pick
                }
            });
            assert_eq!(
                word_needs_escape(u64::from_le_bytes(word)),
                word.iter().any(|b| needs_escape(*b)),
                "{word:?}"
            );
        }
    }

    #[test]
    fn the_plain_prefix_stops_at_the_first_byte_to_escape_wherever_it_falls() {
        let plain = "héros-0123456789-abcdefghij";
        assert_eq!(plain_prefix(plain.as_bytes()), plain.len());
        for escape in ['"', '\\', '\n', '\u{1}', '\u{7f}', '\u{1f}'] {
            for at in 0..plain.len() {
                if !plain.is_char_boundary(at) {
                    continue;
                }
                let text = format!("{}{escape}{}", &plain[..at], &plain[at..]);
                assert_eq!(plain_prefix(text.as_bytes()), at, "{text:?}");
                // Every length, so that the byte falls in every position of
                // a whole word, of the last few bytes, or is cut off.
                for len in 0..=text.len() {
                    let cut = &text.as_bytes()[..len];
                    assert_eq!(plain_prefix(cut), at.min(len), "{cut:?}");
                }
            }
        }
    }

    fn parse(line: &[u8]) -> Value {
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1, "one line");
        serde_json::from_slice(line).unwrap()
    }

    #[test]
    fn writes_the_common_fields() {
        let at = UNIX_EPOCH + Duration::from_micros(1_795_513_845_123_456);
        let mut line = JsonLine::start(Vec::new(), at, "info", "hero_host::server");
        line.u64("status", 200);
        line.bool("instance_reused", true);
        line.millis("duration_ms", Duration::from_nanos(1_234_560));
        let value = parse(&line.finish());
        assert_eq!(value["timestamp"], "2026-11-24T09:50:45.123456Z");
        assert_eq!(value["level"], "info");
        assert_eq!(value["target"], "hero_host::server");
        assert_eq!(value["status"], 200);
        assert_eq!(value["instance_reused"], true);
        assert_eq!(value["duration_ms"], 1.235);
        assert!(value.get("truncated").is_none());
    }

    #[test]
    fn ids_are_written_as_their_hex_digits() {
        use crate::telemetry::trace::{SpanId, TraceId};
        let trace = TraceId::from_bits(0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c);
        let span = SpanId::from_bits(0xb7ad_6b71_6920_3331);
        let mut line = JsonLine::start(Vec::new(), SystemTime::now(), "info", "t");
        line.hex("trace_id", &trace);
        line.hex("span_id", &span);
        let value = parse(&line.finish());
        assert_eq!(value["trace_id"], "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(value["span_id"], "b7ad6b7169203331");
    }

    #[test]
    fn escapes_control_characters_and_quotes() {
        let hostile = "a\"b\\c\r\nd\u{1b}[31me\u{0}f\u{7f}";
        let mut line = JsonLine::start(Vec::new(), SystemTime::now(), "warn", "t");
        line.str("path", hostile);
        line.bytes_capped("user_agent", b"ok\xff\xfe", 100);
        // A guest's key (its fields come in through `raw`).
        line.raw(hostile, br#""a key escaped too""#);
        let bytes = line.finish();
        assert!(
            !bytes[..bytes.len() - 1].iter().any(|b| *b < 0x20),
            "no raw control bytes"
        );
        let value = parse(&bytes);
        assert_eq!(value["path"], hostile);
        assert_eq!(value["user_agent"], "ok\u{fffd}\u{fffd}");
        assert_eq!(value[hostile], "a key escaped too");
    }

    /// Peers as they print, IPv4 edge values and IPv6.
    const ADDRS: [&str; 4] = [
        "[::1]:8080",
        "0.0.0.0:0",
        "255.255.255.255:65535",
        "10.0.12.3:443",
    ];

    #[test]
    fn joins_parts_with_spaces_and_writes_plain_values() {
        let mut line = JsonLine::start(Vec::new(), SystemTime::now(), "info", "t");
        line.str_joined(
            "message",
            [Part::Plain("GET"), Part::Text("/a\"b"), Part::Plain("200")],
            100,
        );
        for addr in ADDRS {
            line.socket_addr(addr, &addr.parse().unwrap());
        }
        let value = parse(&line.finish());
        assert_eq!(value["message"], "GET /a\"b 200");
        for addr in ADDRS {
            assert_eq!(value[addr], addr);
        }
    }

    #[test]
    fn a_value_written_again_is_the_same_bytes_as_written_afresh() {
        let at = UNIX_EPOCH + Duration::from_secs(1_764_000_000);
        for value in [
            "/heroes/01M91STDPR96CCRN3PAFXD76KX",
            "/a\"b\\c\n\u{1}é𝄞",
            "",
        ] {
            for max in 0..64 {
                let build = |again: bool| {
                    let mut line = JsonLine::start(Vec::new(), at, "info", "t");
                    let written = line.str_joined(
                        "message",
                        [Part::Plain("GET"), Part::Text(value), Part::Plain("200")],
                        usize::MAX,
                    );
                    let [_, text, _] = written.expect("a short message is whole");
                    if again {
                        line.str_again("path", value, &text, max);
                    } else {
                        line.str_capped("path", value, max);
                    }
                    line.finish()
                };
                let (again, afresh) = (build(true), build(false));
                assert_eq!(
                    String::from_utf8_lossy(&again),
                    String::from_utf8_lossy(&afresh),
                    "{value:?} at {max}"
                );
                assert_eq!(parse(&again)["message"], format!("GET {value} 200"));
            }
        }
    }

    #[test]
    fn fields_rendered_once_read_as_fields_written_each_time() {
        let at = UNIX_EPOCH + Duration::from_secs(1_764_000_000);
        let route = "/heroes/:id/\"odd\"\\route";
        let rendered = Fields::strings(&[("component", "hero-registry"), ("route", route)]);
        let mut once = JsonLine::start(Vec::new(), at, "info", "t");
        once.fields(&rendered);
        once.u64("status", 200);
        let mut each = JsonLine::start(Vec::new(), at, "info", "t");
        each.str("component", "hero-registry");
        each.str("route", route);
        each.u64("status", 200);
        let once = once.finish();
        assert_eq!(
            String::from_utf8_lossy(&once),
            String::from_utf8_lossy(&each.finish())
        );
        assert_eq!(parse(&once)["route"], route);
    }

    #[test]
    fn a_rendered_value_cut_marks_every_line_that_takes_it() {
        let long = "r".repeat(Fields::VALUE_MAX + 1);
        let rendered = Fields::strings(&[("route", &long)]);
        let mut line = JsonLine::start(Vec::new(), SystemTime::now(), "info", "t");
        line.fields(&rendered);
        let parsed = parse(&line.finish());
        assert_eq!(parsed["truncated"], true);
        let kept = parsed["route"].as_str().unwrap();
        assert!(
            kept.ends_with(ELLIPSIS) && kept.len() <= Fields::VALUE_MAX,
            "{kept}"
        );
    }

    #[test]
    fn a_joined_value_cut_short_says_where_nothing_went() {
        let mut line = JsonLine::start(Vec::new(), SystemTime::now(), "info", "t");
        let written = line.str_joined("message", [Part::Plain("GET"), Part::Text("/long")], 8);
        assert!(written.is_none());
        let parsed = parse(&line.finish());
        assert_eq!(parsed["truncated"], true);
        assert!(parsed["message"].as_str().unwrap().ends_with(ELLIPSIS));
    }

    /// Writes `value` with `write` under every cap from 0 to 47: whole when
    /// its escaped text, its quotes and room for the ellipsis fit, else a
    /// prefix ending in `…` on a line marked truncated; valid JSON always.
    fn assert_cut_at_every_cap(value: &str, write: impl Fn(&mut JsonLine, &str, usize)) {
        let escaped = serde_json::to_string(value).unwrap().len();
        for max in 0..48 {
            let mut line = JsonLine::start(Vec::new(), SystemTime::now(), "info", "t");
            write(&mut line, value, max);
            let parsed = parse(&line.finish());
            let written = parsed["v"].as_str().unwrap();
            let fits = escaped + ELLIPSIS.len() <= max;
            match written.strip_suffix(ELLIPSIS) {
                Some(prefix) => {
                    assert!(!fits, "{max}: {written:?}");
                    assert!(value.starts_with(prefix), "{max}: {written:?}");
                    assert_eq!(parsed["truncated"], true, "{max}");
                }
                None => {
                    assert!(fits, "{max}: {written:?}");
                    assert_eq!(written, value, "{max}");
                    assert!(parsed.get("truncated").is_none(), "{max}");
                }
            }
        }
    }

    #[test]
    fn every_cut_is_valid_json_and_a_prefix_of_the_value() {
        assert_cut_at_every_cap("aé\"b\u{1}c€d\\e\n𝄞f", |line, value, max| {
            line.str_capped("v", value, max)
        });
        // Plain text, copied unscanned, is cut alike.
        assert_cut_at_every_cap("PROPFIND-WITH-A-LONG-EXTENSION", |line, value, max| {
            line.plain("v", value, max)
        });
    }

    #[test]
    fn cuts_long_values_and_marks_the_line() {
        let mut line = JsonLine::start(Vec::new(), SystemTime::now(), "info", "t");
        line.str_capped("path", &"é".repeat(5000), 100);
        let value = parse(&line.finish());
        let path = value["path"].as_str().unwrap();
        assert!(path.len() <= 100 && path.ends_with('…'), "{path}");
        assert_eq!(value["truncated"], true);
    }

    #[test]
    fn never_exceeds_the_line_cap() {
        let mut line = JsonLine::start(Vec::new(), SystemTime::now(), "info", "t");
        let huge = "\u{1}".repeat(100_000); // escapes to six bytes each
        line.str("message", &huge);
        line.str("other", &huge);
        line.raw(
            "object",
            format!("[{}]", "1,".repeat(20_000) + "1").as_bytes(),
        );
        line.u64("status", 500);
        let bytes = line.finish();
        assert!(bytes.len() <= MAX_LINE, "{}", bytes.len());
        let value = parse(&bytes);
        assert_eq!(value["truncated"], true);
        assert_eq!(value["status"], 500, "small fields still fit after a cut");
        assert!(value.get("object").is_none());
    }

    #[test]
    fn timestamps_match_rfc3339_with_microseconds_across_seconds() {
        let base = UNIX_EPOCH + Duration::from_micros(1_795_513_845_999_990);
        let steps = [0, 1, 9, 10, 11, 999_999, 1_000_000, 86_400_000_000, 3_000];
        let mut at = base;
        for step in steps.iter().cycle().take(40) {
            at += Duration::from_micros(*step);
            let mut buf = Vec::new();
            push_timestamp(&mut buf, at);
            let expected = humantime::format_rfc3339_micros(at).to_string();
            assert_eq!(String::from_utf8(buf).unwrap(), expected);
        }
        let mut buf = Vec::new();
        push_timestamp(&mut buf, UNIX_EPOCH - Duration::from_secs(1));
        assert_eq!(buf, b"1970-01-01T00:00:00.000000Z", "clamped");
        buf.clear();
        push_timestamp(&mut buf, UNIX_EPOCH + Duration::from_secs(300_000_000_000));
        assert_eq!(buf, b"9999-12-31T23:59:59.999999Z", "clamped");
    }

    #[test]
    fn durations_are_milliseconds_with_three_decimals() {
        for (nanos, text) in [
            (0, "0.000"),
            (499, "0.000"),
            (500, "0.001"),
            (1_234_560, "1.235"),
            (12_000_000, "12.000"),
            (999_999_600, "1000.000"),
            (7_200_000_000_000, "7200000.000"),
        ] {
            let mut line = JsonLine::start(Vec::new(), SystemTime::now(), "info", "t");
            line.millis("d", Duration::from_nanos(nanos));
            let bytes = line.finish();
            let written = std::str::from_utf8(&bytes).unwrap();
            assert!(
                written.ends_with(&format!(",\"d\":{text}}}\n")),
                "{written}"
            );
        }
    }
}
