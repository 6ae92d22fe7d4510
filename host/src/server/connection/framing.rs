//! Where a request body ends, as hyper's HTTP/1 decoder finds it: a
//! `Content-Length` count, or chunked coding (size lines, extensions, data,
//! trailers) with the same grammar and limits. The connection uses it to
//! find the next request head in a stream of pipelined requests; the body
//! itself is read and checked by hyper.

/// Longest total of chunk extensions in one body (hyper's limit).
const EXTENSIONS_LIMIT: u64 = 16 * 1024;

/// The body being passed through, and how much of it is left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// `Content-Length`: this many bytes are still to come.
    Length(u64),
    /// Chunked coding.
    Chunked(Chunked),
}

/// How far a call to [`Body::advance`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advance {
    /// Bytes of the input that belong to the body.
    pub used: usize,
    /// Whether the body ended within them (the next byte starts a head).
    pub ended: bool,
}

/// The chunked coding broke its grammar or a limit: hyper fails the body
/// and closes the connection, so no further head will be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Broken;

/// Where a chunked body stands, as hyper's decoder names its states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    Size,
    SizeLws,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    Trailer,
    TrailerLf,
    EndCr,
    EndLf,
}

/// A chunked body in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunked {
    state: State,
    /// The size being read, then the data left in the chunk.
    size: u64,
    extensions: u64,
    trailer_bytes: usize,
    trailers: usize,
    max_trailers: usize,
    max_trailer_bytes: usize,
}

impl Chunked {
    /// A chunked body whose trailers are held to the head limits, as hyper
    /// holds them.
    pub fn new(max_trailers: usize, max_trailer_bytes: usize) -> Self {
        Chunked {
            state: State::Start,
            size: 0,
            extensions: 0,
            trailer_bytes: 0,
            trailers: 0,
            max_trailers,
            max_trailer_bytes,
        }
    }

    fn advance(&mut self, bytes: &[u8]) -> Result<Advance, Broken> {
        let mut used = 0;
        while used < bytes.len() {
            if self.state == State::Data {
                let take = usize::try_from(self.size)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len() - used);
                used += take;
                self.size -= take as u64;
                if self.size == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            let byte = bytes[used];
            used += 1;
            if self.step(byte)? {
                return Ok(Advance { used, ended: true });
            }
        }
        Ok(Advance { used, ended: false })
    }

    /// One byte outside chunk data; returns whether the body ended with it.
    fn step(&mut self, byte: u8) -> Result<bool, Broken> {
        self.state = match (self.state, byte) {
            (State::Start, _) => {
                self.size = hex(byte).ok_or(Broken)?;
                State::Size
            }
            (State::Size, b'\t' | b' ') | (State::SizeLws, b'\t' | b' ') => State::SizeLws,
            (State::Size | State::SizeLws, b';') => State::Extension,
            (State::Size | State::SizeLws | State::Extension, b'\r') => State::SizeLf,
            (State::Size, _) => {
                let digit = hex(byte).ok_or(Broken)?;
                self.size = self
                    .size
                    .checked_mul(16)
                    .and_then(|size| size.checked_add(digit))
                    .ok_or(Broken)?;
                State::Size
            }
            (State::Extension, b'\n') => return Err(Broken),
            (State::Extension, _) => {
                self.extensions += 1;
                if self.extensions >= EXTENSIONS_LIMIT {
                    return Err(Broken);
                }
                State::Extension
            }
            (State::SizeLf, b'\n') if self.size == 0 => State::EndCr,
            (State::SizeLf, b'\n') => State::Data,
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => State::Start,
            (State::EndCr, b'\r') => {
                if self.trailer_bytes > 0 {
                    self.trailer_byte(true)?;
                }
                State::EndLf
            }
            (State::EndCr, _) => {
                self.trailer_byte(self.trailer_bytes > 0)?;
                State::Trailer
            }
            (State::Trailer, b'\r') => {
                self.trailer_byte(true)?;
                State::TrailerLf
            }
            (State::Trailer, _) => {
                self.trailer_byte(true)?;
                State::Trailer
            }
            (State::TrailerLf, b'\n') => {
                if self.trailers >= self.max_trailers {
                    return Err(Broken);
                }
                self.trailers += 1;
                self.trailer_byte(true)?;
                State::EndCr
            }
            (State::EndLf, b'\n') => return Ok(true),
            _ => return Err(Broken),
        };
        Ok(false)
    }

