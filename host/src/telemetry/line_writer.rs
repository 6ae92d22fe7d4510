//! The stdout writer behind every log line: requests append whole lines to a
//! shared buffer, and one thread writes that buffer out in batches.
//! Invocation lines are queued unformatted ([`InvocationEntry`]) and
//! formatted by that thread, in order with the lines around them.
//!
//! Handing each line to a writer thread on its own costs a wake-up, a
//! context switch and a `write` per line, which at thousands of requests a
//! second costs more than the request itself. Here a request only copies its
//! line into the buffer (a short critical section, no allocation once the
//! buffer has grown); the writer thread writes the buffer out every
//! [`COALESCE`] while lines keep coming, and once it finds none sleeps until
//! a request's line wakes it. Lines stay whole and in order. When stdout is
//! slower than the requests, the buffer grows to its bound and further lines
//! are dropped and counted; a request never waits for stdout.

use std::io::Write;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

use super::invocation_line::{Invocation, InvocationEntry};

/// How long the writer lets lines gather after waking; bounds how late a
/// line reaches stdout when stdout keeps up. Every wake-up of the writer
/// takes the CPU from requests (at 1 ms, a tenth of hello's throughput on
/// one core; at 10 ms, about 1%).
const COALESCE: Duration = Duration::from_millis(10);
/// Capacity a drained buffer keeps for the next batch.
const KEPT_CAPACITY: usize = 256 * 1024;
/// Lines a drained queue keeps room for.
const ENTRIES_KEPT: usize = 1024;

/// Appends lines for the writer thread; cheap to clone.
#[derive(Clone)]
pub struct LineWriter {
    shared: Arc<Shared>,
}

/// Stops the writer thread when dropped, after it has written every line
/// already queued.
pub struct LineWriterGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    max_buffered: usize,
    dropped: AtomicU64,
}

struct Queue {
    pending: Pending,
    /// The writer sleeps on `wake` and must be notified.
    writer_waiting: bool,
    stopping: bool,
}

/// What is queued, in order: lines formatted already and invocation lines
/// to format, their bytes in one arena.
struct Pending {
    entries: Vec<Entry>,
    /// The invocation lines, in the order of their entries.
    invocations: Vec<InvocationEntry>,
    arena: Vec<u8>,
}

/// One queued line.
enum Entry {
    /// A whole line (newline included) at this range of the arena.
    Line(Range<usize>),
    /// The next invocation line.
    Invocation,
}

