//! Checking a request head before hyper sees it, with the parser hyper uses
//! (`httparse`, same settings) and the same rules, plus the ones hyper leaves
//! to the server: `Host` as RFC 9112 requires it, and a `Content-Length`
//! over the body limit. A head hyper would refuse is refused here instead,
//! so the host can answer it with its own JSON body, request id and log line
//! (hyper's own answer is an empty 400 or 431).
//!
//! The head is measured as hyper measures it: the bytes up to the end of
//! the header section, however they arrive.

use std::mem::MaybeUninit;

use http::header::HeaderValue;
use http::{Method, Uri};

use super::framing::{Body, Chunked};
use crate::request::outcome::Malformed;

/// The most header lines a head may have (`--max-request-headers` is held
/// to it).
pub const MAX_HEADERS_CEILING: usize = 256;

/// What a head may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Largest head, in bytes (431 beyond).
    pub max_head_size: usize,
    /// Most header lines (431 beyond); at most [`MAX_HEADERS_CEILING`].
    pub max_headers: usize,
    /// Largest body a `Content-Length` may announce (413 beyond).
    pub max_body: u64,
}

/// What the bytes at the start of a buffer hold.
#[derive(Debug)]
pub enum Checked {
    /// Not a whole head yet (and not over the size limit).
    Partial,
    /// A head hyper will take: its length and the body that follows.
    Accepted {
        /// Bytes of the head.
        len: usize,
        /// Its body, if it has one.
        body: Option<Body>,
    },
    /// A head the host answers itself.
    Refused(Refusal),
}

/// Why a head is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not a request hyper or RFC 9112 accepts.
    Malformed(Malformed),
    /// `Content-Length` over `--max-request-body-size`: 413.
    BodyTooLarge,
}

/// A refused head, with what could be read of it (for its log line).
#[derive(Debug, Clone)]
pub struct Refusal {
    /// Why.
    pub why: Refused,
    /// The method, if it was read.
    pub method: Option<Method>,
    /// The request target, if it was read and valid.
    pub target: Option<Uri>,
    /// `User-Agent`, if the headers were read.
    pub user_agent: Option<HeaderValue>,
    /// Whether the request line said HTTP/1.0.
    pub http10: bool,
}

/// Finds and checks heads in a growing buffer without parsing it again at
/// every byte (as hyper does, a head is parsed once its end is in sight).
#[derive(Debug, Default)]
pub struct HeadScanner {
    /// Bytes already searched for the end of the head.
    scanned: usize,
}

impl HeadScanner {
    /// Checks the head at the start of `bytes` (the buffer so far).
    pub fn check(&mut self, bytes: &[u8], limits: &HeadLimits) -> Checked {
        if !ends_head(bytes, self.scanned) {
            self.scanned = bytes.len();
            if bytes.len() >= limits.max_head_size {
                self.scanned = 0;
                return Checked::Refused(refused_partial(bytes));
            }
            return Checked::Partial;
        }
        self.scanned = 0;
        let mut storage = [MaybeUninit::<httparse::Header<'_>>::uninit(); MAX_HEADERS_CEILING];
        let headers = &mut storage[..limits.max_headers.min(MAX_HEADERS_CEILING)];
        let mut request = httparse::Request::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_request_with_uninit_headers(
            &mut request,
            bytes,
            headers,
        );
        let refuse = |why: Malformed, request: &httparse::Request<'_, '_>| {
            Checked::Refused(refusal(Refused::Malformed(why), request))
        };
        match parsed {
            Ok(httparse::Status::Complete(len)) => match accept(&request, len, limits) {
                Ok(body) => Checked::Accepted { len, body },
                Err(why) => Checked::Refused(refusal(why, &request)),
            },
            // Leading empty lines only: the head has not started. Search on
            // from here, not from the start again.
            Ok(httparse::Status::Partial) => {
                self.scanned = bytes.len();
                Checked::Partial
            }
            Err(httparse::Error::TooManyHeaders) => refuse(Malformed::HeadTooLarge, &request),
            Err(_) => refuse(Malformed::Invalid, &request),
        }
    }
}

/// Whether the header section ends in `bytes`, searching from a little
/// before `from` (what earlier calls searched).
fn ends_head(bytes: &[u8], from: usize) -> bool {
    let start = from.saturating_sub(3);
    let rest = &bytes[start..];
    rest.windows(2).enumerate().any(|(i, pair)| match pair {
        b"\n\n" => true,
        b"\n\r" => rest.get(i + 2) == Some(&b'\n'),
        _ => false,
    })
}

/// The checks hyper makes after parsing, and those it leaves to servers.
/// Returns the body the head announces.
fn accept(
    request: &httparse::Request<'_, '_>,
    len: usize,
    limits: &HeadLimits,
) -> Result<Option<Body>, Refused> {
    let malformed = |why| Err(Refused::Malformed(why));
    if len > limits.max_head_size {
        return malformed(Malformed::HeadTooLarge);
    }
    let (Some(method), Some(target)) = (request.method, request.path) else {
        return malformed(Malformed::Invalid);
    };
    if Method::from_bytes(method.as_bytes()).is_err() || !valid_target(target) {
        return malformed(Malformed::Invalid);
    }
    let http11 = request.version == Some(1);
    let (mut hosts, mut chunked, mut length) = (0, None, None);
    for header in request.headers.iter() {
        let name = header.name.as_bytes();
        if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
            if !valid_host(header.value) {
                return malformed(Malformed::InvalidHost);
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if !http11 {
                return malformed(Malformed::TransferEncoding);
            }
            // As hyper: the last encoding of the last such header decides,
            // and a length seen before it no longer counts.
            chunked = Some(is_chunked(header.value));
            length = None;
        } else if name.eq_ignore_ascii_case(b"content-length") && chunked.is_none() {
            let value = digits(header.value).ok_or(Refused::Malformed(Malformed::ContentLength))?;
            if length.is_some_and(|earlier| earlier != value) {
                return malformed(Malformed::ContentLength);
            }
            length = Some(value);
        }
    }
    match (hosts, http11) {
        (0, true) => return malformed(Malformed::MissingHost),
        (2.., _) => return malformed(Malformed::DuplicateHost),
        _ => {}
    }
    match (chunked, length) {
        (Some(false), _) => malformed(Malformed::TransferEncoding),
        (Some(true), _) => Ok(Some(Body::Chunked(Chunked::new(
            limits.max_headers,
            limits.max_head_size,
        )))),
        (None, Some(length)) if length > limits.max_body => Err(Refused::BodyTooLarge),
        (None, Some(length)) if length > 0 => Ok(Some(Body::Length(length))),
        (None, _) => Ok(None),
    }
}

/// A request target the `http` crate (hence hyper) accepts. The usual
/// origin-form is checked without building a `Uri`.
fn valid_target(target: &str) -> bool {
    let plain = target.starts_with('/')
        && target
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b));
    plain || Uri::try_from(target).is_ok()
}

