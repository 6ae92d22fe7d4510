//! Builds one JSON object on one line, with every string escaped (control
//! characters, quotes, backslashes; invalid UTF-8 replaced) and the whole
//! line capped at [`MAX_LINE`] bytes. A value cut short ends in `…` and the
//! line gets `"truncated": true`.

use std::time::SystemTime;

/// Longest line written, newline included.
pub const MAX_LINE: usize = 16 * 1024;
/// Room kept for the closing `,"truncated":true}` and the newline.
const CLOSING_RESERVE: usize = 24;
/// Room a string value leaves for the small fields that may follow it.
const SMALL_FIELDS_RESERVE: usize = 512;
/// Marks a value that was cut short.
const ELLIPSIS: &str = "…";

/// A JSON object being written into a reusable buffer.
pub struct JsonLine {
    buf: Vec<u8>,
    truncated: bool,
}

impl JsonLine {
    /// Starts a line with `timestamp` (RFC 3339 UTC, microseconds), `level`
    /// and `target`, the fields every line carries.
    pub fn start(buf: Vec<u8>, at: SystemTime, level: &str, target: &str) -> Self {
        let mut line = JsonLine {
            buf,
            truncated: false,
        };
        line.buf.clear();
        line.buf.push(b'{');
        line.buf.extend_from_slice(b"\"timestamp\":\"");
        use std::io::Write;
        let _ = write!(line.buf, "{}", humantime::format_rfc3339_micros(at));
        line.buf.push(b'"');
        line.str("level", level);
        line.str("target", target);
        line
    }

    fn key(&mut self, key: &str) {
        self.buf.push(b',');
        escape_into(&mut self.buf, key, usize::MAX);
        self.buf.push(b':');
    }

    fn room(&self) -> usize {
        MAX_LINE.saturating_sub(self.buf.len() + CLOSING_RESERVE)
    }

    /// Adds a string field, cut to at most `max` bytes of escaped text (and
    /// to what is left of the line).
    pub fn str_capped(&mut self, key: &str, value: &str, max: usize) {
        if self.room() < key.len() + 8 {
            self.truncated = true;
            return;
        }
        self.key(key);
        let budget = max.min(self.room().saturating_sub(SMALL_FIELDS_RESERVE));
        if escape_into(&mut self.buf, value, budget) {
            self.truncated = true;
        }
    }

    /// Adds a string field, cut to what is left of the line.
    pub fn str(&mut self, key: &str, value: &str) {
        self.str_capped(key, value, usize::MAX);
    }

    /// Adds bytes that should be text: invalid UTF-8 becomes U+FFFD.
    pub fn bytes_capped(&mut self, key: &str, value: &[u8], max: usize) {
        self.str_capped(key, &String::from_utf8_lossy(value), max);
    }

    /// Whether a small field fits; if not, the line is marked truncated.
    fn fits_small(&mut self, key: &str) -> bool {
        let fits = self.room() >= key.len() + 32;
        self.truncated |= !fits;
        fits
    }

    /// Adds a number.
    pub fn u64(&mut self, key: &str, value: u64) {
        if !self.fits_small(key) {
            return;
        }
        self.key(key);
        let mut digits = itoa::Buffer::new();
        self.buf.extend_from_slice(digits.format(value).as_bytes());
    }

    /// Adds a number with three decimals (milliseconds with microsecond
    /// precision).
    pub fn f64_3(&mut self, key: &str, value: f64) {
        if !self.fits_small(key) {
            return;
        }
        self.key(key);
        use std::io::Write;
        let _ = write!(self.buf, "{value:.3}");
    }

    /// Adds a boolean.
    pub fn bool(&mut self, key: &str, value: bool) {
        if !self.fits_small(key) {
            return;
        }
        self.key(key);
        self.buf
            .extend_from_slice(if value { b"true" } else { b"false" });
    }

    /// Adds an already-encoded JSON value if it fits; otherwise marks the line
    /// truncated and leaves the field out.
    pub fn raw(&mut self, key: &str, json: &[u8]) {
        if key.len() + json.len() + 8 > self.room() {
            self.truncated = true;
            return;
        }
        self.key(key);
        self.buf.extend_from_slice(json);
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

/// Writes `value` as a JSON string, stopping before the escaped text exceeds
/// `budget` bytes; returns whether it was cut.
fn escape_into(buf: &mut Vec<u8>, value: &str, budget: usize) -> bool {
    buf.push(b'"');
    let start = buf.len();
    let limit = budget.saturating_sub(2 + ELLIPSIS.len());
    let mut cut = false;
    let mut utf8 = [0u8; 4];
    for c in value.chars() {
        let before = buf.len();
        match c {
            '"' => buf.extend_from_slice(b"\\\""),
            '\\' => buf.extend_from_slice(b"\\\\"),
            '\n' => buf.extend_from_slice(b"\\n"),
            '\r' => buf.extend_from_slice(b"\\r"),
            '\t' => buf.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let n = c as usize;
                buf.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[n >> 4], HEX[n & 0xf]]);
            }
            c => buf.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes()),
        }
        if buf.len() - start > limit {
            buf.truncate(before);
            buf.extend_from_slice(ELLIPSIS.as_bytes());
            cut = true;
            break;
        }
    }
    buf.push(b'"');
    cut
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use serde_json::Value;

    use super::*;

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
        line.f64_3("duration_ms", 1.23456);
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
    fn escapes_control_characters_and_quotes() {
        let hostile = "a\"b\\c\r\nd\u{1b}[31me\u{0}f\u{7f}";
        let mut line = JsonLine::start(Vec::new(), SystemTime::now(), "warn", "t");
        line.str("path", hostile);
        line.bytes_capped("user_agent", b"ok\xff\xfe", 100);
        let bytes = line.finish();
        assert!(
            !bytes[..bytes.len() - 1].iter().any(|b| *b < 0x20),
            "no raw control bytes"
        );
        let value = parse(&bytes);
        assert_eq!(value["path"], hostile);
        assert_eq!(value["user_agent"], "ok\u{fffd}\u{fffd}");
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
}
