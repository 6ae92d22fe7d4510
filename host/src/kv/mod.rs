//! Key-value stores: the backends (SQLite, Redis), the labels they serve, and
//! the host interfaces guests call on them: `spin:key-value@3.0.0` and
//! `wasi:keyvalue` 2024-10-17 (store, atomics, batch), both on the same keys.

mod checkpointer;
pub mod host;
pub mod lock_wait;
pub mod operation;
pub mod redis;
pub mod sqlite;
pub mod wasi_keyvalue;

#[cfg(test)]
mod backend_tests;
#[cfg(test)]
pub mod testing;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use anyhow::Context;

use crate::labeled::{ByLabel, Kind};
use crate::runtime_config::StoreConfig;
use crate::telemetry::metrics::OperationSeries;

use self::redis::{RedisDb, RedisStore};
use self::sqlite::{SqliteDb, SqliteStore};

/// A backend failure. The guest sees a generic `other` error; this detail goes
/// to the host's log.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Redis failed or is unreachable.
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// The backend works, but the operation does not apply to what is stored
    /// (such as incrementing a value that is not a counter); the guest is
    /// told this reason.
    #[error("{0}")]
    Refused(&'static str),
}

/// `current + delta` for `increment`, where `current` is the stored counter
/// (absent counts as 0) in the backend's format, read by `parse`.
fn counter_sum(
    current: Option<&[u8]>,
    delta: i64,
    parse: impl FnOnce(&[u8]) -> Option<i64>,
) -> Result<i64, &'static str> {
    let current = match current {
        None => 0,
        Some(bytes) => parse(bytes).ok_or("the value under this key is not a 64-bit counter")?,
    };
    current
        .checked_add(delta)
        .ok_or("incrementing the counter would overflow a 64-bit integer")
}

impl StoreError {
    /// Whether another connection held a lock the operation needed; such an
    /// operation changed nothing and may be retried.
    pub fn is_busy(&self) -> bool {
        match self {
            StoreError::Sqlite(error) => sqlite::is_busy(error),
            StoreError::Redis(_) | StoreError::Refused(_) => false,
        }
    }
}

/// A failed backend operation under a request, for its invocation line.
#[derive(Debug, Clone)]
pub struct KeyValueFailure {
    /// The store label.
    pub store: Arc<str>,
    /// `sqlite` or `redis`.
    pub backend: &'static str,
    /// The operation (`get`, `set`, ...).
    pub operation: &'static str,
    /// The backend's error.
    pub error: String,
}

impl std::fmt::Display for KeyValueFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "key-value {} on store `{}` ({}) failed: {}",
            self.operation, self.store, self.backend, self.error
        )
    }
}

/// Who called a key-value operation, as [`KeyValueFailures::caller`] names
/// it: a request's number on its instance, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterId(pub Option<u64>);

/// Told of each failed backend operation, so the request it happened under
/// can say why in its log line.
pub trait KeyValueFailures: Send + Sync {
    /// Who is calling now; asked when an operation starts, while the guest's
    /// call is in progress.
    fn caller(&self) -> WriterId;
    /// An operation `caller` started failed.
    fn failed(&self, caller: WriterId, failure: KeyValueFailure);
    /// Where the span of an operation `caller` starts goes, when its request
    /// is traced and sampled.
    fn span_parent(&self, _caller: WriterId) -> Option<crate::telemetry::traces::SpanParent> {
        None
    }
    /// A call of a synchronous WIT function has waited on its backend for a
    /// while: until it returns, the calling instance runs nothing else (the
    /// component model does not re-enter an instance blocked in such a call,
    /// and the host call holds its store), so new requests should go to
    /// other instances.
    fn stall_started(&self) {}
    /// The call of [`Self::stall_started`] returned (or was cancelled).
    fn stall_ended(&self) {}
}

/// One label's backend.
pub enum Backend {
    /// Embedded SQLite.
    Sqlite(SqliteStore),
    /// Shared Redis.
    Redis(RedisStore),
}

