//! The embedded key-value backend: SQLite, in the table layout `spin up` uses,
//! so a database written by either opens in the other.
//!
//! Durability: WAL journal with `synchronous = NORMAL`. A commit is in the WAL
//! file (the operating system's page cache) before the guest's `set` returns,
//! so an acknowledged write survives the host being killed (`kill -9`); a
//! power loss or kernel crash may lose the last commits but never corrupts
//! the database. `FULL` would add an fsync to every write for power-loss
//! durability; the state directory is expected on a volume that outlives the
//! process, not the machine.
//!
//! Lock waits: operations run on the async worker that serves the request
//! and never wait for a lock here: when another connection (another process
//! such as `spin up` on the same file) holds it, they fail at once with
//! `SQLITE_BUSY`, having changed nothing, and the caller retries without
//! blocking anything (see `super::lock_wait`). Blocking the worker instead
//! would stall every request the guest instance serves at the same time.
//! For the same reason checkpoints, which wait for the disk, run on a thread
//! of their own (`super::checkpointer`).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use rusqlite::config::DbConfig;
use rusqlite::{
    Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params,
};

use super::StoreError;
use super::checkpointer::{Checkpointer, Thresholds};

/// How long opening a database waits for another connection's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest pause between attempts to open a locked database.
const OPEN_MAX_PAUSE: Duration = Duration::from_millis(50);

const SELECT: &str = "SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2";
const UPSERT: &str = "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
     ON CONFLICT (store, key) DO UPDATE SET value = excluded.value";
const DELETE: &str = "DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2";
/// The label's rows from a key on, in key order (the primary key's order).
const SCAN_FROM: &str = "SELECT key, value FROM spin_key_value
     WHERE store = ?1 AND key >= ?2 ORDER BY key";
/// What a [`SqliteStore::get_many`] scan may spend stepping over rows no key
/// asked for before it takes its keys to be far apart and searches the
/// index afresh for each of the rest: each such row counts its value's
/// bytes (SQLite reads the whole row, overflow pages and all, to step over
/// it) plus [`SCAN_ROW_CHARGE`]. By instruction counts a search costs about
/// what stepping over four small rows does, and a 16 KiB value several times
/// that.
const SCAN_SKIP_BUDGET: usize = 512;
/// The bytes a row stepped over counts for besides its value's.
const SCAN_ROW_CHARGE: usize = 128;

/// One SQLite database file (or memory), shared by every label stored in it.
pub enum SqliteDb {
    /// A database file.
    File {
        /// Where it is.
        path: PathBuf,
        /// Idle connections. Operations are short and synchronous, so at most
        /// one connection per worker thread is ever out; the lock is held only
        /// to pop or push.
        idle: Mutex<Vec<Connection>>,
        /// Checkpoints the WAL off the serving threads; every pooled
        /// connection's commits ask it to. Dropped after `idle`, so its
        /// connection is the last to close.
        checkpointer: Checkpointer,
    },
    /// An in-memory database: one connection, or it would be another database.
    Memory(Mutex<Connection>),
}

impl SqliteDb {
    /// Opens (creating if needed) the database at `location`, or an in-memory
    /// one for `None`, and creates Spin's table.
    pub fn open(location: Option<&Path>) -> anyhow::Result<Self> {
        let Some(path) = location else {
            let connection = connect(None)
                .and_then(|c| prepare(&c, false).map(|()| c))
                .context("cannot open an in-memory SQLite key-value store")?;
            return Ok(SqliteDb::Memory(Mutex::new(connection)));
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create the directory {}", parent.display()))?;
        }
        Self::open_file(path, Thresholds::default())
    }

    /// Opens the database file at `path`, its checkpoints asked for at
    /// `thresholds`.
    fn open_file(path: &Path, thresholds: Thresholds) -> anyhow::Result<Self> {
        let cannot_open = || format!("cannot open the SQLite key-value store {}", path.display());
        let mut connection = open_waiting(path)
            // Typed, so that start-up can tell a lock held too long (worth
            // retrying) from a bad path.
            .map_err(StoreError::from)
            .with_context(cannot_open)?;
        let own = connect(Some(path))
            .map_err(StoreError::from)
            .with_context(cannot_open)?;
        let checkpointer = Checkpointer::start(own, thresholds)
            .context("cannot start the key-value store's checkpoint thread")?;
        checkpointer
            .serve(&mut connection)
            .map_err(StoreError::from)
            .with_context(cannot_open)?;
        Ok(SqliteDb::File {
            path: path.to_owned(),
            idle: Mutex::new(vec![connection]),
            checkpointer,
        })
    }

