//! The batch and atomic operations of both backends, against a real SQLite
//! file and a real `redis-server`: the same behaviour on both, atomic
//! compare-and-swap and increment under contention from several
//! connections, and each backend's counter format (Spin's).

use std::sync::Arc;

use super::testing::{RedisServer, sqlite};
use super::{Backend, StoreError};

fn keys(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| (*name).to_owned()).collect()
}

/// What both backends must do alike.
async fn batches_counters_and_swaps_behave(store: &Backend) {
    store
        .set_many(&[("a".into(), b"1".to_vec()), ("b".into(), b"2".to_vec())])
        .await
        .unwrap();
    assert_eq!(
        store.get_many(&keys(&["b", "missing", "a"])).await.unwrap(),
        [Some(b"2".to_vec()), None, Some(b"1".to_vec())],
        "one answer per key, in order"
    );
    assert!(store.get_many(&[]).await.unwrap().is_empty());
    store.delete_many(&keys(&["a", "missing"])).await.unwrap();
    assert_eq!(store.get("a").await.unwrap(), None);
    assert_eq!(store.get("b").await.unwrap().as_deref(), Some(&b"2"[..]));

    assert_eq!(
        store.increment("n", 5).await.unwrap(),
        5,
        "absent counts as 0"
    );
    assert_eq!(store.increment("n", -7).await.unwrap(), -2);
    store.set("text", b"not a number").await.unwrap();
    let refused = store.increment("text", 1).await;
    assert!(
        matches!(refused, Err(StoreError::Refused(_))),
        "{refused:?}"
    );
    store.set("max", b"0").await.unwrap();
    store.delete("max").await.unwrap();
    store.increment("max", i64::MAX).await.unwrap();
    let overflow = store.increment("max", 1).await;
    assert!(
        matches!(overflow, Err(StoreError::Refused(_))),
        "{overflow:?}"
    );

    assert!(store.compare_and_swap("c", None, b"x").await.unwrap());
    assert!(
        !store.compare_and_swap("c", None, b"y").await.unwrap(),
        "expected absent, found x"
    );
    assert!(!store.compare_and_swap("c", Some(b"y"), b"z").await.unwrap());
    assert!(store.compare_and_swap("c", Some(b"x"), b"z").await.unwrap());
    assert_eq!(store.get("c").await.unwrap().as_deref(), Some(&b"z"[..]));
    let binary = [0u8, 255, 0, 10];
    assert!(
        store
            .compare_and_swap("c", Some(b"z"), &binary)
            .await
            .unwrap()
    );
    assert!(
        store
            .compare_and_swap("c", Some(&binary), b"w")
            .await
            .unwrap()
    );
}

/// `stores` (each its own connection, as separate workers or replicas would
/// use) each add 1 to a decimal counter `rounds` times through read then
/// compare-and-swap, and to another through `increment`. Nothing is lost and
/// nothing counted twice; returns how many swaps conflicted.
async fn contention_loses_nothing(stores: Vec<Arc<Backend>>, rounds: u64) -> u64 {
    let expected = rounds * stores.len() as u64;
    let check = stores[0].clone();
    let mut tasks = Vec::new();
    for store in stores {
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0;
            for _ in 0..rounds {
                while !add_one(&store).await {
                    conflicts += 1;
                }
                store.increment("incremented", 1).await.unwrap();
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for task in tasks {
        conflicts += task.await.unwrap();
    }
    let swapped = check.get("swapped").await.unwrap().unwrap();
    assert_eq!(std::str::from_utf8(&swapped).unwrap(), expected.to_string());
    assert_eq!(
        check.increment("incremented", 0).await.unwrap(),
        i64::try_from(expected).unwrap()
    );
    conflicts
}

/// One read-then-swap of the counter; whether it was stored.
async fn add_one(store: &Backend) -> bool {
    let current = store.get("swapped").await.unwrap();
    let n: u64 = current
        .as_deref()
        .map_or(0, |v| std::str::from_utf8(v).unwrap().parse().unwrap());
    // Widen the window between read and swap, so writers do collide.
    tokio::task::yield_now().await;
    store
        .compare_and_swap(
            "swapped",
            current.as_deref(),
            (n + 1).to_string().as_bytes(),
        )
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_batches_counters_and_swaps() {
    let (_dir, store) = sqlite("default");
    batches_counters_and_swaps_behave(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_batches_counters_and_swaps() {
    let server = RedisServer::start();
    batches_counters_and_swaps_behave(&server.store("default")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_swaps_and_increments_are_atomic_across_connections() {
    let (dir, store) = sqlite("default");
    // Another handle on the same file, as another process would open it.
    let other = super::sqlite::SqliteDb::open(Some(&dir.path().join("kv.db"))).unwrap();
    let other = Backend::Sqlite(super::sqlite::SqliteStore::new(Arc::new(other), "default"));
    let (store, other) = (Arc::new(store), Arc::new(other));
    let stores = (0..8)
        .map(|i| {
            if i % 2 == 0 {
                store.clone()
            } else {
                other.clone()
            }
        })
        .collect();
    let conflicts = contention_loses_nothing(stores, 100).await;
    assert!(
        conflicts > 0,
        "the writers never collided: the test proves nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_swaps_and_increments_are_atomic_across_connections() {
    let server = RedisServer::start();
    let stores = (0..8).map(|_| Arc::new(server.store("default"))).collect();
    let conflicts = contention_loses_nothing(stores, 100).await;
    assert!(
        conflicts > 0,
        "the writers never collided: the test proves nothing"
    );
}

#[test]
fn sqlite_counters_are_eight_bytes_little_endian_as_spin_keeps_them() {
    let (dir, store) = sqlite("default");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert_eq!(runtime.block_on(store.increment("n", 258)).unwrap(), 258);
    let raw: Vec<u8> = rusqlite::Connection::open(dir.path().join("kv.db"))
        .unwrap()
        .query_row(
            "SELECT value FROM spin_key_value WHERE store = 'default' AND key = 'n'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(raw, 258i64.to_le_bytes());
}

#[tokio::test]
async fn redis_counters_are_decimal_text_under_the_label_prefix() {
    let server = RedisServer::start();
    let store = server.store("cache");
    assert_eq!(store.increment("n", 42).await.unwrap(), 42);
    let other_label = server.store("default");
    assert_eq!(
        other_label.get("n").await.unwrap(),
        None,
        "labels do not collide"
    );
    let raw = server.store("cache").get("n").await.unwrap();
    assert_eq!(raw.as_deref(), Some(&b"42"[..]));
}