impl Pending {
    fn with_capacity(bytes: usize) -> Self {
        Pending {
            entries: Vec::with_capacity(ENTRIES_KEPT),
            invocations: Vec::with_capacity(ENTRIES_KEPT),
            arena: Vec::with_capacity(bytes),
        }
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes it holds, counted against the bound.
    fn size(&self) -> usize {
        self.arena.len()
            + self.entries.len() * std::mem::size_of::<Entry>()
            + self.invocations.len() * std::mem::size_of::<InvocationEntry>()
    }

    /// Writes every line out, formatting the invocation lines in `scratch`,
    /// and empties itself.
    fn write_to(&mut self, out: &mut impl Write, formatted: &mut Vec<u8>, scratch: &mut Vec<u8>) {
        formatted.clear();
        let mut invocations = self.invocations.drain(..);
        for entry in self.entries.drain(..) {
            match entry {
                Entry::Line(range) => formatted.extend_from_slice(&self.arena[range]),
                Entry::Invocation => {
                    // Pushed with its entry, under the same lock.
                    let Some(entry) = invocations.next() else {
                        continue;
                    };
                    let line = entry.format(&self.arena, std::mem::take(scratch));
                    formatted.extend_from_slice(&line);
                    *scratch = line;
                }
            }
        }
        drop(invocations);
        self.arena.clear();
        // Nowhere to report a failing stdout but stdout; the lines are lost.
        let _ = out.write_all(formatted).and_then(|()| out.flush());
    }

    /// Gives back memory a burst took, keeping room for a usual batch.
    fn shrink(&mut self) {
        self.arena.shrink_to(KEPT_CAPACITY);
        self.entries.shrink_to(ENTRIES_KEPT);
        self.invocations.shrink_to(ENTRIES_KEPT);
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding the lock leaves whole lines behind: the
        // buffer is only ever extended by complete lines.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl LineWriter {
    /// Starts the writer thread on `out`, buffering at most `max_buffered`
    /// bytes of lines not yet written (invocation lines counted as their
    /// queued entries and texts).
    pub fn start(
        out: impl Write + Send + 'static,
        max_buffered: usize,
    ) -> std::io::Result<(LineWriter, LineWriterGuard)> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                pending: Pending::with_capacity(KEPT_CAPACITY),
                writer_waiting: false,
                stopping: false,
            }),
            wake: Condvar::new(),
            max_buffered,
            dropped: AtomicU64::new(0),
        });
        let for_thread = shared.clone();
        let thread = std::thread::Builder::new()
            .name("hero-host-log".into())
            .spawn(move || write_batches(&for_thread, out))?;
        Ok((
            LineWriter {
                shared: shared.clone(),
            },
            LineWriterGuard {
                shared,
                thread: Some(thread),
            },
        ))
    }

    /// Queues one complete line (newline included), or drops and counts it
    /// when the buffer is full.
    pub fn push(&self, line: &[u8]) {
        self.queue(line.len(), |pending| {
            let start = pending.arena.len();
            pending.arena.extend_from_slice(line);
            Entry::Line(start..pending.arena.len())
        });
    }

    /// Queues the invocation line of `inv`, stamped `at`, to be formatted
    /// by the writer thread; or drops and counts it when the buffer is full.
    pub fn push_invocation(&self, inv: &Invocation<'_>, at: std::time::SystemTime) {
        let size = InvocationEntry::text_bytes(inv) + std::mem::size_of::<InvocationEntry>();
        self.queue(size, |pending| {
            let entry = InvocationEntry::new(inv, at, &mut pending.arena);
            pending.invocations.push(entry);
            Entry::Invocation
        });
    }

    /// Queues the entry `make` returns (having added what it holds to the
    /// queue), unless its `size` bytes would pass the bound.
    fn queue(&self, size: usize, make: impl FnOnce(&mut Pending) -> Entry) {
        let mut queue = self.shared.lock();
        let size = size + std::mem::size_of::<Entry>();
        if queue.pending.size() + size > self.shared.max_buffered {
            drop(queue);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let entry = make(&mut queue.pending);
        queue.pending.entries.push(entry);
        if queue.writer_waiting {
            queue.writer_waiting = false;
            drop(queue);
            self.shared.wake.notify_one();
        }
    }

    /// Lines dropped so far because the buffer was full.
    pub fn dropped_lines(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

/// The writer thread. Idle, it sleeps until a request's line wakes it, lets
/// more gather for [`COALESCE`], and writes them at once. Then, as long as
/// each look finds new lines, it looks again a [`COALESCE`] after each
/// write, so that under steady load no request has to wake it (a `futex`
/// call in the request and two context switches a batch, saved).
fn write_batches(shared: &Shared, mut out: impl Write) {
    let mut batch = Pending::with_capacity(KEPT_CAPACITY);
    let mut formatted = Vec::with_capacity(KEPT_CAPACITY);
    let mut scratch = Vec::new();
    let mut queue = shared.lock();
    loop {
        if queue.pending.is_empty() {
            if queue.stopping {
                return; // everything is written
            }
            queue.writer_waiting = true;
            queue = shared
                .wake
                .wait(queue)
                .unwrap_or_else(PoisonError::into_inner);
            if !queue.stopping {
                drop(queue);
                std::thread::sleep(COALESCE);
                queue = shared.lock();
            }
            continue;
        }
        std::mem::swap(&mut queue.pending, &mut batch);
        let stopping = queue.stopping;
        drop(queue);
        batch.write_to(&mut out, &mut formatted, &mut scratch);
        batch.shrink();
        formatted.shrink_to(KEPT_CAPACITY);
        if !stopping {
            std::thread::sleep(COALESCE);
        }
        queue = shared.lock();
    }
}

impl Drop for LineWriterGuard {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One `tracing` event: the fmt layer formats the whole event, then writes
/// it with a single `write_all`, which becomes one queued line.
pub struct EventWriter<'a>(&'a LineWriter);

impl Write for EventWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LineWriter {
    type Writer = EventWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        EventWriter(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::wait_for;

    /// A `Write` that hands out what was written, and can be held shut.
    #[derive(Clone, Default)]
    struct Sink {
        written: Arc<Mutex<Vec<u8>>>,
        gate: Arc<Mutex<()>>,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _open = self.gate.lock().unwrap();
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Runs `write(writer, thread, i)` for `i` in `0..count` on each of 4
    /// threads at once, then stops the writer; returns what it wrote.
    fn write_from_threads(
        count: u32,
        write: impl Fn(&LineWriter, u32, u32) + Send + Sync + 'static,
    ) -> (String, LineWriter) {
        let sink = Sink::default();
        let (writer, guard) = LineWriter::start(sink.clone(), 1 << 20).unwrap();
        let write = Arc::new(write);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (writer, write) = (writer.clone(), write.clone());
                std::thread::spawn(move || {
                    for i in 0..count {
                        write(&writer, t, i);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        drop(guard);
        let written = String::from_utf8(sink.written.lock().unwrap().clone()).unwrap();
        (written, writer)
    }

    #[test]
    fn writes_every_line_whole_and_in_order_from_many_threads() {
        let (written, writer) = write_from_threads(2000, |writer, t, i| {
            writer.push(format!("{t} {i}\n").as_bytes())
        });
        let mut next = [0u32; 4];
        for line in written.lines() {
            let (t, i) = line.split_once(' ').unwrap();
            let t: usize = t.parse().unwrap();
            assert_eq!(i.parse::<u32>().unwrap(), next[t], "thread {t} in order");
            next[t] += 1;
        }
        assert_eq!(next, [2000; 4]);
        assert_eq!(writer.dropped_lines(), 0);
    }

    /// Queues the invocation line of a GET of `path`, its request id
    /// `request`.
    fn push_invocation(writer: &LineWriter, request: u32, path: &str) {
        use crate::telemetry::invocation_line::invocation;
        use crate::telemetry::trace::{RequestId, SpanId, TraceId};
        let ids = (
            RequestId::from_bits(request.into()),
            TraceId::from_bits(2),
            SpanId::from_bits(3),
        );
        let mut line = invocation(path, &ids);
        line.component = Some("c");
        line.user_agent = Some(b"agent");
        line.instance_reused = Some(true);
        writer.push_invocation(&line, std::time::SystemTime::now());
    }

    /// Invocation lines, formatted by the writer thread, come out in the
    /// place they were queued among the formatted lines, from every thread.
    #[test]
    fn invocation_lines_keep_their_place_among_formatted_lines() {
        use crate::telemetry::trace::RequestId;

        let (written, writer) = write_from_threads(500, |writer, t, i| {
            writer.push(format!("{{\"before\":\"{t} {i}\"}}\n").as_bytes());
            push_invocation(writer, t, &format!("/{t}/{i}"));
        });
        let mut expected_after: [Option<String>; 4] = Default::default();
        let mut count = 0;
        for line in written.lines() {
            let line: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(before) = line["before"].as_str() {
                let (t, i) = before.split_once(' ').unwrap();
                let t: usize = t.parse().unwrap();
                assert!(expected_after[t].is_none(), "{before}: a line went missing");
                expected_after[t] = Some(format!("/{t}/{i}"));
            } else {
                let path = line["path"].as_str().unwrap();
                let t: usize = path[1..2].parse().unwrap();
                assert_eq!(
                    expected_after[t].take().as_deref(),
                    Some(path),
                    "its invocation line follows each line"
                );
                assert_eq!(line["user_agent"], "agent");
                assert_eq!(
                    line["request_id"],
                    RequestId::from_bits(t as u128).to_string()
                );
                count += 1;
            }
        }
        assert_eq!(count, 2000);
        assert_eq!(writer.dropped_lines(), 0);
    }

    /// Waits until the writer has taken everything queued.
    fn wait_until_taken(writer: &LineWriter) {
        wait_for("the writer takes its batch", || {
            writer.shared.lock().pending.is_empty()
        });
    }

    /// Waits until the sink holds `text`.
    fn wait_until_written(sink: &Sink, text: &str) {
        wait_for(&format!("{text:?} written"), || {
            *sink.written.lock().unwrap() == text.as_bytes()
        });
    }

    #[test]
    fn a_writer_gone_idle_is_woken_by_the_next_line() {
        let sink = Sink::default();
        let (writer, _guard) = LineWriter::start(sink.clone(), 1 << 20).unwrap();
        writer.push(b"busy\n");
        wait_until_written(&sink, "busy\n");
        // Its next look finds nothing, and it sleeps until woken.
        wait_for("the writer goes idle", || {
            writer.shared.lock().writer_waiting
        });
        writer.push(b"woken\n");
        wait_until_written(&sink, "busy\nwoken\n");
    }

    #[test]
    fn a_stalled_output_drops_and_counts_then_recovers() {
        let sink = Sink::default();
        let (writer, guard) = LineWriter::start(sink.clone(), 1000).unwrap();
        let held = sink.gate.lock().unwrap();
        // The writer takes the first batch and blocks in `write`; the buffer
        // then fills and further lines are refused.
        writer.push(b"first\n");
        wait_until_taken(&writer);
        // Formatted lines and invocation lines count against one bound.
        for i in 0..500 {
            writer.push(b"0123456789\n");
            push_invocation(&writer, 1, &format!("/{i}"));
        }
        assert!(writer.dropped_lines() > 0);
        drop(held);
        wait_until_taken(&writer);
        let dropped = writer.dropped_lines();
        writer.push(b"after\n");
        drop(guard);
        assert_eq!(
            writer.dropped_lines(),
            dropped,
            "room again after the stall"
        );
        let written = String::from_utf8(sink.written.lock().unwrap().clone()).unwrap();
        assert!(written.starts_with("first\n"));
        assert!(written.ends_with("after\n"));
        assert_eq!(
            written.lines().count() as u64 + dropped,
            1002,
            "every line written or counted"
        );
    }
}
