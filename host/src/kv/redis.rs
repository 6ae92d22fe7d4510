//! The shared key-value backend: Redis, for more than one replica. Keys are
//! namespaced by store label (`<label>:<key>`), so labels never collide in
//! one Redis database. One multiplexed connection per URL serves every
//! request; it reconnects by itself after Redis comes back.
//!
//! Compare-and-swap is a Lua script, which Redis runs atomically: it works
//! on the shared connection (a `WATCH` would need a connection of its own per
//! operation) and compares whole values, as the SQLite backend does.

use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, ServerErrorKind};

use super::StoreError;

/// How long one command may take before the guest gets an error.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long connecting may take.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(1);
/// Keys fetched per SCAN round trip.
const SCAN_BATCH: usize = 1000;

/// Sets `KEYS[1]` to `ARGV[3]` if it holds `ARGV[2]` (`ARGV[1]` is `1`) or
/// is absent (`ARGV[1]` is `0`); 1 if it did. Lua compares strings byte for
/// byte, so binary values are safe.
static COMPARE_AND_SWAP: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
        local current = redis.call('GET', KEYS[1])
        local matches
        if ARGV[1] == '1' then matches = (current == ARGV[2]) else matches = (current == false) end
        if matches then
            redis.call('SET', KEYS[1], ARGV[3])
            return 1
        end
        return 0
        ",
    )
});

/// A connection to one Redis server, shared by the labels that use it.
#[derive(Clone)]
pub struct RedisDb {
    connection: ConnectionManager,
    url: String,
}

impl RedisDb {
    /// Prepares a connection to `url` without waiting for Redis: the host
    /// starts (not ready) while Redis is down and serves once it is up.
    pub fn connect_lazily(url: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(CONNECTION_TIMEOUT))
            // Fail fast while Redis is down; the next command tries again.
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let connection = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(RedisDb {
            connection,
            url: redacted(url),
        })
    }

    /// The URL without its password, for logs.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// One label's view of a [`RedisDb`].
pub struct RedisStore {
    db: RedisDb,
    /// `<label>:`
    prefix: String,
}

impl RedisStore {
    /// The store for `label` on `db`.
    pub fn new(db: RedisDb, label: &str) -> Self {
        RedisStore {
            db,
            prefix: format!("{label}:"),
        }
    }

    fn key(&self, key: &str) -> Vec<u8> {
        let mut full = Vec::with_capacity(self.prefix.len() + key.len());
        full.extend_from_slice(self.prefix.as_bytes());
        full.extend_from_slice(key.as_bytes());
        full
    }

    /// The value under `key`.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut connection = self.db.connection.clone();
        Ok(redis::cmd("GET")
            .arg(self.key(key))
            .query_async(&mut connection)
            .await?)
    }

    /// Stores `value` under `key`.
    pub async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let mut connection = self.db.connection.clone();
        let () = redis::cmd("SET")
            .arg(self.key(key))
            .arg(value)
            .query_async(&mut connection)
            .await?;
        Ok(())
    }

    /// Removes `key`.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let mut connection = self.db.connection.clone();
        let _: i64 = redis::cmd("DEL")
            .arg(self.key(key))
            .query_async(&mut connection)
            .await?;
        Ok(())
    }

    /// The values under `keys`, in their order (`None` where absent): one MGET.
    pub async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let mut connection = self.db.connection.clone();
        let mut mget = redis::cmd("MGET");
        for key in keys {
            mget.arg(self.key(key));
        }
        Ok(mget.query_async(&mut connection).await?)
    }

    /// Stores every pair: one MSET, atomic in Redis.
    pub async fn set_many(&self, pairs: &[(String, Vec<u8>)]) -> Result<(), StoreError> {
        let mut connection = self.db.connection.clone();
        let mut mset = redis::cmd("MSET");
        for (key, value) in pairs {
            mset.arg(self.key(key)).arg(value);
        }
        let () = mset.query_async(&mut connection).await?;
        Ok(())
    }

    /// Removes every key: one DEL.
    pub async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        let mut connection = self.db.connection.clone();
        let mut del = redis::cmd("DEL");
        for key in keys {
            del.arg(self.key(key));
        }
        let _: i64 = del.query_async(&mut connection).await?;
        Ok(())
    }

    /// INCRBY, as Spin's Redis store does: the counter is the decimal text
    /// Redis keeps. A value that is not a counter, or an overflow, is refused
    /// by the server (an error reply, not a failure of the connection).
    pub async fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        let mut connection = self.db.connection.clone();
        redis::cmd("INCRBY")
            .arg(self.key(key))
            .arg(delta)
            .query_async(&mut connection)
            .await
            .map_err(|error| match error.kind() {
                ErrorKind::Server(ServerErrorKind::ResponseError) => StoreError::Refused(
                    "the value under this key is not a 64-bit counter, or the sum would overflow",
                ),
                _ => error.into(),
            })
    }

    /// Stores `value` under `key` if it still holds `expected` (`None`: if it
    /// is absent), atomically; whether it did.
    pub async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
    ) -> Result<bool, StoreError> {
        let mut connection = self.db.connection.clone();
        let swapped: i64 = COMPARE_AND_SWAP
            .key(self.key(key))
            .arg(if expected.is_some() { "1" } else { "0" })
            .arg(expected.unwrap_or_default())
            .arg(value)
            .invoke_async(&mut connection)
            .await?;
        Ok(swapped == 1)
    }

    /// Whether `key` has a value.
    pub async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        let mut connection = self.db.connection.clone();
        Ok(redis::cmd("EXISTS")
            .arg(self.key(key))
            .query_async(&mut connection)
            .await?)
    }

    /// Every key of this label (SCAN, so Redis is never blocked), sorted.
    pub async fn keys(&self) -> Result<Vec<String>, StoreError> {
        let mut connection = self.db.connection.clone();
        let pattern = format!("{}*", glob_escape(&self.prefix));
        let mut cursor: u64 = 0;
        let mut keys = Vec::new();
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(SCAN_BATCH)
                .query_async(&mut connection)
                .await?;
            keys.extend(
                batch
                    .into_iter()
                    .filter_map(|k| k.strip_prefix(&self.prefix).map(str::to_owned)),
            );
            if next == 0 {
                break;
            }
            cursor = next;
        }
        // SCAN may return a key twice while the keyspace is rehashing.
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }

    /// PING, to prove Redis answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut connection = self.db.connection.clone();
        let _: String = redis::cmd("PING").query_async(&mut connection).await?;
        Ok(())
    }
}

/// Escapes Redis glob metacharacters.
fn glob_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// `redis://user:secret@host` becomes `redis://user:***@host`.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_glob_characters() {
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
        assert_eq!(glob_escape("default:"), "default:");
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redacted("redis://u:secret@h:6379/0"),
            "redis://u:***@h:6379/0"
        );
        assert_eq!(redacted("redis://h:6379"), "redis://h:6379");
    }

    #[test]
    fn bad_urls_are_refused() {
        assert!(RedisDb::connect_lazily("http://not-redis").is_err());
    }
}
