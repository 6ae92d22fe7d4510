//! What a connection reads passes through here on its way to hyper: each
//! request head is checked whole before hyper gets any of it, bodies pass
//! through as they come (their framing followed to find the next head), and
//! a refused head is replaced by a stand-in request that hyper hands to the
//! service in its turn, after the responses to earlier pipelined requests.
//! Nothing after a refused head reaches hyper: the connection closes after
//! answering it.

use bytes::{Buf, BytesMut};
use tokio::io::ReadBuf;

use super::framing::{Advance, Body, Broken};
use super::head::{Checked, HeadLimits, HeadScanner, Refusal};

/// Room reserved for each read from the socket.
const READ_SIZE: usize = 8 * 1024;

/// What hyper gets in place of a refused head (version as the client's).
const STAND_IN_11: &[u8] = b"GET / HTTP/1.1\r\nHost: refused\r\nConnection: close\r\n\r\n";
const STAND_IN_10: &[u8] = b"GET / HTTP/1.0\r\n\r\n";

/// What an HTTP/2 client with prior knowledge sends first (RFC 9113, 3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Which HTTP a connection speaks, as its first bytes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.x: every head checked here first.
    Http1,
    /// HTTP/2 with prior knowledge: passed through whole to hyper's HTTP/2
    /// server, which applies the limits that exist in HTTP/2.
    Http2,
}

/// The input of one connection between the socket and hyper.
pub struct Gate {
    /// Read from the socket and not yet handed to hyper.
    buf: BytesMut,
    /// How many bytes at the start of `buf` are checked and may go.
    ready: usize,
    stage: Stage,
    scanner: HeadScanner,
    limits: HeadLimits,
}

/// What the next unchecked byte is.
enum Stage {
    /// The start of a request head.
    Head,
    /// Part of a body.
    Body(Body),
    /// After a refused head: dropped.
    Refused,
    /// After a body hyper will refuse too: passed on unchecked, as hyper
    /// reads no further request.
    Unchecked,
}

/// What examining the input found.
#[derive(Debug)]
pub enum Found {
    /// A head was accepted: its bytes are ready.
    Head,
    /// Bytes of a body are ready.
    Body,
    /// A refused head: its stand-in is ready.
    Refused(Refusal),
    /// Nothing to hand over until more input comes.
    NeedMore,
}

impl Gate {
    /// A gate checking heads against `limits`.
    pub fn new(limits: HeadLimits) -> Self {
        Gate {
            buf: BytesMut::new(),
            ready: 0,
            stage: Stage::Head,
            scanner: HeadScanner::default(),
            limits,
        }
    }

    /// Examines buffered input, making the next checked bytes ready.
    pub fn examine(&mut self) -> Found {
        if self.ready > 0 {
            return Found::Body;
        }
        if self.buf.is_empty() {
            return Found::NeedMore;
        }
        match &mut self.stage {
            Stage::Head => match self.scanner.check(&self.buf, &self.limits) {
                Checked::Partial => Found::NeedMore,
                Checked::Accepted { len, body } => {
                    self.ready = len;
                    self.stage = body.map_or(Stage::Head, Stage::Body);
                    Found::Head
                }
                Checked::Refused(refusal) => {
                    self.buf.clear();
                    let stand_in = if refusal.http10 {
                        STAND_IN_10
                    } else {
                        STAND_IN_11
                    };
                    self.buf.extend_from_slice(stand_in);
                    self.ready = stand_in.len();
                    self.stage = Stage::Refused;
                    Found::Refused(refusal)
                }
            },
            Stage::Body(body) => {
                match body.advance(&self.buf) {
                    Ok(Advance { used, ended }) => {
                        self.ready = used;
                        if ended {
                            self.stage = Stage::Head;
                        }
                    }
                    Err(Broken) => {
                        self.ready = self.buf.len();
                        self.stage = Stage::Unchecked;
                    }
                }
                if self.ready == 0 {
                    return self.examine();
                }
                Found::Body
            }
            Stage::Refused => {
                self.buf.clear();
                Found::NeedMore
            }
            Stage::Unchecked => {
                self.ready = self.buf.len();
                Found::Body
            }
        }
    }

