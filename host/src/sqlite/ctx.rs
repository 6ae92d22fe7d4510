//! What the SQLite host interfaces share: the databases a component may
//! open ([`SqliteCtx`], built once per component), an instance's state
//! ([`SqliteState`]), and how one statement is run, timed, and its failure
//! reported ([`run`]). Both interface versions answer through [`GuestError`].

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use opentelemetry::KeyValue;
use opentelemetry::metrics::Histogram;
use wasmtime::component::ResourceTable;

use super::database::GuestConnection;
use super::query::{self, QueryError, Rows, Value};
use super::{Databases, SqliteFailure, SqliteFailures};
use crate::kv::WriterId;
use crate::telemetry::metrics::Metrics;

/// Connections one instance may hold open at once.
const MAX_OPEN_CONNECTIONS: u32 = 64;

/// The error a guest sees, before it is put in an interface's own type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestError {
    /// No database has that label.
    NoSuchDatabase,
    /// The component was not granted it.
    AccessDenied,
    /// The handle is not usable (too many open).
    InvalidConnection,
    /// The disk or database is full.
    DatabaseFull,
    /// Anything else; the text names the class of failure, never the detail
    /// (which is in the host log).
    Io(String),
}

/// `sqlite_query_duration_seconds`, created once.
pub struct SqliteMetrics {
    enabled: bool,
    duration: Histogram<f64>,
}

impl SqliteMetrics {
    /// Registers the instrument with the host's meter.
    pub fn new(metrics: &Metrics) -> Self {
        SqliteMetrics {
            enabled: metrics.enabled(),
            duration: metrics
                .meter()
                .f64_histogram("sqlite.query.duration")
                .with_unit("s")
                .with_description(
                    "Duration of SQLite statements, by database label, operation and outcome.",
                )
                .with_boundaries(vec![
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                    0.5, 1.0, 2.5, 5.0, 10.0,
                ])
                .build(),
        }
    }

    fn record(&self, database: &Arc<str>, operation: &'static str, ok: bool, seconds: f64) {
        if self.enabled {
            self.duration.record(
                seconds,
                &[
                    KeyValue::new("sqlite.database", database.clone()),
                    KeyValue::new("sqlite.operation", operation),
                    KeyValue::new("outcome", if ok { "ok" } else { "error" }),
                ],
            );
        }
    }
}

/// Set-up state of one component: the databases it may open.
pub struct SqliteCtx {
    databases: Databases,
    granted: HashSet<String>,
    metrics: Arc<SqliteMetrics>,
    max_result_bytes: usize,
}

impl SqliteCtx {
    /// The component may open `granted` labels among `databases`; a result
    /// may hold up to `max_result_bytes` (more could not fit in the guest).
    pub fn new(
        databases: Databases,
        granted: &[String],
        metrics: Arc<SqliteMetrics>,
        max_result_bytes: usize,
    ) -> Self {
        SqliteCtx {
            databases,
            granted: granted.iter().cloned().collect(),
            metrics,
            max_result_bytes,
        }
    }
}

/// Per-instance state, held in the store data.
pub struct SqliteState {
    ctx: Arc<SqliteCtx>,
    open: u32,
    failures: Arc<dyn SqliteFailures>,
}

impl SqliteState {
    /// Fresh state for a new instance; `failures` is told of each failed
    /// statement.
    pub fn new(ctx: Arc<SqliteCtx>, failures: Arc<dyn SqliteFailures>) -> Self {
        SqliteState {
            ctx,
            open: 0,
            failures,
        }
    }

    /// A connection to `label`, counted against the instance's limit.
    pub fn open(&mut self, label: &str) -> Result<GuestConnection, GuestError> {
        let database = match self.ctx.databases.get(label) {
            Some(database) if self.ctx.granted.contains(label) => database,
            Some(_) => return Err(GuestError::AccessDenied),
            None if self.ctx.granted.contains(label) => return Err(GuestError::NoSuchDatabase),
            None => return Err(GuestError::AccessDenied),
        };
        if self.open >= MAX_OPEN_CONNECTIONS {
            return Err(GuestError::InvalidConnection);
        }
        let connection = database
            .connect()
            .map_err(|error| self.failed(&database.label, "open", &QueryError::Sqlite(error)))?;
        self.open += 1;
        Ok(connection)
    }

    /// A handle was dropped.
    pub fn closed(&mut self) {
        self.open = self.open.saturating_sub(1);
    }

    /// What running a statement needs, without a borrow of the store.
    pub fn statement(&self, connection: Arc<GuestConnection>) -> Statement {
        Statement {
            connection,
            ctx: self.ctx.clone(),
            caller: self.failures.caller(),
            failures: self.failures.clone(),
        }
    }

    fn failed(
        &self,
        database: &Arc<str>,
        operation: &'static str,
        error: &QueryError,
    ) -> GuestError {
        let caller = self.failures.caller();
        report(&*self.failures, caller, database, operation, error)
    }
}

/// One statement about to run.
pub struct Statement {
    connection: Arc<GuestConnection>,
    ctx: Arc<SqliteCtx>,
    failures: Arc<dyn SqliteFailures>,
    /// Who runs it, resolved when it starts.
    caller: WriterId,
}

/// Runs a statement: timed by database, operation and outcome; a failure
/// logged with SQLite's detail, reported to the request, and given to the
/// guest as a generic error.
pub async fn run(
    statement: Statement,
    sql: String,
    parameters: Vec<Value>,
) -> Result<Rows, GuestError> {
    let operation = query::operation(&sql);
    let database = statement.connection.database().label.clone();
    let started = Instant::now();
    let result = statement
        .connection
        .execute(sql, parameters, statement.ctx.max_result_bytes)
        .await;
    let seconds = started.elapsed().as_secs_f64();
    statement
        .ctx
        .metrics
        .record(&database, operation, result.is_ok(), seconds);
    result.map_err(|error| {
        report(
            &*statement.failures,
            statement.caller,
            &database,
            operation,
            &error,
        )
    })
}

fn report(
    failures: &dyn SqliteFailures,
    caller: WriterId,
    database: &Arc<str>,
    operation: &'static str,
    error: &QueryError,
) -> GuestError {
    tracing::warn!(database = &**database, operation, error = %error, "SQLite statement failed");
    failures.sqlite_failed(
        caller,
        SqliteFailure {
            database: database.clone(),
            operation,
            error: error.to_string(),
        },
    );
    let code = match error {
        QueryError::Sqlite(error) => error.sqlite_error_code(),
        QueryError::TooLarge(_) | QueryError::Incomplete => None,
    };
    match (code, error) {
        (Some(rusqlite::ErrorCode::DiskFull), _) => GuestError::DatabaseFull,
        (Some(code), _) => GuestError::Io(format!(
            "SQLite database `{database}`: the statement failed ({code:?}); the host log has the detail"
        )),
        (None, QueryError::TooLarge(_)) => {
            GuestError::Io(format!("SQLite database `{database}`: {error}"))
        }
        (None, _) => GuestError::Io(format!(
            "SQLite database `{database}`: the statement failed; the host log has the detail"
        )),
    }
}

/// The per-call borrow of the state and the instance's resource table.
pub struct SqliteView<'a> {
    /// Per-instance state.
    pub state: &'a mut SqliteState,
    /// The table shared with WASI.
    pub table: &'a mut ResourceTable,
}

/// Implemented by the store data.
pub trait SqliteHostView: Send {
    /// Borrows the SQLite view.
    fn sqlite(&mut self) -> SqliteView<'_>;
}
