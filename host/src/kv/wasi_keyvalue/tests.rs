//! The interface as a guest calls it (handles in a resource table, errors as
//! the WIT types), on a real SQLite file and a real `redis-server`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use wasmtime::component::{Resource, ResourceTable};

use super::{Bucket, StoreFailure, SwapFailure, atomics, batch, store};
use crate::kv::host::{KeyValueCtx, KeyValueState, KeyValueView};
use crate::kv::testing::RedisServer;
use crate::kv::{KeyValueFailure, KeyValueFailures, Stores, WriterId};
use crate::runtime_config::StoreConfig;
use crate::telemetry::metrics::{Metrics, ServiceIdentity};

/// Collects the failures an instance would report to its request, and its
/// stalls as they start and end.
#[derive(Default)]
struct Failures(Mutex<Vec<KeyValueFailure>>, Mutex<Vec<&'static str>>);

impl KeyValueFailures for Failures {
    fn caller(&self) -> WriterId {
        WriterId(None)
    }

    fn failed(&self, _caller: WriterId, failure: KeyValueFailure) {
        self.0.lock().unwrap().push(failure);
    }

    fn stall_started(&self) {
        self.1.lock().unwrap().push("started");
    }

    fn stall_ended(&self) {
        self.1.lock().unwrap().push("ended");
    }
}

/// One instance's key-value state, granted `default` only; `other` exists
/// on the host but is not granted.
struct Instance {
    state: KeyValueState,
    table: ResourceTable,
    failures: Arc<Failures>,
    stores: Stores,
}

impl Instance {
    fn new(config: StoreConfig) -> Self {
        let configs = BTreeMap::from([
            ("default".to_owned(), config.clone()),
            ("other".to_owned(), config),
        ]);
        let stores = Stores::open(&configs, [("app", "default"), ("app", "other")]).unwrap();
        let identity = ServiceIdentity {
            name: "test".into(),
            version: "0".into(),
            instance_id: "i".into(),
        };
        let metrics = Arc::new(Metrics::new(&identity, true).unwrap());
        let ctx = KeyValueCtx::new(stores.clone(), &["default".to_owned()], metrics);
        let failures = Arc::new(Failures::default());
        Instance {
            state: KeyValueState::new(Arc::new(ctx), failures.clone()),
            table: ResourceTable::new(),
            failures,
            stores,
        }
    }

    fn view(&mut self) -> KeyValueView<'_> {
        KeyValueView {
            state: &mut self.state,
            table: &mut self.table,
        }
    }

    async fn open(&mut self) -> Resource<Bucket> {
        let result = store::Host::open(&mut self.view(), "default".into()).await;
        guest(result)
    }
}

/// The value, or the error a guest would see (a trap fails the test).
fn guest<T>(result: Result<T, StoreFailure>) -> T {
    match result {
        Ok(value) => value,
        Err(StoreFailure::Guest(error)) => panic!("guest error {error:?}"),
        Err(StoreFailure::Trap(error)) => panic!("trap {error:?}"),
    }
}

fn guest_error<T>(result: Result<T, StoreFailure>) -> store::Error {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(StoreFailure::Guest(error)) => error,
        Err(StoreFailure::Trap(error)) => panic!("trap {error:?}"),
    }
}

fn sqlite() -> (tempfile::TempDir, Instance) {
    let dir = tempfile::tempdir().unwrap();
    let path = Some(dir.path().join("kv.db"));
    (dir, Instance::new(StoreConfig::Sqlite { path }))
}

fn redis(server: &RedisServer) -> Instance {
    let url = format!("redis://127.0.0.1:{}", server.port());
    Instance::new(StoreConfig::Redis { url })
}

async fn opens_only_granted_stores(instance: &mut Instance) {
    let denied = store::Host::open(&mut instance.view(), "other".into()).await;
    assert!(matches!(guest_error(denied), store::Error::AccessDenied));
    let missing = store::Host::open(&mut instance.view(), "nope".into()).await;
    assert!(matches!(guest_error(missing), store::Error::NoSuchStore));
    let bucket = instance.open().await;
    store::HostBucket::drop(&mut instance.view(), bucket)
        .await
        .unwrap();
}

/// What the guest sees of `store` and `batch`, and that `spin:key-value`'s
/// backend sees the same keys.
async fn stores_and_batches(instance: &mut Instance) {
    let bucket = instance.open().await;
    let b = || Resource::<Bucket>::new_borrow(bucket.rep());
    let mut view = instance.view();
    guest(store::HostBucket::set(&mut view, b(), "a".into(), b"1".to_vec()).await);
    let pairs = vec![
        ("b".to_owned(), b"2".to_vec()),
        ("c".to_owned(), b"3".to_vec()),
    ];
    guest(batch::Host::set_many(&mut view, b(), pairs).await);
    let many = guest(batch::Host::get_many(&mut view, b(), vec!["c".into(), "x".into()]).await);
    assert_eq!(
        many,
        [
            ("c".to_owned(), Some(b"3".to_vec())),
            ("x".to_owned(), None)
        ]
    );
    guest(batch::Host::delete_many(&mut view, b(), vec!["c".into()]).await);
    assert!(!guest(
        store::HostBucket::exists(&mut view, b(), "c".into()).await
    ));
    let mut keys = guest(store::HostBucket::list_keys(&mut view, b(), None).await);
    keys.keys.sort();
    assert_eq!(
        (keys.keys, keys.cursor),
        (vec!["a".into(), "b".into()], None)
    );
    let cursor = store::HostBucket::list_keys(&mut view, b(), Some("a".into())).await;
    match guest_error(cursor) {
        store::Error::Other(message) => assert_eq!(message, "list_keys: cursor not supported"),
        other => panic!("{other:?}"),
    }
    // The same data through the backend `spin:key-value` uses.
    let backend = &instance.stores.get("default").unwrap().backend;
    assert_eq!(backend.get("b").await.unwrap().as_deref(), Some(&b"2"[..]));
}