    /// Runs `op` on a connection (see the module's note on lock waits).
    fn with<T>(&self, op: impl Fn(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        match self {
            SqliteDb::Memory(connection) => Ok(run(
                &connection.lock().unwrap_or_else(|p| p.into_inner()),
                op,
            )?),
            SqliteDb::File {
                path,
                idle,
                checkpointer,
            } => {
                let pooled = idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
                let connection = match pooled {
                    Some(connection) => connection,
                    None => {
                        let mut connection = connect(Some(path))?;
                        checkpointer.serve(&mut connection)?;
                        connection
                    }
                };
                let result = run(&connection, op);
                idle.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(connection);
                Ok(result?)
            }
        }
    }
}

/// Runs `op` once, without waiting for another connection's lock.
fn run<T>(
    connection: &Connection,
    op: impl Fn(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    op(connection)
}

/// The values under `keys` (in their order; `None` where absent), read by
/// `scan` ([`SCAN_FROM`]) in key order: see [`SqliteStore::get_many`].
fn scan_sorted(
    scan: &mut rusqlite::CachedStatement<'_>,
    label: &str,
    keys: &[String],
) -> rusqlite::Result<Vec<Option<Vec<u8>>>> {
    let mut values = vec![None; keys.len()];
    let mut order: Vec<usize> = (0..keys.len()).collect();
    // Stable and adaptive: keys already in order cost one pass.
    order.sort_by(|&a, &b| keys[a].cmp(&keys[b]));
    let Some(&first) = order.first() else {
        return Ok(values);
    };
    let mut rows = scan.query(params![label, keys[first]])?;
    let (mut next, mut skipped, mut sparse) = (0, 0, false);
    while next < order.len() {
        let Some(row) = rows.next()? else {
            break; // no rows left: every key still wanted is absent
        };
        let key = row.get_ref(0)?.as_bytes()?;
        // Keys below the row's were passed over: absent.
        while next < order.len() && keys[order[next]].as_bytes() < key {
            next += 1;
        }
        if next == order.len() {
            break;
        }
        if keys[order[next]].as_bytes() == key {
            let value: Vec<u8> = row.get(1)?;
            // A key asked for more than once gets a copy each time.
            let mut end = next + 1;
            while end < order.len() && keys[order[end]].as_bytes() == key {
                values[order[end]] = Some(value.clone());
                end += 1;
            }
            values[order[next]] = Some(value);
            (next, skipped) = (end, 0);
        } else {
            // A blob, or text another writer stored.
            let stored = row.get_ref(1)?.as_bytes().map_or(0, <[u8]>::len);
            skipped += SCAN_ROW_CHARGE + stored;
            // Keys this far apart: each of the rest is searched for.
            sparse |= skipped > SCAN_SKIP_BUDGET;
            if !sparse {
                continue;
            }
        }
        if sparse && next < order.len() {
            drop(rows);
            rows = scan.query(params![label, keys[order[next]]])?;
            skipped = 0;
        }
    }
    Ok(values)
}

/// A counter as Spin's SQLite store writes it: 8 bytes, little-endian.
fn from_le_counter(bytes: &[u8]) -> Option<i64> {
    bytes.try_into().ok().map(i64::from_le_bytes)
}

/// A configured connection. Pool connections opened later need only this:
/// the journal mode and the table live in the file ([`prepare`]).
fn connect(path: Option<&Path>) -> rusqlite::Result<Connection> {
    let connection = match path {
        Some(path) => Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?,
        None => Connection::open_in_memory()?,
    };
    // Fail at once on a held lock; the caller retries without blocking.
    connection.busy_timeout(Duration::ZERO)?;
    // One plan per statement, whatever its parameters: otherwise binding a
    // new start key to `SCAN_FROM`'s range makes SQLite prepare it again on
    // every scan (its STAT4 planner may weigh the value), which costs more
    // than the scan.
    connection.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    if path.is_some() {
        // Per connection; WAL mode itself persists in the file.
        connection.pragma_update(None, "synchronous", "NORMAL")?;
    }
    Ok(connection)
}

/// Once per database, when it is opened: WAL for a file, and Spin's table.
/// Start-up may wait for another process's lock (nothing is served yet).
fn prepare(connection: &Connection, file: bool) -> rusqlite::Result<()> {
    connection.busy_timeout(BUSY_TIMEOUT)?;
    if file {
        connection.pragma_update(None, "journal_mode", "WAL")?;
    }
    connection.execute(
        "CREATE TABLE IF NOT EXISTS spin_key_value (
            store TEXT NOT NULL,
            key   TEXT NOT NULL,
            value BLOB NOT NULL,
            PRIMARY KEY (store, key)
        )",
        [],
    )?;
    connection.busy_timeout(Duration::ZERO)
}

/// The first connection to a database file, [`prepare`]d, retried while
/// another connection holds the lock (for up to [`BUSY_TIMEOUT`]): switching
/// to WAL fails at once with `SQLITE_BUSY` when another connection is
/// writing, without calling the busy handler, so two hosts creating one
/// database at the same time would otherwise see "database is locked" at
/// once.
fn open_waiting(path: &Path) -> rusqlite::Result<Connection> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(1);
    loop {
        match connect(Some(path)).and_then(|c| prepare(&c, true).map(|()| c)) {
            Err(error) if is_busy(&error) && Instant::now() + pause < deadline => {
                // Start-up: nothing is served yet, so blocking is fine.
                std::thread::sleep(pause);
                pause = (pause * 2).min(OPEN_MAX_PAUSE);
            }
            done => return done,
        }
    }
}

