//! The invocation line, formatted off the request's path.
//!
//! A request hands its line to the writer as an [`InvocationEntry`]: the
//! ids, numbers and timestamp as they are, and its method, path, user agent
//! and error copied as raw text into the batch's byte arena, a couple of
//! hundred bytes in all. The writer thread formats a batch's entries one
//! after another, where the formatting code and the output buffer stay in
//! the cache; formatted in the request, the same line cost about three
//! times its instructions in cache misses.

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::json_line::{Fields, JsonLine, Part};
use super::trace::{RequestId, SpanId, TraceId};

/// Cap of a request path in a log line, in escaped bytes.
pub const PATH_MAX: usize = 2048;
/// Cap of a user agent.
const USER_AGENT_MAX: usize = 512;
/// Cap of an error.
const ERROR_MAX: usize = 1024;

/// What the invocation line says about one request.
pub struct Invocation<'a> {
    /// `error` for 5xx and guest failures, `warn` for 4xx, else `info`.
    pub level: &'static str,
    /// Unique per request.
    pub request_id: &'a RequestId,
    /// W3C trace id (from `traceparent`, or new).
    pub trace_id: &'a TraceId,
    /// This request's span id.
    pub span_id: &'a SpanId,
    /// The component that served it, if a route matched.
    pub component: Option<&'a str>,
    /// The matched route as written in the manifest.
    pub route: Option<&'a str>,
    /// `component` and `route` rendered once for the route's lines (see
    /// `Served::log_fields`).
    pub served_fields: Option<&'a Arc<Fields>>,
    /// The request method, as sent.
    pub method: &'a str,
    /// The request path, without the query string.
    pub path: &'a str,
    /// The response status.
    pub status: u16,
    /// Request head to end of response.
    pub duration: Duration,
    /// Request body bytes read.
    pub request_bytes: u64,
    /// Response body bytes written.
    pub response_bytes: u64,
    /// The peer.
    pub client_addr: SocketAddr,
    /// `User-Agent`, raw.
    pub user_agent: Option<&'a [u8]>,
    /// Whether the guest ran on an instance reused from an earlier request
    /// (`None` when no guest ran).
    pub instance_reused: Option<bool>,
    /// Why it failed, when it did (`timeout`, `trap: ...`, `client gone`).
    pub error: Option<&'a str>,
}

/// The level of a response status: error for 5xx, warn for 4xx, else info.
pub fn level_of(status: u16) -> &'static str {
    match status {
        500.. => "error",
        400..=499 => "warn",
        _ => "info",
    }
}

/// Where a copied text lies in the batch's byte arena.
type Text = Range<usize>;

/// The route's fields of an entry.
enum ServedBy {
    /// Rendered once for the route.
    Rendered(Arc<Fields>),
    /// Written for this line (no route matched: both empty).
    Texts { component: Text, route: Text },
}

/// An invocation line waiting to be formatted: everything it says, its
/// texts in the arena of the batch it was queued in.
pub struct InvocationEntry {
    at: SystemTime,
    level: &'static str,
    request_id: RequestId,
    trace_id: TraceId,
    span_id: SpanId,
    served: ServedBy,
    method: Text,
    path: Text,
    status: u16,
    duration: Duration,
    request_bytes: u64,
    response_bytes: u64,
    client_addr: SocketAddr,
    user_agent: Option<Text>,
    instance_reused: Option<bool>,
    error: Option<Text>,
}

/// Appends `bytes` to the arena; returns where they went.
fn copy(arena: &mut Vec<u8>, bytes: &[u8]) -> Text {
    let start = arena.len();
    arena.extend_from_slice(bytes);
    start..arena.len()
}

/// The `str` copied at `range` of the arena (only whole `str`s are copied
/// where a `Text` is read as one, so nothing is ever lost here).
fn text<'a>(arena: &'a [u8], range: &Text) -> &'a str {
    std::str::from_utf8(&arena[range.clone()]).unwrap_or_default()
}

impl InvocationEntry {
    /// The entry of `inv`, stamped `at`, its texts copied into `arena`.
    pub fn new(inv: &Invocation<'_>, at: SystemTime, arena: &mut Vec<u8>) -> Self {
        let served = match inv.served_fields {
            Some(fields) => ServedBy::Rendered(fields.clone()),
            None => ServedBy::Texts {
                component: copy(arena, inv.component.unwrap_or("").as_bytes()),
                route: copy(arena, inv.route.unwrap_or("").as_bytes()),
            },
        };
        InvocationEntry {
            at,
            level: inv.level,
            request_id: *inv.request_id,
            trace_id: *inv.trace_id,
            span_id: *inv.span_id,
            served,
            method: copy(arena, inv.method.as_bytes()),
            path: copy(arena, inv.path.as_bytes()),
            status: inv.status,
            duration: inv.duration,
            request_bytes: inv.request_bytes,
            response_bytes: inv.response_bytes,
            client_addr: inv.client_addr,
            user_agent: inv.user_agent.map(|agent| copy(arena, agent)),
            instance_reused: inv.instance_reused,
            error: inv.error.map(|error| copy(arena, error.as_bytes())),
        }
    }

    /// Bytes its texts take in the arena (to bound what is queued).
    pub fn text_bytes(inv: &Invocation<'_>) -> usize {
        inv.method.len()
            + inv.path.len()
            + inv.user_agent.map_or(0, <[u8]>::len)
            + inv.error.map_or(0, str::len)
            + inv.served_fields.map_or(
                inv.component.map_or(0, str::len) + inv.route.map_or(0, str::len),
                |_| 0,
            )
    }