/// A swap succeeds on the value `new` saw, fails with a fresh handle after
/// another write, and that handle then succeeds.
async fn swaps_compare_with_the_snapshot(instance: &mut Instance) {
    let bucket = instance.open().await;
    let b = || Resource::<Bucket>::new_borrow(bucket.rep());
    let mut view = instance.view();
    let cas = guest(atomics::HostCas::new(&mut view, b(), "k".into()).await);
    let borrowed = Resource::new_borrow(cas.rep());
    assert_eq!(
        guest(atomics::HostCas::current(&mut view, borrowed).await),
        None
    );
    // Someone else creates the key first.
    guest(store::HostBucket::set(&mut view, b(), "k".into(), b"theirs".to_vec()).await);
    let next = match atomics::Host::swap(&mut view, cas, b"mine".to_vec()).await {
        Err(SwapFailure::Guest(atomics::CasError::CasFailed(next))) => next,
        Ok(()) => panic!("swapped over a value it never saw"),
        Err(_) => panic!("expected cas-failed"),
    };
    let borrowed = Resource::new_borrow(next.rep());
    let seen = guest(atomics::HostCas::current(&mut view, borrowed).await);
    assert_eq!(seen.as_deref(), Some(&b"theirs"[..]));
    assert!(
        atomics::Host::swap(&mut view, next, b"mine".to_vec())
            .await
            .is_ok()
    );
    let value = guest(store::HostBucket::get(&mut view, b(), "k".into()).await);
    assert_eq!(value.as_deref(), Some(&b"mine"[..]));
    assert_eq!(view.state.open_swaps, 0, "every handle was consumed");

    assert_eq!(
        guest(atomics::Host::increment(&mut view, b(), "n".into(), 2).await),
        2
    );
    let refused = atomics::Host::increment(&mut view, b(), "k".into(), 1).await;
    assert!(matches!(guest_error(refused), store::Error::Other(_)));
    assert_eq!(instance.failures.0.lock().unwrap().len(), 1, "reported");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_as_a_guest_sees_it_on_sqlite() {
    let (_dir, mut instance) = sqlite();
    opens_only_granted_stores(&mut instance).await;
    stores_and_batches(&mut instance).await;
    swaps_compare_with_the_snapshot(&mut instance).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_as_a_guest_sees_it_on_redis() {
    let server = RedisServer::start();
    let mut instance = redis(&server);
    opens_only_granted_stores(&mut instance).await;
    stores_and_batches(&mut instance).await;
    swaps_compare_with_the_snapshot(&mut instance).await;
}

#[tokio::test]
async fn an_unreachable_redis_is_a_guest_error_and_a_report() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://127.0.0.1:{}", free.local_addr().unwrap().port());
    drop(free);
    let mut instance = Instance::new(StoreConfig::Redis { url });
    let bucket = instance.open().await;
    let mut view = instance.view();
    let error = guest_error(atomics::HostCas::new(&mut view, bucket, "k".into()).await);
    match error {
        store::Error::Other(message) => assert!(message.contains("unavailable"), "{message}"),
        other => panic!("{other:?}"),
    }
    let failures = instance.failures.0.lock().unwrap();
    assert_eq!(failures[0].operation, "cas_new");
    assert_eq!(failures[0].backend, "redis");
}

/// A call that waits for another process's lock reports its instance stalled
/// while it waits (so requests go elsewhere) and no longer once it is done; a
/// quick call reports nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_waiting_for_a_lock_reports_its_instance_stalled_until_it_ends() {
    let (dir, mut instance) = sqlite();
    let bucket = instance.open().await;
    let b = || Resource::<Bucket>::new_borrow(bucket.rep());
    guest(store::HostBucket::set(&mut instance.view(), b(), "k".into(), b"1".to_vec()).await);
    assert!(
        instance.failures.1.lock().unwrap().is_empty(),
        "a quick call"
    );

    let other = rusqlite::Connection::open(dir.path().join("kv.db")).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let failures = instance.failures.clone();
    let release = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let seen_while_waiting = failures.1.lock().unwrap().clone();
        other.execute_batch("COMMIT").unwrap();
        seen_while_waiting
    });
    guest(store::HostBucket::set(&mut instance.view(), b(), "k".into(), b"2".to_vec()).await);
    assert_eq!(release.join().unwrap(), ["started"]);
    assert_eq!(*instance.failures.1.lock().unwrap(), ["started", "ended"]);
}