/// Whether another connection's lock refused `error`'s operation.
pub(super) fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// One label's view of a [`SqliteDb`].
pub struct SqliteStore {
    db: std::sync::Arc<SqliteDb>,
    label: String,
}

impl SqliteStore {
    /// The store for `label` in `db`.
    pub fn new(db: std::sync::Arc<SqliteDb>, label: &str) -> Self {
        SqliteStore {
            db,
            label: label.to_owned(),
        }
    }

    /// The database this label lives in.
    #[cfg(test)]
    pub fn db(&self) -> &std::sync::Arc<SqliteDb> {
        &self.db
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.db.with(|c| {
            c.prepare_cached(SELECT)?
                .query_row(params![self.label, key], |row| row.get(0))
                .optional()
        })
    }

    /// Stores `value` under `key`; committed when this returns.
    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.db.with(|c| {
            c.prepare_cached(UPSERT)?
                .execute(params![self.label, key, value])
                .map(drop)
        })
    }

    /// Removes `key`.
    pub fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.db.with(|c| {
            c.prepare_cached(DELETE)?
                .execute(params![self.label, key])
                .map(drop)
        })
    }

    /// The values under `keys`, in their order (`None` where absent), read
    /// in one read transaction: one snapshot of the store, and one lock
    /// round instead of one a key.
    ///
    /// Keys are visited in key order along the primary key index: from one
    /// key the scan steps to the next row instead of descending the index
    /// again, so keys that sit close together (a page of an ordered index,
    /// whose ids share a prefix) cost a step each, not a search. Once it has
    /// stepped over more rows than [`SCAN_SKIP_BUDGET`] allows between two
    /// keys, the keys are far apart, and it searches afresh for each of the
    /// rest: far-apart keys cost one search each, as a lookup per key does.
    pub fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.db.with(|c| {
            let transaction = Transaction::new_unchecked(c, TransactionBehavior::Deferred)?;
            let values = {
                let mut scan = transaction.prepare_cached(SCAN_FROM)?;
                scan_sorted(&mut scan, &self.label, keys)?
            };
            transaction.commit()?;
            Ok(values)
        })
    }

    /// Stores every pair, all in one transaction.
    pub fn set_many(&self, pairs: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        self.db.with(|c| {
            let transaction = Transaction::new_unchecked(c, TransactionBehavior::Immediate)?;
            {
                let mut upsert = transaction.prepare_cached(UPSERT)?;
                for (key, value) in pairs {
                    upsert.execute(params![self.label, key, value])?;
                }
            }
            transaction.commit()
        })
    }

    /// Removes every key, all in one transaction.
    pub fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        self.db.with(|c| {
            let transaction = Transaction::new_unchecked(c, TransactionBehavior::Immediate)?;
            {
                let mut delete = transaction.prepare_cached(DELETE)?;
                for key in keys {
                    delete.execute(params![self.label, key])?;
                }
            }
            transaction.commit()
        })
    }

    /// Adds `delta` to the counter under `key` (an absent key counts as 0)
    /// and returns the sum. The counter is 8 bytes, little-endian, as Spin's
    /// SQLite store keeps it, so `spin up` reads the same number.
    pub fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        self.db
            .with(|c| {
                // Immediate: the write lock is taken before the read, so no
                // other connection slips a write in between.
                let transaction = Transaction::new_unchecked(c, TransactionBehavior::Immediate)?;
                let current: Option<Vec<u8>> = transaction
                    .prepare_cached(SELECT)?
                    .query_row(params![self.label, key], |row| row.get(0))
                    .optional()?;
                let sum = match super::counter_sum(current.as_deref(), delta, from_le_counter) {
                    Ok(sum) => sum,
                    // Dropping the transaction rolls it back: nothing written.
                    Err(refused) => return Ok(Err(refused)),
                };
                transaction.prepare_cached(UPSERT)?.execute(params![
                    self.label,
                    key,
                    sum.to_le_bytes()
                ])?;
                transaction.commit().map(|()| Ok(sum))
            })?
            .map_err(StoreError::Refused)
    }

    /// Stores `value` under `key` only if the key still holds `expected`
    /// (`None`: only if it is absent). One statement, so atomic against every
    /// other connection and process. Returns whether it was stored.
    pub fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
    ) -> Result<bool, StoreError> {
        self.db.with(|c| {
            let changed = match expected {
                Some(expected) => c
                    .prepare_cached(
                        "UPDATE spin_key_value SET value = ?3
                         WHERE store = ?1 AND key = ?2 AND value = ?4",
                    )?
                    .execute(params![self.label, key, value, expected])?,
                None => c
                    .prepare_cached(
                        "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                         ON CONFLICT (store, key) DO NOTHING",
                    )?
                    .execute(params![self.label, key, value])?,
            };
            Ok(changed == 1)
        })
    }

    /// Whether `key` has a value.
    pub fn exists(&self, key: &str) -> Result<bool, StoreError> {
        self.db.with(|c| {
            c.prepare_cached("SELECT 1 FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .exists(params![self.label, key])
        })
    }

    /// Every key of this label, sorted (the primary key index gives the
    /// order for free).
    pub fn keys(&self) -> Result<Vec<String>, StoreError> {
        self.db.with(|c| {
            c.prepare_cached("SELECT key FROM spin_key_value WHERE store = ?1 ORDER BY key")?
                .query_map(params![self.label], |row| row.get(0))?
                .collect()
        })
    }

    /// A trivial query, to prove the database answers.
    pub fn ping(&self) -> Result<(), StoreError> {
        self.db.with(|c| c.query_row("SELECT 1", [], |_| Ok(())))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use crate::testing::wait_for;

    use super::*;

    fn temp_db() -> (tempfile::TempDir, Arc<SqliteDb>) {
        let dir = tempfile::tempdir().unwrap();
        let db = SqliteDb::open(Some(&dir.path().join("nested/kv.db"))).unwrap();
        (dir, Arc::new(db))
    }

    /// Every connection of the pool hands its checkpoints to the thread:
    /// the first one, and one opened while another is out.
    #[test]
    fn every_pooled_connection_asks_the_checkpoint_thread() {
        let dir = tempfile::tempdir().unwrap();
        let thresholds = Thresholds {
            request: 8,
            inline: std::ffi::c_int::MAX,
        };
        let db = SqliteDb::open_file(&dir.path().join("kv.db"), thresholds).unwrap();
        let SqliteDb::File { checkpointer, .. } = &db else {
            unreachable!("a file database")
        };
        let write_rows = |c: &Connection, from: usize| -> rusqlite::Result<()> {
            for i in from..from + 32 {
                c.execute(UPSERT, params!["default", format!("k{i}"), vec![1u8; 4096]])?;
            }
            Ok(())
        };
        let checkpointed_after = |before: u64, what: &str| {
            wait_for(what, || checkpointer.completed() > before);
            checkpointer.completed()
        };

        db.with(|c| write_rows(c, 0)).unwrap();
        let after_first = checkpointed_after(0, "the first connection's commits ask");
        assert!(
            after_first > 0,
            "the first connection's commits never asked"
        );

        // The first connection is out while this runs: the pool opens a
        // second one, which alone commits these rows.
        db.with(|_first| {
            db.with(|second| write_rows(second, 32))
                .map_err(|error| match error {
                    StoreError::Sqlite(error) => error,
                    other => panic!("{other}"),
                })
        })
        .unwrap();
        assert!(
            checkpointed_after(after_first, "the second connection's commits ask") > after_first,
            "the second connection's commits never asked"
        );
        let rows: i64 = db
            .with(|c| c.query_row("SELECT count(*) FROM spin_key_value", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(rows, 64);
    }

    #[test]
    fn stores_reads_and_deletes_values() {
        let (_dir, db) = temp_db();
        let store = SqliteStore::new(db, "default");
        assert_eq!(store.get("a").unwrap(), None);
        store.set("a", b"1").unwrap();
        store.set("a", b"2").unwrap();
        assert_eq!(store.get("a").unwrap().as_deref(), Some(&b"2"[..]));
        assert!(store.exists("a").unwrap());
        store.delete("a").unwrap();
        store.delete("a").unwrap();
        assert!(!store.exists("a").unwrap());
    }

    #[test]
    fn labels_sharing_a_file_do_not_see_each_other() {
        let (_dir, db) = temp_db();
        let one = SqliteStore::new(db.clone(), "one");
        let two = SqliteStore::new(db, "two");
        one.set("k", b"1").unwrap();
        two.set("z", b"2").unwrap();
        two.set("a", b"3").unwrap();
        assert_eq!(one.keys().unwrap(), ["k"]);
        assert_eq!(two.keys().unwrap(), ["a", "z"]);
        assert_eq!(two.get("k").unwrap(), None);
    }

    #[test]
    fn get_many_answers_as_get_does_for_keys_close_together_far_apart_absent_or_repeated() {
        let (_dir, db) = temp_db();
        let store = SqliteStore::new(db.clone(), "default");
        let other = SqliteStore::new(db, "other");
        // Every third key of 600 is stored; another label's rows sit between.
        let key = |i: usize| format!("k{i:04}");
        for i in (0..600).step_by(3) {
            store.set(&key(i), key(i).as_bytes()).unwrap();
            other.set(&format!("{}x", key(i)), b"other").unwrap();
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut random = |below: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % below as u64) as usize
        };
        for round in 0..200 {
            // Runs of neighbours, jumps past the skip limit, repeats, keys
            // before the first and after the last, in shuffled order.
            let mut asked: Vec<String> = Vec::new();
            let mut at = random(620);
            for _ in 0..random(60) {
                at = match random(4) {
                    0 => random(640),
                    1 => at.saturating_sub(1),
                    _ => at + 1 + random(2),
                };
                asked.push(key(at));
            }
            if round % 2 == 0 {
                for i in (1..asked.len()).rev() {
                    asked.swap(i, random(i + 1));
                }
            }
            let expected: Vec<_> = asked.iter().map(|k| store.get(k).unwrap()).collect();
            assert_eq!(store.get_many(&asked).unwrap(), expected, "keys {asked:?}");
        }
        assert_eq!(
            store.get_many(&[key(3), key(3), "k".into()]).unwrap(),
            [Some(key(3).into_bytes()), Some(key(3).into_bytes()), None]
        );
    }

    #[test]
    fn the_get_many_scan_walks_the_primary_key_without_sorting_or_preparing_again() {
        let (_dir, db) = temp_db();
        let plan: Vec<String> = db
            .with(|c| {
                c.prepare(&format!("EXPLAIN QUERY PLAN {SCAN_FROM}"))?
                    .query_map(params!["default", "k"], |row| row.get::<_, String>(3))?
                    .collect()
            })
            .unwrap();
        assert_eq!(plan.len(), 1, "{plan:?}");
        assert!(
            plan[0].starts_with("SEARCH") && plan[0].contains("(store=? AND key>?)"),
            "{plan:?}"
        );
        // And it is prepared once, not again for each start key.
        let store = SqliteStore::new(db.clone(), "default");
        for key in ["a", "m", "z"] {
            store.set(key, b"1").unwrap();
            store
                .get_many(&[key.into(), "b".into(), "y".into()])
                .unwrap();
        }
        let reprepared = db
            .with(|c| {
                let scan = c.prepare_cached(SCAN_FROM)?;
                Ok(scan.get_status(rusqlite::StatementStatus::RePrepare))
            })
            .unwrap();
        assert_eq!(reprepared, 0);
    }

    #[test]
    fn writes_survive_reopening_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.db");
        {
            let store = SqliteStore::new(Arc::new(SqliteDb::open(Some(&path)).unwrap()), "default");
            store.set("hero", b"{}").unwrap();
        }
        let store = SqliteStore::new(Arc::new(SqliteDb::open(Some(&path)).unwrap()), "default");
        assert_eq!(store.get("hero").unwrap().as_deref(), Some(&b"{}"[..]));
        let mode: String = Connection::open(&path)
            .unwrap()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn uses_spins_table_layout() {
        let (dir, db) = temp_db();
        SqliteStore::new(db, "default").set("k", b"v").unwrap();
        let raw = Connection::open(dir.path().join("nested/kv.db")).unwrap();
        let (store, key, value): (String, String, Vec<u8>) = raw
            .query_row("SELECT store, key, value FROM spin_key_value", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!(
            (store.as_str(), key.as_str(), value.as_slice()),
            ("default", "k", &b"v"[..])
        );
    }

    /// Holds the write lock of the file at `path` from another connection
    /// (as another process would) until `release` is sent.
    pub fn hold_write_lock(
        path: &Path,
    ) -> (std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>) {
        let other = Connection::open(path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            released.recv().unwrap();
            other.execute_batch("COMMIT").unwrap();
        });
        (release, holder)
    }

    #[test]
    fn a_write_under_another_connections_lock_fails_at_once_and_writes_nothing() {
        let (dir, db) = temp_db();
        let store = SqliteStore::new(db, "default");
        let (release, holder) = hold_write_lock(&dir.path().join("nested/kv.db"));
        let started = std::time::Instant::now();
        let error = store.set("k", b"v").unwrap_err();
        assert!(error.is_busy(), "{error}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "did not wait in the worker"
        );
        release.send(()).unwrap();
        holder.join().unwrap();
        assert_eq!(store.get("k").unwrap(), None);
        store.set("k", b"v").unwrap();
    }

    #[test]
    fn opening_waits_for_another_connection_creating_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.db");
        // Another process creating the database, in its default (rollback)
        // journal, holds the write lock: switching to WAL is refused with
        // `SQLITE_BUSY` without the busy handler being called.
        let other = Connection::open(&path).unwrap();
        other
            .execute_batch("BEGIN IMMEDIATE; CREATE TABLE other (x)")
            .unwrap();
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            other.execute_batch("COMMIT").unwrap();
        });
        let started = Instant::now();
        let db = SqliteDb::open(Some(&path)).expect("opened once the lock was released");
        assert!(started.elapsed() >= Duration::from_millis(250), "it waited");
        releaser.join().unwrap();
        SqliteStore::new(Arc::new(db), "default")
            .set("k", b"v")
            .unwrap();
    }

    #[test]
    fn a_lock_held_past_the_wait_is_a_busy_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.db");
        let other = Connection::open(&path).unwrap();
        other.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let started = Instant::now();
        let error = SqliteDb::open(Some(&path)).err().unwrap();
        let waited = started.elapsed();
        assert!(
            waited >= BUSY_TIMEOUT - OPEN_MAX_PAUSE,
            "{error:#} after {waited:?}"
        );
        let busy = error
            .chain()
            .filter_map(|cause| cause.downcast_ref::<StoreError>())
            .any(StoreError::is_busy);
        assert!(busy, "{error:#}");
    }

    #[test]
    fn in_memory_store_works_without_a_file() {
        let store = SqliteStore::new(Arc::new(SqliteDb::open(None).unwrap()), "scratch");
        store.set("a", b"1").unwrap();
        assert_eq!(store.keys().unwrap(), ["a"]);
        store.ping().unwrap();
    }

    #[test]
    fn opening_an_unwritable_location_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let error = SqliteDb::open(Some(&file.join("kv.db"))).err().unwrap();
        assert!(
            format!("{error:#}").contains("cannot create the directory"),
            "{error:#}"
        );
    }
}
