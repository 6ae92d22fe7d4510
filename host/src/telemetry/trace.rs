//! W3C trace context (`traceparent`) and request ids.

use std::fmt::Write as _;

/// The trace a request belongs to and its own span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits: this request's span.
    pub span_id: String,
    /// The caller's span, when `traceparent` named one.
    pub parent_span_id: Option<String>,
    /// The sampled flag to pass on.
    pub sampled: bool,
}

impl TraceContext {
    /// Continues the trace of a valid `traceparent` header, or starts one.
    pub fn from_traceparent(header: Option<&[u8]>) -> Self {
        let span_id = hex(u128::from(fastrand::u64(1..)), 16);
        match header.and_then(parse_traceparent) {
            Some((trace_id, parent, sampled)) => TraceContext {
                trace_id,
                span_id,
                parent_span_id: Some(parent),
                sampled,
            },
            None => TraceContext {
                trace_id: hex(fastrand::u128(1..), 32),
                span_id,
                parent_span_id: None,
                sampled: true,
            },
        }
    }

    /// The `traceparent` header to hand to the guest: same trace, our span as
    /// the parent.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{}",
            self.trace_id,
            self.span_id,
            if self.sampled { "01" } else { "00" }
        )
    }
}

/// A new request id: 32 random hex digits.
pub fn new_request_id() -> String {
    hex(fastrand::u128(..), 32)
}

fn hex(value: u128, digits: usize) -> String {
    let mut text = String::with_capacity(digits);
    let _ = write!(text, "{value:0width$x}", width = digits);
    text
}

/// `version-traceid-parentid-flags`, per W3C Trace Context level 1: lowercase
/// hex, ids not all zero, version `ff` invalid; later versions may append
/// fields.
fn parse_traceparent(header: &[u8]) -> Option<(String, String, bool)> {
    let text = std::str::from_utf8(header).ok()?.trim();
    let mut parts = text.split('-');
    let (version, trace_id, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let is_hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !is_hex(version, 2) || version == "ff" || (version == "00" && parts.next().is_some()) {
        return None;
    }
    if !is_hex(trace_id, 32) || !is_hex(parent, 16) || !is_hex(flags, 2) {
        return None;
    }
    if trace_id.bytes().all(|b| b == b'0') || parent.bytes().all(|b| b == b'0') {
        return None;
    }
    let sampled = u8::from_str_radix(flags, 16).ok()? & 1 == 1;
    Some((trace_id.to_owned(), parent.to_owned(), sampled))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn honours_a_valid_traceparent() {
        let context = TraceContext::from_traceparent(Some(VALID.as_bytes()));
        assert_eq!(context.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(context.parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert_eq!(context.span_id.len(), 16);
        assert_ne!(context.span_id, "00f067aa0ba902b7");
        assert_eq!(
            context.traceparent(),
            format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01", context.span_id)
        );
    }

    #[test]
    fn starts_a_new_trace_for_invalid_headers() {
        for bad in [
            "",
            "garbage",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            let context = TraceContext::from_traceparent(Some(bad.as_bytes()));
            assert_eq!(context.parent_span_id, None, "{bad}");
            assert_eq!(context.trace_id.len(), 32);
            assert!(context.trace_id.bytes().all(|b| b.is_ascii_hexdigit()));
        }
        assert!(
            TraceContext::from_traceparent(Some(b"\xff\xfe"))
                .parent_span_id
                .is_none()
        );
    }

    #[test]
    fn accepts_future_versions_with_more_fields() {
        let header = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-more";
        let context = TraceContext::from_traceparent(Some(header.as_bytes()));
        assert_eq!(context.parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert!(!context.sampled);
    }

    #[test]
    fn request_ids_are_unique_hex() {
        let ids: std::collections::HashSet<String> =
            (0..10_000).map(|_| new_request_id()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|id| id.len() == 32));
    }
}