/// A `Host` value: empty, or a host and optional port (RFC 3986 characters,
/// no user information).
fn valid_host(value: &[u8]) -> bool {
    value
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:[]%".contains(b))
}

/// Whether a `Transfer-Encoding` value ends with `chunked`.
fn is_chunked(value: &[u8]) -> bool {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.rsplit(',').next())
        .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
}

/// A `Content-Length` value: digits only, as hyper reads it.
fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |total, &b| {
        let digit = char::from(b).to_digit(10)?;
        total.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// A refusal with what `request` holds.
fn refusal(why: Refused, request: &httparse::Request<'_, '_>) -> Refusal {
    let user_agent = request
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("user-agent"))
        .and_then(|h| HeaderValue::from_bytes(h.value).ok());
    Refusal {
        why,
        method: request
            .method
            .and_then(|m| Method::from_bytes(m.as_bytes()).ok()),
        target: request.path.and_then(|p| Uri::try_from(p).ok()),
        user_agent,
        http10: request.version == Some(0),
    }
}

/// A head over the size limit before its end: what its request line says.
fn refused_partial(bytes: &[u8]) -> Refusal {
    let mut request = httparse::Request::new(&mut []);
    // Partial, or failing at the first header (there is no room for any):
    // the request line it read still counts.
    let _ = request.parse(bytes);
    refusal(Refused::Malformed(Malformed::HeadTooLarge), &request)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits {
        max_head_size: 1024,
        max_headers: 8,
        max_body: 100,
    };

    fn check(head: &str) -> Checked {
        HeadScanner::default().check(head.as_bytes(), &LIMITS)
    }

    fn refused(head: &str) -> Refusal {
        match check(head) {
            Checked::Refused(refusal) => refusal,
            other => panic!("{head:?} not refused: {other:?}"),
        }
    }

    fn malformed(head: &str) -> Malformed {
        match refused(head).why {
            Refused::Malformed(why) => why,
            Refused::BodyTooLarge => panic!("{head:?}: 413, not malformed"),
        }
    }

    #[test]
    fn accepts_heads_with_their_bodies() {
        let cases = [
            ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", None),
            ("GET /x HTTP/1.0\r\n\r\n", None),
            ("\r\nGET / HTTP/1.1\nHost: a\n\n", None),
            (
                "POST /h HTTP/1.1\r\nHost: a:80\r\nContent-Length: 5\r\n\r\n",
                Some(Body::Length(5)),
            ),
            (
                "POST /h HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
                None,
            ),
            (
                "POST /h HTTP/1.1\r\nHost: a\r\nContent-Length: 7\r\ncontent-length: 7\r\n\r\n",
                Some(Body::Length(7)),
            ),
            (
                "POST /h HTTP/1.1\r\nHost: [::1]:3000\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                Some(Body::Chunked(Chunked::new(8, 1024))),
            ),
            // As hyper: with chunked coding, a length does not count.
            (
                "POST /h HTTP/1.1\r\nHost: a\r\nContent-Length: 9999\r\nTransfer-Encoding: chunked\r\n\r\n",
                Some(Body::Chunked(Chunked::new(8, 1024))),
            ),
            ("OPTIONS * HTTP/1.1\r\nHost: \r\n\r\n", None),
            ("GET http://a/b?c HTTP/1.1\r\nHost: a\r\n\r\n", None),
        ];
        for (head, body) in cases {
            match check(head) {
                Checked::Accepted { len, body: found } => {
                    assert_eq!((len, &found), (head.len(), &body), "{head:?}")
                }
                other => panic!("{head:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn refuses_what_hyper_refuses_with_the_status_it_would_use() {
        let cases = [
            (
                "GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n",
                Malformed::Invalid,
            ),
            ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", Malformed::Invalid),
            ("G@T / HTTP/1.1\r\nHost: a\r\n\r\n", Malformed::Invalid),
            (
                "GET http://[::1/x HTTP/1.1\r\nHost: a\r\n\r\n",
                Malformed::Invalid,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n",
                Malformed::ContentLength,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n",
                Malformed::ContentLength,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
                Malformed::ContentLength,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                Malformed::ContentLength,
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
                Malformed::TransferEncoding,
            ),
            (
                "GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
                Malformed::TransferEncoding,
            ),
        ];
        for (head, why) in cases {
            assert_eq!(malformed(head), why, "{head:?}");
        }
    }

    #[test]
    fn host_is_required_once_and_valid() {
        assert_eq!(malformed("GET / HTTP/1.1\r\n\r\n"), Malformed::MissingHost);
        assert_eq!(
            malformed("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            Malformed::DuplicateHost
        );
        assert_eq!(
            malformed("GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n"),
            Malformed::DuplicateHost
        );
        assert_eq!(
            malformed("GET / HTTP/1.1\r\nHost: user@a\r\n\r\n"),
            Malformed::InvalidHost
        );
        assert_eq!(
            malformed("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"),
            Malformed::InvalidHost
        );
    }

    #[test]
    fn a_length_over_the_body_limit_is_413_even_an_absurd_one() {
        for length in ["101", "18446744073709551615"] {
            let head = format!("POST /h HTTP/1.1\r\nHost: a\r\nContent-Length: {length}\r\n\r\n");
            let refusal = refused(&head);
            assert_eq!(refusal.why, Refused::BodyTooLarge);
            assert_eq!(refusal.method, Some(Method::POST));
            assert_eq!(refusal.target.unwrap().path(), "/h");
        }
    }

    #[test]
    fn heads_are_measured_exactly_however_they_arrive() {
        let limits = HeadLimits {
            max_head_size: 64,
            ..LIMITS
        };
        let exact = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "x".repeat(64 - 27));
        assert_eq!(exact.len(), 64);
        let mut scanner = HeadScanner::default();
        // Byte by byte, as a slow client sends it: partial until its end.
        for end in 1..exact.len() {
            assert!(matches!(
                scanner.check(&exact.as_bytes()[..end], &limits),
                Checked::Partial
            ));
        }
        assert!(matches!(
            scanner.check(exact.as_bytes(), &limits),
            Checked::Accepted { len: 64, .. }
        ));
        // One byte more, in one piece or growing: 431, with the request line.
        let over = exact.replacen("/x", "/xx", 1);
        let whole = HeadScanner::default().check(over.as_bytes(), &limits);
        let Checked::Refused(refusal) = whole else {
            panic!("{whole:?}")
        };
        assert_eq!(refusal.why, Refused::Malformed(Malformed::HeadTooLarge));
        let Checked::Refused(partial) =
            HeadScanner::default().check(&over.as_bytes()[..64], &limits)
        else {
            panic!("a partial head at the limit is refused")
        };
        assert_eq!(partial.why, Refused::Malformed(Malformed::HeadTooLarge));
        assert_eq!(partial.method, Some(Method::GET));
    }

    #[test]
    fn too_many_headers_is_431_and_the_refusal_keeps_what_was_read() {
        let mut head = String::from("PUT /heroes/1 HTTP/1.1\r\nHost: a\r\nUser-Agent: probe/1\r\n");
        for i in 0..8 {
            head.push_str(&format!("X-{i}: {i}\r\n"));
        }
        head.push_str("\r\n");
        let refusal = refused(&head);
        assert_eq!(refusal.why, Refused::Malformed(Malformed::HeadTooLarge));
        assert_eq!(refusal.method, Some(Method::PUT));
        assert_eq!(refusal.target.unwrap().path(), "/heroes/1");
        assert!(!refusal.http10);
    }

    #[test]
    fn a_missing_host_keeps_the_user_agent_and_version() {
        let refusal = refused("GET /x HTTP/1.1\r\nUser-Agent: probe/2\r\n\r\n");
        assert_eq!(refusal.user_agent.unwrap(), "probe/2");
        assert_eq!(refusal.target.unwrap().path(), "/x");
    }
}
