//! For unit tests: a log sink whose lines the test reads back exactly as
//! they would reach stdout.

use std::io::Write;
use std::sync::{Arc, Mutex};

use super::line_writer::{LineWriter, LineWriterGuard};
use super::logs::{LogFormat, LogSink};

/// The bytes written so far.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A JSON sink and the handle that reads its lines.
pub struct CapturedLogs {
    /// Where lines go.
    pub sink: LogSink,
    out: Captured,
    guard: Option<LineWriterGuard>,
}

impl CapturedLogs {
    /// A sink writing JSON lines.
    pub fn new() -> Self {
        let out = Captured::default();
        let (writer, guard) = LineWriter::start(out.clone(), 1 << 20).expect("log thread");
        CapturedLogs {
            sink: LogSink::to_writer(writer, LogFormat::Json),
            out,
            guard: Some(guard),
        }
    }

    /// Stops the writer (flushing every line) and parses what was written.
    pub fn lines(mut self) -> Vec<serde_json::Value> {
        drop(self.sink);
        drop(self.guard.take());
        let bytes = self.out.0.lock().unwrap_or_else(|p| p.into_inner());
        bytes
            .split(|b| *b == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| serde_json::from_slice(line).expect("a JSON line"))
            .collect()
    }
}
