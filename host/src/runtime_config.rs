//! Spin's runtime configuration file (`--runtime-config-file`): which backend
//! serves each key-value store label. Unknown keys and store types are refused
//! at start-up, so a typo never silently falls back to another backend.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

/// The label every Spin app may use without configuration.
pub const DEFAULT_STORE_LABEL: &str = "default";
/// File name of the default SQLite store inside the state directory (as Spin).
pub const DEFAULT_STORE_FILE: &str = "sqlite_key_value.db";

/// A parsed runtime configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// `state_dir`, resolved against the file's directory.
    pub state_dir: Option<PathBuf>,
    /// `[key_value_store.<label>]`.
    pub key_value_stores: BTreeMap<String, StoreConfig>,
}

/// The backend of one key-value store label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// `type = "spin"`: SQLite in a file, or in memory when `path` is absent.
    Sqlite {
        /// The database file; `None` keeps the store in memory.
        path: Option<PathBuf>,
    },
    /// `type = "redis"`.
    Redis {
        /// `redis://host:port[/db]`.
        url: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRuntimeConfig {
    state_dir: Option<PathBuf>,
    #[serde(default)]
    key_value_store: BTreeMap<String, RawStore>,
}

#[derive(Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
enum RawStore {
    #[serde(rename = "spin")]
    Spin { path: Option<PathBuf> },
    #[serde(rename = "redis")]
    Redis { url: String },
}

impl RuntimeConfig {
    /// Reads a runtime configuration file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the runtime config {}", path.display()))?;
        let dir = std::path::absolute(path)?
            .parent()
            .map(Path::to_owned)
            .unwrap_or_default();
        Self::parse(&text, &dir)
            .with_context(|| format!("invalid runtime config {}", path.display()))
    }

    /// Parses runtime configuration text; relative paths resolve against `dir`.
    pub fn parse(text: &str, dir: &Path) -> anyhow::Result<Self> {
        let raw: RawRuntimeConfig = toml::from_str(text).map_err(|e| {
            anyhow::anyhow!(
                "{e}hero-host supports `state_dir` and [key_value_store.<label>] with type \"spin\" (path) or \"redis\" (url)"
            )
        })?;
        let key_value_stores = raw
            .key_value_store
            .into_iter()
            .map(|(label, store)| {
                let store = match store {
                    RawStore::Spin { path } => StoreConfig::Sqlite {
                        path: path.map(|p| dir.join(p)),
                    },
                    RawStore::Redis { url } => StoreConfig::Redis { url },
                };
                (label, store)
            })
            .collect();
        Ok(RuntimeConfig {
            state_dir: raw.state_dir.map(|p| dir.join(p)),
            key_value_stores,
        })
    }

    /// The backend of every label, the `default` label included: unless
    /// configured it is SQLite at `<state_dir>/sqlite_key_value.db`.
    pub fn stores(&self, state_dir: &Path) -> BTreeMap<String, StoreConfig> {
        let mut stores = self.key_value_stores.clone();
        stores
            .entry(DEFAULT_STORE_LABEL.to_owned())
            .or_insert_with(|| StoreConfig::Sqlite {
                path: Some(state_dir.join(DEFAULT_STORE_FILE)),
            });
        stores
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_store_is_sqlite_in_the_state_dir() {
        let stores = RuntimeConfig::default().stores(Path::new("/app/.spin"));
        assert_eq!(
            stores["default"],
            StoreConfig::Sqlite {
                path: Some("/app/.spin/sqlite_key_value.db".into())
            }
        );
        assert_eq!(stores.len(), 1);
    }

    #[test]
    fn parses_redis_and_spin_stores_relative_to_the_file() {
        let config = RuntimeConfig::parse(
            r#"
state_dir = "state"
[key_value_store.default]
type = "redis"
url = "redis://127.0.0.1:6379"
[key_value_store.cache]
type = "spin"
path = "cache.db"
[key_value_store.scratch]
type = "spin"
"#,
            Path::new("/etc/hero"),
        )
        .unwrap();
        assert_eq!(
            config.state_dir.as_deref(),
            Some(Path::new("/etc/hero/state"))
        );
        let stores = config.stores(Path::new("/unused"));
        assert_eq!(
            stores["default"],
            StoreConfig::Redis {
                url: "redis://127.0.0.1:6379".into()
            }
        );
        assert_eq!(
            stores["cache"],
            StoreConfig::Sqlite {
                path: Some("/etc/hero/cache.db".into())
            }
        );
        assert_eq!(stores["scratch"], StoreConfig::Sqlite { path: None });
    }

    #[test]
    fn rejects_unknown_store_types() {
        let error = RuntimeConfig::parse(
            "[key_value_store.default]\ntype = \"azure_cosmos\"\n",
            Path::new("/"),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("azure_cosmos"), "{error}");
        assert!(error.contains("\"redis\""), "{error}");
        // The parser's own words, not the hint every error gets.
        assert!(error.contains("unknown variant `azure_cosmos`"), "{error}");
    }

    #[test]
    fn rejects_unknown_keys() {
        let error = RuntimeConfig::parse(
            "[sqlite_database.default]\ntype = \"spin\"\n",
            Path::new("/"),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("sqlite_database"), "{error}");
        let error = RuntimeConfig::parse(
            "[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://x\"\npassword = \"p\"\n",
            Path::new("/"),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("password"), "{error}");
    }

    #[test]
    fn redis_needs_a_url() {
        let error = RuntimeConfig::parse(
            "[key_value_store.default]\ntype = \"redis\"\n",
            Path::new("/"),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("url"), "{error}");
        assert!(error.contains("missing field `url`"), "{error}");
    }
}
