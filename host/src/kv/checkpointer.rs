//! WAL checkpoints of a key-value database file, on a thread of their own.
//!
//! SQLite's automatic checkpoint runs in the connection whose commit takes
//! the WAL past its threshold: here, on the async worker serving that
//! request. A checkpoint copies the WAL's pages into the database and syncs
//! both files; while the disk flushes, every request on that worker waits.
//! Under 32 concurrent `POST /heroes` the worker was found in uninterruptible
//! sleep (`submit_bio_wait`, `folio_wait_bit`) 16% of the time.
//!
//! With a [`Checkpointer`], a serving connection's commit only tells it that
//! the WAL has grown past [`Thresholds::request`] pages. Its thread then runs
//! a `PASSIVE` checkpoint on a connection of its own, which neither waits for
//! the serving connections nor blocks them. Should it fall far behind (a disk
//! slower than the writes), the committing connection checkpoints at
//! [`Thresholds::inline`] pages itself, as SQLite would, so the WAL stays
//! bounded. Durability is SQLite's either way: a commit is in the WAL before
//! it returns, and the checkpoint is what syncs it.

use std::ffi::c_int;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use rusqlite::wal::CheckpointMode;
use rusqlite::{Connection, MAIN_DB};

use super::sqlite::is_busy;

/// WAL sizes, in pages, at which a commit asks for a checkpoint.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// The checkpointer thread is asked to checkpoint (SQLite's own
    /// automatic threshold).
    pub request: c_int,
    /// The committing connection checkpoints itself: the thread is behind.
    pub inline: c_int,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            request: 1000,
            inline: 16_000,
        }
    }
}

/// What the serving connections and the thread share.
#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// Checkpoints the thread has run to the end without an error.
    done: AtomicU64,
}

#[derive(Default)]
struct State {
    requested: bool,
    stopping: bool,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks the thread for a checkpoint.
    fn request(&self) {
        let mut state = self.state();
        if !state.requested {
            state.requested = true;
            self.wake.notify_one();
        }
    }
}

/// The checkpoint thread of one database file; stopped and joined on drop.
pub struct Checkpointer {
    shared: Arc<Shared>,
    thresholds: Thresholds,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread, which checkpoints with `connection`.
    pub fn start(connection: Connection, thresholds: Thresholds) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let thread = std::thread::Builder::new()
            .name("hero-host-checkpoint".into())
            .spawn({
                let shared = shared.clone();
                move || checkpoint_when_asked(&connection, &shared)
            })?;
        Ok(Checkpointer {
            shared,
            thresholds,
            thread: Some(thread),
        })
    }

    /// Makes `connection`'s commits ask this checkpointer for checkpoints,
    /// in place of SQLite's automatic checkpoint.
    pub fn serve(&self, connection: &mut Connection) -> rusqlite::Result<()> {
        let shared = self.shared.clone();
        let Thresholds { request, inline } = self.thresholds;
        connection.wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, pages: c_int| {
            if pages >= inline {
                // Busy (a checkpoint running elsewhere) is no failure of
                // the commit, which is done: the next one tries again.
                return match wal.checkpoint() {
                    Err(error) if is_busy(&error) => Ok(()),
                    other => other,
                };
            }
            if pages >= request {
                shared.request();
            }
            Ok(())
        }))
    }

    /// Checkpoints the thread has completed.
    #[cfg(test)]
    pub fn completed(&self) -> u64 {
        self.shared.done.load(Ordering::Relaxed)
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.shared.state().stopping = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The thread: a `PASSIVE` checkpoint each time one is asked for, until
/// stopped.
fn checkpoint_when_asked(connection: &Connection, shared: &Shared) {
    loop {
        {
            let mut state = shared.state();
            while !state.requested && !state.stopping {
                state = shared.wake.wait(state).unwrap_or_else(|p| p.into_inner());
            }
            if state.stopping {
                return;
            }
            state.requested = false;
        }
        match connection.wal_checkpoint_v2(Some(MAIN_DB), CheckpointMode::PASSIVE) {
            Ok(_) => {
                shared.done.fetch_add(1, Ordering::Relaxed);
            }
            // Another process checkpointing: the next request tries again.
            Err(error) if is_busy(&error) => {}
            Err(error) => tracing::warn!(
                error = %error,
                "key-value store: WAL checkpoint failed; the next commit past the threshold tries again"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rusqlite::params;

    use super::*;
    use crate::testing::wait_for;

    /// A connection to the WAL database at `path`, with a table of blobs.
    fn wal_connection(path: &Path) -> Connection {
        let connection = Connection::open(path).unwrap();
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .unwrap();
        connection
            .execute(
                "CREATE TABLE IF NOT EXISTS blobs (id INTEGER PRIMARY KEY, value BLOB)",
                [],
            )
            .unwrap();
        connection
    }

    /// Commits `count` rows of 4 KiB, one commit each (a page or more each).
    fn commit_rows(connection: &Connection, count: usize) {
        for _ in 0..count {
            connection
                .execute(
                    "INSERT INTO blobs (value) VALUES (?1)",
                    params![vec![7u8; 4096]],
                )
                .unwrap();
        }
    }

    fn size(path: &Path) -> u64 {
        std::fs::metadata(path).map_or(0, |m| m.len())
    }

    #[test]
    fn commits_past_the_threshold_are_checkpointed_by_the_thread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.db");
        let mut writer = wal_connection(&path);
        let before = size(&path);
        // Never inline: only the thread can copy pages into the database.
        let thresholds = Thresholds {
            request: 8,
            inline: c_int::MAX,
        };
        let checkpointer = Checkpointer::start(wal_connection(&path), thresholds).unwrap();
        checkpointer.serve(&mut writer).unwrap();

        commit_rows(&writer, 64);
        wait_for("the thread checkpoints every row into the file", || {
            checkpointer.completed() > 0 && size(&path) >= before + 64 * 4096
        });
        assert!(
            checkpointer.completed() > 0,
            "the thread never checkpointed"
        );
        assert!(
            size(&path) >= before + 64 * 4096,
            "the rows never reached the database file: {} bytes (from {before})",
            size(&path)
        );
        drop(checkpointer); // joins the thread
        let rows: i64 = writer
            .query_row("SELECT count(*) FROM blobs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 64);
    }

    #[test]
    fn a_commit_checkpoints_itself_when_the_thread_is_far_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.db");
        let mut writer = wal_connection(&path);
        // The thread is never asked: it stands for one that cannot keep up.
        let thresholds = Thresholds {
            request: c_int::MAX,
            inline: 8,
        };
        let checkpointer = Checkpointer::start(wal_connection(&path), thresholds).unwrap();
        checkpointer.serve(&mut writer).unwrap();

        commit_rows(&writer, 64);
        assert_eq!(checkpointer.completed(), 0);
        // Each inline checkpoint lets the next commit start the WAL over,
        // so it never holds much more than `inline` pages' frames.
        let wal = size(&dir.path().join("kv.db-wal"));
        assert!(wal < 16 * 4120, "the WAL grew to {wal} bytes");
        assert!(size(&path) >= 56 * 4096, "{} bytes", size(&path));
    }
}