    /// Counts a byte of the trailer section; `limited` as hyper checks its
    /// limit (not on the first byte of the section).
    fn trailer_byte(&mut self, limited: bool) -> Result<(), Broken> {
        if limited && self.trailer_bytes >= self.max_trailer_bytes {
            return Err(Broken);
        }
        self.trailer_bytes += 1;
        Ok(())
    }
}

fn hex(byte: u8) -> Option<u64> {
    char::from(byte).to_digit(16).map(u64::from)
}

impl Body {
    /// Passes `bytes` (what follows the body bytes seen so far) through the
    /// body: how many belong to it, and whether it ended.
    pub fn advance(&mut self, bytes: &[u8]) -> Result<Advance, Broken> {
        match self {
            Body::Length(left) => {
                let used = usize::try_from(*left)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                *left -= used as u64;
                Ok(Advance {
                    used,
                    ended: *left == 0,
                })
            }
            Body::Chunked(chunked) => chunked.advance(bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked() -> Body {
        Body::Chunked(Chunked::new(100, 1024))
    }

    /// Feeds `bytes` one piece of `step` bytes at a time; returns where the
    /// body ended.
    fn end_of(mut body: Body, bytes: &[u8], step: usize) -> Result<Option<usize>, Broken> {
        let mut offset = 0;
        for piece in bytes.chunks(step) {
            let advance = body.advance(piece)?;
            offset += advance.used;
            if advance.ended {
                return Ok(Some(offset));
            }
            assert_eq!(advance.used, piece.len());
        }
        Ok(None)
    }

    #[test]
    fn a_length_body_ends_after_its_length() {
        let mut body = Body::Length(5);
        assert_eq!(
            body.advance(b"abc").unwrap(),
            Advance {
                used: 3,
                ended: false
            }
        );
        assert_eq!(
            body.advance(b"deGET").unwrap(),
            Advance {
                used: 2,
                ended: true
            }
        );
    }

    #[test]
    fn a_chunked_body_ends_after_its_last_chunk_and_trailers_in_any_pieces() {
        let cases: [&[u8]; 5] = [
            b"5\r\nhello\r\n0\r\n\r\n",
            b"5;name=value\r\nhello\r\nA \t\r\n0123456789\r\n0\r\n\r\n",
            b"0\r\nExpires: never\r\nX-Check: 1\r\n\r\n",
            b"00000003\r\nabc\r\n000\r\n\r\n",
            b"f\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\nx\r\n0\r\n\r\n",
        ];
        for case in cases {
            let mut bytes = case.to_vec();
            bytes.extend_from_slice(b"GET / HTTP/1.1\r\n");
            for step in [1, 2, 7, bytes.len()] {
                assert_eq!(
                    end_of(chunked(), &bytes, step),
                    Ok(Some(case.len())),
                    "{:?} in pieces of {step}",
                    String::from_utf8_lossy(case)
                );
            }
        }
    }

    #[test]
    fn broken_chunked_coding_is_refused_where_hyper_refuses_it() {
        let cases: [&[u8]; 8] = [
            b"x\r\n",
            b"5\nhello",
            b"5\r\nhelloXX",
            b"5 5\r\n",
            b"1;ext\nx",
            b"fffffffffffffffff\r\n",
            b"0\r\nTrailer: x\rX",
            b"0\r\n\rX",
        ];
        for case in cases {
            assert_eq!(
                end_of(chunked(), case, 1),
                Err(Broken),
                "{:?}",
                String::from_utf8_lossy(case)
            );
        }
    }

    #[test]
    fn chunk_extensions_and_trailers_have_limits() {
        let long_extension = format!("1;{}\r\nx\r\n0\r\n\r\n", "e".repeat(17 * 1024));
        assert_eq!(
            end_of(chunked(), long_extension.as_bytes(), 4096),
            Err(Broken)
        );
        let many_trailers = format!("0\r\n{}\r\n", "T: 1\r\n".repeat(101));
        assert_eq!(end_of(chunked(), many_trailers.as_bytes(), 64), Err(Broken));
        let long_trailer = format!("0\r\nT: {}\r\n\r\n", "v".repeat(2000));
        assert_eq!(end_of(chunked(), long_trailer.as_bytes(), 64), Err(Broken));
    }
}
