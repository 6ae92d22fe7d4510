//! HTTP/1.1 by hand, for what a well-behaved client would never do:
//! pipelining, malformed heads, slow or missing reads. Responses are decoded
//! with `httparse`, the parser hyper itself uses.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

use super::http::header_value;

/// A response read off a raw connection.
#[derive(Debug)]
pub struct RawResponse {
    /// Status code.
    pub status: u16,
    /// Headers, lowercase names.
    pub headers: Vec<(String, String)>,
    /// Body, decoded from its framing.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// A raw client connection, with what it has read but not yet decoded.
pub struct RawClient {
    /// The socket.
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl RawClient {
    /// Connects to `addr`; reads time out after `timeout`.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> Self {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(timeout)).unwrap();
        RawClient {
            stream,
            buf: Vec::new(),
        }
    }

    /// A client on a connection already open.
    pub fn from_stream(stream: TcpStream, timeout: Duration) -> Self {
        stream.set_read_timeout(Some(timeout)).unwrap();
        RawClient {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends bytes as they are.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// The next response, or `None` when the connection ends (or the read
    /// times out) first. `head`: the request was a HEAD (no body follows).
    pub fn response(&mut self, head: bool) -> Option<RawResponse> {
        let (status, headers, len) = loop {
            let mut fields = [httparse::EMPTY_HEADER; 64];
            let mut parsed = httparse::Response::new(&mut fields);
            if let httparse::Status::Complete(len) = parsed.parse(&self.buf).unwrap() {
                let headers: Vec<(String, String)> = parsed
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                break (parsed.code.unwrap(), headers, len);
            }
            if !self.fill() {
                return None;
            }
        };
        self.buf.drain(..len);
        let find = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v);
        let body = if head || matches!(status, 204 | 304) {
            Vec::new()
        } else if find("transfer-encoding").is_some_and(|te| te.contains("chunked")) {
            self.chunked()?
        } else if let Some(length) = find("content-length") {
            self.exactly(length.parse().unwrap())?
        } else {
            while self.fill() {}
            std::mem::take(&mut self.buf)
        };
        Some(RawResponse {
            status,
            headers,
            body,
        })
    }

    /// Whether the host has closed the connection (reading returns its
    /// end, or a reset) within the read timeout.
    pub fn closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match self.stream.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
            Err(_) => true,
        }
    }

    /// Reads and discards everything until the connection ends; true when
    /// it does (the host closed or reset it), false when a read times out.
    pub fn ends(&mut self) -> bool {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return false;
                }
                Err(_) => return true,
            }
        }
    }

    /// Reads more; false at the end of the stream or a timeout.
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    fn exactly(&mut self, length: usize) -> Option<Vec<u8>> {
        while self.buf.len() < length {
            if !self.fill() {
                return None;
            }
        }
        Some(self.buf.drain(..length).collect())
    }

    fn chunked(&mut self) -> Option<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let (start, size) = loop {
                match httparse::parse_chunk_size(&self.buf) {
                    Ok(httparse::Status::Complete(found)) => break found,
                    Ok(httparse::Status::Partial) if self.fill() => {}
                    _ => return None,
                }
            };
            self.buf.drain(..start);
            let size = usize::try_from(size).unwrap();
            // The data and its CRLF; the last chunk is followed by the
            // (empty) trailer section's CRLF.
            let data = self.exactly(size + 2)?;
            if size == 0 {
                return Some(body);
            }
            body.extend_from_slice(&data[..size]);
        }
    }
}
