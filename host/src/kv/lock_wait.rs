//! Waiting for another connection's SQLite lock without blocking anything.
//!
//! An operation that finds the database locked by another connection (another
//! process on the same file, such as `spin up` or a second host) fails at once
//! having changed nothing. [`retrying`] runs it again after short, growing
//! pauses on the async timer, for up to [`LOCK_WAIT`]: the worker thread and
//! the guest instance keep serving other requests meanwhile.

use std::time::Duration;

use tokio::time::Instant;

use super::StoreError;

/// How long an operation waits for another connection's lock.
pub const LOCK_WAIT: Duration = Duration::from_secs(5);
/// The first pause; each one after doubles, up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(1);
/// The longest pause between attempts.
const MAX_PAUSE: Duration = Duration::from_millis(50);

/// Runs `op` until it is not refused for a lock, or [`LOCK_WAIT`] has passed.
pub async fn retrying<T>(mut op: impl FnMut() -> Result<T, StoreError>) -> Result<T, StoreError> {
    let deadline = Instant::now() + LOCK_WAIT;
    let mut pause = FIRST_PAUSE;
    loop {
        match op() {
            Err(error) if error.is_busy() && Instant::now() + pause < deadline => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
            done => return done,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::kv::sqlite::tests::hold_write_lock;
    use crate::kv::sqlite::{SqliteDb, SqliteStore};

    fn temp_store() -> (tempfile::TempDir, Arc<SqliteStore>) {
        let dir = tempfile::tempdir().unwrap();
        let db = SqliteDb::open(Some(&dir.path().join("kv.db"))).unwrap();
        (dir, Arc::new(SqliteStore::new(Arc::new(db), "default")))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_write_waits_for_another_connections_lock_then_commits_leaving_the_worker_free() {
        let (dir, store) = temp_store();
        let (release, holder) = hold_write_lock(&dir.path().join("kv.db"));
        let writing = tokio::spawn({
            let store = store.clone();
            async move { retrying(|| store.set("k", b"v")).await }
        });
        // One worker thread: this runs only if the waiting write left it.
        let other = tokio::spawn(async { "ran" });
        assert_eq!(other.await.unwrap(), "ran");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!writing.is_finished(), "the write waits for the lock");
        release.send(()).unwrap();
        holder.join().unwrap();
        writing
            .await
            .unwrap()
            .expect("committed once the lock is free");
        assert_eq!(store.get("k").unwrap().as_deref(), Some(&b"v"[..]));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lock_held_past_the_wait_is_an_error_and_writes_nothing() {
        let (dir, store) = temp_store();
        let (release, holder) = hold_write_lock(&dir.path().join("kv.db"));
        let started = Instant::now();
        let error = retrying(|| store.set("k", b"v")).await.unwrap_err();
        assert!(error.is_busy(), "{error}");
        let waited = started.elapsed();
        assert!(
            waited >= LOCK_WAIT - MAX_PAUSE && waited <= LOCK_WAIT,
            "waited {waited:?}"
        );
        release.send(()).unwrap();
        holder.join().unwrap();
        assert_eq!(store.get("k").unwrap(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn other_errors_are_not_retried() {
        let mut attempts = 0;
        let result: Result<(), StoreError> = retrying(|| {
            attempts += 1;
            Err(StoreError::Sqlite(rusqlite::Error::InvalidQuery))
        })
        .await;
        assert!(result.is_err());
        assert_eq!(attempts, 1);
    }
}
