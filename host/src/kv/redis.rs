//! The shared key-value backend: Redis, for more than one replica. Keys are
//! namespaced by store label (`<label>:<key>`), so labels never collide in
//! one Redis database. One multiplexed connection per URL serves every
//! request; it reconnects by itself after Redis comes back.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::StoreError;

/// How long one command may take before the guest gets an error.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long connecting may take.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(1);
/// Keys fetched per SCAN round trip.
const SCAN_BATCH: usize = 1000;

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
