//! The Spin capabilities a component gets besides WASI, wasi:http and
//! key-value: its variables and its SQLite databases. [`Capabilities`] is
//! built once per component at start-up; each instance gets its
//! [`InstanceCapabilities`] in its store.

use std::sync::Arc;

use crate::manifest::Component;
use crate::sqlite::ctx::{SqliteCtx, SqliteMetrics, SqliteState};
use crate::sqlite::{Databases, SqliteFailures};
use crate::variables::{AppVariables, ComponentVariables};

/// One component's capabilities.
pub struct Capabilities {
    variables: Arc<ComponentVariables>,
    sqlite: Arc<SqliteCtx>,
}

impl Capabilities {
    /// The component's variables rendered from the application's, and the
    /// databases it was granted; a query result may be as large as an
    /// instance's memory (a larger one could not reach the guest).
    pub fn new(
        component: &Component,
        variables: &AppVariables,
        databases: &Databases,
        metrics: Arc<SqliteMetrics>,
        max_instance_memory: u64,
    ) -> Self {
        Capabilities {
            variables: Arc::new(variables.component(&component.variables)),
            sqlite: Arc::new(SqliteCtx::new(
                databases.clone(),
                &component.sqlite_databases,
                metrics,
                usize::try_from(max_instance_memory).unwrap_or(usize::MAX),
            )),
        }
    }

    /// The state of a new instance; `failures` is told of failed statements.
    pub fn instance(&self, failures: Arc<dyn SqliteFailures>) -> InstanceCapabilities {
        InstanceCapabilities {
            variables: self.variables.clone(),
            sqlite: SqliteState::new(self.sqlite.clone(), failures),
        }
    }
}

/// One instance's capabilities, held in its store.
pub struct InstanceCapabilities {
    /// The component's variables.
    pub variables: Arc<ComponentVariables>,
    /// Its SQLite connections.
    pub sqlite: SqliteState,
}