impl Backend {
    /// `sqlite` or `redis`, for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Backend::Sqlite(_) => "sqlite",
            Backend::Redis(_) => "redis",
        }
    }

    /// The value under `key`.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Backend::Sqlite(store) => lock_wait::retrying(|| store.get(key)).await,
            Backend::Redis(store) => store.get(key).await,
        }
    }

    /// Stores `value` under `key`.
    pub async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        match self {
            Backend::Sqlite(store) => lock_wait::retrying(|| store.set(key, value)).await,
            Backend::Redis(store) => store.set(key, value).await,
        }
    }

    /// Removes `key`.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self {
            Backend::Sqlite(store) => lock_wait::retrying(|| store.delete(key)).await,
            Backend::Redis(store) => store.delete(key).await,
        }
    }

    /// Whether `key` has a value.
    pub async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        match self {
            Backend::Sqlite(store) => lock_wait::retrying(|| store.exists(key)).await,
            Backend::Redis(store) => store.exists(key).await,
        }
    }

    /// The values under `keys`, in their order (`None` where absent).
    pub async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            Backend::Sqlite(store) => lock_wait::retrying(|| store.get_many(keys)).await,
            Backend::Redis(store) => store.get_many(keys).await,
        }
    }

    /// Stores every pair.
    pub async fn set_many(&self, pairs: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        if pairs.is_empty() {
            return Ok(());
        }
        match self {
            Backend::Sqlite(store) => lock_wait::retrying(|| store.set_many(pairs)).await,
            Backend::Redis(store) => store.set_many(pairs).await,
        }
    }

    /// Removes every key.
    pub async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        match self {
            Backend::Sqlite(store) => lock_wait::retrying(|| store.delete_many(keys)).await,
            Backend::Redis(store) => store.delete_many(keys).await,
        }
    }

    /// Atomically adds `delta` to the counter under `key` (absent: 0) and
    /// returns the sum.
    pub async fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        match self {
            Backend::Sqlite(store) => lock_wait::retrying(|| store.increment(key, delta)).await,
            Backend::Redis(store) => store.increment(key, delta).await,
        }
    }

    /// Atomically stores `value` under `key` if it still holds `expected`
    /// (`None`: if it is absent); whether it did.
    pub async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
    ) -> Result<bool, StoreError> {
        match self {
            Backend::Sqlite(store) => {
                lock_wait::retrying(|| store.compare_and_swap(key, expected, value)).await
            }
            Backend::Redis(store) => store.compare_and_swap(key, expected, value).await,
        }
    }

    /// Every key, sorted.
    pub async fn keys(&self) -> Result<Vec<String>, StoreError> {
        match self {
            Backend::Sqlite(store) => lock_wait::retrying(|| store.keys()).await,
            Backend::Redis(store) => store.keys().await,
        }
    }

    /// Proves the backend answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Backend::Sqlite(store) => lock_wait::retrying(|| store.ping()).await,
            Backend::Redis(store) => store.ping().await,
        }
    }
}

/// A label and its backend.
pub struct LabeledStore {
    /// The label guests open.
    pub label: Arc<str>,
    /// What serves it.
    pub backend: Backend,
    /// Where the data lives (a file, `memory`, or a Redis URL without its
    /// password), for logs.
    pub location: String,
    /// Its operation histogram, bound per operation and outcome.
    pub series: OperationSeries,
}

/// Every store the application's components were granted, opened once at
/// start-up.
pub type Stores = ByLabel<LabeledStore>;