    /// Formats the line in `buf` (cleared first), reading its texts from
    /// `arena`; returns the line, newline included.
    pub fn format(&self, arena: &[u8], buf: Vec<u8>) -> Vec<u8> {
        let mut line = JsonLine::start(buf, self.at, self.level, "hero_host::request");
        let method = text(arena, &self.method);
        let full_path = text(arena, &self.path);
        let path = &full_path[..full_path.floor_char_boundary(PATH_MAX)];
        let mut status = itoa::Buffer::new();
        let message = line.str_joined(
            "message",
            [
                Part::Plain(method),
                Part::Text(path),
                Part::Plain(status.format(self.status)),
            ],
            PATH_MAX + 32,
        );
        line.hex("request_id", &self.request_id);
        line.hex("trace_id", &self.trace_id);
        line.hex("span_id", &self.span_id);
        match &self.served {
            ServedBy::Rendered(fields) => line.fields(fields),
            ServedBy::Texts { component, route } => {
                line.str("component", text(arena, component));
                line.str("route", text(arena, route));
            }
        }
        line.plain("method", method, 64);
        // The path is in the message already, escaped: copied from there
        // when the message holds all of it.
        match message {
            Some([_, path_text, _]) if path.len() == full_path.len() => {
                line.str_again("path", full_path, &path_text, PATH_MAX)
            }
            _ => line.str_capped("path", full_path, PATH_MAX),
        }
        line.u64("status", u64::from(self.status));
        line.millis("duration_ms", self.duration);
        line.u64("request_bytes", self.request_bytes);
        line.u64("response_bytes", self.response_bytes);
        line.socket_addr("client_addr", &self.client_addr);
        match &self.user_agent {
            Some(agent) => line.bytes_capped("user_agent", &arena[agent.clone()], USER_AGENT_MAX),
            None => line.str("user_agent", ""),
        }
        match self.instance_reused {
            Some(reused) => line.bool("instance_reused", reused),
            None => line.raw("instance_reused", b"null"),
        }
        if let Some(error) = &self.error {
            line.str_capped("error", text(arena, error), ERROR_MAX);
        }
        line.finish()
    }
}

/// A GET of `path` with `ids`, answered 200, no route matched (for tests).
#[cfg(test)]
pub(crate) fn invocation<'a>(
    path: &'a str,
    ids: &'a (RequestId, TraceId, SpanId),
) -> Invocation<'a> {
    Invocation {
        level: "info",
        request_id: &ids.0,
        trace_id: &ids.1,
        span_id: &ids.2,
        component: None,
        served_fields: None,
        route: None,
        method: "GET",
        path,
        status: 200,
        duration: Duration::from_millis(1),
        request_bytes: 0,
        response_bytes: 0,
        client_addr: "127.0.0.1:1".parse().unwrap(),
        user_agent: None,
        instance_reused: None,
        error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (RequestId, TraceId, SpanId) {
        (
            RequestId::from_bits(1),
            TraceId::from_bits(2),
            SpanId::from_bits(3),
        )
    }

    #[test]
    fn levels_follow_status() {
        assert_eq!(level_of(200), "info");
        assert_eq!(level_of(304), "info");
        assert_eq!(level_of(404), "warn");
        assert_eq!(level_of(503), "error");
    }

    #[test]
    fn cuts_long_paths_on_char_boundaries_and_keeps_the_status() {
        let path = format!("/{}", "é".repeat(PATH_MAX));
        let ids = ids();
        let mut arena = Vec::new();
        let entry = InvocationEntry::new(&invocation(&path, &ids), SystemTime::now(), &mut arena);
        let line: serde_json::Value =
            serde_json::from_slice(&entry.format(&arena, Vec::new())).unwrap();
        let message = line["message"].as_str().unwrap();
        assert!(
            message.starts_with("GET /éé") && message.ends_with("é 200"),
            "{message}"
        );
        assert!(message.len() <= PATH_MAX + 8, "{}", message.len());
        let cut = line["path"].as_str().unwrap();
        assert!(cut.ends_with('…') && cut.len() <= PATH_MAX, "{}", cut.len());
        assert_eq!(line["truncated"], true);
    }

    /// Entries share one arena: each reads its own texts back, whatever
    /// was copied before and after it.
    #[test]
    fn entries_sharing_an_arena_each_read_their_own_texts() {
        let ids = ids();
        let mut arena = b"an earlier line\n".to_vec();
        let fields = Arc::new(Fields::strings(&[("component", "c"), ("route", "/r")]));
        let mut first = invocation("/first \"quoted\"", &ids);
        first.user_agent = Some(b"agent \xff");
        first.error = Some("trap: unreachable");
        first.served_fields = Some(&fields);
        let first = InvocationEntry::new(&first, SystemTime::now(), &mut arena);
        let mut second = invocation("/second", &ids);
        second.component = Some("other");
        second.method = "PATCH";
        let second = InvocationEntry::new(&second, SystemTime::now(), &mut arena);
        arena.extend_from_slice(b"a later line\n");

        let first: serde_json::Value =
            serde_json::from_slice(&first.format(&arena, Vec::new())).unwrap();
        assert_eq!(first["path"], "/first \"quoted\"");
        assert_eq!(first["message"], "GET /first \"quoted\" 200");
        assert_eq!(first["user_agent"], "agent \u{fffd}");
        assert_eq!(first["error"], "trap: unreachable");
        assert_eq!(
            (&first["component"], &first["route"]),
            (&"c".into(), &"/r".into())
        );
        let second: serde_json::Value =
            serde_json::from_slice(&second.format(&arena, Vec::new())).unwrap();
        assert_eq!(second["message"], "PATCH /second 200");
        assert_eq!(second["method"], "PATCH");
        assert_eq!(second["component"], "other");
        assert_eq!(second["route"], "");
        assert_eq!(second["user_agent"], "");
        assert!(second.get("error").is_none());
    }
}
