//! Guest stdout and stderr: the streams WASI hands the guest, and the
//! splitter that turns the bytes it writes into lines.
//!
//! Writes never block the guest and never fail: bytes go to the instance,
//! which logs each complete line at once. A line longer than
//! [`MAX_GUEST_LINE`] is logged up to that length and the rest of it dropped.
//!
//! Who wrote the bytes: a WASIp2 write happens inside the guest's host call,
//! so the stream asks the instance who is calling at that moment; a WASIp3
//! write hands the host a stream it reads later, so the writer is taken when
//! the guest makes that call (`async_stream`), and kept for the stream.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use super::attribution::Writer;
use super::instance::InstanceShared;
use crate::telemetry::logs::GuestStream;

/// Longest guest line kept whole.
pub const MAX_GUEST_LINE: usize = 16 * 1024;

/// Splits a byte stream into lines of at most [`MAX_GUEST_LINE`] bytes.
#[derive(Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
    /// Dropping the rest of an over-long line until its newline.
    discarding: bool,
}

impl LineSplitter {
    /// Takes `bytes`, calling `line` with each line they complete (without
    /// its newline or carriage return).
    pub fn push(&mut self, mut bytes: &[u8], mut line: impl FnMut(&[u8])) {
        while !bytes.is_empty() {
            let newline = bytes.iter().position(|b| *b == b'\n');
            let (chunk, rest) = match newline {
                Some(at) => (&bytes[..at], &bytes[at + 1..]),
                None => (bytes, &[][..]),
            };
            bytes = rest;
            if !self.discarding {
                let room = MAX_GUEST_LINE - self.pending.len();
                self.pending
                    .extend_from_slice(&chunk[..chunk.len().min(room)]);
                if self.pending.len() == MAX_GUEST_LINE {
                    // Log what fits now; drop the rest of the line.
                    line(trim_cr(&self.pending));
                    self.pending.clear();
                    self.discarding = true;
                }
            }
            if newline.is_some() {
                if self.discarding {
                    self.discarding = false;
                } else {
                    line(trim_cr(&self.pending));
                    self.pending.clear();
                }
            }
        }
    }

    /// Ends the current line without a newline: calls `line` with what was
    /// written of it, if anything.
    pub fn flush(&mut self, line: impl FnOnce(&[u8])) {
        if !self.pending.is_empty() {
            line(trim_cr(&self.pending));
            self.pending.clear();
        }
        self.discarding = false;
    }

    /// Whether part of a line is waiting for its end.
    #[cfg(test)]
    pub fn has_partial(&self) -> bool {
        !self.pending.is_empty()
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Guest stdout or stderr: bytes go to the instance.
#[derive(Clone)]
pub struct GuestOutput {
    instance: Arc<InstanceShared>,
    stream: GuestStream,
    /// The writer, when fixed at the stream's creation (WASIp3).
    writer: Option<Writer>,
}

impl GuestOutput {
    /// `stream` of `instance`.
    pub fn new(instance: Arc<InstanceShared>, stream: GuestStream) -> Self {
        GuestOutput {
            instance,
            stream,
            writer: None,
        }
    }

    fn write(&self, bytes: &[u8]) {
        let writer = self.writer.unwrap_or_else(|| self.instance.writer().get());
        self.instance.write_output(writer, self.stream, bytes);
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(GuestOutput {
            writer: Some(self.instance.writer().get()),
            ..self.clone()
        })
    }
}

/// Bytes a guest may hand over per write (WASIp2 asks first).
const OUTPUT_WRITE_BUDGET: usize = 1024 * 1024;

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        GuestOutput::write(self, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(OUTPUT_WRITE_BUDGET)
    }
}

#[async_trait::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        GuestOutput::write(&self, bytes);
        Poll::Ready(Ok(bytes.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(writes: &[&[u8]]) -> (Vec<Vec<u8>>, LineSplitter) {
        let mut splitter = LineSplitter::default();
        let mut lines = Vec::new();
        for bytes in writes {
            splitter.push(bytes, |line| lines.push(line.to_vec()));
        }
        (lines, splitter)
    }

    #[test]
    fn lines_are_split_across_and_within_writes() {
        let (lines, splitter) = split(&[b"one\ntw", b"o\r\nthree\n\nfour"]);
        assert_eq!(
            lines,
            [&b"one"[..], b"two", b"three", b""].map(<[u8]>::to_vec)
        );
        assert!(splitter.has_partial());
    }

    #[test]
    fn a_partial_line_is_given_on_flush_and_only_once() {
        let (_, mut splitter) = split(&[b"partial"]);
        let mut flushed = Vec::new();
        splitter.flush(|line| flushed.push(line.to_vec()));
        splitter.flush(|line| flushed.push(line.to_vec()));
        assert_eq!(flushed, [b"partial".to_vec()]);
        assert!(!splitter.has_partial());
    }

    #[test]
    fn an_over_long_line_is_cut_and_its_rest_dropped() {
        let long = vec![b'x'; MAX_GUEST_LINE + 10];
        let (lines, splitter) = split(&[&long, b"yy\nnext\n"]);
        assert_eq!(lines.len(), 2, "the cut line, then the next one");
        assert_eq!(lines[0].len(), MAX_GUEST_LINE);
        assert_eq!(lines[1], b"next");
        assert!(!splitter.has_partial());
    }
}