impl ByLabel<LabeledStore> {
    /// Opens the backend of every label in `used` (labels no component uses
    /// are not opened). A label without configuration is an error.
    pub fn open<'a>(
        configs: &BTreeMap<String, StoreConfig>,
        used: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> anyhow::Result<Self> {
        let mut sqlite_files: HashMap<Option<std::path::PathBuf>, Arc<SqliteDb>> = HashMap::new();
        let mut redis_servers: HashMap<String, RedisDb> = HashMap::new();
        let kind = Kind {
            noun: "key-value store",
            table: "key_value_store",
        };
        ByLabel::open_each(kind, configs, used, |label, config| {
            let (backend, location) = match config {
                StoreConfig::Sqlite { path } => {
                    let db = match sqlite_files.get(path) {
                        Some(db) => db.clone(),
                        None => {
                            let db = Arc::new(SqliteDb::open(path.as_deref())?);
                            sqlite_files.insert(path.clone(), db.clone());
                            db
                        }
                    };
                    let location = path
                        .as_ref()
                        .map_or_else(|| "memory".to_owned(), |p| p.display().to_string());
                    (Backend::Sqlite(SqliteStore::new(db, label)), location)
                }
                StoreConfig::Redis { url } => {
                    let db = match redis_servers.get(url) {
                        Some(db) => db.clone(),
                        None => {
                            let db = RedisDb::connect_lazily(url).with_context(|| {
                                format!("key-value store `{label}`: invalid Redis URL")
                            })?;
                            redis_servers.insert(url.clone(), db.clone());
                            db
                        }
                    };
                    let location = db.url().to_owned();
                    (Backend::Redis(RedisStore::new(db, label)), location)
                }
            };
            Ok(LabeledStore {
                label: label.into(),
                backend,
                location,
                series: OperationSeries::default(),
            })
        })
    }

    /// Pings every store; the first failure names its label.
    pub async fn check(&self) -> Result<(), (Arc<str>, StoreError)> {
        for store in self.iter() {
            store
                .backend
                .ping()
                .await
                .map_err(|e| (store.label.clone(), e))?;
        }
        Ok(())
    }
}

/// Spin accepts kebab-case and snake_case labels (checked when the manifest
/// is read).
pub fn is_valid_label(label: &str) -> bool {
    label.starts_with(|c: char| c.is_ascii_lowercase())
        && label
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_only_used_labels_and_rejects_undefined_ones() {
        let configs = BTreeMap::from([
            ("default".to_owned(), StoreConfig::Sqlite { path: None }),
            (
                "unused".to_owned(),
                StoreConfig::Redis {
                    url: "redis://127.0.0.1:1".into(),
                },
            ),
        ]);
        let stores = Stores::open(&configs, [("app", "default"), ("other", "default")]).unwrap();
        assert!(stores.get("default").is_some());
        assert!(stores.get("unused").is_none());

        let error = Stores::open(&configs, [("app", "cache")])
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("`cache`, which is not defined"), "{error}");
        assert!(error.contains("component `app`"), "{error}");
    }

    #[test]
    fn labels_must_be_kebab_or_snake_case() {
        assert!(is_valid_label("default"));
        assert!(is_valid_label("my-store_2"));
        assert!(!is_valid_label("My:Store"));
        assert!(!is_valid_label(""));
    }

    #[tokio::test]
    async fn labels_in_one_sqlite_file_share_it_but_not_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = Some(dir.path().join("kv.db"));
        let configs = BTreeMap::from([
            ("a".to_owned(), StoreConfig::Sqlite { path: path.clone() }),
            ("b".to_owned(), StoreConfig::Sqlite { path }),
        ]);
        let stores = Stores::open(&configs, [("x", "a"), ("x", "b")]).unwrap();
        let (a, b) = (
            &stores.get("a").unwrap().backend,
            &stores.get("b").unwrap().backend,
        );
        match (a, b) {
            (Backend::Sqlite(a), Backend::Sqlite(b)) => {
                assert!(Arc::ptr_eq(a.db(), b.db()), "one database for one file")
            }
            _ => panic!("both labels are SQLite"),
        }
        a.set("k", b"1").await.unwrap();
        assert_eq!(b.get("k").await.unwrap(), None);
        assert_eq!(a.keys().await.unwrap(), ["k"]);
        assert_eq!(a.kind(), "sqlite");
        stores.check().await.unwrap();
    }
}
