//! One SQLite database label: its file (or memory), a pool of idle
//! connections, and the connection a guest holds while its handle lives.
//!
//! A guest's statements may take any time, so they run on tokio's blocking
//! pool, never on an async worker; a guest whose request is given up on
//! (timeout, client gone) has its running statement interrupted.
//!
//! Each guest handle owns one SQLite connection, as in Spin, so a
//! transaction it begins stays on its connection and `last-insert-rowid`
//! means its own insert. Connections go back to the pool when the handle is
//! dropped, any open transaction rolled back. An in-memory database is one
//! connection shared by every handle (another connection would be another
//! database).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use rusqlite::{Connection, InterruptHandle, OpenFlags};

use super::query::{self, QueryError, Rows, Value};

/// How long a statement waits for another connection's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// One label's database.
pub struct Database {
    /// The label.
    pub label: Arc<str>,
    /// Where it lives, for logs: a file, or `memory`.
    pub location: String,
    storage: Storage,
}

enum Storage {
    File {
        path: PathBuf,
        idle: Mutex<Vec<Connection>>,
    },
    Memory(Arc<Mutex<Connection>>),
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Database {
    /// Opens (creating if needed) the database of `label` at `path`, or in
    /// memory for `None`.
    pub fn open(label: &str, path: Option<&Path>) -> anyhow::Result<Self> {
        let describe = || format!("cannot open the SQLite database `{label}`");
        let (storage, location) = match path {
            None => {
                let mut connection = Connection::open_in_memory().with_context(describe)?;
                configure(&mut connection).with_context(describe)?;
                (
                    Storage::Memory(Arc::new(Mutex::new(connection))),
                    "memory".to_owned(),
                )
            }
            Some(path) => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).with_context(|| {
                        format!("cannot create the directory {}", parent.display())
                    })?;
                }
                let connection = connect(path).with_context(describe)?;
                connection
                    .pragma_update(None, "journal_mode", "WAL")
                    .with_context(describe)?;
                let storage = Storage::File {
                    path: path.to_owned(),
                    idle: Mutex::new(vec![connection]),
                };
                (storage, path.display().to_string())
            }
        };
        Ok(Database {
            label: label.into(),
            location,
            storage,
        })
    }

    /// A connection for a guest handle: an idle one, or a new one.
    pub fn connect(self: &Arc<Self>) -> rusqlite::Result<GuestConnection> {
        let connection = match &self.storage {
            Storage::Memory(shared) => shared.clone(),
            Storage::File { path, idle } => {
                let pooled = lock(idle).pop();
                Arc::new(Mutex::new(match pooled {
                    Some(connection) => connection,
                    None => connect(path)?,
                }))
            }
        };
        let interrupt = Arc::new(lock(&connection).get_interrupt_handle());
        Ok(GuestConnection {
            database: self.clone(),
            connection: Some(connection),
            interrupt,
            last_insert_rowid: Arc::new(AtomicI64::new(0)),
            changes: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Runs `sql` (one or more statements) at start-up.
    pub fn execute_batch(&self, sql: &str) -> rusqlite::Result<()> {
        match &self.storage {
            Storage::Memory(shared) => lock(shared).execute_batch(sql),
            Storage::File { path, idle } => {
                let connection = match lock(idle).pop() {
                    Some(connection) => connection,
                    None => connect(path)?,
                };
                let result = connection.execute_batch(sql);
                lock(idle).push(connection);
                result
            }
        }
    }
}

fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let mut connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    configure(&mut connection)?;
    Ok(connection)
}

/// Per connection: wait for another connection's lock (on a blocking
/// thread, so no async worker waits), and refuse `ATTACH` of other files, as
/// Spin does by default.
fn configure(connection: &mut Connection) -> rusqlite::Result<()> {
    connection.busy_timeout(BUSY_TIMEOUT)?;
    connection.authorizer(Some(|context: rusqlite::hooks::AuthContext<'_>| {
        use rusqlite::hooks::{AuthAction, Authorization};
        match context.action {
            AuthAction::Attach { filename } if !matches!(filename, "" | ":memory:") => {
                Authorization::Deny
            }
            _ => Authorization::Allow,
        }
    }))
}

/// The connection behind one guest handle.
pub struct GuestConnection {
    database: Arc<Database>,
    connection: Option<Arc<Mutex<Connection>>>,
    interrupt: Arc<InterruptHandle>,
    last_insert_rowid: Arc<AtomicI64>,
    changes: Arc<AtomicU64>,
}

impl GuestConnection {
    /// The database it is a connection to.
    pub fn database(&self) -> &Arc<Database> {
        &self.database
    }

    /// Runs one statement on a blocking thread. If this future is dropped
    /// before the statement ends, the statement is interrupted.
    pub async fn execute(
        &self,
        statement: String,
        parameters: Vec<Value>,
        max_bytes: usize,
    ) -> Result<Rows, QueryError> {
        let Some(connection) = self.connection.clone() else {
            return Err(QueryError::Incomplete);
        };
        let (rowid, changes) = (self.last_insert_rowid.clone(), self.changes.clone());
        let guard = InterruptOnDrop(Some(self.interrupt.clone()));
        let run = tokio::task::spawn_blocking(move || {
            let connection = lock(&connection);
            let result = query::execute(&connection, &statement, parameters, max_bytes);
            rowid.store(connection.last_insert_rowid(), Ordering::Relaxed);
            changes.store(connection.changes(), Ordering::Relaxed);
            result
        });
        let result = run.await;
        guard.disarm();
        result.unwrap_or(Err(QueryError::Incomplete))
    }

    /// The rowid of this connection's most recent insert (0 before any).
    pub fn last_insert_rowid(&self) -> i64 {
        self.last_insert_rowid.load(Ordering::Relaxed)
    }

    /// Rows changed by this connection's most recent statement.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Relaxed)
    }
}

impl Drop for GuestConnection {
    fn drop(&mut self) {
        let Storage::File { idle, .. } = &self.database.storage else {
            return;
        };
        // Only an idle connection goes back: one still running a statement
        // (its request given up on) closes when the statement ends.
        let Some(connection) = self.connection.take().and_then(|c| Arc::try_unwrap(c).ok()) else {
            return;
        };
        let connection = connection.into_inner().unwrap_or_else(|p| p.into_inner());
        if !connection.is_autocommit() && connection.execute_batch("ROLLBACK").is_err() {
            return;
        }
        lock(idle).push(connection);
    }
}

/// Interrupts the statement unless disarmed.
struct InterruptOnDrop(Option<Arc<InterruptHandle>>);

impl InterruptOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for InterruptOnDrop {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            handle.interrupt();
        }
    }
}