    /// The connection's protocol, once its first bytes tell (`None` while
    /// they are a prefix of the HTTP/2 preface). An HTTP/2 connection's
    /// input passes through unchecked from then on.
    pub fn protocol(&mut self) -> Option<Protocol> {
        let n = self.buf.len().min(PREFACE.len());
        if self.buf[..n] != PREFACE[..n] {
            return Some(Protocol::Http1);
        }
        if n < PREFACE.len() {
            return None;
        }
        self.stage = Stage::Unchecked;
        Some(Protocol::Http2)
    }

    /// Hands ready bytes to hyper, as many as `out` takes.
    pub fn hand_over(&mut self, out: &mut ReadBuf<'_>) {
        let n = self.ready.min(out.remaining());
        out.put_slice(&self.buf[..n]);
        self.buf.advance(n);
        self.ready -= n;
    }

    /// Where the next read from the socket goes, with room reserved.
    pub fn input(&mut self) -> &mut BytesMut {
        if self.buf.capacity() - self.buf.len() < READ_SIZE / 2 {
            self.buf.reserve(READ_SIZE);
        }
        &mut self.buf
    }

    /// Whether the connection is between requests with nothing buffered.
    pub fn at_rest(&self) -> bool {
        matches!(self.stage, Stage::Head) && self.buf.is_empty()
    }

