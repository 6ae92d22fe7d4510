//! Starting beside others: replicas that create one SQLite store at the same
//! time, and a store another process keeps locked.

use std::time::{Duration, Instant};

use crate::support::{AppDir, agent, post_new_hero, run_to_exit, send, try_start};

/// A runtime config putting the `default` store in `db`.
fn store_at(app: &AppDir, db: &std::path::Path) -> String {
    let config = app.write(
        "runtime-config.toml",
        &format!(
            "[key_value_store.default]\ntype = \"spin\"\npath = \"{}\"\n",
            db.display()
        ),
    );
    config.to_str().unwrap().to_owned()
}

/// Two replicas on a fresh volume: started together, both open (and one of
/// them creates) the same new database. Neither may fail for the other's
/// lock; each attempt is a new database, as the race is at creation.
#[test]
fn two_hosts_creating_one_store_at_once_both_serve() {
    let _heavy = crate::support::exclusive();
    let shared = tempfile::tempdir().unwrap();
    let (first, second) = (AppDir::registry(), AppDir::registry());
    for attempt in 0..5 {
        let db = shared.path().join(format!("kv-{attempt}.db"));
        let (config_a, config_b) = (store_at(&first, &db), store_at(&second, &db));
        let (a, b) = std::thread::scope(|scope| {
            let a = scope.spawn(|| try_start(&first, &["--runtime-config-file", &config_a]));
            let b = scope.spawn(|| try_start(&second, &["--runtime-config-file", &config_b]));
            (a.join().unwrap(), b.join().unwrap())
        });
        let a = a.unwrap_or_else(|failure| panic!("attempt {attempt}, first host: {failure}"));
        let b = b.unwrap_or_else(|failure| panic!("attempt {attempt}, second host: {failure}"));
        let id = post_new_hero(
            &agent(),
            &a.url("/heroes"),
            r#"{"name":"Twin","power":"p"}"#,
        );
        let seen = send(&agent(), "GET", &b.url(&format!("/heroes/{id}")), None);
        assert_eq!(seen.status, 200, "one store, seen by both");
    }
}

/// A lock held past the wait is a failure worth retrying (exit 1), not bad
/// configuration (64), and the host waited for it first.
#[test]
fn a_store_locked_past_the_wait_exits_1_after_waiting() {
    let app = AppDir::registry();
    let db = app.path("kv.db");
    let config = store_at(&app, &db);
    let other = rusqlite::Connection::open(&db).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let started = Instant::now();
    let (status, stdout, stderr) = run_to_exit(&app, &["--runtime-config-file", &config]);
    let waited = started.elapsed();
    assert_eq!(status.code(), Some(1), "stderr: {stderr}\nstdout: {stdout}");
    assert!(stderr.contains("database is locked"), "{stderr}");
    assert!(
        waited >= Duration::from_millis(4900),
        "gave up after {waited:?}, before the 5 s lock wait"
    );
    other.execute_batch("COMMIT").unwrap();
}
