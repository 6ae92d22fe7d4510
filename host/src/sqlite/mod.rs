//! SQLite databases for guests (`sqlite_databases` in the manifest), as Spin
//! keeps them: the `default` label at `<state-dir>/sqlite_db.db`, others where
//! the runtime config's `[sqlite_database.<label>]` says, `--sqlite`
//! statements run at start. The host interfaces are in [`host`]
//! (`spin:sqlite@3.1.0`) and `crate::spin_v2` (`fermyon:spin/sqlite@2.0.0`),
//! both on [`ctx`].

pub mod ctx;
pub mod database;
pub mod host;
pub mod query;
pub mod wit_conversions;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};

use self::database::Database;
use crate::config::HostConfig;
use crate::kv::WriterId;
use crate::labeled::{ByLabel, Kind};
use crate::runtime_config::DEFAULT_STORE_LABEL;

/// A failed statement under a request, for its invocation line.
#[derive(Debug, Clone)]
pub struct SqliteFailure {
    /// The database label.
    pub database: Arc<str>,
    /// The statement's kind (`select`, `insert`, ..., `open`).
    pub operation: &'static str,
    /// SQLite's error.
    pub error: String,
}

impl std::fmt::Display for SqliteFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SQLite {} on database `{}` failed: {}",
            self.operation, self.database, self.error
        )
    }
}

/// Told of each failed statement, so the request it happened under can say
/// why in its log line.
pub trait SqliteFailures: Send + Sync {
    /// Who is calling now; asked when a statement starts, while the guest's
    /// call is in progress.
    fn caller(&self) -> WriterId;
    /// A statement `caller` started failed.
    fn sqlite_failed(&self, caller: WriterId, failure: SqliteFailure);
}

/// Every database the application's components were granted, opened once
/// at start-up.
pub type Databases = ByLabel<Database>;

impl ByLabel<Database> {
    /// Opens the database of every label in `used` (component, label); a
    /// label without configuration is an error naming the component.
    pub fn open<'a>(
        configs: &BTreeMap<String, Option<PathBuf>>,
        used: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> anyhow::Result<Self> {
        let kind = Kind {
            noun: "SQLite database",
            table: "sqlite_database",
        };
        ByLabel::open_each(kind, configs, used, |label, path| {
            Database::open(label, path.as_deref())
        })
    }
}

/// Opens the databases the served components use, says where they are,
/// and runs the `--sqlite` statements.
pub fn open_for(config: &HostConfig) -> anyhow::Result<Databases> {
    let configs = config.runtime_config.databases(&config.state_dir);
    let used = config.manifest.served_components().flat_map(|c| {
        c.sqlite_databases
            .iter()
            .map(move |label| (c.id.as_str(), label.as_str()))
    });
    let databases = Databases::open(&configs, used)?;
    for database in databases.iter() {
        tracing::info!(
            database = &*database.label,
            location = database.location.as_str(),
            "SQLite database"
        );
    }
    run_statements(&databases, &configs, &config.sqlite_statements)?;
    Ok(databases)
}

/// Runs `--sqlite` arguments in order, as `spin up` does: a statement runs
/// against `default`; `@FILE` runs a file's statements against `default`,
/// `@FILE:LABEL` against `LABEL`. Databases they name that no component uses
/// are opened for the occasion.
pub fn run_statements(
    databases: &Databases,
    configs: &BTreeMap<String, Option<PathBuf>>,
    statements: &[String],
) -> anyhow::Result<()> {
    for argument in statements {
        let (sql, label) = match argument.strip_prefix('@') {
            Some(file) => {
                let (file, label) = match file.rsplit_once(':') {
                    Some((file, label)) if !label.is_empty() && !label.contains('/') => {
                        (file, label)
                    }
                    _ => (file, DEFAULT_STORE_LABEL),
                };
                let sql = std::fs::read_to_string(file)
                    .with_context(|| format!("--sqlite {argument}: cannot read {file}"))?;
                (sql, label)
            }
            None => (argument.clone(), DEFAULT_STORE_LABEL),
        };
        let opened;
        let database = match databases.get(label) {
            Some(database) => database,
            None => {
                let Some(path) = configs.get(label) else {
                    bail!(
                        "--sqlite {argument}: no SQLite database `{label}`: add \
                         [sqlite_database.{label}] to the runtime config file"
                    );
                };
                opened = Database::open(label, path.as_deref())?;
                &opened
            }
        };
        database
            .execute_batch(&sql)
            .with_context(|| format!("--sqlite {argument}: failed on database `{label}`"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs(dir: &std::path::Path) -> BTreeMap<String, Option<PathBuf>> {
        BTreeMap::from([
            ("default".to_owned(), Some(dir.join("sqlite_db.db"))),
            ("audit".to_owned(), Some(dir.join("audit.db"))),
            ("scratch".to_owned(), None),
        ])
    }

    #[test]
    fn opens_only_used_labels_and_names_an_undefined_one() {
        let dir = tempfile::tempdir().unwrap();
        let configs = configs(dir.path());
        let databases =
            Databases::open(&configs, [("app", "default"), ("other", "scratch")]).unwrap();
        assert!(databases.get("default").is_some());
        assert!(databases.get("audit").is_none());
        assert_eq!(databases.get("scratch").unwrap().location, "memory");
        let error = Databases::open(&configs, [("app", "orders")])
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.contains("component `app` uses SQLite database `orders`"),
            "{error}"
        );
    }

    #[test]
    fn startup_statements_run_in_order_against_their_labels() {
        let dir = tempfile::tempdir().unwrap();
        let configs = configs(dir.path());
        let databases = Databases::open(&configs, [("app", "default")]).unwrap();
        let seed = dir.path().join("seed.sql");
        std::fs::write(
            &seed,
            "CREATE TABLE log (m TEXT); INSERT INTO log VALUES ('a');",
        )
        .unwrap();
        run_statements(
            &databases,
            &configs,
            &[
                "CREATE TABLE t (x INTEGER)".to_owned(),
                "INSERT INTO t VALUES (42)".to_owned(),
                format!("@{}:audit", seed.display()),
            ],
        )
        .unwrap();
        let default = rusqlite::Connection::open(dir.path().join("sqlite_db.db")).unwrap();
        let x: i64 = default
            .query_row("SELECT x FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(x, 42);
        let audit = rusqlite::Connection::open(dir.path().join("audit.db")).unwrap();
        let m: String = audit
            .query_row("SELECT m FROM log", [], |r| r.get(0))
            .unwrap();
        assert_eq!(m, "a");

        let error = run_statements(&databases, &configs, &["@x.sql:nope".to_owned()])
            .unwrap_err()
            .to_string();
        assert!(error.contains("cannot read x.sql"), "{error}");
        let error = format!(
            "{:#}",
            run_statements(&databases, &configs, &["SELEC 1".to_owned()]).unwrap_err()
        );
        assert!(error.contains("failed on database `default`"), "{error}");
        assert!(error.contains("syntax error"), "{error}");
    }
}
