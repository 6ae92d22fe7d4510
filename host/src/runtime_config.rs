//! Spin's runtime configuration file (`--runtime-config-file`): which backend
//! serves each key-value store label, where each SQLite database label lives,
//! and which providers give application variables their values. Unknown keys
//! and types are refused at start-up, so a typo never silently falls back to
//! another backend.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

use crate::variables::{Provider, check_name};

/// The label every Spin app may use without configuration.
pub const DEFAULT_STORE_LABEL: &str = "default";
/// File name of the default SQLite store inside the state directory (as Spin).
pub const DEFAULT_STORE_FILE: &str = "sqlite_key_value.db";
/// File name of the default SQLite database inside the state directory (as
/// Spin).
pub const DEFAULT_DATABASE_FILE: &str = "sqlite_db.db";

/// A parsed runtime configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// `state_dir`, resolved against the file's directory.
    pub state_dir: Option<PathBuf>,
    /// `[key_value_store.<label>]`.
    pub key_value_stores: BTreeMap<String, StoreConfig>,
    /// `[sqlite_database.<label>]`: the file of each label; `None` keeps the
    /// database in memory.
    pub sqlite_databases: BTreeMap<String, Option<PathBuf>>,
    /// `[[variables_provider]]`, in order.
    pub variables_providers: Vec<Provider>,
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
    #[serde(default)]
    sqlite_database: BTreeMap<String, RawDatabase>,
    #[serde(default, alias = "config_provider")]
    variables_provider: Vec<RawProvider>,
}

#[derive(Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
enum RawDatabase {
    #[serde(rename = "spin")]
    Spin { path: Option<PathBuf> },
}

#[derive(Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
enum RawProvider {
    #[serde(rename = "env")]
    Env { prefix: Option<String> },
    #[serde(rename = "static")]
    Static { values: HashMap<String, String> },
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
                "{e}hero-host supports `state_dir`, [key_value_store.<label>] with type \"spin\" (path) \
                 or \"redis\" (url), [sqlite_database.<label>] with type \"spin\" (path), and \
                 [[variables_provider]] with type \"env\" (prefix) or \"static\" (values)"
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
        let sqlite_databases = raw
            .sqlite_database
            .into_iter()
            .map(|(label, RawDatabase::Spin { path })| (label, path.map(|p| dir.join(p))))
            .collect();
        let variables_providers = raw
            .variables_provider
            .into_iter()
            .map(|provider| match provider {
                RawProvider::Env { prefix } => Ok(Provider::Env {
                    prefix: prefix.unwrap_or_else(|| {
                        crate::variables::providers::DEFAULT_ENV_PREFIX.to_owned()
                    }),
                }),
                RawProvider::Static { values } => {
                    for name in values.keys() {
                        check_name(name).map_err(|why| {
                            anyhow::anyhow!("[[variables_provider]] static value {name:?}: {why}")
                        })?;
                    }
                    Ok(Provider::Static {
                        origin: "runtime config",
                        values,
                    })
                }
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(RuntimeConfig {
            state_dir: raw.state_dir.map(|p| dir.join(p)),
            key_value_stores,
            sqlite_databases,
            variables_providers,
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

impl RuntimeConfig {
    /// The file of every SQLite database label, `default` included: unless
    /// configured it is `<state_dir>/sqlite_db.db`.
    pub fn databases(&self, state_dir: &Path) -> BTreeMap<String, Option<PathBuf>> {
        let mut databases = self.sqlite_databases.clone();
        databases
            .entry(DEFAULT_STORE_LABEL.to_owned())
            .or_insert_with(|| Some(state_dir.join(DEFAULT_DATABASE_FILE)));
        databases
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error of a runtime config reading `text`.
    fn error_of(text: &str) -> String {
        RuntimeConfig::parse(text, Path::new("/"))
            .unwrap_err()
            .to_string()
    }

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
        let error = error_of("[key_value_store.default]\ntype = \"azure_cosmos\"\n");
        assert!(error.contains("azure_cosmos"), "{error}");
        assert!(error.contains("\"redis\""), "{error}");
        // The parser's own words, not the hint every error gets.
        assert!(error.contains("unknown variant `azure_cosmos`"), "{error}");
    }

    #[test]
    fn rejects_unknown_keys() {
        let error = error_of("[sqlite_databases.default]\ntype = \"spin\"\n");
        assert!(error.contains("sqlite_databases"), "{error}");
        let error = error_of(
            "[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://x\"\npassword = \"p\"\n",
        );
        assert!(error.contains("password"), "{error}");
    }

    #[test]
    fn redis_needs_a_url() {
        let error = error_of("[key_value_store.default]\ntype = \"redis\"\n");
        assert!(error.contains("url"), "{error}");
        assert!(error.contains("missing field `url`"), "{error}");
    }

    #[test]
    fn parses_databases_with_the_default_in_the_state_dir() {
        let config = RuntimeConfig::parse(
            "[sqlite_database.audit]\ntype = \"spin\"\npath = \"audit.db\"\n\
             [sqlite_database.scratch]\ntype = \"spin\"\n",
            Path::new("/etc/hero"),
        )
        .unwrap();
        let databases = config.databases(Path::new("/app/.spin"));
        assert_eq!(databases["default"], Some("/app/.spin/sqlite_db.db".into()));
        assert_eq!(databases["audit"], Some("/etc/hero/audit.db".into()));
        assert_eq!(databases["scratch"], None);
        let error = error_of("[sqlite_database.x]\ntype = \"libsql\"\nurl = \"u\"\n");
        assert!(error.contains("unknown variant `libsql`"), "{error}");
    }

    #[test]
    fn parses_variables_providers_in_order() {
        let config = RuntimeConfig::parse(
            "[[variables_provider]]\ntype = \"static\"\nvalues = { token = \"t\" }\n\
             [[variables_provider]]\ntype = \"env\"\nprefix = \"APP\"\n\
             [[config_provider]]\ntype = \"env\"\n",
            Path::new("/"),
        );
        // `config_provider` is the old name of the same table: both at once
        // is a duplicate.
        assert!(config.is_err());
        let config = RuntimeConfig::parse(
            "[[variables_provider]]\ntype = \"static\"\nvalues = { token = \"t\" }\n\
             [[variables_provider]]\ntype = \"env\"\nprefix = \"APP\"\n",
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(
            config.variables_providers,
            [
                Provider::Static {
                    origin: "runtime config",
                    values: HashMap::from([("token".into(), "t".into())])
                },
                Provider::Env {
                    prefix: "APP".into()
                }
            ]
        );
        let error = error_of("[[variables_provider]]\ntype = \"vault\"\nurl = \"u\"\n");
        assert!(error.contains("unknown variant `vault`"), "{error}");
        let error = error_of("[[variables_provider]]\ntype = \"env\"\ndotenv_path = \".env\"\n");
        assert!(error.contains("dotenv_path"), "{error}");
    }
}
