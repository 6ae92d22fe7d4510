//! Which request a guest's output belongs to, by wasmtime's task identity.
//!
//! Each request runs as its own guest task, whose id wasmtime hands to
//! `on_request_start`; [`TaskTable`] keeps those ids in the store's data. When
//! the guest calls into the host, the store's call hook asks wasmtime for the
//! task chain of the caller (`async_call_stack`), whose last item is the root
//! export task: the request. The hook publishes the answer as a
//! [`Writer`] in the instance's [`CurrentWriter`], which the guest's stdout and
//! stderr read when bytes arrive. Work a request's task spawned inside the
//! guest runs under that task, so its output is the request's too; output of
//! no request's task is nobody's, and says why.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use wasmtime::component::GuestTaskId;

use super::invocation::RequestInfo;
use crate::telemetry::logs::Outside;

/// Who is running in the guest when it calls the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    /// The request with this number on the instance.
    Request(u64),
    /// No request's task.
    Outside(Outside),
}

impl Writer {
    const INSTANTIATION: u64 = u64::MAX;
    const AFTER_RESPONSE: u64 = u64::MAX - 1;
    const BACKGROUND: u64 = u64::MAX - 2;

    fn encode(self) -> u64 {
        match self {
            Writer::Request(number) => number,
            Writer::Outside(Outside::Instantiation) => Self::INSTANTIATION,
            Writer::Outside(Outside::AfterResponse) => Self::AFTER_RESPONSE,
            Writer::Outside(Outside::Background) => Self::BACKGROUND,
        }
    }

    fn decode(code: u64) -> Self {
        match code {
            Self::INSTANTIATION => Writer::Outside(Outside::Instantiation),
            Self::AFTER_RESPONSE => Writer::Outside(Outside::AfterResponse),
            Self::BACKGROUND => Writer::Outside(Outside::Background),
            number => Writer::Request(number),
        }
    }
}

/// The writer of the host call in progress, shared by the store's call hook
/// (which sets it) and the guest's output streams (which read it).
pub struct CurrentWriter(AtomicU64);

impl Default for CurrentWriter {
    fn default() -> Self {
        CurrentWriter(AtomicU64::new(Writer::INSTANTIATION))
    }
}

impl CurrentWriter {
    /// The writer now.
    pub fn get(&self) -> Writer {
        Writer::decode(self.0.load(Ordering::Relaxed))
    }

    /// Sets the writer (only the store's thread does, during a host call).
    pub fn set(&self, writer: Writer) {
        self.0.store(writer.encode(), Ordering::Relaxed);
    }
}

/// A request's task on this instance.
struct TaskEntry {
    task: GuestTaskId,
    number: u64,
    deadline: Instant,
    request: Arc<RequestInfo>,
}

/// The tasks of the requests an instance has started; held in the store's
/// data, so only the thread running the store touches it.
#[derive(Default)]
pub struct TaskTable {
    entries: Vec<TaskEntry>,
    /// Whether the instance has started any request.
    started_any: bool,
}

/// Requests whose response has ended kept in the table, so that output
/// their tasks write afterwards says so rather than "background".
const ENDED_KEPT: usize = 64;

impl TaskTable {
    /// A request started as `task`, numbered `number` on this instance, due
    /// by `deadline`.
    pub fn started(
        &mut self,
        task: GuestTaskId,
        number: u64,
        deadline: Instant,
        request: Arc<RequestInfo>,
    ) {
        self.started_any = true;
        if self.entries.len() >= ENDED_KEPT {
            self.entries.retain(|entry| !entry.request.has_ended());
        }
        self.entries.push(TaskEntry {
            task,
            number,
            deadline,
            request,
        });
    }

    /// Who the task `root` (the root of the calling task chain) writes for.
    pub fn writer(&self, root: Option<GuestTaskId>) -> Writer {
        let Some(root) = root else {
            return Writer::Outside(self.outside_any_task());
        };
        match self.entries.iter().rev().find(|entry| entry.task == root) {
            Some(entry) if entry.request.has_ended() => Writer::Outside(Outside::AfterResponse),
            Some(entry) => Writer::Request(entry.number),
            None => Writer::Outside(self.outside_any_task()),
        }
    }

    fn outside_any_task(&self) -> Outside {
        if self.started_any {
            Outside::Background
        } else {
            Outside::Instantiation
        }
    }

    /// Marks every request still waiting for the guest past its deadline as
    /// timed out; returns whether there was one.
    pub fn expire(&self, now: Instant) -> bool {
        let mut expired = false;
        for entry in &self.entries {
            if now >= entry.deadline && entry.request.awaits_guest() {
                entry.request.set_timed_out();
                expired = true;
            }
        }
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writers_survive_the_round_trip_through_the_atomic() {
        let current = CurrentWriter::default();
        assert_eq!(current.get(), Writer::Outside(Outside::Instantiation));
        for writer in [
            Writer::Request(1),
            Writer::Request(u64::MAX - 3),
            Writer::Outside(Outside::AfterResponse),
            Writer::Outside(Outside::Background),
            Writer::Outside(Outside::Instantiation),
        ] {
            current.set(writer);
            assert_eq!(current.get(), writer);
        }
    }

    #[test]
    fn an_empty_table_names_instantiation_until_a_request_starts() {
        let table = TaskTable::default();
        assert_eq!(table.writer(None), Writer::Outside(Outside::Instantiation));
    }
}
