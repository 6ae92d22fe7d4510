//! W3C trace context (`traceparent`) and request ids, as fixed-size values:
//! making, copying and printing one allocates nothing.

use std::fmt;

/// The W3C trace context header.
pub const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");

/// An id held as lowercase hex digits, inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HexId<const N: usize>([u8; N]);

/// A request id: 32 hex digits.
pub type RequestId = HexId<32>;
/// A W3C trace id: 32 hex digits.
pub type TraceId = HexId<32>;
/// A W3C span id: 16 hex digits.
pub type SpanId = HexId<16>;

impl<const N: usize> HexId<N> {
    /// The low `4 × N` bits of `value` as `N` hex digits.
    pub fn from_bits(value: u128) -> Self {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut digits = [b'0'; N];
        for (i, digit) in digits.iter_mut().enumerate() {
            let shift = 4 * (N - 1 - i);
            if shift < 128 {
                *digit = DIGITS[((value >> shift) & 0xf) as usize];
            }
        }
        HexId(digits)
    }

    /// `text` if it is exactly `N` lowercase hex digits.
    pub fn parse(text: &str) -> Option<Self> {
        let bytes: [u8; N] = text.as_bytes().try_into().ok()?;
        bytes
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
            .then_some(HexId(bytes))
    }

    /// The digits, as bytes (no UTF-8 check).
    pub fn digits(&self) -> &[u8; N] {
        &self.0
    }

    /// The digits.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits are ASCII")
    }

    /// Whether every digit is zero (an invalid W3C id).
    pub fn is_zero(&self) -> bool {
        self.0.iter().all(|b| *b == b'0')
    }
}

impl<const N: usize> fmt::Display for HexId<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> fmt::Debug for HexId<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The trace a request belongs to and its own span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace.
    pub trace_id: TraceId,
    /// This request's span.
    pub span_id: SpanId,
    /// The caller's span, when `traceparent` named one.
    pub parent_span_id: Option<SpanId>,
    /// The sampled flag to pass on.
    pub sampled: bool,
}

/// A `traceparent` header value: `00-<trace>-<span>-<flags>`.
pub struct TraceParent([u8; 55]);

impl TraceParent {
    /// The header's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl TraceContext {
    /// Continues the trace of a valid `traceparent` header, or starts one.
    pub fn from_traceparent(header: Option<&[u8]>) -> Self {
        let span_id = SpanId::from_bits(u128::from(fastrand::u64(1..)));
        match header.and_then(parse_traceparent) {
            Some((trace_id, parent, sampled)) => TraceContext {
                trace_id,
                span_id,
                parent_span_id: Some(parent),
                sampled,
            },
            None => TraceContext {
                trace_id: TraceId::from_bits(fastrand::u128(1..)),
                span_id,
                parent_span_id: None,
                sampled: true,
            },
        }
    }

    /// The `traceparent` header to hand to the guest: same trace, our span as
    /// the parent.
    pub fn traceparent(&self) -> TraceParent {
        let mut header = [b'-'; 55];
        header[..2].copy_from_slice(b"00");
        header[3..35].copy_from_slice(self.trace_id.as_str().as_bytes());
        header[36..52].copy_from_slice(self.span_id.as_str().as_bytes());
        header[53..].copy_from_slice(if self.sampled { b"01" } else { b"00" });
        TraceParent(header)
    }

    /// Sets `traceparent` in `headers` to [`Self::traceparent`], replacing
    /// any the request had.
    pub fn set_traceparent(&self, headers: &mut http::HeaderMap) {
        let value = http::HeaderValue::from_bytes(self.traceparent().as_bytes())
            .expect("hex digits and dashes are a valid header value");
        headers.insert(TRACEPARENT, value);
    }
}

/// A new request id: 32 random hex digits.
pub fn new_request_id() -> RequestId {
    RequestId::from_bits(fastrand::u128(..))
}

/// `version-traceid-parentid-flags`, per W3C Trace Context level 1: lowercase
/// hex, ids not all zero, version `ff` invalid; later versions may append
/// fields.
fn parse_traceparent(header: &[u8]) -> Option<(TraceId, SpanId, bool)> {
    let text = std::str::from_utf8(header).ok()?.trim();
    let mut parts = text.split('-');
    let (version, trace_id, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let version = HexId::<2>::parse(version)?;
    if version.as_str() == "ff" || (version.as_str() == "00" && parts.next().is_some()) {
        return None;
    }
    let (trace_id, parent) = (TraceId::parse(trace_id)?, SpanId::parse(parent)?);
    let flags = HexId::<2>::parse(flags)?;
    if trace_id.is_zero() || parent.is_zero() {
        return None;
    }
    let sampled = u8::from_str_radix(flags.as_str(), 16).ok()? & 1 == 1;
    Some((trace_id, parent, sampled))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn honours_a_valid_traceparent() {
        let context = TraceContext::from_traceparent(Some(VALID.as_bytes()));
        assert_eq!(
            context.trace_id.as_str(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(
            context.parent_span_id.map(|p| p.to_string()).as_deref(),
            Some("00f067aa0ba902b7")
        );
        assert_ne!(context.span_id.as_str(), "00f067aa0ba902b7");
        assert_eq!(
            context.traceparent().as_bytes(),
            format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01", context.span_id).as_bytes()
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
            assert!(!context.trace_id.is_zero());
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
        assert_eq!(
            context.parent_span_id.map(|p| p.to_string()).as_deref(),
            Some("00f067aa0ba902b7")
        );
        assert!(!context.sampled);
        let unsampled = context.traceparent();
        assert!(unsampled.as_bytes().ends_with(b"-00"));
    }

    #[test]
    fn request_ids_are_unique_hex() {
        let ids: std::collections::HashSet<RequestId> =
            (0..10_000).map(|_| new_request_id()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|id| RequestId::parse(id.as_str()).is_some()));
    }

    #[test]
    fn hex_ids_keep_the_low_bits_with_leading_zeros() {
        assert_eq!(SpanId::from_bits(0xabc).as_str(), "0000000000000abc");
        assert_eq!(
            TraceId::from_bits(u128::MAX).as_str(),
            "ffffffffffffffffffffffffffffffff"
        );
        assert_eq!(HexId::<2>::from_bits(0x1ff).as_str(), "ff");
        assert!(SpanId::parse("00F067AA0BA902B7").is_none(), "uppercase");
        assert!(SpanId::parse("00f067aa0ba902b").is_none(), "too short");
    }
}