    /// Whether input is buffered that hyper has not had.
    pub fn holds_input(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Whether a head was refused: the connection takes no more requests.
    pub fn refused(&self) -> bool {
        matches!(self.stage, Stage::Refused)
    }

    /// Frees the buffer of a connection at rest (idle connections hold
    /// no buffer of their own).
    pub fn release_memory(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > 0 {
            self.buf = BytesMut::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use http::Method;

    use super::*;
    use crate::request::outcome::Malformed;
    use crate::server::connection::head::Refused;

    const LIMITS: HeadLimits = HeadLimits {
        max_head_size: 256,
        max_headers: 16,
        max_body: 1000,
    };

    /// What the gate does with `input` arriving in pieces of `step` bytes:
    /// the bytes hyper gets, and the refusals found.
    fn pass(input: &[u8], step: usize) -> (Vec<u8>, Vec<Refusal>, usize) {
        let mut gate = Gate::new(LIMITS);
        let (mut passed, mut refusals, mut heads) = (Vec::new(), Vec::new(), 0);
        let mut storage = [0u8; 5];
        for piece in input.chunks(step) {
            gate.input().extend_from_slice(piece);
            loop {
                match gate.examine() {
                    Found::NeedMore => break,
                    Found::Head => heads += 1,
                    Found::Refused(refusal) => refusals.push(refusal),
                    Found::Body => {}
                }
                // hyper's buffer may be small: hand over in bits.
                while gate.ready > 0 {
                    let mut out = ReadBuf::new(&mut storage);
                    gate.hand_over(&mut out);
                    passed.extend_from_slice(out.filled());
                }
            }
        }
        (passed, refusals, heads)
    }

    #[test]
    fn pipelined_requests_and_their_bodies_pass_unchanged() {
        let input = b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello\
            POST /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
            GET /c HTTP/1.1\r\nHost: h\r\n\r\n";
        for step in [1, 3, 64, input.len()] {
            let (passed, refusals, heads) = pass(input, step);
            assert_eq!(passed, input, "in pieces of {step}");
            assert!(refusals.is_empty());
            assert_eq!(heads, 3);
        }
    }

    #[test]
    fn a_body_that_looks_like_a_bad_head_is_a_body() {
        let input =
            b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 20\r\n\r\nGET / HTTP/1.1\r\n\r\n\r\n\
            GET / HTTP/1.1\r\nHost: h\r\n\r\n";
        let (passed, refusals, heads) = pass(input, 7);
        assert_eq!(
            (passed.as_slice(), refusals.len(), heads),
            (&input[..], 0, 2)
        );
    }

    #[test]
    fn a_refused_head_becomes_a_stand_in_after_the_requests_before_it() {
        let good = b"GET /ok HTTP/1.1\r\nHost: h\r\n\r\n";
        let mut input = good.to_vec();
        input.extend_from_slice(
            b"DELETE /heroes/x HTTP/1.1\r\n\r\nGET /never HTTP/1.1\r\nHost: h\r\n\r\n",
        );
        let (passed, refusals, heads) = pass(&input, 11);
        let mut expected = good.to_vec();
        expected.extend_from_slice(STAND_IN_11);
        assert_eq!(
            String::from_utf8_lossy(&passed),
            String::from_utf8_lossy(&expected)
        );
        assert_eq!(heads, 1);
        assert_eq!(refusals.len(), 1);
        assert_eq!(refusals[0].why, Refused::Malformed(Malformed::MissingHost));
        assert_eq!(refusals[0].method, Some(Method::DELETE));
    }

    #[test]
    fn an_http_10_refusal_is_answered_in_http_10() {
        let (passed, refusals, _) = pass(b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 100);
        assert_eq!(passed, STAND_IN_10);
        assert_eq!(
            refusals[0].why,
            Refused::Malformed(Malformed::DuplicateHost)
        );
    }

    #[test]
    fn a_head_growing_past_the_limit_is_refused_without_its_end() {
        let mut input = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 300));
        let (passed, refusals, _) = pass(&input, 16);
        assert_eq!(passed, STAND_IN_11);
        assert_eq!(refusals[0].why, Refused::Malformed(Malformed::HeadTooLarge));
    }

    #[test]
    fn after_broken_chunked_coding_bytes_pass_unchecked() {
        let input = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nGET / HTTP/1.1\r\n\r\n";
        let (passed, refusals, heads) = pass(input, 9);
        assert_eq!(
            (passed.as_slice(), refusals.len(), heads),
            (&input[..], 0, 1)
        );
    }

    #[test]
    fn a_connection_at_rest_holds_no_buffer() {
        let mut gate = Gate::new(LIMITS);
        assert!(gate.at_rest());
        gate.input()
            .extend_from_slice(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert!(!gate.at_rest());
        assert!(matches!(gate.examine(), Found::Head));
        let mut storage = [0u8; 64];
        gate.hand_over(&mut ReadBuf::new(&mut storage));
        assert!(gate.at_rest());
        gate.release_memory();
        assert_eq!(gate.buf.capacity(), 0);
    }

    #[test]
    fn the_http2_preface_passes_through_unchecked_and_http1_is_told_at_once() {
        let mut gate = Gate::new(LIMITS);
        assert_eq!(gate.protocol(), None, "nothing read yet");
        gate.input().extend_from_slice(&PREFACE[..10]);
        assert_eq!(gate.protocol(), None, "a prefix of the preface");
        // The rest, and a frame no HTTP/1 head check would pass.
        gate.input().extend_from_slice(&PREFACE[10..]);
        gate.input().extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        assert_eq!(gate.protocol(), Some(Protocol::Http2));
        assert!(matches!(gate.examine(), Found::Body));
        assert_eq!(gate.ready, PREFACE.len() + 9, "all of it, unchecked");
        assert!(!gate.at_rest());

        for http1 in [&b"GET / HTTP/1.1"[..], b"PUT /", b"PRI / HTTP/1.1"] {
            let mut gate = Gate::new(LIMITS);
            gate.input().extend_from_slice(http1);
            assert_eq!(gate.protocol(), Some(Protocol::Http1), "{http1:?}");
            assert!(matches!(gate.examine(), Found::NeedMore), "still checked");
        }
    }
}
